"""Asterisk Manager Interface: a sans-IO codec (codec.py) and the asyncio client
that owns the socket (client.py)."""
