"""A small stand-in for the 12345 hotline's ticket interface, for demos and tests.

``bangban hotline-sim --port P --secret S [--fail-first N]`` runs it. It:

* takes ``POST /tickets`` signed as core.hotline_wire says (401 otherwise), records each ticket
  once per ``Idempotency-Key`` (201 the first time, 200 with ``"duplicate": true`` after), and
  answers 503 to the first N requests when asked to fail (to exercise retries); in tests it can
  also record a ticket and then hold its answer until :meth:`HotlineSim.release` (``hold_first``),
  so the sender can be killed while it waits;
* lists what it recorded at ``GET /tickets`` (with how many deliveries each key got);
* sends a signed status update at ``POST /tickets/{id}/callback?status=accepted|done|returned
  [&to=URL][&note=…]`` — to ``to``, or to the ``callback_url`` the ticket came with.

It keeps everything in memory: a restart forgets the tickets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from .hotline_wire import (
    CALLBACK_STATUSES,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    BadSignature,
    signed_headers,
    verify,
)


class HotlineSim:
    def __init__(self, secret: str, *, fail_first: int = 0, hold_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.hold_first = hold_first
        self.requests = 0
        self.failed = 0
        self.held = 0
        self.tickets: dict[str, dict[str, Any]] = {}  # by Idempotency-Key, in arrival order
        self._lock = asyncio.Lock()
        # threading events: tests wait on and release held answers from their own thread
        self.holding = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        """Let held answers go (to senders that may no longer be there)."""
        self._released.set()

    def wait_holding(self, timeout: float) -> bool:
        """Wait until a delivery has been recorded and is being held."""
        return self.holding.wait(timeout)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_post("/tickets", self.receive)
        app.router.add_get("/tickets", self.list)
        app.router.add_post("/tickets/{id}/callback", self.callback)
        app.router.add_get("/health", self.health)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        try:
            verify(self.secret, body, request.headers.get(SIGNATURE_HEADER),
                   request.headers.get(TIMESTAMP_HEADER))
        except BadSignature as exc:
            return web.json_response({"error": "bad_signature", "message": str(exc)}, status=401)
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if not key:
            return web.json_response({"error": "missing Idempotency-Key"}, status=400)
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        if self.failed < self.fail_first:
            self.failed += 1
            return web.json_response({"error": "simulated failure", "n": self.failed}, status=503)
        async with self._lock:
            known = self.tickets.get(key)
            if known is not None:
                known["deliveries"] += 1
                return web.json_response({"id": known["id"], "duplicate": True})
            record = {"id": f"12345-{len(self.tickets) + 1:06d}", "idempotency_key": key,
                      "received_at": datetime.now(UTC).isoformat(), "deliveries": 1,
                      "payload": payload}
            self.tickets[key] = record
            hold = self.held < self.hold_first
            self.held += hold
        if hold:  # recorded, but the sender does not learn it yet
            self.holding.set()
            deadline = time.monotonic() + 120
            while not self._released.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        return web.json_response({"id": record["id"], "duplicate": False}, status=201)

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def list(self, _request: web.Request) -> web.Response:
        return web.json_response({"tickets": list(self.tickets.values()),
                                  "requests": self.requests, "failed": self.failed})

    async def callback(self, request: web.Request) -> web.Response:
        ext = request.match_info["id"]
        record = next((t for t in self.tickets.values()
                       if t["id"] == ext or t["payload"].get("ticket_id") == ext), None)
        if record is None:
            return web.json_response({"error": "no such ticket"}, status=404)
        status = request.query.get("status", "")
        if status not in CALLBACK_STATUSES and status not in CALLBACK_STATUSES.values():
            return web.json_response({"error": "status must be accepted, done or returned"},
                                     status=400)
        to = request.query.get("to") or record["payload"].get("callback_url")
        if not to:
            return web.json_response({"error": "no callback URL (give ?to=)"}, status=400)
        body = json.dumps({"ticket_id": record["payload"].get("ticket_id"),
                           "idempotency_key": record["idempotency_key"],
                           "external_id": record["id"], "status": status,
                           "note": request.query.get("note")}, ensure_ascii=False).encode()
        headers = signed_headers(self.secret, body)
        try:
            async with ClientSession(timeout=ClientTimeout(total=10)) as session, \
                    session.post(to, data=body, headers=headers) as resp:
                text = await resp.text()
        except Exception as exc:  # noqa: BLE001 - report any transport failure to the caller
            return web.json_response({"error": f"cannot reach {to}: {exc}"}, status=502)
        return web.json_response({"sent_to": to, "status": resp.status, "response": text})


class RunningSim:
    """A simulator serving on 127.0.0.1 from a background thread (tests, demos)."""

    def __init__(self, sim: HotlineSim, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(host, port), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("hotline simulator did not start")

    def _run(self, host: str, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self.sim.app(), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, host, port)
        self._loop.run_until_complete(site.start())
        h, p = self._runner.addresses[0][:2]
        self.url = f"http://{h}:{p}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> RunningSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(sim: HotlineSim, host: str, port: int, print_fn=print) -> None:  # noqa: ANN001
    web.run_app(sim.app(), host=host, port=port, print=print_fn, access_log=None,
                shutdown_timeout=2)


__all__ = ["HotlineSim", "RunningSim", "serve"]
