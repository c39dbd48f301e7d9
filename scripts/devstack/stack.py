"""The local real stack: a PostgreSQL 15 cluster, Asterisk 22 in a chroot and FreeSWITCH
1.10 (built from the vendored sources), on 127.0.0.1.

Installing (apt, debootstrap, the venv) is scripts/bootstrap.sh's job; this module renders
configuration from the repo's templates and starts, stops and reports the processes,
each by the PID it recorded — never by name."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from provisioning.sip import DEFAULT_REALM
from softswitch.core.settings import Settings
from softswitch.core.stack_secrets import SECRET_FIELDS, ensure_secrets, secrets_path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TEMPLATES = Path(__file__).resolve().parents[2] / "docker" / "asterisk"
FREESWITCH_TEMPLATES = TEMPLATES.parent / "freeswitch"
# Debian's stock files we keep verbatim: tone tables for ringback and congestion, and the
# defaults of modules we load but do not configure (without a file they log errors).
DEBIAN_KEPT = (
    "indications.conf",
    "ccss.conf",
    "cel.conf",
    "acl.conf",
    "udptl.conf",
    "pjproject.conf",
    "stasis.conf",
    "pjsip_wizard.conf",
    "pjsip_notify.conf",
    "res_parking.conf",
    "confbridge.conf",
    "musiconhold.conf",
    "res_fax.conf",
    "queues.conf",
    "followme.conf",
    "amd.conf",
    "voicemail.conf",
)


class StackError(RuntimeError):
    pass


@dataclass
class _HeldLock:
    """This process's hold on the stack lock: one open file (an flock belongs to the open
    file, so a second open() by the same process would wait on its own lock) and the mode
    each nested user asked for."""

    fh: IO[str]
    modes: list[int]

    @property
    def mode(self) -> int:
        return fcntl.LOCK_EX if fcntl.LOCK_EX in self.modes else fcntl.LOCK_SH


# Process-wide by nature (see _HeldLock): a pytest session's e2e fixture holds the lock
# exclusively while its own api/db fixtures hold it shared, and must not wait on itself.
_HELD: dict[Path, _HeldLock] = {}
_HELD_GUARD = threading.Lock()


def _flock(fh: IO[str], mode: int) -> None:
    """Take (or convert to) `mode`, saying whom we wait for when another process holds it."""
    try:
        fcntl.flock(fh, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    fh.seek(0)
    holder = fh.read().strip() or "tests sharing it (tests/api, tests/db)"
    print(f"waiting for the local stack, held by {holder} (Ctrl-C to give up)", file=sys.stderr, flush=True)
    fcntl.flock(fh, mode)


def _record_holder(fh: IO[str], mode: int) -> None:
    fh.seek(0)
    fh.truncate()
    if mode == fcntl.LOCK_EX:  # shared holders are many: they leave the file empty
        fh.write(f"pid {os.getpid()} ({' '.join(sys.argv)[:120]})")
    fh.flush()


@contextlib.contextmanager
def _stack_lock(settings: Settings, mode: int) -> Iterator[None]:
    path = settings.stack.dir / "run" / "exclusive.lock"
    with _HELD_GUARD:
        held = _HELD.get(path)
        if held is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            held = _HeldLock(open(path, "a+"), [])  # noqa: SIM115 - closed when the last user leaves
            try:
                _flock(held.fh, mode)
            except BaseException:  # Ctrl-C while waiting
                held.fh.close()
                raise
            _HELD[path] = held
        elif mode == fcntl.LOCK_EX and held.mode == fcntl.LOCK_SH:
            # Shared to exclusive: flock drops the shared lock, then waits for the others.
            _flock(held.fh, fcntl.LOCK_EX)
        before = held.mode if held.modes else None
        held.modes.append(mode)
        if held.mode != before:
            _record_holder(held.fh, held.mode)
    try:
        yield
    finally:
        with _HELD_GUARD:
            held.modes.remove(mode)
            if not held.modes:
                _record_holder(held.fh, fcntl.LOCK_SH)
                fcntl.flock(held.fh, fcntl.LOCK_UN)
                held.fh.close()
                del _HELD[path]
            elif held.mode == fcntl.LOCK_SH and mode == fcntl.LOCK_EX:
                _record_holder(held.fh, fcntl.LOCK_SH)
                fcntl.flock(held.fh, fcntl.LOCK_SH)  # back to what the outer users asked for


def exclusive_use(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """Hold the local stack for one user at a time (an e2e test session, a benchmark, the
    demo, `stack up/down/restart-asterisk`): they share fixed ports (SIP 5060, FastAGI,
    HTTP) and may restart PostgreSQL or Asterisk, so a second one waits here instead of
    colliding. The lock is an flock, released by the kernel if its holder dies; within one
    process it is reentrant (a nested use, shared or exclusive, joins the outer one)."""
    return _stack_lock(settings, fcntl.LOCK_EX)


def shared_use(settings: Settings) -> contextlib.AbstractContextManager[None]:
    """Hold the stack shared (tests/api, tests/db: PostgreSQL only, with their own random
    rows): any number of them at once, none while someone holds it exclusively — so a
    benchmark or an e2e session restarting PostgreSQL never pulls it from under them, and
    they never restart it under one. Inside an exclusive hold of this process, joins it."""
    return _stack_lock(settings, fcntl.LOCK_SH)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _pid_runs(pid: int, program: str) -> bool:
    """A recorded PID is ours only if that process is still `program`: after a reboot the
    number may belong to anything."""
    if not _pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return program.encode() in f.read()
    except OSError:
        return False


def _render(templates: Iterable[Path], values: Mapping[str, str]) -> dict[str, str]:
    """Template files with every @@NAME@@ filled, by file name; a placeholder left is an error."""
    files = {}
    for tpl in sorted(templates):
        text = tpl.read_text()
        for key, val in values.items():
            text = text.replace(f"@@{key}@@", val)
        if "@@" in text:
            raise StackError(f"unrendered placeholder left in {tpl.name}")
        files[tpl.name] = text
    return files


def _require_secrets(secrets: Mapping[str, SecretStr]) -> None:
    """A rendered config never carries an empty secret: the settings have none until `stack
    up` generated them (secrets.json) or the environment / TOML file gave them."""
    empty = [name for name, value in secrets.items() if not value.get_secret_value()]
    if empty:
        raise StackError(f"no secret for {', '.join(empty)}: run `stack up` (it generates them)")


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    detail: str


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.dir = settings.stack.dir
        self.pg_data = self.dir / "pg" / "data"
        self.pg_sock = self.dir / "pg" / "run"
        self.run_dir = self.dir / "run"
        self.log_dir = self.dir / "logs"
        self.root = settings.asterisk.chroot

    # ---------------------------------------------------------------- secrets
    def ensure_secrets(self) -> bool:
        """The stack's AMI, Event Socket and PostgreSQL secrets: generated at random into
        <stack dir>/secrets.json (0600) the first time (or replacing a former fixed default
        kept there), and put into these settings wherever they have none or the one the file
        held (a process that loaded its settings before); a secret given by the environment
        or the TOML file is kept. True when generated now. The configs rendered next carry
        the new ones: Asterisk and FreeSWITCH restart on the changed config, PostgreSQL's
        roles are altered (_pg_roles)."""
        before, now = ensure_secrets(secrets_path(self.dir))
        for section, key in SECRET_FIELDS:
            part = getattr(self.s, section)
            current = getattr(part, key).get_secret_value()
            if current in ("", before.get(section, {}).get(key)):
                setattr(part, key, SecretStr(now[section][key]))
        return before != now

    # ---------------------------------------------------------------- PostgreSQL
    def _as_postgres(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd],
            check=check,
            capture_output=True,
            text=True,
            cwd="/",
        )

    def pg_pid(self) -> int | None:
        pidfile = self.pg_data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _pid_runs(pid, "postgres") else None

    def pg_up(self) -> None:
        db = self.s.database
        self.ensure_secrets()
        if not (PG_BIN / "initdb").exists():
            raise StackError("PostgreSQL 15 is not installed: run scripts/bootstrap.sh")
        for d in (self.pg_data.parent, self.pg_sock, self.log_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.pg_data.parent, "postgres", "postgres")
        shutil.chown(self.pg_sock, "postgres", "postgres")
        if not (self.pg_data / "PG_VERSION").exists():
            self.pg_data.mkdir(exist_ok=True)
            shutil.chown(self.pg_data, "postgres", "postgres")
            self._as_postgres(
                str(PG_BIN / "initdb"),
                "-D",
                str(self.pg_data),
                "-E",
                "UTF8",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
            )
        if self.pg_pid() is None:
            log = self.log_dir / "postgresql.log"
            log.touch()
            shutil.chown(log, "postgres", "postgres")
            opts = (
                f"-p {db.port} -k {self.pg_sock} -c listen_addresses={db.host} "
                "-c max_connections=300 -c shared_buffers=256MB"
            )
            res = self._as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.pg_data),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "-o",
                opts,
                "start",
                check=False,
            )
            if res.returncode != 0:
                raise StackError(f"PostgreSQL did not start: {res.stdout}{res.stderr} (see {log})")
        self._pg_roles()

    def _psql(self, sql: str, dbname: str = "postgres") -> str:
        res = self._as_postgres(
            "psql",
            "-h",
            str(self.pg_sock),
            "-p",
            str(self.s.database.port),
            "-d",
            dbname,
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-c",
            sql,
            check=False,
        )
        if res.returncode != 0:
            raise StackError(f"psql failed: {res.stderr.strip()}")
        return res.stdout.strip()

    def _pg_roles(self) -> None:
        """The two logins with the current secrets: ALTER ROLE on every `stack up` moves an
        existing cluster to newly generated ones (new connections use them)."""
        db, ast = self.s.database, self.s.asterisk
        for role, pw in (
            (db.user, db.password.get_secret_value()),
            (ast.db_user, ast.db_password.get_secret_value()),
        ):
            ident = '"' + role.replace('"', '""') + '"'
            exists = self._psql(f"SELECT 1 FROM pg_roles WHERE rolname = {_sql_literal(role)}")
            verb = "ALTER" if exists else "CREATE"
            self._psql(f"{verb} ROLE {ident} LOGIN PASSWORD {_sql_literal(pw)}")
        if not self._psql(f"SELECT 1 FROM pg_database WHERE datname = {_sql_literal(db.name)}"):
            self._psql(f'CREATE DATABASE "{db.name}" OWNER "{db.user}"')

    def pg_down(self) -> None:
        if self.pg_pid() is not None:
            self._as_postgres(
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.pg_data),
                "-m",
                "fast",
                "-w",
                "stop",
                check=False,
            )

    # ---------------------------------------------------------------- Asterisk
    def _module_dir(self) -> str:
        found = sorted(self.root.glob("usr/lib/*/asterisk/modules"))
        if not found:
            raise StackError(f"no Asterisk modules under {self.root}: run scripts/bootstrap.sh")
        return "/" + str(found[0].relative_to(self.root))

    def render_asterisk_config(self) -> dict[str, str]:
        """The files written to the chroot's /etc/asterisk, by name."""
        s = self.s
        values = {
            "MODULE_DIR": self._module_dir(),
            "SIP_HOST": s.asterisk.sip_host,
            "SIP_PORT": str(s.asterisk.sip_port),
            "RTP_START": str(s.asterisk.rtp_start),
            "RTP_END": str(s.asterisk.rtp_end),
            "CARRIER_IN_HOST": s.asterisk.carrier_in_host,
            "EDGE_HOST": s.edge.host,  # the cluster layout's SIP edge carries the carrier's calls too
            "CARRIER_OUT_HOST": s.asterisk.carrier_out_host,
            "CARRIER_OUT_PORT": str(s.asterisk.carrier_out_port),
            "BASELINE_IN_HOST": s.asterisk.baseline_in_host,
            "UNMANAGED_ACCOUNTCODE": s.asterisk.unmanaged_accountcode,
            "AMI_HOST": s.ami.host,
            "AMI_PORT": str(s.ami.port),
            "AMI_USERNAME": s.ami.username,
            "AMI_SECRET": s.ami.secret.get_secret_value(),
            "AGI_HOST": s.agi.host,
            "AGI_PORT": str(s.agi.port),
            "AGI_STANDBY": f"agi://{s.agi.host}:{s.agi.standby_port}" if s.agi.standby_port else "",
            "DB_HOST": s.database.host,
            "DB_PORT": str(s.database.port),
            "DB_NAME": s.database.name,
            "ASTERISK_DB_USER": s.asterisk.db_user,
            "ASTERISK_DB_PASSWORD": s.asterisk.db_password.get_secret_value(),
        }
        _require_secrets({"ami.secret": s.ami.secret, "asterisk.db_password": s.asterisk.db_password})
        return _render(TEMPLATES.glob("*.conf"), values)

    def _recorded_pid(self, program: str) -> int | None:
        """The PID recorded for ``program``, if that process still is one."""
        try:
            pid = int((self.run_dir / f"{program}.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if _pid_runs(pid, program) else None

    def _stop_recorded(self, program: str, timeout: float) -> None:
        """SIGTERM to the recorded PID, SIGKILL past ``timeout``; forget the PID."""
        pid = self._recorded_pid(program)
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
            try:  # reap it if it is our own child (stack restarted by this process)
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        (self.run_dir / f"{program}.pid").unlink(missing_ok=True)

    def asterisk_pid(self) -> int | None:
        return self._recorded_pid("asterisk")

    def _install_config(self) -> bool:
        """Write the rendered config into the chroot; True if it changed."""
        etc = self.root / "etc" / "asterisk"
        pristine = self.root / "etc" / "asterisk.debian"
        if not pristine.exists():
            etc.rename(pristine)
            etc.mkdir()
        self.ensure_secrets()
        files = self.render_asterisk_config()
        for name in DEBIAN_KEPT:
            files[name] = (pristine / name).read_text()
        digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
        for stale in etc.iterdir():
            if stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            (etc / name).write_text(text)
        hostname = os.uname().nodename
        (self.root / "etc" / "hosts").write_text(
            f"127.0.0.1 localhost {hostname}\n127.0.0.1 A.ROOT-SERVERS.NET\n"
        )
        # No name servers: every peer of the stack is an address, and with none PJSIP makes no
        # resolver (whose sockets bind 0.0.0.0 and [::]); names resolve from /etc/hosts.
        (self.root / "etc" / "resolv.conf").write_text(
            "# Rendered by `stack up`: no name servers (PJSIP would bind its resolver on 0.0.0.0).\n"
        )
        (self.root / "run" / "asterisk").mkdir(parents=True, exist_ok=True)
        (self.root / "var" / "spool" / "asterisk" / "softswitch-vm").mkdir(parents=True, exist_ok=True)
        # Call recordings: <spool>/<tenant_id>/<linkedid>.wav (MixMonitor makes the tenant's dir).
        (self.root / self.s.recording.spool.lstrip("/")).mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "chroot",
                str(self.root),
                "chown",
                "-R",
                "asterisk:asterisk",
                "/etc/asterisk",
                "/run/asterisk",
                "/var/log/asterisk",
                "/var/spool/asterisk",
                "/var/lib/asterisk",
            ],
            check=True,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        stamp = self.run_dir / "asterisk.confhash"
        changed = not stamp.exists() or stamp.read_text() != digest
        stamp.write_text(digest)
        return changed

    def asterisk_cli(self, command: str, timeout: float = 10.0) -> str:
        res = subprocess.run(
            ["chroot", str(self.root), "asterisk", "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise StackError(f"asterisk -rx {command!r} failed: {res.stderr.strip()}")
        return res.stdout

    def asterisk_up(self) -> None:
        if not (self.root / "usr" / "sbin" / "asterisk").exists():
            raise StackError(f"Asterisk is not installed in {self.root}: run scripts/bootstrap.sh")
        changed = self._install_config()
        if self.asterisk_pid() is not None:
            if not changed:
                return
            self.asterisk_down()
        # The platform's own prompts (Mandarin, espeak-ng): cached, quick when done.
        from provisioning.prompts import PromptStore

        PromptStore(self.s.asterisk.sounds_dir).render_system()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / "asterisk.log", "ab") as log:
            proc = subprocess.Popen(
                ["chroot", str(self.root), "asterisk", "-f", "-U", "asterisk", "-G", "asterisk"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        (self.run_dir / "asterisk.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise StackError(f"Asterisk exited at start; see {self.log_dir / 'asterisk.log'}")
            try:
                self.asterisk_cli("core waitfullybooted", timeout=5)
                return
            except (StackError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise StackError("Asterisk did not finish booting within 60 s") from None
                time.sleep(0.2)

    def asterisk_down(self, timeout: float = 15.0) -> None:
        self._stop_recorded("asterisk", timeout)

    # ---------------------------------------------------------------- FreeSWITCH
    @property
    def fs_prefix(self) -> Path:
        return self.s.freeswitch.prefix

    def fs_built(self) -> bool:
        return (self.fs_prefix / "bin" / "freeswitch").exists()

    def fs_pid(self) -> int | None:
        return self._recorded_pid("freeswitch")

    def render_freeswitch_config(self) -> dict[str, str]:
        """docker/freeswitch/*.xml with their @@NAME@@ filled from the settings."""
        fs, a = self.s.freeswitch, self.s.asterisk
        top = self.s.stack.dir
        values = {
            "FS_SIP_HOST": fs.sip_host,
            "FS_CARRIER_PORT": str(fs.carrier_port),
            "FS_PHONES_PORT": str(fs.phones_port),
            "FS_RTP_START": str(fs.rtp_start),
            "FS_RTP_END": str(fs.rtp_end),
            "FS_ESL_HOST": fs.esl_host,
            "FS_ESL_PORT": str(fs.esl_port),
            "FS_ESL_PASSWORD": fs.esl_password.get_secret_value(),
            "FS_REALM": DEFAULT_REALM,
            # the socket application tries the hosts in turn: the standby instance second
            "FS_SOCKET_ADDR": f"{fs.socket_host}:{fs.socket_port}"
            + (f"|{fs.socket_host}:{fs.socket_standby_port}" if fs.socket_standby_port else ""),
            "FS_DIRECTORY_URL": f"http://{self.s.http.host}:{self.s.http.port}/v1/freeswitch/directory",
            "FS_CORE_DB": str(top / "freeswitch-db" / "core.db"),
            "FS_MOH_DIR": str(top / "freeswitch-sounds" / "moh"),
            "FS_SOUNDS_DIR": str(fs.sounds_dir),
            "FS_CDR_DB_INFO": (
                f"host={self.s.database.host} port={self.s.database.port} dbname={self.s.database.name} "
                f"user={a.db_user} password={a.db_password.get_secret_value()} connect_timeout=5"
            ),
            "FS_CDR_SPOOL": str(top / "freeswitch-cdr-spool"),
            "CARRIER_IN_HOST": a.carrier_in_host,
            "CARRIER_OUT_HOST": a.carrier_out_host,
            "CARRIER_OUT_PORT": str(a.carrier_out_port),
            "BASELINE_IN_HOST": a.baseline_in_host,
        }
        _require_secrets({"freeswitch.esl_password": fs.esl_password, "asterisk.db_password": a.db_password})
        return _render(FREESWITCH_TEMPLATES.glob("*.xml"), values)

    def fs_up(self) -> None:
        """Start FreeSWITCH (flags and pitfalls: ../shared/FREESWITCH.md); a no-op when
        it is running with the configuration rendered now."""
        if not self.fs_built():
            raise StackError(f"FreeSWITCH is not built in {self.fs_prefix}: run scripts/freeswitch.sh")
        top = self.s.stack.dir
        self.ensure_secrets()
        conf, run, db, logs = (
            top / n for n in ("freeswitch-conf", "freeswitch-run", "freeswitch-db", "logs")
        )
        files = self.render_freeswitch_config()
        digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
        stamp = self.run_dir / "freeswitch.confhash"
        if self.fs_pid() is not None:
            if stamp.exists() and stamp.read_text() == digest:
                return
            self.fs_down()
        shutil.rmtree(conf, ignore_errors=True)
        conf.mkdir(parents=True)
        for name, text in files.items():
            (conf / name).write_text(text)
        moh = top / "freeswitch-sounds" / "moh"
        moh.mkdir(parents=True, exist_ok=True)
        if not any(moh.iterdir()):  # local_stream needs one file to load: a quiet tone
            subprocess.run(
                [
                    "sox",
                    "-n",
                    "-r",
                    "8000",
                    "-c",
                    "1",
                    "-b",
                    "16",
                    str(moh / "tone.wav"),
                    "synth",
                    "4",
                    "sine",
                    "440",
                    "vol",
                    "0.1",
                ],
                check=True,
            )
        self.render_freeswitch_sounds()
        for d in (run, db, logs, top / "freeswitch-cdr-spool"):
            d.mkdir(parents=True, exist_ok=True)
        (run / "freeswitch.pid").unlink(missing_ok=True)  # a stale pid file blocks start-up
        with open(logs / "freeswitch-stdout.log", "ab") as log:
            proc = subprocess.Popen(
                # ulimit -s 240: else FreeSWITCH re-executes itself to set its stack (a new PID)
                [
                    "bash",
                    "-c",
                    'ulimit -s 240 && exec "$0" "$@"',
                    str(self.fs_prefix / "bin" / "freeswitch"),
                    "-nonat",
                    "-nonatmap",
                    "-np",
                    "-nc",
                    "-nf",
                    "-base",
                    str(self.fs_prefix),
                    "-conf",
                    str(conf),
                    "-run",
                    str(run),
                    "-db",
                    str(db),
                    "-log",
                    str(logs),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        (self.run_dir / "freeswitch.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 30
        while not self._fs_answers():
            if proc.poll() is not None:
                raise StackError(f"FreeSWITCH exited at start; see {logs / 'freeswitch-stdout.log'}")
            if time.monotonic() > deadline:
                raise StackError("FreeSWITCH did not answer on its Event Socket within 30 s")
            time.sleep(0.2)
        stamp.write_text(digest)

    def _in_chroot(self, path: Path) -> Path:
        """``path`` with the chroot's absolute symlinks (en -> /etc/alternatives/...)
        followed inside the chroot, not on the host."""
        for _ in range(10):
            if not path.is_symlink():
                return path
            target = Path(os.readlink(path))
            path = self.root / str(target).lstrip("/") if target.is_absolute() else path.parent / target
        return path

    def render_freeswitch_sounds(self) -> int:
        """Asterisk's English sounds (GSM) as 8 kHz WAV for FreeSWITCH, which plays no GSM:
        the same prompts and digits on both engines. Only missing files are made, so quick
        when done; returns how many were."""
        src = self._in_chroot(self.s.asterisk.sounds_dir / "en")
        dst = self.s.freeswitch.sounds_dir
        todo = [
            (f, dst / f.relative_to(src).with_suffix(".wav"))
            for f in src.rglob("*.gsm")
            if not (dst / f.relative_to(src).with_suffix(".wav")).exists()
        ]

        def convert(pair: tuple[Path, Path]) -> None:
            source, target = pair
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_suffix(".part.wav")
            subprocess.run(["sox", str(source), "-r", "8000", "-c", "1", "-b", "16", str(part)], check=True)
            part.replace(target)

        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(convert, todo))
        return len(todo)

    def fs_cli(self, command: str, timeout: float = 10.0) -> str:
        fs = self.s.freeswitch
        res = subprocess.run(
            [
                str(self.fs_prefix / "bin" / "fs_cli"),
                "-H",
                fs.esl_host,
                "-P",
                str(fs.esl_port),
                "-p",
                fs.esl_password.get_secret_value(),
                "-x",
                command,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise StackError(f"fs_cli -x {command!r} failed: {res.stderr.strip() or res.stdout.strip()}")
        return res.stdout

    def _fs_answers(self) -> bool:
        try:
            return "UP" in self.fs_cli("status", timeout=3)
        except (StackError, subprocess.TimeoutExpired):
            return False

    def fs_down(self, timeout: float = 15.0) -> None:
        self._stop_recorded("freeswitch", timeout)

    # ---------------------------------------------------------------- whole stack
    def up(self) -> None:
        import asyncio

        from softswitch.core.db import migrate_and_grant

        self.pg_up()
        # Asterisk reads its realtime and CDR tables at start: they must exist first.
        asyncio.run(migrate_and_grant(self.s))
        self.asterisk_up()
        if self.fs_built():  # scripts/bootstrap.sh builds it (scripts/freeswitch.sh)
            self.fs_up()

    def down(self) -> None:
        self.fs_down()
        self.asterisk_down()
        self.pg_down()

    def status(self) -> list[ComponentStatus]:
        pg = self.pg_pid()
        ast = self.asterisk_pid()
        fs = self.fs_pid()
        return [
            ComponentStatus(
                "postgresql",
                pg is not None,
                pg,
                f"{self.s.database.host}:{self.s.database.port} data={self.pg_data}",
            ),
            ComponentStatus(
                "asterisk",
                ast is not None,
                ast,
                f"sip={self.s.asterisk.sip_host}:{self.s.asterisk.sip_port} "
                f"ami={self.s.ami.host}:{self.s.ami.port} chroot={self.root}",
            ),
            ComponentStatus(
                "freeswitch",
                fs is not None,
                fs,
                f"sip={self.s.freeswitch.sip_host}:{self.s.freeswitch.carrier_port} "
                f"phones=:{self.s.freeswitch.phones_port} esl={self.s.freeswitch.esl_host}:"
                f"{self.s.freeswitch.esl_port}" + ("" if self.fs_built() else " (not built)"),
            ),
        ]
