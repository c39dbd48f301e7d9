"""Softswitch control plane: composition root, protocol adapters (AMI, FastAGI, ESL), HTTP and CLI."""
