"""IVR as pure step machines: `menu` (tenant menus as validated data), `machine` (runs a
menu set), `selfservice` (the phone self-service line), `actions` (what they ask of the
channel and hear back). The adapter at the edge performs the actions; nothing here does I/O."""
