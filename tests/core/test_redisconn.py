"""The embedded Redis: a private redis-server under the data dir, shared, stopped by its owner."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.redisconn import EmbeddedRedis, sync_client


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaped yet is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def server_pid(url: str) -> int:
    client = sync_client(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def ping(url: str) -> bool:
    client = sync_client(url)
    try:
        return client.ping()
    finally:
        client.close()


@pytest.fixture
def servers() -> Iterator[list[EmbeddedRedis]]:
    """Every EmbeddedRedis a test makes is stopped afterwards, even when the test fails."""
    made: list[EmbeddedRedis] = []
    yield made
    for server in reversed(made):
        server.stop()


@pytest.fixture
def make(servers):
    def make(data_dir: Path, **kwargs) -> EmbeddedRedis:
        server = EmbeddedRedis(data_dir, **kwargs)
        servers.append(server)
        return server

    return make


def test_start_returns_a_unix_url_that_answers(make, tmp_path):
    server = make(tmp_path)
    url = server.start()
    assert url.startswith("unix://")
    assert server.owned
    assert server.socket == tmp_path.resolve() / "redis" / "redis.sock"
    client = sync_client(url)
    try:
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_a_second_instance_shares_the_running_server(make, tmp_path):
    owner = make(tmp_path)
    url = owner.start()
    pid = server_pid(url)

    guest = make(tmp_path)
    assert guest.start() == url
    assert not guest.owned
    assert server_pid(url) == pid  # the same process, not a second server

    guest.stop()
    assert pid_alive(pid)
    assert ping(url)


def test_stop_by_the_owner_stops_the_process_and_removes_the_socket(make, tmp_path):
    server = make(tmp_path)
    url = server.start()
    pid = server_pid(url)
    server.stop()
    assert not pid_alive(pid)
    assert not server.socket.exists()
    assert not server.owned
    with pytest.raises(redis.ConnectionError):
        ping(url)
    server.stop()  # stopping twice is harmless


def test_queued_data_survives_a_restart(make, tmp_path):
    first = make(tmp_path)
    client = sync_client(first.start())
    client.rpush("bangban:test:queue", "job-1", "job-2")
    client.close()
    first.stop()

    second = make(tmp_path)
    client = sync_client(second.start())
    try:
        assert second.owned
        assert client.lrange("bangban:test:queue", 0, -1) == [b"job-1", b"job-2"]
    finally:
        client.close()
    assert (tmp_path / "redis").is_dir() and any((tmp_path / "redis").glob("appendonly*"))


def test_a_stale_socket_file_is_cleaned_up(make, tmp_path):
    server = make(tmp_path)
    server.socket.parent.mkdir(parents=True)
    # what a killed server leaves behind: a socket file nobody listens on
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(server.socket))
    stale.close()
    assert server.socket.exists()

    url = server.start()
    assert server.owned
    assert ping(url)


def test_a_very_long_data_dir_still_works(make, tmp_path):
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 5)
    assert len(str(deep / "redis" / "redis.sock")) > 108  # beyond what sun_path can hold
    server = make(deep)
    url = server.start()
    assert len(str(server.socket)) <= 100
    assert ping(url)
    # the data itself still lives under the data dir
    assert (deep / "redis" / "redis.log").exists()
    # and a second instance for the same dir finds the same short socket
    guest = make(deep)
    assert guest.start() == url and not guest.owned
    server.stop()
    assert not server.socket.exists()
