"""The channel adapter plugin API, through a third-party package installed for real.

docs/examples/echo_adapter is pip-installed (offline, no build isolation) into a temporary
directory put on sys.path; from there on nothing in this repository names it: the core finds it
through the ``bangban.adapters`` entry point, validates ``channels.echo``, mounts its routes,
starts it, hands it citizens' messages and pushes, and stops it — on the real database and Redis.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import shutil
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import adapters
from adapters import GROUP, ChannelAdapter, discover
from core.app import create_app
from core.appkeys import HUB
from core.dialog.models import MAX_TEXT, Outbound, QuickReply
from core.errors import ConfigError
from core.kb.seed import load_seed_if_empty
from core.kb.store import KbStore

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "echo_adapter"
MODULE = "bangban_echo"

#: a seed FAQ (M01-faq-01) and a phrase of its answer
QUESTION = "非上海户籍可以在上海申请认定教师资格吗？"
ANSWER_PART = "持有本市有效居住证"


@pytest.fixture(scope="module")
def echo_installed(tmp_path_factory):
    """The example package installed as a user would, minus the network; removed afterwards."""
    work = tmp_path_factory.mktemp("echo")
    source, target = work / "src", work / "site"
    # a copy, so the build leaves no build/ or *.egg-info in the repository
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-q", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, (
        "pip could not install the example adapter offline. It builds with the venv's own "
        "setuptools, which needs the `wheel` package (in the test extra; `python3 dev.py test` "
        f"installs it):\n{proc.stdout}\n{proc.stderr}")
    # (a developer may also have installed it into the venv, following the guide: this copy wins)
    previous = sys.modules.pop(MODULE, None)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop(MODULE, None)
        if previous is not None:
            sys.modules[MODULE] = previous
        importlib.invalidate_caches()


@pytest.fixture
def echo_cls(echo_installed) -> type[ChannelAdapter]:
    return discover()["echo"]


def with_channels(settings, **channels):
    """Settings whose ``channels`` section has ``channels`` on top of the shipped ones.

    With a Redis prefix of its own, so the bus topic is not shared with a concurrent test run on
    the same external Redis.
    """
    prefix = f"test-{secrets.token_hex(4)}:"
    return settings.model_copy(update={
        "channels": {**settings.channels, **channels},
        "redis": settings.redis.model_copy(update={"prefix": prefix})})


async def poll(fetch, until, *, timeout: float = 5.0):
    """``fetch()`` again until ``until(result)`` (the bus is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await fetch()
        if until(result) or loop.time() > deadline:
            return result
        await asyncio.sleep(0.05)


# -- discovery ---------------------------------------------------------------------------------


def test_discover_finds_the_installed_package(echo_installed):
    found = discover()
    cls = found["echo"]
    assert issubclass(cls, ChannelAdapter) and cls.name == "echo"
    # loaded from the installed copy, not from the repository's docs/
    assert Path(sys.modules[MODULE].__file__).parent == echo_installed


def fake_entry_points(monkeypatch, *eps: EntryPoint) -> None:
    # adapters/__init__.py did ``from importlib.metadata import entry_points``: patch its name
    monkeypatch.setattr(adapters, "entry_points",
                        lambda *, group: [ep for ep in eps if ep.group == group])


def test_an_entry_point_that_fails_to_import_is_a_config_error(monkeypatch):
    fake_entry_points(monkeypatch, EntryPoint(
        "broken", "bangban_no_such_module_xyz:Adapter", GROUP))
    with pytest.raises(ConfigError, match=r"'broken'.*failed to load.*bangban_no_such_module_xyz"):
        discover()


def test_an_entry_point_whose_object_is_missing_is_a_config_error(monkeypatch):
    fake_entry_points(monkeypatch, EntryPoint("ghost", "adapters.base:NoSuchAdapter", GROUP))
    with pytest.raises(ConfigError, match=r"'ghost'.*failed to load"):
        discover()


def test_an_entry_point_that_is_not_an_adapter_is_a_config_error(monkeypatch, settings):
    fake_entry_points(monkeypatch, EntryPoint("dumps", "json:dumps", GROUP))
    with pytest.raises(ConfigError, match=r"'dumps'.*is not a ChannelAdapter"):
        discover()
    # and the application refuses to start with it, rather than leaving the channel out
    with pytest.raises(ConfigError, match="is not a ChannelAdapter"):
        create_app(settings)


def test_the_entry_point_name_must_be_the_adapter_name(monkeypatch, echo_installed):
    fake_entry_points(monkeypatch, EntryPoint("echo2", f"{MODULE}:EchoAdapter", GROUP))
    with pytest.raises(ConfigError, match=r"'echo2' loads adapter named 'echo'"):
        discover()


def test_entry_points_of_other_groups_are_ignored(monkeypatch):
    fake_entry_points(monkeypatch, EntryPoint("dumps", "json:dumps", "console_scripts"))
    assert discover() == {}


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "field"), [
    ({"greeting": ["您好"]}, "channels.echo.greeting"),
    ({"inbox_size": 0}, "channels.echo.inbox_size"),
    ({"enabled": "maybe"}, "channels.echo.enabled"),
    ({"greting": "typo"}, "channels.echo.greting"),  # unknown settings are refused too
])
def test_a_bad_channel_setting_stops_create_app_naming_the_field(echo_installed, settings,
                                                                 value, field):
    with pytest.raises(ConfigError) as caught:
        create_app(with_channels(settings, echo=value))
    assert field in str(caught.value)


