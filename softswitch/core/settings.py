"""Typed settings: a TOML file (SOFTSWITCH_CONFIG, default ./softswitch.toml if present)
overlaid by environment variables (SOFTSWITCH_<SECTION>__<KEY>, e.g. SOFTSWITCH_AGI__PORT=4573)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_STACK_DIR = Path("/opt/softswitch-stack")


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored default.
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 55432
    name: str = "softswitch"
    user: str = "softswitch"
    password: SecretStr = SecretStr("softswitch")
    pool_min: int = 2
    pool_max: int = 10
    # A prepaid check fails closed: a database slower than this refuses the call.
    command_timeout: float = 2.0

    def dsn(self) -> str:
        return (
            f"postgresql://{self.user}:{self.password.get_secret_value()}@{self.host}:{self.port}/{self.name}"
        )


class AgiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 4573
    env_timeout: float = 2.0
    command_timeout: float = 5.0
    # The longest one AGI session (a decision, or an IVR dialogue) may take.
    call_deadline: float = 600.0


class AmiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "softswitch"
    secret: SecretStr = SecretStr("softswitch-ami")
    action_timeout: float = 5.0
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    backoff_initial: float = 0.2
    backoff_max: float = 10.0


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    # The portal's cookies carry Secure: true behind HTTPS (a TLS-terminating proxy).
    secure_cookies: bool = False


class AsteriskSettings(_Section):
    """Where the local Asterisk listens, and the trunks of the demo/test carrier."""

    chroot: Path = DEFAULT_STACK_DIR / "asterisk-root"
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_start: int = 20000
    rtp_end: int = 29999
    # The PSTN carrier that delivers calls to unified numbers (identified by IP).
    carrier_in_host: str = "127.0.0.2"
    # Where calls to bound destinations (mobiles, fixed lines) leave.
    carrier_out_host: str = "127.0.0.3"
    carrier_out_port: int = 5060
    # Only the benchmark's static-dialplan baseline calls from here (no control plane).
    baseline_in_host: str = "127.0.0.4"
    # Asterisk's own PostgreSQL login (realtime PJSIP and cdr_pgsql).
    db_user: str = "asterisk"
    db_password: SecretStr = SecretStr("asterisk")

    @property
    def sounds_dir(self) -> Path:
        """Asterisk's sounds, where the platform's and tenants' prompts are kept too."""
        return self.chroot / "usr" / "share" / "asterisk" / "sounds"


class FreeSwitchSettings(_Section):
    """Where the local FreeSWITCH 1.10 listens (built by scripts/freeswitch.sh)."""

    prefix: Path = DEFAULT_STACK_DIR / "freeswitch"
    sip_host: str = "127.0.0.1"
    # Calls from the carrier (127.0.0.2) to unified numbers; SIP phones register here.
    carrier_port: int = 5080
    phones_port: int = 5070
    # Not overlapping Asterisk's 20000-29999.
    rtp_start: int = 30000
    rtp_end: int = 30999
    esl_host: str = "127.0.0.1"
    esl_port: int = 8021
    esl_password: SecretStr = SecretStr("softswitch-esl")  # never the stock ClueCon
    # The control plane's outbound Event Socket listener: FreeSWITCH hands every call here.
    socket_host: str = "127.0.0.1"
    socket_port: int = 8084
    # Off: the service drives Asterisk alone (no Event Socket connection, no listener).
    enabled: bool = True
    # The platform's sounds as WAV (FreeSWITCH plays no GSM): rendered by `stack up` from
    # Asterisk's, so both engines say the same prompts.
    sounds_dir: Path = DEFAULT_STACK_DIR / "freeswitch-sounds" / "en"
    phones_profile: str = "phones"
    command_timeout: float = 5.0
    heartbeat_timeout: float = 45.0  # FreeSWITCH sends HEARTBEAT every 20 s
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    # `show channels` reads FreeSWITCH's core database, written after the events: the
    # audit judges a channel missing from it only once it has been known this long.
    channel_list_lag_s: float = 3.0


