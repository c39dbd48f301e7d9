"""FreeSWITCH Event Socket (mod_event_socket, inbound mode): a sans-IO codec (codec.py) and
the asyncio client that owns the socket (client.py)."""
