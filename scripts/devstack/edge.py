"""The cluster layout's SIP edge: Kamailio from Debian's package, configured from
docker/kamailio/ (rendered here from the settings' [edge] section), in front of the local
engines. `stack up --cluster` starts it after the single-node stack; it is stopped with
the stack. Started, stopped and reported by the PID it recorded, as the other parts."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
import time
from pathlib import Path

from scripts.devstack.stack import LocalStack, StackError, _render

KAMAILIO = Path("/usr/sbin/kamailio")
KAMCMD = Path("/usr/sbin/kamcmd")
EDGE_TEMPLATES = Path(__file__).resolve().parents[2] / "docker" / "kamailio"
MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/aarch64-linux-gnu/kamailio/modules")


class KamailioEdge:
    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self.s = stack.s
        top = self.s.stack.dir
        self.conf_dir = top / "kamailio-conf"
        self.ctl_socket = stack.run_dir / "kamailio.ctl"
        self.log_path = top / "logs" / "kamailio.log"

    @staticmethod
    def installed() -> bool:
        return KAMAILIO.exists()

    def pid(self) -> int | None:
        return self._stack._recorded_pid("kamailio")

    def render(self) -> dict[str, str]:
        e, a, fs = self.s.edge, self.s.asterisk, self.s.freeswitch
        modules = next((d for d in MODULE_DIRS if Path(d).is_dir()), MODULE_DIRS[0])
        values = {
            "EDGE_HOST": e.host,
            "EDGE_PORT": str(e.port),
            "PROBE_S": str(e.probe_interval_s),
            "FLOOD": str(e.flood_requests_per_2s),
            "BAN_S": str(e.ban_s),
            "AUTH_WINDOW_S": str(e.auth_window_s),
            "AUTH_FAILS": str(e.auth_fails_per_address),
            "ACCOUNT_FAILS": str(e.auth_fails_per_account),
            "PHONES_HOST": fs.sip_host,
            "PHONES_PORT": str(fs.phones_port),
            "TRUSTED": " || ".join(f'$si == "{ipaddress.ip_address(a)}"' for a in e.trusted) or "0",
            "MODULES": modules,
            "CTL_SOCKET": str(self.ctl_socket),
            "DISPATCHER_LIST": str(self.conf_dir / "dispatcher.list"),
            "ASTERISK_HOST": a.sip_host,
            "ASTERISK_PORT": str(a.sip_port),
            "FREESWITCH_HOST": fs.sip_host,
            "FREESWITCH_PORT": str(fs.carrier_port),
        }
        files = _render(EDGE_TEMPLATES.glob("*"), values)
        if not self._stack.fs_built():  # a laptop without FreeSWITCH: the Asterisk node only
            files["dispatcher.list"] = "".join(
                line + "\n" for line in files["dispatcher.list"].splitlines() if "name=freeswitch" not in line
            )
        return files

    def up(self) -> None:
        """Start Kamailio; a no-op when it runs with the configuration rendered now."""
        if not self.installed():
            raise StackError("Kamailio is not installed: run scripts/bootstrap.sh (Debian's kamailio)")
        files = self.render()
        digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
        stamp = self._stack.run_dir / "kamailio.confhash"
        if self.pid() is not None:
            if stamp.exists() and stamp.read_text() == digest:
                return
            self.down()
        shutil.rmtree(self.conf_dir, ignore_errors=True)
        self.conf_dir.mkdir(parents=True)
        for name, text in files.items():
            (self.conf_dir / name).write_text(text)
        cfg = self.conf_dir / "kamailio.cfg"
        check = subprocess.run(
            [str(KAMAILIO), "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise StackError(f"kamailio -c rejected {cfg}: {check.stderr.strip()[-2000:]}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ctl_socket.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                # -DD: stays in the foreground (its PID is the one recorded); -E: logs to stderr
                [str(KAMAILIO), "-DD", "-E", "-f", str(cfg), "-m", "64", "-M", "8"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        (self._stack.run_dir / "kamailio.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 15
        while not self._answers():
            if proc.poll() is not None:
                raise StackError(f"Kamailio exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                raise StackError(f"Kamailio did not answer on {self.ctl_socket} within 15 s")
            time.sleep(0.1)
        stamp.write_text(digest)

    def down(self, timeout: float = 10.0) -> None:
        self._stack._stop_recorded("kamailio", timeout)

    def kamcmd(self, *command: str, timeout: float = 5.0) -> str:
        res = subprocess.run(
            [str(KAMCMD), "-s", f"unix:{self.ctl_socket}", *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise StackError(f"kamcmd {' '.join(command)} failed: {res.stderr.strip() or res.stdout.strip()}")
        return res.stdout

    def _answers(self) -> bool:
        if not self.ctl_socket.exists():
            return False
        try:
            return "kamailio" in self.kamcmd("core.version", timeout=2).lower()
        except (StackError, subprocess.TimeoutExpired):
            return False

    def engines(self) -> dict[str, bool]:
        """The dispatcher's engines: destination URI -> in rotation (answering its probe)."""
        out: dict[str, bool] = {}
        uri = ""
        for line in self.kamcmd("dispatcher.list").splitlines():
            line = line.strip()
            if line.startswith("URI:"):
                uri = line.split(":", 1)[1].strip()
            elif line.startswith("FLAGS:") and uri:
                flags = line.split(":", 1)[1].strip()
                out[uri] = flags.startswith("A")  # AP / AX: active; IP / IX / DX: not
                uri = ""
        return out
