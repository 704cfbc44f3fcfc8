"""`bangban serve` as a user runs it: start, get ready, load the seed, stop cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.redisconn import EmbeddedRedis, sync_client
from tests.conftest import TEST_DATABASE_URL, bangban_executable

from .conftest import Store, clean_env, ok

READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # reparented to a PID 1 that does not reap: a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Server:
    """One `bangban serve` subprocess with its log in a file."""

    def __init__(self, store: Store, log: Path) -> None:
        self.store, self.log_path = store, log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [bangban_executable(), "serve", "--data-dir", str(self.store.data_dir),
             "--port", str(self.port)],
            cwd=self.store.cwd, env=clean_env(self.store.env),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            # Ctrl-C must reach it even when pytest itself was started with SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> dict:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited early:\n{self.output()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                            timeout=5) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as exc:
                last = f"{exc.code} {exc.read()[:300]!r}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.25)
        pytest.fail(f"/readyz not 200 within {READY_TIMEOUT_S} s ({last}):\n{self.output()}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop within {STOP_TIMEOUT_S} s of SIGINT:\n{self.output()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "log", None):
            self.log.close()


@pytest.fixture
def serve_store(make_store) -> Store:
    """The embedded defaults (no database or Redis URL) unless the suite runs on PostgreSQL."""
    return make_store()


@pytest.fixture
def servers(tmp_path) -> Iterator:
    started: list[Server] = []
    redis_pids: list[int] = []

    def make(store: Store) -> Server:
        server = Server(store, tmp_path / f"serve{len(started) + 1}.log")
        started.append(server)
        return server

    make.redis_pids = redis_pids
    yield make
    for server in started:  # whatever happened, leave no process behind
        server.kill()
    for pid in redis_pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


def entry_count(store: Store) -> int:
    return len(ok(store("kb", "export", "-", "--format", "jsonl")).stdout.splitlines())


def redis_pid(socket_path: Path) -> int:
    client = sync_client(f"unix://{socket_path}")
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the embedded defaults: SQLite, private Redis")
def test_serve_with_embedded_defaults(serve_store: Store, servers):
    data_dir = serve_store.data_dir
    redis_socket = EmbeddedRedis(data_dir).socket

    server = servers(serve_store)
    server.start()
    body = server.wait_ready()
    assert body["status"] == "ready", body

    assert (data_dir / "bangban.db").is_file()
    seeded = entry_count(serve_store)
    assert seeded > 200, server.output()
    assert "seed KB loaded" in server.output()

    # the private redis-server child runs on its socket under the data dir
    assert redis_socket.exists()
    pid = redis_pid(redis_socket)
    servers.redis_pids.append(pid)
    assert pid_alive(pid)

    assert server.interrupt() == 0, server.output()
    assert not redis_socket.exists()
    assert not pid_alive(pid)

    # a second start on the same data dir reuses the database and the Redis data
    again = servers(serve_store)
    again.start()
    assert again.wait_ready()["status"] == "ready"
    assert entry_count(serve_store) == seeded
    assert "seed KB loaded" not in again.output()
    pid = redis_pid(redis_socket)
    servers.redis_pids.append(pid)
    assert again.interrupt() == 0, again.output()
    assert not pid_alive(pid)


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs BANGBAN_TEST_DATABASE_URL")
def test_serve_with_external_database_and_redis(serve_store: Store, servers):
    assert serve_store.env["BANGBAN_DATABASE_URL"] and serve_store.env["BANGBAN_REDIS_URL"]
    server = servers(serve_store)
    server.start()
    body = server.wait_ready()
    assert body["status"] == "ready", body
    seeded = entry_count(serve_store)
    assert seeded > 200, server.output()
    # external Redis configured: no private server was started under the data dir
    assert not (serve_store.data_dir / "redis").exists()
    assert not (serve_store.data_dir / "bangban.db").exists()
    assert server.interrupt() == 0, server.output()

    again = servers(serve_store)
    again.start()
    assert again.wait_ready()["status"] == "ready"
    assert entry_count(serve_store) == seeded
    assert again.interrupt() == 0, again.output()


def test_a_port_already_in_use_is_one_clear_line(serve_store: Store, servers):
    server = servers(serve_store)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", server.port))
        taken.listen()
        server.start()
        code = server.proc.wait(READY_TIMEOUT_S)
    out = server.output()
    assert code == 1, out
    assert f"cannot listen on 127.0.0.1:{server.port}" in out and "--port" in out
    assert "Traceback" not in out
    # what it started on the way is gone again: no private Redis left running
    assert not EmbeddedRedis(serve_store.data_dir).socket.exists()
