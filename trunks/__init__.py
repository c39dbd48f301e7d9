"""Outbound trunks and route selection (see the routing issue)."""
