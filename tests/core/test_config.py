"""Configuration: defaults, a config file, environment variables, and errors an operator can act on.

Every call passes ``environ`` explicitly, so the developer's own BANGBAN_* variables never leak in
and os.environ is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from core.config import load_settings
from core.errors import ConfigError
from core.paths import config_dir


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def config_error(*args, **kwargs) -> str:
    """The message of the ConfigError that load_settings(*args, **kwargs) raises."""
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        load_settings(*args, **kwargs)
    message = str(info.value)
    # one readable message, not a pydantic dump (errors.pydantic.dev links, "For further …")
    assert "Traceback" not in message and "pydantic" not in message
    return message


# -- sources and precedence -------------------------------------------------------------------


def test_shipped_defaults_load():
    settings = load_settings(environ={})
    shipped = yaml.safe_load((config_dir() / "default.yaml").read_text(encoding="utf-8"))
    assert settings.server.port == shipped["server"]["port"] == 8080
    assert settings.server.host == "127.0.0.1"
    assert settings.data_dir == Path("var")
    # nothing configured: the embedded SQLite file under the data dir, and the embedded Redis
    assert settings.database_url == f"sqlite+aiosqlite:///{Path('var').resolve() / 'bangban.db'}"
    assert settings.embedded_redis
    assert settings.worker.queues == ["high", "default", "low"]
    assert settings.logging.mask_personal_data is True


def test_config_file_overrides_defaults_and_keeps_the_rest(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  port: 9001\nlogging:\n  level: debug\n")
    settings = load_settings(path, environ={})
    assert settings.server.port == 9001
    assert settings.logging.level == "DEBUG"
    assert settings.server.host == "127.0.0.1"  # untouched sibling keeps its default
    assert settings.server.max_body_bytes == 1048576


def test_config_file_named_by_bangban_config(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  port: 9002\n")
    assert load_settings(environ={"BANGBAN_CONFIG": str(path)}).server.port == 9002


def test_environment_overrides_the_file(tmp_path):
    path = write(tmp_path / "site.yaml", (
        "data_dir: /srv/from-file\n"
        "server:\n  port: 9001\n"
        "database:\n  url: sqlite:////srv/from-file.db\n"
        "redis:\n  url: redis://file-host:6379/0\n"
    ))
    settings = load_settings(path, environ={
        "BANGBAN_DATABASE_URL": "postgresql+asyncpg://bb@db-host:5432/bangban",
        "BANGBAN_REDIS_URL": "redis://env-host:6380/2",
        "BANGBAN_DATA_DIR": str(tmp_path / "data"),
        "BANGBAN_SERVER__PORT": "9100",
    })
    assert settings.database_url == "postgresql+asyncpg://bb@db-host:5432/bangban"
    assert settings.redis.url == "redis://env-host:6380/2"
    assert not settings.embedded_redis
    assert settings.data_dir == tmp_path / "data"
    assert settings.server.port == 9100


def test_short_port_alias_and_list_values_from_the_environment():
    settings = load_settings(environ={
        "BANGBAN_PORT": "8443", "BANGBAN_WORKER__QUEUES": "[urgent, default]",
    })
    assert settings.server.port == 8443
    assert settings.worker.queues == ["urgent", "default"]


def test_unrelated_and_test_variables_are_not_settings():
    settings = load_settings(environ={
        "BANGBAN_TEST_DATABASE_URL": "mysql://not/a/setting",
        "BANGBAN_TEST_REDIS_URL": "nonsense",
        "PATH": "/usr/bin",
    })
    assert settings.database.url is None and settings.embedded_redis


def test_data_dir_moves_the_embedded_database(tmp_path):
    settings = load_settings(environ={"BANGBAN_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'bangban.db'}"


@pytest.mark.parametrize(("given", "expected"), [
    ("postgresql://bb:pw@db:5432/bangban", "postgresql+asyncpg://bb:pw@db:5432/bangban"),
    ("postgres://bb@db/bangban", "postgresql+asyncpg://bb@db/bangban"),
    ("postgresql+asyncpg://bb@db/bangban", "postgresql+asyncpg://bb@db/bangban"),
    ("sqlite:////srv/bangban.db", "sqlite+aiosqlite:////srv/bangban.db"),
])
def test_plain_database_schemes_get_the_async_driver(given, expected):
    assert load_settings(environ={"BANGBAN_DATABASE_URL": given}).database_url == expected


# -- errors -----------------------------------------------------------------------------------


def test_bad_port_in_a_file_names_file_field_and_expectation(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  port: 70000\n")
    message = config_error(path)
    assert str(path) in message
    assert "server.port" in message
    assert "65535" in message and "70000" in message


def test_non_numeric_port_in_a_file_says_an_integer_is_expected(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  port: eighty\n")
    message = config_error(path)
    assert str(path) in message and "server.port" in message and "integer" in message


def test_bad_value_in_the_environment_names_the_variable(tmp_path):
    # the file is fine; the environment variable is what the operator must fix
    path = write(tmp_path / "site.yaml", "server:\n  port: 9001\n")
    message = config_error(path, environ={"BANGBAN_SERVER__PORT": "notaport"})
    assert "BANGBAN_SERVER__PORT" in message and "server.port" in message
    assert "integer" in message and "notaport" in message
    assert str(path) not in message


def test_bad_alias_value_names_the_alias():
    message = config_error(environ={"BANGBAN_LOG_LEVEL": "loud"})
    assert "BANGBAN_LOG_LEVEL" in message and "logging.level" in message
    assert "DEBUG" in message  # says what would have been accepted


def test_unknown_key_in_a_file_is_named(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  prot: 9001\n")
    message = config_error(path)
    assert str(path) in message and "server.prot" in message and "unknown setting" in message


def test_unknown_section_in_the_environment_names_the_variable():
    message = config_error(environ={"BANGBAN_SERVR__PORT": "9001"})
    assert "servr" in message and "unknown setting" in message
    assert "BANGBAN_SERVR__PORT" in message
    assert "default.yaml:" not in message  # the shipped file is not what is wrong


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  port: 9001\n  host: [unclosed\n")
    message = config_error(path)
    assert f"{path}:4" in message and "not valid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path / "site.yaml", "- server\n- port\n")
    message = config_error(path)
    assert str(path) in message and "mapping" in message


def test_missing_config_file_is_named(tmp_path):
    path = tmp_path / "missing.yaml"
    message = config_error(path)
    assert str(path) in message and "cannot read" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_config_file_is_named(tmp_path):
    path = write(tmp_path / "secret.yaml", "server:\n  port: 9001\n")
    path.chmod(0)
    try:
        message = config_error(path)
    finally:
        path.chmod(0o600)
    assert str(path) in message and "cannot read" in message


def test_config_file_not_in_utf8_is_named(tmp_path):
    # a file saved as GBK by a Chinese-locale editor
    path = tmp_path / "site.yaml"
    path.write_bytes("server:\n  host: 上海\n".encode("gbk"))
    message = config_error(path)
    assert str(path) in message and "UTF-8" in message


def test_a_directory_given_as_config_file_is_named(tmp_path):
    message = config_error(tmp_path)
    assert str(tmp_path) in message and "cannot read" in message


@pytest.mark.parametrize("url", ["mysql://root@db/bangban", "redis://db:6379/0", "bangban.db"])
def test_bad_database_url_scheme_is_named(url):
    message = config_error(environ={"BANGBAN_DATABASE_URL": url})
    assert "BANGBAN_DATABASE_URL" in message and "database.url" in message
    assert "postgresql://" in message and url in message


def test_bad_redis_url_scheme_is_named(tmp_path):
    path = write(tmp_path / "site.yaml", "redis:\n  url: http://cache:6379\n")
    message = config_error(path)
    assert str(path) in message and "redis.url" in message and "redis://" in message


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path / "site.yaml", "server:\n  port: 0\n  prot: 1\n")
    message = config_error(path, environ={"BANGBAN_LOG_LEVEL": "loud"})
    assert "server.port" in message and "server.prot" in message and "logging.level" in message
