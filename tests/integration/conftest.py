"""A real PostgreSQL server for the integration tests, started and stopped by pytest.

``postgres_server`` runs its own throwaway cluster (``initdb`` + ``pg_ctl``) with
the newest server found under ``/usr/lib/postgresql/*/bin``, in a temp folder,
listening on a free port of 127.0.0.1 only. It never uses a cluster the
distribution may have created, nor systemd. ``postgres_url`` gives each test
a fresh, empty database on that server and drops it afterwards.

initdb refuses to run as root, so under root the server runs as the
``postgres`` OS user (``runuser``); under any other user it runs as that user.
"""

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import free_port
from tests.support import wait_for

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the superuser initdb creates, and the OS user under root


def newest_server_bin():
    """The ``bin`` folder of the highest PostgreSQL version installed, or None."""
    found = []
    for folder in PG_ROOT.glob("*/bin"):
        version = folder.parent.name
        if re.fullmatch(r"\d+(\.\d+)*", version) and (folder / "initdb").exists() \
                and (folder / "pg_ctl").exists():
            found.append((tuple(int(part) for part in version.split(".")), folder))
    return max(found)[1] if found else None


def _as_server_user():
    """The command prefix that runs a program as the cluster's OS user."""
    return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    """A running cluster: where its files are, and how to reach it over TCP."""

    bin_dir: Path
    folder: Path
    port: int
    host: str = "127.0.0.1"
    user: str = SERVER_USER

    @property
    def data_dir(self):
        return self.folder / "data"

    @property
    def log_path(self):
        return self.folder / "server.log"

    def url(self, dbname):
        """The ``postgresql://`` URL of database ``dbname`` (what DATABASE_URL takes)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname="postgres"):
        """A psycopg2 connection (autocommit) to ``dbname`` as the superuser."""
        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname=dbname,
                                connect_timeout=5)
        conn.autocommit = True
        return conn

    def execute(self, sql, dbname="postgres"):
        """Run one statement outside any transaction; its rows, if it returns any."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    @property
    def version(self):
        """The server's version as a number, e.g. 150018."""
        return int(self.execute("SHOW server_version_num")[0][0])

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pg(self, program, *argv):
        """Run one of the server's programs as the cluster's OS user."""
        result = subprocess.run([*_as_server_user(), str(self.bin_dir / program), *argv],
                                cwd=self.folder, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(argv)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}\n{self.log()}")
        return result

    def accepts_connections(self):
        try:
            self.connect().close()
            return True
        except psycopg2.OperationalError:
            return False


def _make_folder():
    """A temp folder the cluster's OS user owns and can reach.

    Not under pytest's basetemp: /tmp/pytest-of-<user> is mode 0700, so the
    ``postgres`` user could not traverse it.
    """
    folder = Path(tempfile.mkdtemp(prefix="hourglass-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, SERVER_USER, SERVER_USER)
    return folder


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL cluster of our own on 127.0.0.1:<free port>; stopped and removed at the end."""
    bin_dir = newest_server_bin()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL server under {PG_ROOT}/*/bin "
                    "(install the Debian package 'postgresql')")
    folder = _make_folder()
    server = PostgresServer(bin_dir=bin_dir, folder=folder, port=free_port())
    started = False
    try:
        server.pg("initdb", "-D", str(server.data_dir), "--auth=trust", "-U", server.user,
                  "--encoding=UTF8", "--locale=C", "--no-instructions")
        with open(server.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# hourglass test cluster\n"
                f"listen_addresses = '{server.host}'\n"
                f"port = {server.port}\n"
                f"unix_socket_directories = '{folder}'\n"
                # A throwaway cluster: durability only slows the tests down.
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        server.pg("pg_ctl", "start", "-D", str(server.data_dir), "-l", str(server.log_path),
                  "-w", "-t", "60")
        started = True
        wait_for(server.accepts_connections, timeout=30,
                 what=f"PostgreSQL on {server.host}:{server.port}")
        yield server
    finally:
        try:
            if started:
                server.pg("pg_ctl", "stop", "-D", str(server.data_dir), "-m", "fast", "-w")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on ``postgres_server``; its URL. Dropped after the test."""
    dbname = f"hourglass_test_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f'CREATE DATABASE "{dbname}"')
    yield postgres_server.url(dbname)
    # FORCE (PostgreSQL 13+) ends any connection a failed test may have left open.
    force = " WITH (FORCE)" if postgres_server.version >= 130000 else ""
    postgres_server.execute(f'DROP DATABASE IF EXISTS "{dbname}"{force}')
