"""The call path, whichever engine carries the call: routing and IVR decisions delivered
to the engine, prepaid reservations and their renewal, recording, the live call registry,
call records, and the continuous check against the engine's own view."""
