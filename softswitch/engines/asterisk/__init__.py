"""Asterisk 22: FastAGI (agi/) hands every call to the call path; AMI (ami/) reports each
channel's life and carries call-control actions."""
