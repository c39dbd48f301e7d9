"""Compliance (issue 15) in the service layer: the rules as data per platform and per tenant
(rules.py), complaints against enterprises (complaints.py), their API (api.py), CLI
(cli.py) and models (schemas.py)."""
