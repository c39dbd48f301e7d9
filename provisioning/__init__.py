"""Provisioning: tenants, numbers, extensions, packages (see the provisioning issue)."""
