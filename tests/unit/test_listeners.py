"""Every listener of the stack binds loopback by default: the service's own (FastAGI, HTTP,
the outbound Event Socket), PostgreSQL's, and those the rendered engine configs give Asterisk
(SIP, AMI) and FreeSWITCH (SIP, RTP, Event Socket)."""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from scripts.devstack.stack import LocalStack
from softswitch.core.settings import Settings


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    for key in list(os.environ):
        if key.startswith("SOFTSWITCH_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SOFTSWITCH_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("SOFTSWITCH_STACK__DIR", str(tmp_path))
    monkeypatch.setenv("SOFTSWITCH_ASTERISK__CHROOT", str(tmp_path / "root"))
    (tmp_path / "root" / "usr" / "lib" / "x86_64-linux-gnu" / "asterisk" / "modules").mkdir(parents=True)
    return Settings()


def loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def test_the_settings_default_every_listener_to_loopback(defaults: Settings) -> None:
    s = defaults
    hosts = {
        "agi.host": s.agi.host,
        "http.host": s.http.host,
        "freeswitch.socket_host": s.freeswitch.socket_host,
        "database.host": s.database.host,  # PostgreSQL's listen_addresses (LocalStack.pg_up)
        "asterisk.sip_host": s.asterisk.sip_host,
        "ami.host": s.ami.host,
        "freeswitch.sip_host": s.freeswitch.sip_host,
        "freeswitch.esl_host": s.freeswitch.esl_host,
    }
    assert {name: host for name, host in hosts.items() if not loopback(host)} == {}


def test_the_rendered_engine_configs_bind_only_what_the_settings_say(defaults: Settings) -> None:
    st = LocalStack(defaults)
    st.ensure_secrets()
    ast, fs = st.render_asterisk_config(), st.render_freeswitch_config()
    assert re.findall(r"^bind = (\S+)$", ast["pjsip.conf"], re.M) == ["127.0.0.1:5060"]
    assert re.findall(r"^bindaddr = (\S+)$", ast["manager.conf"], re.M) == ["127.0.0.1"]
    xml = "\n".join(fs.values())
    ips = re.findall(r'name="(sip-ip|rtp-ip|listen-ip)" value="([^"]*)"', xml)
    assert {name for name, _ in ips} == {"sip-ip", "rtp-ip", "listen-ip"}
    assert {value for _, value in ips} == {"127.0.0.1"}
    # No HTTP server of Asterisk's (http.conf is not rendered, so Debian's is removed).
    assert "http.conf" not in ast


def test_a_listener_configured_elsewhere_is_rendered_there(
    defaults: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOFTSWITCH_FREESWITCH__ESL_HOST", "127.0.0.9")
    st = LocalStack(Settings())
    st.ensure_secrets()
    assert 'name="listen-ip" value="127.0.0.9"' in st.render_freeswitch_config()["event_socket.conf.xml"]


def test_the_static_pjsip_endpoints_name_the_loopback_transport(defaults: Settings) -> None:
    """Asterisk binds an endpoint's RTP to its transport's address only when the endpoint
    names the transport; without one it binds every interface (seen: RTP on `*`). The
    realtime rows (provisioning/sip.py) name it too."""
    st = LocalStack(defaults)
    st.ensure_secrets()
    conf = st.render_asterisk_config()["pjsip.conf"]
    sections = [s for s in conf.split("\n[")[1:] if "\ntype = endpoint\n" in s]
    assert len(sections) == 4 and all("\ntransport = transport-udp\n" in s for s in sections), sections
