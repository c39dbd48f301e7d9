"""Provisioning: who may change what (roles, tokens), the business rules of enterprises,
numbers and SIP accounts, the service layer shared by the REST API and the CLI, and the
REST API itself (/v1)."""
