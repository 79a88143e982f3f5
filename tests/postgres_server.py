"""A real PostgreSQL server for the tests (not a test file): a fresh cluster in a temporary folder, listening on
127.0.0.1 only, on a free port, with its unix socket in a folder of its own; one database per test on top of it.

Debian's server binaries (`make postgres` installs them) live in /usr/lib/postgresql/VERSION/bin, off PATH.
`initdb`, `pg_ctl` and `postgres` refuse to run as root, so as root they run as the `postgres` system user
(subprocess's user=/group=), in folders that user owns; otherwise they run as the current user. Either way the
cluster's superuser is `postgres` (initdb -U postgres), trusted without a password from the unix socket and
127.0.0.1 only. fsync and the other durability settings are off: a test database need not survive a crash.

The server never outlives the process that started it: `stop()` (or leaving the `with` block) stops it, an atexit
hook stops it when Python exits without that (Ctrl+C, a failed test session), and a watchdog process stops it and
removes its folders when the starting process dies without running atexit hooks (SIGTERM, SIGKILL).

psycopg is imported where it is used, so that importing this module (conftest does) costs nothing and needs no
driver.
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_LIB = Path("/usr/lib/postgresql")  # Debian's versioned server binaries: /usr/lib/postgresql/15/bin/initdb
SUPERUSER = "postgres"
START_TIMEOUT = 60  # seconds; a cold start takes about one on two idle cores
# Settings for a throwaway test cluster: no durability work, small memory, nothing logged but problems.
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "'32MB'",
    "max_connections": "50",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}
# Password-less access from the unix socket and 127.0.0.1 only; nothing else (no ::1, no other hosts).
PG_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\n"


def find_pg_bin() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: the newest of /usr/lib/postgresql/*/bin (Debian), else the one
    `pg_config --bindir` names, else the one `initdb` on PATH lives in; None when there are none."""

    def has_binaries(folder: Path) -> bool:
        return all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)

    debian = sorted((p for p in PG_LIB.glob("*/bin") if has_binaries(p)), key=version)
    if debian:
        return debian[-1]
    if pg_config := shutil.which("pg_config"):
        try:
            done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            done = None
        if done is not None and done.returncode == 0 and has_binaries(Path(done.stdout.strip())):
            return Path(done.stdout.strip())
    if initdb := shutil.which("initdb"):
        folder = Path(initdb).resolve().parent
        if has_binaries(folder):
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} could not be read)"


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:`port`. `start()` (or `with PostgresServer() as server:`)
    initdb's and starts it and returns once it accepts connections; `stop()` stops it and removes its folders.
    `create_database(name)` gives a URL that SQLAlchemy (with `postgresql+psycopg://`) or psycopg opens."""

    def __init__(self, bin_dir: Path | str | None = None):
        found = Path(bin_dir) if bin_dir is not None else find_pg_bin()
        if found is None:
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found; install Debian's postgresql "
                               "(`make postgres`)")
        self.bin_dir = found
        self.root: Path | None = None  # holds data/, socket/ and server.log; removed by stop()
        self.port: int | None = None
        self.start_seconds: float | None = None  # how long start() took
        self._run_as: pwd.struct_passwd | None = None  # the postgres system user when we are root
        self._watchdog: subprocess.Popen | None = None

    # Paths and URLs ----------------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._require_root() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_root() / "socket"

    @property
    def log_file(self) -> Path:
        return self._require_root() / "server.log"

    def url(self, database: str = "postgres") -> str:
        """postgresql://postgres@127.0.0.1:PORT/DATABASE (TCP, the superuser, no password)."""
        if self.port is None:
            raise RuntimeError("the PostgreSQL server is not running")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _require_root(self) -> Path:
        if self.root is None:
            raise RuntimeError("the PostgreSQL server has not been started")
        return self.root

    # Starting and stopping ---------------------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> PostgresServer:
        """initdb a fresh cluster, start it on a free port and wait until it accepts connections. Raises
        RuntimeError with the log's tail when initdb or the server fails."""
        if self.root is not None:
            raise RuntimeError("the PostgreSQL server is already started")
        began = time.monotonic()
        if os.geteuid() == 0:
            try:
                self._run_as = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError("running as root, PostgreSQL needs the `postgres` system user to run as "
                                   "(Debian's postgresql package creates it)") from None
        # Not under pytest's tmp_path: its folders are private to root, and the postgres user must reach ours.
        self.root = Path(tempfile.mkdtemp(prefix="caption-zoo-pg-"))
        atexit.register(self.stop)
        try:
            self.socket_dir.mkdir()
            if self._run_as is not None:
                for path in (self.root, self.socket_dir):
                    os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
            self._start_watchdog()
            self._initdb()
            for attempt in range(3):  # another process may take the free port before the server binds it
                self.port = _free_port()
                self.log_file.unlink(missing_ok=True)
                done = self._pg_ctl_start()
                if done.returncode == 0:
                    break
                if "already in use" not in _tail(self.log_file) or attempt == 2:
                    raise RuntimeError(f"pg_ctl start failed (exit {done.returncode}): {done.stdout.strip()}\n"
                                       f"the server log ends:\n{_tail(self.log_file)}")
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown, else immediate, else SIGKILL) and remove its folders. Safe to call
        more than once, and on a server that failed to start."""
        atexit.unregister(self.stop)
        if self.root is None:
            return
        if self._watchdog is not None:  # ours to stop now; it only acts when this process dies
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog.stdin.close()
            self._watchdog = None
        if (self.data_dir / "postmaster.pid").exists():
            for mode in ("fast", "immediate"):
                try:
                    if self._run([self._bin("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", mode, "-w",
                                  "-t", "30"], timeout=40).returncode == 0:
                        break
                except subprocess.TimeoutExpired:
                    pass
            else:
                self._kill_postmaster()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = self.port = None

    def _initdb(self) -> None:
        done = self._run([self._bin("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-E", "UTF8",
                          "--locale=C", "--auth=trust", "--no-sync", "--no-instructions"], timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)
        settings = dict(SETTINGS, unix_socket_directories=f"'{self.socket_dir}'")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# Caption Zoo test server (tests/postgres_server.py)\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _pg_ctl_start(self) -> subprocess.CompletedProcess:
        return self._run([self._bin("pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                          "-o", f"-p {self.port}", "-w", "-t", str(START_TIMEOUT)], timeout=START_TIMEOUT + 10)

    def _wait_until_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline or not (self.data_dir / "postmaster.pid").exists():
                    raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{self.port} ({error}); "
                                       f"the server log ends:\n{_tail(self.log_file)}") from None
                time.sleep(0.1)

    def _start_watchdog(self) -> None:
        """A shell that blocks reading a pipe only this process writes to; when this process dies, however it
        dies, the read ends and the shell stops the server and removes its folders. Its own session, so that a
        Ctrl+C sent to the terminal's process group leaves it to do that."""
        script = ('read -r _; "$1" stop -D "$2" -m immediate -w -t 30 >/dev/null 2>&1; '
                  'rm -rf "$3"')
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", script, "caption-zoo-pg-watchdog", self._bin("pg_ctl"), str(self.data_dir),
             str(self.root)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, **self._user_kwargs())

    def _kill_postmaster(self) -> None:
        """SIGKILL the postmaster named in postmaster.pid, only if that process is still ours (its command
        line names our data folder: the pid may have been reused)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            if str(self.data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    # Databases ---------------------------------------------------------------------------------------------

    def create_database(self, name: str) -> str:
        """Create an empty database `name` (UTF8, owned by the superuser); returns its URL."""
        from psycopg import sql

        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop the database `name`, closing any connection still open to it (WITH (FORCE)); no error if it is
        already gone."""
        from psycopg import sql

        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    # Running the binaries ----------------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _user_kwargs(self) -> dict:
        """Popen arguments that run a binary as the postgres user when we are root, from a folder it can read;
        PG* variables of the caller's environment (PGHOST, PGPORT, ...) are not passed on."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        kwargs = {"cwd": str(self.root), "env": env}
        if self._run_as is not None:
            env.update(HOME=self._run_as.pw_dir, USER=SUPERUSER, LOGNAME=SUPERUSER)
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        return kwargs

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, **self._user_kwargs())
