"""A throw-away PostgreSQL server on 127.0.0.1 for the test session.

:func:`start_postgres` starts one PostgreSQL (the machine's ``initdb`` / ``pg_ctl`` / ``postgres``
binaries, run as the ``postgres`` OS user when the tests run as root, trust authentication, a
temporary data folder, a free loopback port, no Unix socket outside the data folder) and stops it at
the end of the session leaving no process and no files (``PostgresServer.stop``). The fixtures
``postgres_server`` (session) and ``postgres_url`` (a fresh, empty database per test:
``postgresql+psycopg://postgres@127.0.0.1:<port>/<name>``) live in ``tests/conftest.py``. Starting
skips with a reason when the binaries, the ``postgres`` user or the psycopg driver are missing.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "start_postgres"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    """A running throw-away PostgreSQL: ``port`` on 127.0.0.1, superuser ``postgres`` (trust)."""

    port: int
    home: Path  # temporary folder: ``data/`` (cluster, socket) and ``server.log``
    pg_ctl: str
    run_as: list[str]

    @property
    def datadir(self) -> Path:
        """The cluster's data folder."""
        return self.home / "data"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """Create an empty database with a unique name; returns its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast shutdown, waits) and remove its data folder."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [
                    *self.run_as,
                    self.pg_ctl,
                    "-D",
                    str(self.datadir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                check=False,
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(self.home, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """Start a server or ``pytest.skip`` with the reason it cannot be started."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' OS user to run PostgreSQL")
        runuser = shutil.which("runuser")
        if not runuser:
            pytest.skip("running as root and 'runuser' is not available")
        run_as = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="zg-pg-"))
    datadir = base / "data"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    server = PostgresServer(_free_port(), base, pg_ctl, run_as)
    init = subprocess.run(
        [
            *run_as,
            initdb,
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
    opts = (
        f"-p {server.port} -c listen_addresses=127.0.0.1 -k {datadir} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
    )
    start = subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            str(datadir),
            "-o",
            opts,
            "-l",
            str(base / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if start.returncode != 0:
        log = (
            (base / "server.log").read_text(errors="replace")[-500:]
            if (base / "server.log").exists()
            else start.stderr
        )
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {log}")
    return server
