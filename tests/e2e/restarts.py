"""Fewer restarts of the service with other settings (a restart is two stops and two starts
of `softswitch serve`, about 4.6 s): once for a class of tests — one test's runs through
both engines — instead of once per run (each run makes its own tenant and number and reads
the service's counters as differences; the tests outside the class see the usual service),
and one settings after another without the usual service started between them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def restarted_in_turn(service: ServiceProcess) -> Iterator[Callable[..., ServiceProcess]]:
    """`restarted` for several settings one after the other (a clock pinned to one moment,
    then another): each call of the function given stops the service running and starts
    one with its settings; the usual service starts again once, at the end, not between."""
    running: list[ServiceProcess] = []

    def switch(**env: str) -> ServiceProcess:
        (running.pop() if running else service).stop()
        other = ServiceProcess(service.settings, env=env, token=service.token, log_path=service.log_path)
        running.append(other)
        other.start()
        return other

    try:
        yield switch
    finally:
        if running:
            running.pop().stop()
            service.start()
