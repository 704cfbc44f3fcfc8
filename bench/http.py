"""APP API round trips per second and latency, next to a bare aiohttp echo server.

    python bench/http.py [--levels 1,50,200] [--requests 2000] [--seconds 30]

Starts two servers on 127.0.0.1, each a subprocess of this script:

- ours: ``bangban serve`` with a temporary --data-dir (embedded SQLite and Redis, the seed KB)
  and a config file enabling the APP channel for one app with a key (rate limit raised out of
  the way: it would otherwise refuse a user's 31st message in a minute);
- echo: a few lines of aiohttp answering ``POST /api/app/v1/messages`` with the JSON it was sent.

Then, at each concurrency level, the same client code drives both in turn: ``level`` client
tasks share one aiohttp session (up to ``level`` keep-alive connections) and send
``POST /api/app/v1/messages`` — the same sequence of bodies to both servers (dev-set questions,
a new user per client every 10 messages, a unique msg_id), each signed with
``adapters.app.signing.sign_request`` and a fresh nonce — until ``--requests`` have been sent or
``--seconds`` have passed, whichever is first. A round trip is timed from just before signing to
the last byte of the response read. Only 2xx responses count as done; anything else is
reported as an error.

Besides rate and latency, each row shows the CPU time per completed request of the server
process (with its children: ours' embedded redis-server) and of the client process (/proc).

Client and servers share this machine's CPUs, so the figures are for the whole loop on one box;
the echo server is the ceiling of that loop (client + aiohttp + loopback), and the ratio
ours/echo is the figure to read.
"""

from __future__ import annotations

import os
import sys

# This file is bench/http.py and Python puts the script's directory first on sys.path, where
# "http" would shadow the standard library's http package that aiohttp imports.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(_HERE).parent
sys.path.insert(0, str(REPO))

HOST = "127.0.0.1"
PATH = "/api/app/v1/messages"
APP_ID = "bench-app"
APP_KEY = "bench-key-0123456789-abcdefghijklmnopqrstuvwxyz"  # ≥ 32 characters
MESSAGES_PER_USER = 10
DEVSET = REPO / "tests" / "data" / "devset.tsv"


# -- the echo server (runs as: python bench/http.py --echo-server PORT) -----------------------


