"""`softswitch db backup` and `softswitch db restore` (provisioning/backup.py says what an
archive holds and how a restore proceeds). Errors name what failed and exit 1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from provisioning.backup import PG_BIN, FileRoots, backup, database_of_dsn, restore
from provisioning.backup_files import ROOTS, BackupError
from softswitch.core.clock import SystemClock
from softswitch.core.settings import load_settings

Chroot = Annotated[
    Path | None,
    typer.Option(
        "--chroot",
        help="The Asterisk chroot holding the recording and voicemail spools and the prompts "
        "(default: the settings' asterisk.chroot).",
    ),
]
PgBin = Annotated[Path, typer.Option("--pg-bin", help="Where pg_dump and pg_restore are.")]


def _fail(exc: BackupError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


def register_backup(db_app: typer.Typer) -> None:
    @db_app.command("backup")
    def db_backup(
        archive: Annotated[Path, typer.Argument(help="A new (or empty) directory to write the archive to.")],
        chroot: Chroot = None,
        pg_bin: PgBin = PG_BIN,
    ) -> None:
        """Back up the database (pg_dump), the recordings, voicemail messages and prompts into ARCHIVE."""
        settings = load_settings()
        roots = FileRoots.of(settings, chroot)
        try:
            m = asyncio.run(backup(settings, archive, SystemClock(), roots, pg_bin))
        except BackupError as exc:
            _fail(exc)
        size = m.dump_size + sum(f.size for f in m.files)
        by_root = ", ".join(f"{sum(f.path.startswith(f'{r}/') for f in m.files)} {r}" for r in ROOTS)
        typer.echo(
            f"backed up {m.database} (schema {m.schema_version}, {sum(m.rows.values())} rows) and "
            f"{len(m.files)} files ({by_root}) into {archive}: {size} bytes, {sum(m.seconds.values()):.1f} s"
        )
        if m.without_file:
            typer.echo(f"{len(m.without_file)} stored recording(s) had no file (manifest without_file)")
        if m.unreferenced:
            typer.echo(
                f"{len(m.unreferenced)} file(s) with no recording row left out (manifest unreferenced)"
            )
        if m.voicemail_without_file:
            typer.echo(
                f"{len(m.voicemail_without_file)} voicemail message(s) had no file "
                "(manifest voicemail_without_file)"
            )
        if m.voicemail_unreferenced:
            typer.echo(
                f"{len(m.voicemail_unreferenced)} file(s) with no voicemail message row left out "
                "(manifest voicemail_unreferenced)"
            )
        if m.voicemail_sha256_differs:
            typer.echo(
                f"{len(m.voicemail_sha256_differs)} voicemail message(s) differ from their row's sha256: "
                f"{m.voicemail_sha256_differs[:20]}"
            )
        if m.sha256_differs:
            typer.echo(
                f"{len(m.sha256_differs)} recording(s) differ from their row's sha256: "
                f"{m.sha256_differs[:20]}"
            )

    @db_app.command("restore")
    def db_restore(
        archive: Annotated[Path, typer.Argument(help="An archive directory written by `db backup`.")],
        dsn: Annotated[
            str,
            typer.Option("--dsn", help="postgresql://user:password@host:port/name (default: the settings')."),
        ] = "",
        force: Annotated[
            bool,
            typer.Option(
                "--force",
                help="Restore over a database and directories that are not empty: once the archive is "
                "checked, the database's schema public is dropped (its data lost) and the directories' "
                "files moved aside to <dir>.pre-restore-<time>.",
            ),
        ] = False,
        chroot: Chroot = None,
        pg_bin: PgBin = PG_BIN,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    ) -> None:
        """Restore ARCHIVE into an empty database and empty directories (checked, migrated)."""
        settings = load_settings()
        try:
            if dsn:
                settings = settings.model_copy(update={"database": database_of_dsn(dsn, settings.database)})
            roots = FileRoots.of(settings, chroot)
            report = asyncio.run(
                restore(settings, archive, SystemClock(), force=force, roots=roots, pg_bin=pg_bin)
            )
        except BackupError as exc:
            _fail(exc)
        typer.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.as_text())
