"""Issue 19, item 5, read off the running stack: every socket the service, PostgreSQL,
Asterisk and FreeSWITCH have bound is on loopback, taken from /proc while a call is up (the
RTP ports only exist during calls), not from the configs (tests/unit/test_listeners.py).

One named exception: Asterisk's PJSIP creates pjproject's DNS resolver, whose two client
sockets (one IPv4, one IPv6, ephemeral ports) pjproject binds to the wildcard address;
Asterisk 22 has no setting for their address. They only take answers to its own queries."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack.process import ServiceProcess
from scripts.devstack.sipp import SippUas, run_uac
from scripts.devstack.stack import LocalStack
from tests.e2e.conftest import OWNER, Engine, active_number, api_ok, mobile, unique_caller
from tests.e2e.hangup import ended_when, holding_caller, live_call

_TCP_LISTEN, _UDP_UNCONNECTED = "0A", "07"


@dataclass(frozen=True)
class Bound:
    proto: str  # tcp, tcp6, udp, udp6
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback


def _address(hex_addr: str) -> tuple[str, int]:
    host_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc/net prints the address as 32-bit words in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words)), int(port_hex, 16)


def bound_sockets(pid: int) -> list[Bound]:
    """The listening TCP and unconnected UDP sockets that `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        wanted = _TCP_LISTEN if proto.startswith("tcp") else _UDP_UNCONNECTED
        for line in Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode in inodes and state == wanted:
                found.append(Bound(proto, *_address(local)))
    return found


def test_the_proc_address_decoder() -> None:
    assert _address("0100007F:13C4") == ("127.0.0.1", 5060)
    assert _address("00000000000000000000000001000000:1F90") == ("::1", 8080)
    assert _address("00000000:0000") == ("0.0.0.0", 0)


async def test_every_bound_socket_is_on_loopback_while_a_call_is_up(
    service: ServiceProcess, stack: LocalStack, destination_carrier: SippUas, engine: Engine
) -> None:
    tenant, number_id, number = active_number(service)
    api_ok(
        service.request(
            "POST",
            f"/v1/tenants/{tenant}/bindings",
            json={"number_id": number_id, "destination": mobile(), **OWNER},
        ),
        201,
    )
    pids = {
        "asterisk": stack._recorded_pid("asterisk"),
        "freeswitch": stack._recorded_pid("freeswitch"),
        "postgres": stack.pg_pid(),
        "service": service.proc.pid if service.proc is not None else None,
    }
    engine_pid = pids[engine.name]
    assert engine_pid is not None and pids["service"] is not None and pids["postgres"] is not None
    before = {b.port for b in bound_sockets(engine_pid) if b.proto.startswith("udp")}
    caller = unique_caller()
    call = asyncio.create_task(
        asyncio.to_thread(
            run_uac,
            number,
            caller,
            scenario=holding_caller(5000),
            hold_ms=5000,
            timeout_s=30,
            target=engine.carrier,
        )
    )
    deadline = time.monotonic() + 15
    while True:  # the call's RTP sockets: both legs, RTP and RTCP
        media = [b for b in bound_sockets(engine_pid) if b.proto.startswith("udp") and b.port not in before]
        if len(media) >= 2 or call.done():
            break
        assert time.monotonic() < deadline, "no RTP socket appeared during the call"
        await asyncio.sleep(0.05)
    seen = {name: bound_sockets(pid) for name, pid in pids.items() if pid is not None}

    async def answered() -> str | None:  # all there was to see is seen: the engine ends the call
        live = live_call(service, caller, "bridged")
        return live["linkedid"] if live else None

    result = await ended_when(call, answered, stack, engine, budget=10)
    assert result.final_status == 200
    assert len(media) >= 2 and all(b.loopback for b in media), media

    wildcard = {name: [b for b in socks if not b.loopback] for name, socks in seen.items()}
    resolver = sorted(b.proto for b in wildcard.pop("asterisk", []))
    assert resolver in ([], ["udp", "udp6"]), wildcard  # pjproject's DNS resolver, see above
    assert {name: socks for name, socks in wildcard.items() if socks} == {}
    # Each process was read: the service's FastAGI/HTTP, PostgreSQL's port, the engines' SIP.
    ports = {name: {b.port for b in socks} for name, socks in seen.items()}
    assert stack.s.database.port in ports["postgres"]
    assert {service.settings.agi.port, service.settings.http.port} <= ports["service"]
    assert stack.s.asterisk.sip_port in ports.get("asterisk", {stack.s.asterisk.sip_port})