def run_echo_server(port: int) -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await request.json())

    async def ready(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.add_routes([web.post(PATH, echo), web.get("/readyz", ready)])
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


# -- servers ----------------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a live process and its live descendants (Linux /proc).

    The descendants matter for ours: the embedded redis-server is a child of bangban serve.
    """
    tick = os.sysconf("SC_CLK_TCK")
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess in its own session; stopped by its pid (SIGINT, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.port, self.log_path = name, port, log_path
        self.base = f"http://{HOST}:{port}"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=REPO, start_new_session=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, timeout: float) -> float:
        import aiohttp

        start = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            while time.monotonic() - start < timeout:
                if self.proc.poll() is not None:
                    raise SystemExit(f"{self.name} exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
                try:
                    async with s.get(self.base + "/readyz") as r:
                        if r.status == 200:
                            return time.monotonic() - start
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.5)
        raise SystemExit(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # a clean stop: the embedded Redis goes too
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this script created
                self.proc.wait(10)
        self._log.close()


def bangban_command() -> list[str]:
    exe = Path(sys.executable).with_name("bangban")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("bangban")
    if not found:
        raise SystemExit("the bangban command is not installed (pip install -e .)")
    return [found]


def start_ours(tmp: Path, port: int, steps: bool = False) -> Server:
    config = tmp / "bench.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "logging": {"level": "WARNING"},
        "channels": {"app": {"enabled": True, "apps": {APP_ID: APP_KEY},
                             "rate_limit": {"messages": 1_000_000_000, "window_s": 60}}},
    }), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANGBAN_")}
    command = bangban_command()
    if steps:  # the same server, with timers around the steps of a message
        command = [sys.executable, str(Path(_HERE) / "serve_steps.py")]
        env["BENCH_STEPS_FILE"] = str(tmp / "steps.json")
    argv = [*command, "serve", "--config", str(config), "--data-dir",
            str(tmp / "data"), "--host", HOST, "--port", str(port)]
    return Server("bangban serve", argv, port, tmp / "bangban.log", env)


def start_echo(tmp: Path, port: int) -> Server:
    argv = [sys.executable, str(Path(__file__).resolve()), "--echo-server", str(port)]
    return Server("echo server", argv, port, tmp / "echo.log")


# -- load -------------------------------------------------------------------------------------


def questions() -> list[str]:
    out = []
    for line in DEVSET.read_text(encoding="utf-8").splitlines():
        expect, sep, q = line.partition("\t")
        if sep and not expect.startswith("#") and expect[:1] == "M":
            out.append(q.strip())
    return out


def body_for(level: int, client: int, n: int, k: int, texts: list[str]) -> bytes:
    """The n-th request of the run, the k-th of this client: same bytes for both servers.

    A user asks consecutive dev-set questions (mostly of one matter, as a citizen's follow-ups
    are), whatever the level, so every level asks the bot for the same kind of work.
    """
    user = f"l{level}c{client}u{k // MESSAGES_PER_USER}"
    text = texts[(client * 7919 + k) % len(texts)]
    return json.dumps({"user": user, "text": text, "msg_id": f"l{level}n{n}"},
                      ensure_ascii=False).encode("utf-8")


@dataclass
class Run:
    server: str
    level: int
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0
    request_bytes: int = 0
    response_bytes: int = 0
    server_cpu: float = 0.0  # CPU seconds of the server process (and its children) in the run
    client_cpu: float = 0.0  # CPU seconds of this (client) process in the run

    @property
    def done(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.done / self.wall if self.wall else 0.0

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.done if self.done else float("nan")

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] * 1000


async def drive(base: str, server: str, level: int, requests: int, seconds: float,
                texts: list[str], tag: str = "") -> Run:
    import aiohttp

    from adapters.app.signing import sign_request

    run = Run(server, level)
    counter = iter(range(requests))
    url = base + PATH
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=level, limit_per_host=level)

    async def client(session: aiohttp.ClientSession, c: int) -> None:
        k = 0
        for n in counter:
            if time.monotonic() >= deadline:
                return
            body = body_for(level if not tag else -level, c, n, k, texts)
            k += 1
            start = time.perf_counter()
            headers = {**sign_request(APP_ID, APP_KEY, "POST", PATH, body),
                       "Content-Type": "application/json"}
            try:
                async with session.post(url, data=body, headers=headers) as r:
                    data = await r.read()
                    status = r.status
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                key = type(exc).__name__
                run.errors[key] = run.errors.get(key, 0) + 1
                continue
            if 200 <= status < 300:
                run.latencies.append(time.perf_counter() - start)
                run.request_bytes += len(body)
                run.response_bytes += len(data)
            else:
                key = f"HTTP {status}"
                if key not in run.errors:
                    print(f"    {server}: first {key}: {data[:300].decode('utf-8', 'replace')}")
                run.errors[key] = run.errors.get(key, 0) + 1

    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session, c) for c in range(level)))
        run.wall = time.perf_counter() - start
    return run


def check_reply(sample: bytes) -> str:
    """A short description of what our server answered, to show the bot really ran."""
    try:
        data = json.loads(sample)
        replies = data.get("replies") or []
        return f"{len(replies)} replies, first: {json.dumps(replies[0], ensure_ascii=False)[:160]}…"
    except (ValueError, AttributeError, IndexError, TypeError):
        return sample[:200].decode("utf-8", "replace")


async def probe(base: str, text: str) -> bytes:
    import aiohttp

    from adapters.app.signing import sign_request

    body = json.dumps({"user": "probe", "text": text}, ensure_ascii=False).encode()
    headers = {**sign_request(APP_ID, APP_KEY, "POST", PATH, body),
               "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s, s.post(base + PATH, data=body, headers=headers) as r:
        data = await r.read()
        if r.status != 200:
            raise SystemExit(f"probe of {base}{PATH} answered {r.status}: {data[:300]!r}")
        return data


async def collect_steps(server: Server, tmp: Path) -> dict:
    """Ask the timed server for its step timers since the last call (and reset them)."""
    path = tmp / "steps.json"
    path.unlink(missing_ok=True)
    server.proc.send_signal(signal.SIGUSR1)
    for _ in range(100):
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
        await asyncio.sleep(0.05)
    return {}


def print_steps(level: int, table: dict) -> None:
    print(f"\nwhere ours' time goes at {level} clients (wall time inside the server, per message):")
    for label, (calls, total) in sorted(table.items(), key=lambda kv: -kv[1][1]):
        print(f"  {label:<30} {calls:>6} calls  {1000 * total / max(calls, 1):9.2f} ms mean"
              f"  {total:8.2f} s total")


# -- main -------------------------------------------------------------------------------------


def print_table(runs: list[Run]) -> None:
    head = (f"{'clients':>7} {'server':<6} {'ok':>6} {'errors':>7} {'req/s':>8} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'req B':>6} {'resp B':>7} {'server CPU ms/req':>18} "
            f"{'client CPU ms/req':>18}")
    print(head)
    print("-" * len(head))
    for r in runs:
        n = r.done or 1
        print(f"{r.level:>7} {r.server:<6} {r.done:>6} {sum(r.errors.values()):>7} "
              f"{r.rate:>8,.1f} {r.pct(50):>8.1f} {r.pct(99):>8.1f} "
              f"{r.request_bytes / n:>6.0f} {r.response_bytes / n:>7.0f} "
              f"{r.per_request_ms(r.server_cpu):>18.2f} {r.per_request_ms(r.client_cpu):>18.2f}")
    print()
    print(f"{'clients':>7} {'ours/echo req/s':>16} {'p50 ours/echo':>14} {'p99 ours/echo':>14}")
    by = {(r.server, r.level): r for r in runs}
    for level in sorted({r.level for r in runs}):
        ours, echo = by.get(("ours", level)), by.get(("echo", level))
        if ours and echo and echo.rate:
            print(f"{level:>7} {ours.rate / echo.rate:>16.3f} "
                  f"{ours.pct(50) / echo.pct(50):>14.1f} {ours.pct(99) / echo.pct(99):>14.1f}")
    for r in runs:
        if r.errors:
            print(f"errors at {r.level} clients, {r.server}: {r.errors}")


async def bench(args: argparse.Namespace) -> None:
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    texts = questions()
    tmp = Path(tempfile.mkdtemp(prefix="bangban-bench-http-"))
    servers: list[Server] = []
    try:
        ours = start_ours(tmp, free_port(), args.steps)
        servers.append(ours)
        echo = start_echo(tmp, free_port())
        servers.append(echo)
        t_echo = await echo.wait_ready(30)
        t_ours = await ours.wait_ready(args.start_timeout)
        print(f"echo server ready in {t_echo:.1f} s; bangban serve ready in {t_ours:.1f} s "
              f"(data dir {tmp / 'data'})")
        print("ours answers: " + check_reply(await probe(ours.base, texts[0])))
        # warm both (first requests pay for lazy imports, first SQL statements, connections)
        for name, server in (("echo", echo), ("ours", ours)):
            await drive(server.base, name, 4, args.warmup, 30, texts, tag="warmup")
        runs: list[Run] = []
        steps: dict[int, dict] = {}
        for level in levels:
            for name, server in (("echo", echo), ("ours", ours)):
                load = os.getloadavg()[0]
                if args.steps and name == "ours":
                    await collect_steps(server, tmp)  # start from zero
                cpu0, mine0 = process_cpu(server.proc.pid), time.process_time()
                run = await drive(server.base, name, level, args.requests, args.seconds, texts)
                run.server_cpu = process_cpu(server.proc.pid) - cpu0
                run.client_cpu = time.process_time() - mine0
                if args.steps and name == "ours":
                    steps[level] = await collect_steps(server, tmp)
                runs.append(run)
                print(f"  {level:>3} clients, {name:<4}: {run.done} ok in {run.wall:.1f} s "
                      f"({run.rate:,.1f}/s), load average before {load:.2f}")
                if server.proc.poll() is not None:
                    raise SystemExit(f"{server.name} died:\n{server.log_tail()}")
        print()
        print_table(runs)
        for level, table in steps.items():
            print_steps(level, table)
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,50,200", help="concurrent clients, comma-separated")
    p.add_argument("--requests", type=int, default=2000, help="requests per level and server")
    p.add_argument("--seconds", type=float, default=30.0, help="time cap per level and server")
    p.add_argument("--warmup", type=int, default=40, help="unmeasured requests to each server first")
    p.add_argument("--start-timeout", type=float, default=180.0,
                   help="seconds to wait for bangban serve's /readyz")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir and logs")
    p.add_argument("--steps", action="store_true",
                   help="run ours through bench/serve_steps.py and print where a message's time "
                        "goes (adds a little overhead: not for the headline figures)")
    p.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.echo_server:
        run_echo_server(args.echo_server)
        return
    import platform

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, client and servers on "
          f"{HOST}; per level and server: {args.requests} requests or {args.seconds:.0f} s")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
