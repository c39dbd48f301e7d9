"""The web self-service portal (enterprises) and the operator's console, served under
/portal by the service itself. Pages call the same service layer as the REST API."""
