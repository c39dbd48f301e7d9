"""The files of a backup archive (provisioning/backup.py): the manifest, and the tar of the
recordings, voicemail messages and prompts — written and read as streams, a sha256 computed on the bytes as
they pass, so no file is ever held whole in memory. Blocking; no database.

Inside files.tar every member is `recordings/<path under the recording spool>`,
`voicemail/<path under the voicemail spool>` or `prompts/<path under the sounds' softswitch/
directory>`; nothing else is accepted back. Archives written before voicemail was backed up
have no voicemail/ member and no voicemail_* manifest field: they read back as archives
without voicemail."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = "softswitch-backup/1"
DUMP, FILES, MANIFEST = "database.dump", "files.tar", "manifest.json"
RECORDINGS, VOICEMAIL, PROMPTS = "recordings", "voicemail", "prompts"
ROOTS = (RECORDINGS, VOICEMAIL, PROMPTS)
CHUNK = 1 << 20


class BackupError(RuntimeError):
    """What failed, naming the file, database or option concerned."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # the member's name in files.tar
    size: int
    sha256: str
    recording_id: int | None = None
    voicemail_id: int | None = None  # the voicemail_messages row of a voicemail/ member


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    host: str
    versions: dict[str, str]
    database: str  # the database's name at the source
    schema_version: int  # the highest migration applied when the dump ran
    rows: dict[str, int]  # every table's row count, in the dump's snapshot
    sums: dict[str, str]  # money columns summed (Decimal as text), in the same snapshot
    dump_size: int
    dump_sha256: str
    files: list[FileEntry]
    # Stored recordings whose file was not there when the files were read (purged meanwhile,
    # or lost): their rows are in the dump, their audio is not in the archive.
    without_file: list[dict[str, Any]] = field(default_factory=list)
    # Files in the spool with no row in the snapshot (written after it, or orphans): not archived.
    unreferenced: list[str] = field(default_factory=list)
    # Recordings whose file's sha256 is not the one their row holds: archived as they are.
    sha256_differs: list[int] = field(default_factory=list)
    # The same three for voicemail messages (rows not deleted by a user, files in the
    # voicemail spool): {"voicemail_id", "path"} without a file, spool paths, message ids.
    voicemail_without_file: list[dict[str, Any]] = field(default_factory=list)
    voicemail_unreferenced: list[str] = field(default_factory=list)
    voicemail_sha256_differs: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    format: str = FORMAT

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: Any, where: str) -> Manifest:
        """The manifest read back; anything malformed names the field."""
        if not isinstance(data, dict):
            raise BackupError(f"{where}: not a JSON object")
        if data.get("format") != FORMAT:
            raise BackupError(f"{where}: format {data.get('format')!r} is not {FORMAT!r} (format)")
        try:
            files = [FileEntry(**f) for f in data["files"]]
            manifest = cls(**{**data, "files": files})
        except (KeyError, TypeError) as exc:
            raise BackupError(f"{where}: malformed ({exc})") from None
        for f in manifest.files:
            member_root(f.path, where)
        return manifest


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Written last and renamed into place: an archive without it never finished."""
    tmp = directory / (MANIFEST + ".part")
    tmp.write_text(json.dumps(manifest.as_dict(), indent=2, ensure_ascii=False) + "\n")
    tmp.replace(directory / MANIFEST)


def read_manifest(archive: Path) -> Manifest:
    path = archive / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BackupError(
            f"{path}: missing — {archive} is not a finished backup (a backup writes its manifest last)"
        ) from None
    except OSError as exc:
        raise BackupError(f"{path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BackupError(f"{path}: not JSON ({exc})") from None
    return Manifest.of(data, str(path))


def member_root(name: str, where: str = FILES) -> str:
    """`recordings`, `voicemail` or `prompts`: the root a member belongs under; any other
    name (absolute, `..`, elsewhere) is refused, so a restore writes only below its target
    directories."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or len(p.parts) < 2 or p.parts[0] not in ROOTS:
        raise BackupError(f"{where}: member {name!r} is not under recordings/, voicemail/ or prompts/")
    return p.parts[0]


def sha256_of(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class _Hashing:
    """A reader that hashes what passes through it (tarfile reads exactly the member's size)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.digest.update(data)
        return data


class FileTar:
    """files.tar being written: `add` streams one file in and returns its entry."""

    def __init__(self, path: Path) -> None:
        self._tar = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed by close()

    def add(
        self, source: Path, name: str, recording_id: int | None = None, voicemail_id: int | None = None
    ) -> FileEntry | None:
        """None if the file is gone (or not a regular file) by the time it is opened."""
        try:
            fh = open(source, "rb")  # noqa: SIM115 - closed below
        except (FileNotFoundError, IsADirectoryError):
            return None
        with fh:
            st = os.fstat(fh.fileno())
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), 0o644
            reader = _Hashing(fh)
            try:
                self._tar.addfile(info, reader)
            except OSError as exc:  # it shrank while being read
                raise BackupError(f"{source}: {exc} (changed while being archived)") from None
        return FileEntry(name, st.st_size, reader.digest.hexdigest(), recording_id, voicemail_id)

    def close(self) -> None:
        self._tar.close()


def walk_files(root: Path, skip_dirs: Iterable[str] = ()) -> Iterator[Path]:
    """Regular files under `root` (not following links), in a stable order."""
    skip = set(skip_dirs)
    if not root.is_dir():
        return
    for base, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not (Path(base) == root and d in skip))
        for name in sorted(names):
            path = Path(base) / name
            if path.is_file() and not path.is_symlink():
                yield path


def has_files(root: Path) -> bool:
    return next(walk_files(root), None) is not None


def extract_verified(archive: Path, manifest: Manifest, staging: dict[str, Path]) -> tuple[int, int]:
    """Unpack files.tar into the staging directories (by member root), checking every
    member's size and sha256 against the manifest and that the tar holds exactly the
    manifest's files. Returns (files, bytes); raises BackupError naming the first file
    that does not match. The caller removes the staging directories on failure."""
    want = {f.path: f for f in manifest.files}
    seen: set[str] = set()
    total = 0
    tar_path = archive / FILES
    last = "its start"
    try:
        with tarfile.open(tar_path, "r") as tar:
            for member in tar:
                name = member.name
                root = member_root(name)
                if not member.isreg():
                    raise BackupError(f"{FILES}: member {name!r} is not a regular file")
                entry = want.get(name)
                if entry is None or name in seen:
                    raise BackupError(f"{name}: in {FILES} but not (or twice) in the manifest")
                target = staging[root].joinpath(*PurePosixPath(name).parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None  # a regular member has data
                digest, size = hashlib.sha256(), 0
                with src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                if (size, digest.hexdigest()) != (entry.size, entry.sha256):
                    raise BackupError(
                        f"{name}: sha256 {digest.hexdigest()} ({size} bytes) differs from the manifest's "
                        f"{entry.sha256} ({entry.size} bytes): the archive is damaged"
                    )
                seen.add(name)
                total += size
                last = name
    except tarfile.TarError as exc:
        raise BackupError(f"{FILES}: unreadable after {last} ({exc}): the archive is damaged") from None
    except FileNotFoundError:
        raise BackupError(f"{tar_path}: missing") from None
    lacking = sorted(set(want) - seen)
    if lacking:
        raise BackupError(f"{FILES} lacks {len(lacking)} file(s) of the manifest, first {lacking[0]}")
    return len(seen), total


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
