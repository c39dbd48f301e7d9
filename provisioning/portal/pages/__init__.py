"""The portal's page sets, one module per feature. Each may declare `NAV` (its menu
entries) and `mount_tenant(router, PageDep)` / `mount_ops(router, PageDep)`; the portal
mounts every module listed here, in this order. A page module must not use
`from __future__ import annotations`: FastAPI reads its handlers' annotations, and
`PageDep` is a type made when the portal mounts the module."""

from provisioning.portal.pages import (
    analysis,
    billing,
    bindings,
    calls,
    customers,
    dashboard,
    extensions,
    ivr,
    operator,
    recordings,
    schedules,
)

MODULES = (
    dashboard,
    calls,
    billing,
    analysis,
    customers,
    recordings,
    ivr,
    schedules,
    bindings,
    extensions,
    operator,
)
