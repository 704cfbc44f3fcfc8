"""Configuration: one pydantic model tree, validated at start-up.

Sources, later ones winning: ``config/default.yaml`` (shipped), an optional file (``--config`` or
``BANGBAN_CONFIG``), then ``BANGBAN_*`` environment variables. Each leaf remembers which source
set it, so a bad value is reported as "<source>: <field>: <what was expected>" instead of a
traceback — operators fix config from the message alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError
from .paths import config_dir

ENV_PREFIX = "BANGBAN_"
#: documented short names for the settings operators change most
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "BANGBAN_DATABASE_URL": ("database", "url"),
    "BANGBAN_REDIS_URL": ("redis", "url"),
    "BANGBAN_DATA_DIR": ("data_dir",),
    "BANGBAN_HOST": ("server", "host"),
    "BANGBAN_PORT": ("server", "port"),
    "BANGBAN_LOG_LEVEL": ("logging", "level"),
}
#: variables that are not settings (so the generic BANGBAN_A__B rule must not read them)
ENV_RESERVED = {"BANGBAN_CONFIG", "BANGBAN_TEST_DATABASE_URL", "BANGBAN_TEST_REDIS_URL"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    #: largest request body accepted, in bytes; larger ones get 413 with a reason
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    #: public base URL used in links sent to channels (defaults to http://host:port)
    public_url: str | None = None


class DatabaseSettings(_Section):
    #: SQLAlchemy URL; empty means the embedded SQLite file ``<data_dir>/bangban.db``
    url: str | None = None
    echo: bool = False
    pool_size: int = Field(10, ge=1, le=200)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, v: str | None) -> str | None:
        if not v:
            return None
        v = normalise_database_url(v)
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "expected a sqlite:// or postgresql:// URL "
                "(e.g. postgresql+asyncpg://user@host:5432/dbname)"
            )
        return v


class EmbeddedRedisSettings(_Section):
    #: append-only file, so queued work survives a restart of the embedded server
    appendonly: bool = True
    maxmemory: str = "256mb"


class RedisSettings(_Section):
    #: redis:// or unix:// URL; empty means a private embedded server under ``<data_dir>/redis``
    url: str | None = None
    #: prefix of every key we write, so several deployments can share one Redis
    prefix: str = "bangban:"
    embedded: EmbeddedRedisSettings = EmbeddedRedisSettings()

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if not v:
            return None
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return v


RerankMode = Literal["auto", "on", "off"]


class KbSettings(_Section):
    #: directory of seed KB files loaded on first start when the KB is empty
    seed_dir: Path | None = None
    load_seed_on_start: bool = True
    #: how often every process checks the KB for changes and rebuilds its search index
    refresh_interval_s: float = Field(5.0, ge=0)
    #: the search's re-ranker (config/rerank.yaml): auto = on for a KB whose questions are
    #: mostly phrased once (no 相似问法), where it helps, off otherwise (docs/architecture.md)
    rerank: RerankMode = "auto"


class WorkerSettings(_Section):
    queues: list[str] = ["high", "default", "low"]


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: mask ID-card and mobile numbers in every log line (never turn off in production)
    mask_personal_data: bool = True

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class BotSettings(_Section):
    """Thresholds of the answer / clarify / fallback decision (config section ``bot``)."""

    #: logistic calibration of the retrieval score: confidence = σ(slope · (score − midpoint))
    midpoint: float = 0.30
    slope: float = 10.0
    #: a longer question matches any one KB phrasing less of itself, so the midpoint moves down
    #: by this much per doubling of its length from ``length_reference`` characters (0: off),
    #: within ``midpoint_range``
    length_slope: float = Field(0.17, ge=0)
    length_reference: int = Field(18, ge=1)
    midpoint_range: tuple[float, float] = (0.18, 0.42)
    answer_confidence: float = Field(0.5, ge=0, le=1)
    #: below answer_confidence but at least this sure, and the best three candidates all of
    #: one matter: the bot offers them (clarify) instead of giving up (1: never)
    suggest_confidence: float = Field(0.3, ge=0, le=1)
    #: taken from the score when the best match is an answer's text on a word that no KB
    #: question uses ("护照" mentioned in passing): the KB mentions it, it does not answer it
    answer_only_penalty: float = Field(0.1, ge=0)
    #: candidates whose scores are within this of the best are "close"
    clarify_margin: float = Field(0.05, ge=0)
    #: an intent must be at least this sure to override retrieval
    intent_confidence: float = Field(0.55, ge=0, le=1)
    #: retrieval confidence above which a service answer beats a social/out-of-scope intent
    strong_answer: float = Field(0.92, ge=0, le=1)
    #: boost of the conversation's current matter for follow-up questions
    context_boost: float = Field(1.35, ge=1)
    #: weight of the matters of the one department a question names (config/agencies.yaml)
    agency_boost: float = Field(1.3, ge=1)
    #: weight of the one matter whose own name the question uses (core/nlu/names.py)
    name_boost: float = Field(1.3, ge=1)
    #: live context (current matter, last suggestions) expires after this much silence
    context_ttl_s: int = Field(1800, ge=60)


class HandoffSettings(_Section):
    """Online human help (线上人工帮办): the queue, the agent workspace, attachments."""

    #: false: requests for a person get the 12345 referral, as before any agent desk existed
    enabled: bool = True
    #: working hours, caps and SLAs per unit; null: the shipped config/units.yaml
    units_file: Path | None = None
    #: banned phrases (禁语) checked in agents' messages; null: config/banned_phrases.yaml
    banned_phrases_file: Path | None = None
    #: an agent whose workspace sent no heartbeat for this long counts as offline
    heartbeat_ttl_s: float = Field(30.0, ge=5)
    #: how often each process assigns waiting citizens, checks SLAs and overflows
    sweep_interval_s: float = Field(1.0, gt=0, le=60)
    #: an agent offline this long (browser closed, account disabled) gives back the
    #: conversations they hold: each returns to its place in the unit's line
    release_after_s: float = Field(300.0, ge=30)
    #: a citizen's or agent's picture / voice message may be at most this large
    max_image_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_voice_bytes: int = Field(2 * 1024 * 1024, ge=1024)


class DispatchSettings(_Section):
    """12345 dispatch (派单): where tickets go and how 12345's callbacks are checked."""

    #: the 12345 receiver's URL; null: dispatch is off (the workspace says so)
    endpoint: str | None = None
    #: HMAC-SHA256 key shared with 12345 for tickets and callbacks (at least 8 characters)
    secret: str | None = Field(None, min_length=8)
    retry_intervals: list[int] = Field(default_factory=lambda: [5, 30, 120, 600])
    max_attempts: int = Field(5, ge=1, le=50)
    timeout_s: float = Field(10.0, gt=0, le=120)
    #: sent with each ticket so 12345 knows where to post status updates; null: derived from
    #: server.public_url + /api/hotline/v1/callback
    callback_url: str | None = None
    queue: str = "default"

    @field_validator("secret")
    @classmethod
    def _no_blank(cls, v: str | None) -> str | None:
        return v or None

    def model_post_init(self, _context: Any) -> None:
        if self.endpoint and not self.secret:
            raise ValueError("dispatch.endpoint is set, so dispatch.secret is required")


