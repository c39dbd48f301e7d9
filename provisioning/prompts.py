"""Prompts Asterisk plays: text rendered with espeak-ng (Mandarin `cmn` by default) and
operator-uploaded audio, both converted by sox to 8 kHz mono 16-bit WAV and stored under
the chroot's sounds directory as softswitch/<scope>/<name>.wav (scope: `system` or
`t<tenant id>`), so the dialplan plays them as `softswitch/<scope>/<name>`.

Rendering is cached by content hash (text + voice, or the uploaded bytes): the same
content is rendered once, whatever its name."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,60}(/[a-z0-9][a-z0-9_-]{0,60})?$")
SCOPE = re.compile(r"^(system|t[0-9]{1,12})$")
MAX_UPLOAD = 10 * 2**20
MAX_SECONDS = 300.0

# The phone self-service line (ivr/selfservice.py names them), in Mandarin.
# Played before a recorded call rings (softswitch/callpath/recorder.py ANNOUNCEMENT).
RECORDING_TEXT = {"recording/notice": "您的通话可能会被录音。"}

SELFSERVICE_TEXT = {
    "selfservice/enter-account": "请输入账号，以井号键结束，按星号键重新输入。",
    "selfservice/enter-password": "请输入密码，以井号键结束。",
    "selfservice/password-wrong": "密码错误。",
    "selfservice/account-locked": "该账号已被锁定，请联系客服。",
    "selfservice/main-menu": (
        "查询余额请按一，充值请按二，修改密码请按三，增值业务请按四，查询其他号码请按九，重听请按星号键。"
    ),
    "selfservice/invalid-choice": "您的选择无效。",
    "selfservice/invalid-entry": "您的输入无效。",
    "selfservice/no-input": "没有收到您的输入。",
    "selfservice/balance-is": "您的余额是",
    "selfservice/owing": "欠费",
    "selfservice/yuan": "元",
    "selfservice/fen": "分",
    "selfservice/enter-card": "请输入充值卡卡号，以井号键结束。",
    "selfservice/enter-card-pin": "请输入充值卡密码，以井号键结束。",
    "selfservice/recharge-ok": "充值成功，金额",
    "selfservice/recharge-failed": "充值卡无效或已使用。",
    "selfservice/card-already-redeemed": "这张卡已在本次通话中充值。",
    "selfservice/enter-new-password": "请输入六到十二位数字的新密码，以井号键结束。",
    "selfservice/password-rule": "密码必须是六到十二位数字。",
    "selfservice/confirm-new-password": "请再次输入新密码。",
    "selfservice/password-mismatch": "两次输入不一致。",
    "selfservice/password-changed": "密码修改成功。",
    "selfservice/password-change-failed": "密码修改失败。",
    "selfservice/supplementary-menu": "设置时间策略请按一，返回主菜单请按星号键。",
    "selfservice/time-policy-on-off": "开启时间策略请按一，关闭请按二，返回请按星号键。",
    "selfservice/setting-saved": "设置已保存。",
    "selfservice/setting-failed": "设置失败。",
    "selfservice/service-unavailable": "服务暂时不可用，请稍后再拨。",
    "selfservice/goodbye": "再见。",
}


class PromptError(ValueError):
    pass


class PromptStore:
    def __init__(self, sounds_dir: Path) -> None:
        self.root = sounds_dir / "softswitch"
        self.cache = self.root / ".cache"

    def path(self, scope: str, name: str) -> Path:
        _check(scope, name)
        return self.root / scope / f"{name}.wav"

    def playable(self, scope: str, name: str) -> str:
        """What Playback/STREAM FILE take (no extension, relative to the sounds dir)."""
        _check(scope, name)
        return f"softswitch/{scope}/{name}"

    def exists(self, scope: str, name: str) -> bool:
        return self.path(scope, name).is_file()

    def render_text(self, scope: str, name: str, text: str, voice: str = "cmn") -> str:
        """espeak-ng -> sox 8 kHz mono; returns the content hash."""
        if not text.strip() or len(text) > 2000:
            raise PromptError("text must be 1 to 2000 characters")
        if not re.match(r"^[a-z]{2,3}([-+][a-z0-9]+)*$", voice):
            raise PromptError(f"not an espeak-ng voice name: {voice!r}")
        digest = text_digest(text, voice)
        cached = self.cache / f"{digest}.wav"
        if not cached.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                raw = Path(tmp) / "raw.wav"
                _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text])
                self._convert(raw, cached)
        self._publish(cached, scope, name)
        return digest

    def store_upload(self, scope: str, name: str, data: bytes) -> str:
        """An operator's recording (any format sox reads): validated and converted."""
        if not data or len(data) > MAX_UPLOAD:
            raise PromptError(f"audio must be 1 byte to {MAX_UPLOAD} bytes")
        digest = upload_digest(data)
        cached = self.cache / f"{digest}.wav"
        if not cached.is_file():
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "upload"
                src.write_bytes(data)
                try:
                    seconds = float(_run(["soxi", "-D", str(src)]).strip())
                except (PromptError, ValueError):
                    raise PromptError("not an audio file sox can read") from None
                if not 0 < seconds <= MAX_SECONDS:
                    raise PromptError(f"audio must last up to {MAX_SECONDS:.0f} s, not {seconds:.1f} s")
                self._convert(src, cached)
        self._publish(cached, scope, name)
        return digest

    def _convert(self, src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".part.wav")
        _run(["sox", str(src), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)])
        tmp.replace(dst)

    def _publish(self, cached: Path, scope: str, name: str) -> None:
        target = self.path(scope, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".part.wav")
        shutil.copyfile(cached, tmp)
        tmp.replace(target)

    def render_system(self) -> int:
        """The platform's own prompts (the self-service line, the recording notice); cached,
        so quick when done."""
        texts = {**SELFSERVICE_TEXT, **RECORDING_TEXT}
        for name, text in texts.items():
            self.render_text("system", name, text)
        return len(texts)


def text_digest(text: str, voice: str = "cmn") -> str:
    """The content hash a rendering of ``text`` is cached (and known) by."""
    return hashlib.sha256(f"tts|{voice}|{text}".encode()).hexdigest()


def upload_digest(data: bytes) -> str:
    """The content hash an upload is cached (and known) by."""
    return hashlib.sha256(b"upload|" + data).hexdigest()


def _check(scope: str, name: str) -> None:
    if not SCOPE.match(scope):
        raise PromptError(f"bad prompt scope {scope!r}")
    if not NAME.match(name):
        raise PromptError(f"bad prompt name {name!r}: lower-case letters, digits, - and _")


def _run(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise PromptError(f"{cmd[0]} is not installed (scripts/bootstrap.sh installs it)") from None
    if res.returncode != 0:
        raise PromptError(f"{cmd[0]} failed: {res.stderr.strip()[:300]}")
    return res.stdout
