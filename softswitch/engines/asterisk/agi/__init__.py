"""FastAGI: a sans-IO codec (codec.py) and the asyncio server that owns the sockets (server.py)."""