class Settings(_Section):
    data_dir: Path = Path("var")
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    kb: KbSettings = KbSettings()
    worker: WorkerSettings = WorkerSettings()
    logging: LoggingSettings = LoggingSettings()
    bot: BotSettings = BotSettings()
    handoff: HandoffSettings = HandoffSettings()
    dispatch: DispatchSettings = DispatchSettings()
    #: per-channel adapter settings, validated by each adapter's own config model at start-up
    channels: dict[str, dict[str, Any]] = {}

    # -- derived values -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir.resolve() / 'bangban.db'}"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis.url

    @property
    def kb_seed_dir(self) -> Path:
        return self.kb.seed_dir or config_dir() / "kb"

    @property
    def public_url(self) -> str:
        return self.server.public_url or f"http://{self.server.host}:{self.server.port}"


def normalise_database_url(url: str) -> str:
    """Accept the plain scheme names people type and use the async drivers we ship."""
    for plain, full in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return full + url[len(plain) :]
    return url


# -- loading ----------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _merge(
    base: dict[str, Any], update: Mapping[str, Any], source: str, origin: dict[tuple, str], path=()
) -> None:
    for key, value in update.items():
        here = (*path, str(key))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, source, origin, here)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
            origin[here] = source


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], str]]:
    found = []
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        if name in ENV_ALIASES:
            found.append((name, ENV_ALIASES[name], value))
        elif "__" in name:
            # generic form: BANGBAN_SECTION__FIELD[__SUBFIELD]
            parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
            found.append((name, parts, value))
    return found


def _set_path(tree: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the validated settings, or raise ConfigError naming the source and field."""
    environ = os.environ if environ is None else environ
    default_file = config_dir() / "default.yaml"
    tree: dict[str, Any] = {}
    origin: dict[tuple, str] = {}
    _merge(tree, _read_yaml(default_file), str(default_file), origin)

    config_file = config_file or environ.get("BANGBAN_CONFIG") or None
    if config_file:
        path = Path(config_file)
        _merge(tree, _read_yaml(path), str(path), origin)

    for name, parts, value in _env_overrides(environ):
        # Strings as given (pydantic's lax mode turns "8081" into an int and "true" into a
        # bool); a value written as a YAML list or mapping is parsed, for list settings.
        parsed: Any = value
        if value.lstrip().startswith(("[", "{")):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                parsed = value
        _set_path(tree, parts, parsed)
        origin[parts] = f"environment variable {name}"

    for dotted, value in (overrides or {}).items():
        parts = tuple(dotted.split("."))
        _set_path(tree, parts, value)
        origin[parts] = f"command-line option --{parts[-1].replace('_', '-')}"

    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin, str(default_file))) from None


def _describe(exc: ValidationError, origin: dict[tuple, str], default_source: str) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        source = next(
            (origin[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origin),
            # an unknown section set by BANGBAN_NOPE__X: the origin is recorded one level deeper
            next((src for key, src in origin.items() if key[: len(loc)] == loc), default_source),
        )
        field = ".".join(loc) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling; see config/default.yaml for the names)"
        got = err.get("input")
        shown = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {got!r})"
        lines.append(f"  {source}: {field}: {msg}{shown}")
    return "\n".join(lines)