class PrepaidSettings(_Section):
    # Talk time reserved at set-up and by each renewal; a lost control plane costs at most
    # one slice, because the switch hangs up when the reserved time runs out.
    slice_s: int = Field(60, ge=6, le=3600)
    # Renew this long before the reserved time runs out.
    renew_margin_s: int = Field(15, ge=2, le=600)
    # When no more money can be reserved, warn the caller this long before the hard stop.
    warning_s: int = Field(10, ge=1, le=600)
    # Fail closed: a reservation the database does not grant within this is a refusal.
    timeout_s: float = Field(1.0, gt=0, le=10)
    # How often the registry, the open reservations and the call records are checked
    # against the switch's live channels and CDR (softswitch.callpath.audit): a channel slot
    # outlives a call whose end events were lost by about this much at most.
    reconcile_interval_s: float = Field(2.0, gt=0)


class IvrSettings(_Section):
    # Numbers that reach the platform's phone self-service line (balance, recharge card,
    # password, settings) instead of an enterprise.
    selfservice_numbers: list[str] = Field(default_factory=lambda: ["95013"])


class RecordingSettings(_Section):
    # Where Asterisk writes recordings, inside its chroot: <spool>/<tenant_id>/<linkedid>.wav
    spool: str = "/var/spool/asterisk/monitor/softswitch"
    # New recordings stop (with an ERROR log and a metric) when the recordings take more
    # than high_water_bytes (0 = no byte limit) or the filesystem is fuller than
    # high_water_percent.
    high_water_bytes: int = Field(0, ge=0)
    high_water_percent: float = Field(90.0, gt=0, le=100)
    usage_interval_s: float = Field(30.0, gt=0)  # how often disk usage is measured
    purge_interval_s: float = Field(3600.0, gt=0)  # how often expired recordings are purged
    purge_batch: int = Field(500, ge=1, le=10000)  # recordings purged per transaction
    # MixMonitor closes the file just after the hang-up: wait up to this long for it.
    finalize_wait_s: float = Field(2.0, ge=0, le=30)


class SchedulerSettings(_Section):
    """The periodic jobs run inside the service (softswitch.jobs): one instance runs each."""

    enabled: bool = True
    tick_s: float = Field(5.0, gt=0)  # how often due jobs are looked for
    # A failed run is retried after retry_s, doubled by each further failure up to retry_max_s.
    retry_s: float = Field(60.0, gt=0)
    retry_max_s: float = Field(3600.0, gt=0)
    # Only these jobs (names of `softswitch jobs list`); empty: every job.
    jobs: list[str] = Field(default_factory=list)
    # How this instance is named in scheduler_runs; empty: <host>:<pid>.
    instance: str = ""
    onboarding_interval_s: float = Field(300.0, gt=0)  # onboarding document deadlines
    attempts_purge_interval_s: float = Field(3600.0, gt=0)  # outbound attempts past their windows
    attempts_purge_batch: int = Field(5000, ge=1, le=100000)  # rows deleted per statement
    # The compliance monitors' sweep of every active tenant (the service also judges a
    # tenant as its outbound calls end: softswitch.callpath.compliance_watch).
    monitors_interval_s: float = Field(60.0, gt=0)


class StackSettings(_Section):
    dir: Path = DEFAULT_STACK_DIR


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SOFTSWITCH_", env_nested_delimiter="__", extra="forbid")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    agi: AgiSettings = Field(default_factory=AgiSettings)
    ami: AmiSettings = Field(default_factory=AmiSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    prepaid: PrepaidSettings = Field(default_factory=PrepaidSettings)
    ivr: IvrSettings = Field(default_factory=IvrSettings)
    recording: RecordingSettings = Field(default_factory=RecordingSettings)
    asterisk: AsteriskSettings = Field(default_factory=AsteriskSettings)
    freeswitch: FreeSwitchSettings = Field(default_factory=FreeSwitchSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    log_level: str = "INFO"
    # Pins the service clock (ISO 8601 with offset) for tests and demos; empty = real time.
    fixed_now: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("SOFTSWITCH_CONFIG", "softswitch.toml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings() -> Settings:
    return Settings()