async def test_a_disabled_channel_mounts_no_route(aiohttp_client, echo_installed, settings,
                                                  engine, redis):
    app = create_app(with_channels(settings, echo={"enabled": False}))
    client = await aiohttp_client(app)
    assert "echo" not in app[HUB].adapters
    resp = await client.post("/channels/echo/u1", data="你好".encode())
    assert resp.status == 404
    assert (await client.get("/channels/echo/u1/inbox")).status == 404


# -- request/response and push -----------------------------------------------------------------


async def test_a_citizen_gets_the_bots_answer_in_the_response(aiohttp_client, echo_installed,
                                                             settings, engine, redis):
    # one application for the whole conversation: starting one builds the bot's index (slow)
    assert await load_seed_if_empty(KbStore(engine), settings.kb_seed_dir) > 0
    app = create_app(with_channels(settings, echo={"greeting": "这里是测试问候"}))
    client = await aiohttp_client(app)
    hub = app[HUB]
    assert type(hub.adapters["echo"]).__module__ == MODULE  # found by discovery alone

    # an empty message: the configured greeting, and no conversation
    resp = await client.post("/channels/echo/u1", data=b"  \n")
    assert resp.status == 200 and await resp.text() == "这里是测试问候"
    assert await hub.history("echo", "u1") == (None, [])

    # refused before reaching the core, with the limit in the reason
    too_long = await client.post("/channels/echo/u1", data=("问" * (MAX_TEXT + 1)).encode())
    assert too_long.status == 400 and str(MAX_TEXT) in await too_long.text()
    huge = await client.post("/channels/echo/u1", data=b"a" * (4 * MAX_TEXT + 1))
    assert huge.status == 413 and str(MAX_TEXT) in await huge.text()
    not_utf8 = await client.post("/channels/echo/u1", data="问题".encode("gbk"))
    assert not_utf8.status == 400
    long_id = await client.post("/channels/echo/u1", data=QUESTION.encode(),
                                headers={"X-Echo-Msg-Id": "x" * 129})
    assert long_id.status == 400
    bad_user = await client.post("/channels/echo/a%20b", data=QUESTION.encode())
    assert bad_user.status == 404  # the route accepts only [A-Za-z0-9_-]{1,64}
    assert await hub.history("echo", "u1") == (None, [])

    # a seed question: the bot's answer, as plain text, in the HTTP response
    headers = {"X-Echo-Msg-Id": "wx-msg-1"}
    resp = await client.post("/channels/echo/u1", data=QUESTION.encode(), headers=headers)
    body = await resp.text()
    assert resp.status == 200, body
    assert resp.content_type == "text/plain"
    assert ANSWER_PART in body and "<p>" not in body

    # recorded under the channel's identity for the citizen
    conversation_id, history = await hub.history("echo", "u1")
    assert conversation_id is not None
    assert (history[0].sender, history[0].text) == ("citizen", QUESTION)
    assert any(m.sender == "bot" and ANSWER_PART in m.text for m in history)
    assert await hub.history("echo", "u2") == (None, [])

    # the platform retries the same message: handled once, nothing new stored
    again = await client.post("/channels/echo/u1", data=QUESTION.encode(), headers=headers)
    assert again.status == 204
    assert len((await hub.history("echo", "u1"))[1]) == len(history)
    # … but the same client id from another citizen is another message (the adapter scopes it)
    other = await client.post("/channels/echo/u2", data=QUESTION.encode(), headers=headers)
    assert other.status == 200 and ANSWER_PART in await other.text()

    # every stored message also goes out on the bus, so push() gets the reply it just returned
    # (the echo inbox keeps all but the citizen's own messages)
    async def inbox():
        return await (await client.get("/channels/echo/u1/inbox")).json()

    got = await poll(inbox, lambda box: any(ANSWER_PART in m["text"] for m in box))
    assert any(m["sender"] == "bot" and ANSWER_PART in m["text"] for m in got), got
    assert all(m["sender"] != "citizen" for m in got)


