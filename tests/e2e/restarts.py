"""The service restarted with other settings once for a class of tests — one test's runs
through both engines — instead of once per run: a restart is two stops and two starts of
`softswitch serve` (about 4.6 s). Each run makes its own tenant and number and reads the
service's counters as differences; the tests outside the class see the usual service."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scripts.devstack.process import ServiceProcess
from tests.e2e.conftest import restarted


def class_service(**env: str) -> Any:
    """A fixture (assign it to a module-level name): `restarted(service, **env)` for the
    tests of the class that asks for it, restored after its last."""

    @pytest.fixture(scope="class")
    def restarted_for_class(service: ServiceProcess) -> Iterator[ServiceProcess]:
        with restarted(service, **env) as svc:
            yield svc

    return restarted_for_class
