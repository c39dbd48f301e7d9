"""The control plane's side of the cluster layout's SIP edge (Kamailio, docker/kamailio/)."""
