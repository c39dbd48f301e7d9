"""IVR menus as pure step machines (see the IVR issue)."""
