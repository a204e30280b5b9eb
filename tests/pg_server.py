"""A throwaway PostgreSQL cluster for the tests, started from the system's server binaries.

conftest.py turns this into fixtures (pg_url, pg_tcp_url, pg_schema); this module holds the
mechanics so they can be read and tested on their own:

- the newest ``/usr/lib/postgresql/*/bin`` (else ``pg_config --bindir``) that holds ``initdb``
  and ``postgres``; the private variable ``KVSTORE_TEST_PG_BINDIR`` replaces that search with
  one directory (point it at an empty directory to check what happens without binaries);
- ``initdb --no-sync`` into a fresh temporary directory, then ``postgres`` with fsync off, a
  private Unix-socket directory and a free TCP port on 127.0.0.1 (retried if another process
  takes the port first), so that several pytest sessions can run at once;
- as root (``initdb`` and ``postgres`` refuse to run as root) both run as the ``postgres``
  system user, in directories that user owns under a parent it can traverse;
- pg_hba: ``local all all trust`` and ``host all all 127.0.0.1/32 scram-sha-256``; a role
  ``kvstore_test`` (password ``secret``) owning a database ``kvstore_test`` for TCP URLs;
- stopped with an immediate shutdown and removed at session end; a small watchdog process does
  the same if the pytest process dies without tearing down (SIGTERM, SIGKILL, a crash), so no
  orphaned postmaster outlives its session.

psycopg is imported lazily, so an environment without it still runs the SQLite tests.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

BINDIR_ENV = "KVSTORE_TEST_PG_BINDIR"   # private: one directory to take the binaries from (tests of this module)
URL_ENV = "KVSTORE_TEST_PG_URL"         # use this server instead of starting one
SYSTEM_USER = "postgres"                # who runs the server when we are root
TEST_ROLE, TEST_PASSWORD, TEST_DB = "kvstore_test", "secret", "kvstore_test"
START_TIMEOUT = 30.0
SOCKET_PATH_MAX = 100                   # sun_path is 108 bytes; the socket file adds "/.s.PGSQL.NNNNN"

# Runs as `sh -c WATCHDOG sh BASE` with a pipe on stdin whose writing end only the test process holds:
# "done" means the test process cleaned up itself; end of file means it died, so stop the server (its pid is
# the first line of postmaster.pid, as pg_ctl reads it) and remove the directory.
WATCHDOG = """
read line
[ "$line" = done ] && exit 0
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
    kill -QUIT "$pid" 2>/dev/null
    i=0
    # The postmaster removes postmaster.pid as it exits (kill -0 alone would wait for whoever reaps it).
    while [ -e "$1/data/postmaster.pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e "$1/data/postmaster.pid" ] && kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$1"
"""

HBA = """\
# Written by tests/pg_server.py.
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
"""


class Unavailable(Exception):
    """No server can be provided here (no binaries, no psycopg, no postgres user): skip, or fail in CI."""


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "postgres"))


def find_bindir() -> Path | None:
    """The directory of the newest installed ``initdb``/``postgres``, or None."""
    override = os.environ.get(BINDIR_ENV)
    if override is not None:
        return Path(override) if _has_server(Path(override)) else None
    candidates = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if _has_server(p)), key=_version_key)
    if candidates:
        return candidates[-1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        if _has_server(Path(out.strip())):
            return Path(out.strip())
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _traversable(path: Path, user: pwd.struct_passwd) -> bool:
    """Can ``user`` reach into ``path`` (search permission on it and every parent)?"""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid == user.pw_uid:
            bit = 0o100
        elif st.st_gid in groups:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            return False
    return True


def _parent_dir(runas: pwd.struct_passwd | None) -> Path:
    """Where to make the cluster's directory: the usual temp dir if the server's user can reach it
    and the socket path fits, else /tmp or /var/tmp."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        path = Path(candidate).resolve()
        if len(str(path)) + 40 > SOCKET_PATH_MAX:
            continue
        if runas is not None and not _traversable(path, runas):
            continue
        if path.is_dir() and os.access(path, os.W_OK | os.X_OK):
            return path
    raise Unavailable(f"no temporary directory that the {runas.pw_name if runas else 'current'} user can reach "
                      f"with a short enough socket path (tried $TMPDIR, /tmp, /var/tmp)")


@dataclass
class Server:
    """One running throwaway cluster."""

    bindir: Path
    base: Path
    port: int
    runas: pwd.struct_passwd | None
    process: subprocess.Popen[bytes] | None = None
    watchdog: subprocess.Popen[bytes] | None = None
    owner_pid: int = field(default_factory=os.getpid)   # a forked child must never stop or remove the server
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def sockdir(self) -> Path:
        return self.base / "sock"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    @property
    def url(self) -> str:
        """Superuser over the Unix socket."""
        host = urllib.parse.quote(str(self.sockdir), safe="/")
        return f"postgresql://postgres@/postgres?host={host}&port={self.port}"

    @property
    def tcp_url(self) -> str:
        return f"postgresql://{TEST_ROLE}:{TEST_PASSWORD}@127.0.0.1:{self.port}/{TEST_DB}"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError as e:
            return f"(no server log: {e})"

    def _popen_kwargs(self) -> dict[str, object]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C", TZ="UTC")
        kwargs: dict[str, object] = {"cwd": str(self.base), "env": env}
        if self.runas is not None:
            env.update(HOME=str(self.base), USER=self.runas.pw_name, LOGNAME=self.runas.pw_name)
            kwargs.update(user=self.runas.pw_uid, group=self.runas.pw_gid, extra_groups=[])
        return kwargs

    def initdb(self) -> None:
        t0 = time.perf_counter()
        cmd = [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "--no-sync", "-U", "postgres",
               "-E", "UTF8", "--locale=C"]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                                **self._popen_kwargs())
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {result.returncode}):\n{result.stdout.decode(errors='replace')}")
        (self.data / "pg_hba.conf").write_text(HBA)
        if self.runas is not None:
            os.chown(self.data / "pg_hba.conf", self.runas.pw_uid, self.runas.pw_gid)
        self.timings["initdb"] = time.perf_counter() - t0

    def start(self, attempts: int = 5) -> None:
        """Start postgres and wait until it accepts connections; a port taken meanwhile means a new one."""
        t0 = time.perf_counter()
        for attempt in range(attempts):
            if attempt:
                self.port = _free_port()
            cmd = [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.sockdir), "-p", str(self.port),
                   "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                   "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
            with open(self.log, "ab") as log:
                self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                                **self._popen_kwargs())
            if self._wait_ready():
                self.timings["start"] = time.perf_counter() - t0
                return
            text = self.log_text()
            exited = self.process.poll() is not None
            if exited and ("could not bind" in text or "Address already in use" in text):
                self.log.rename(self.base / f"server.{attempt}.log")
                continue
            break
        code = self.process.poll() if self.process is not None else None
        self.stop()
        how = f"exited with code {code}" if code is not None else f"accepted no connection within {START_TIMEOUT:.0f} s"
        raise RuntimeError(f"PostgreSQL ({self.bindir}/postgres, port {self.port}) {how}; server log:\n{self.log_text()}")

    def _wait_ready(self) -> bool:
        import psycopg

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.02)
        return False

    def create_test_role(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {TEST_ROLE} LOGIN PASSWORD '{TEST_PASSWORD}'")
            conn.execute(f"CREATE DATABASE {TEST_DB} OWNER {TEST_ROLE}")

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT to the postmaster), SIGKILL if it lingers."""
        if os.getpid() != self.owner_pid:
            return
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass

    def start_watchdog(self) -> None:
        # Its own session: a Ctrl-C in the terminal must not kill it before the test process has cleaned up.
        self.watchdog = subprocess.Popen(["/bin/sh", "-c", WATCHDOG, "sh", str(self.base)], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def remove(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        watchdog, self.watchdog = self.watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            try:
                watchdog.stdin.write(b"done\n")
                watchdog.stdin.close()
            except OSError:
                pass
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()


def start_server() -> Server:
    """initdb + start + test role, or raise Unavailable (nothing to run) / RuntimeError (it broke)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as e:
        raise Unavailable(f"psycopg is not installed ({e}); install the 'test' or 'postgresql' extra") from e
    bindir = find_bindir()
    if bindir is None:
        where = os.environ.get(BINDIR_ENV) or "/usr/lib/postgresql/*/bin or pg_config --bindir"
        raise Unavailable(f"no PostgreSQL server binaries (initdb, postgres) in {where} and {URL_ENV} is unset; "
                          f"install them (Debian: apt-get install postgresql) or set {URL_ENV}")
    runas: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            runas = pwd.getpwnam(SYSTEM_USER)
        except KeyError as e:
            raise Unavailable(f"running as root, and initdb/postgres refuse root, but there is no '{SYSTEM_USER}' "
                              f"system user to run them as (Debian's postgresql package creates it)") from e
    base = Path(tempfile.mkdtemp(prefix="kvpg-", dir=_parent_dir(runas)))
    server = Server(bindir=bindir, base=base, port=_free_port(), runas=runas)
    try:
        server.start_watchdog()
        server.sockdir.mkdir(mode=0o700)
        if runas is not None:
            for path in (base, server.sockdir):
                os.chown(path, runas.pw_uid, runas.pw_gid)
        server.initdb()
        server.start()
        server.create_test_role()
    except BaseException:
        server.remove()
        raise
    return server


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def schema_exists(url: str, schema: str) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        return bool(row and row[0])
