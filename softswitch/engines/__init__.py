"""The engines' protocols: Asterisk (FastAGI, AMI) and FreeSWITCH (Event Socket), each a
sans-IO codec plus an asyncio connection, and the adapters that give the call path its
engine-neutral call control (softswitch.callpath.control)."""
