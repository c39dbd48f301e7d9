"""Roles and the principal a request acts as. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    OPERATOR_STAFF = "operator_staff"
    TENANT_ADMIN = "tenant_admin"
    TENANT_READONLY = "tenant_readonly"


OPERATORS = frozenset({Role.PLATFORM_ADMIN, Role.OPERATOR_STAFF})
TENANT_WRITERS = OPERATORS | {Role.TENANT_ADMIN}
ADMINS = frozenset({Role.PLATFORM_ADMIN})
EVERYONE = frozenset(Role)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int | None
    name: str  # username, or "cli:<os user>" for the operator CLI
    role: Role
    tenant_id: int | None = None
    token_id: int | None = None

    @property
    def is_operator(self) -> bool:
        return self.role in OPERATORS

    def sees_tenant(self, tenant_id: int | None) -> bool:
        """Operators see every tenant; a tenant's users only their own."""
        return self.is_operator or (tenant_id is not None and tenant_id == self.tenant_id)

    def may(self, roles: frozenset[Role]) -> bool:
        return self.role in roles
