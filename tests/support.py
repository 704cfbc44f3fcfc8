"""Helpers several test packages share (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import yaml
from aiohttp import WSMsgType, web

from core.paths import config_dir


def always_open_units(directory: Path) -> Path:
    """config/units.yaml with every unit open 7×24, so a test does not depend on the hour."""
    data = yaml.safe_load((config_dir() / "units.yaml").read_text(encoding="utf-8"))
    for unit in data["units"].values():
        unit["hours"] = "always"
    path = directory / "units-always.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


class ThreadedServer:
    """An aiohttp app on 127.0.0.1 served from a thread of its own: a platform's stand-in
    must keep answering while an RQ worker blocks the test's event loop."""

    def __init__(self, app: web.Application, name: str = "the stand-in") -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"{name} did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# -- chat websockets (the widget's and the kiosk's) ---------------------------------------------


async def recv(ws, timeout: float = 15) -> dict:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, f"expected a text frame, got {msg.type}: {msg.data!r}"
    return json.loads(msg.data)


async def messages(ws, count: int, timeout: float = 15) -> list[dict]:
    """The next ``count`` message frames' messages (typing and status frames skipped, errors
    fail)."""
    out = []
    while len(out) < count:
        frame = await recv(ws, timeout)
        assert frame["type"] != "error", frame
        if frame["type"] == "message":
            out.append(frame["message"])
    return out


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """The application served on a free port of 127.0.0.1 in this event loop, for a browser:
    its base URL, and everything cleaned up (the app's resources too) on leaving."""
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
