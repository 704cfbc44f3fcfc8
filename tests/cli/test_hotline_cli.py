"""``bangban hotline-sim`` through the installed console script."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from core.hotline_wire import DispatchConfig
from core.tickets import post_ticket
from tests.conftest import bangban_executable

from .conftest import clean_env, ok, output, run_cli

SECRET = "cli-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_the_options():
    result = ok(run_cli("hotline-sim", "--help"))
    for option in ("--port", "--secret", "--fail-first", "--host"):
        assert option in result.stdout
    assert "hotline-sim" in ok(run_cli("--help")).stdout


def test_a_secret_is_required():
    result = run_cli("hotline-sim", "--port", free_port())
    assert result.returncode == 2 and "--secret" in result.stderr, output(result)
    result = run_cli("hotline-sim", "--secret", "short")
    assert result.returncode == 2 and "8 characters" in result.stderr, output(result)


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def test_smoke_run_records_a_signed_ticket_once(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [bangban_executable(), "hotline-sim", "--port", str(port), "--secret", SECRET,
         "--fail-first", "1"],
        env=clean_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(f"{base}/health", proc)
        d = DispatchConfig(endpoint=f"{base}/tickets", secret=SECRET)
        payload = {"ticket_id": "t1", "idempotency_key": "k1", "summary": "测试派单"}
        try:
            post_ticket(payload, d)
            raise AssertionError("the first delivery should fail (--fail-first 1)")
        except Exception as exc:  # noqa: BLE001
            assert "HTTP 503" in str(exc)
        first = post_ticket(payload, d)
        again = post_ticket(payload, d)
        assert (first["duplicate"], again["duplicate"]) == (False, True)
        assert first["id"] == again["id"]

        bad = DispatchConfig(endpoint=f"{base}/tickets", secret="another-secret")
        try:
            post_ticket({**payload, "idempotency_key": "k2"}, bad)
            raise AssertionError("a wrongly signed delivery must be refused")
        except Exception as exc:  # noqa: BLE001
            assert "HTTP 401" in str(exc)

        with urllib.request.urlopen(f"{base}/tickets", timeout=5) as resp:
            listing = json.loads(resp.read())
        assert [(t["idempotency_key"], t["deliveries"]) for t in listing["tickets"]] == [("k1", 2)]
        assert listing["tickets"][0]["payload"]["summary"] == "测试派单"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"listening on {base}" in err and "Traceback" not in err