async def test_lifecycle_and_push_outside_a_request(aiohttp_client, echo_cls, settings, engine,
                                                   redis):
    events: list[str] = []

    class Recording(echo_cls):
        async def start(self) -> None:
            # the hub's services are in place before any adapter starts
            assert await self.hub.redis.ping()
            assert self.hub.dialog is not None and self.hub.bus is not None
            events.append("start")

        async def stop(self) -> None:
            events.append("stop")

    app = create_app(with_channels(settings, echo={"inbox_size": 2}),
                     adapters={"echo": Recording})
    assert events == []  # constructed and its routes mounted, not started
    client = await aiohttp_client(app)
    assert events == ["start"]
    hub = app[HUB]

    async def inbox(user="u1"):
        resp = await client.get(f"/channels/echo/{user}/inbox")
        assert resp.status == 200
        return await resp.json()

    # a message produced outside any request (an agent's reply, a late answer) is published on
    # the bus; every process's hub hands it to the channel's push()
    agent = Outbound(sender="agent", action="agent", text="您好，我是人工客服小王。", seq=7,
                     quick_replies=[QuickReply(label="已解决", payload="resolved:yes"),
                                    QuickReply(label="未解决", payload="resolved:no")])
    await hub.bus.publish("echo", "u1", [agent])
    got = await poll(inbox, lambda box: box != [])
    assert got == [{"seq": 7, "sender": "agent", "text":
                    "您好，我是人工客服小王。\n\n1. 已解决\n2. 未解决\n（回复 1、2 选择）"}]

    # dispatch goes to the named channel only, for the named citizen; the inbox is bounded
    for seq in (8, 9, 10):
        await hub.dispatch("echo", "u2", [agent.model_copy(update={"seq": seq})])
    await hub.dispatch("nosuchchannel", "u1", [agent])
    assert [m["seq"] for m in await inbox("u2")] == [9, 10]
    assert [m["seq"] for m in await inbox("u1")] == [7]
    assert await inbox("nobody") == []

    resp = await client.post("/channels/echo/u9", data=b"")
    assert await resp.text() == Recording.config_model().greeting  # the default
    await client.close()
    assert events == ["start", "stop"]
