"""The ``bangban`` command line, through the installed console script, as operators use it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import yaml
from alembic.script import ScriptDirectory

from core.db.migrate import alembic_config
from core.paths import config_dir
from tests.core.kb.test_models import valid_record

from .conftest import Store, ok, output, run_cli

#: the commands the operator documentation names; the test covers whatever else is registered too
DOCUMENTED = {
    "serve", "worker", "db", "db upgrade", "db current", "kb", "kb import", "kb export",
    "kb validate", "kb history",
}


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand registered on the real click tree, the root included."""
    from core.cli import cli

    def walk(group: click.Group, prefix: tuple[str, ...]):
        yield prefix
        for name, command in sorted(group.commands.items()):
            if isinstance(command, click.Group):
                yield from walk(command, (*prefix, name))
            else:
                yield (*prefix, name)

    return list(walk(cli, ()))


COMMANDS = _command_paths()


def hotline(entry_id: str | None, unit_name: str, **fields: str) -> dict:
    """A valid 热线电话 record (the smallest entry type); ``fields`` override."""
    record = {
        "id": entry_id, "type": "hotline", "region": "310000", "phone": "12345",
        "unit_code": "hotline-12345", "unit_name": unit_name,
        "published_at": "2024-01-01 09:00:00", "published_by": "hotline-12345",
        "updated_at": "2024-01-01 09:00:00", "updated_by": "hotline-12345", "valid": "1",
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not None}


def write_yaml(path: Path, records: list[dict]) -> Path:
    path.write_text(yaml.safe_dump(records, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def entry_line(path: Path, index: int) -> int:
    """The 1-based line where the ``index``-th (1-based) entry of a YAML list starts."""
    starts = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("- ")]
    return starts[index - 1]


@pytest.fixture
def mixed_file(tmp_path: Path) -> Path:
    """Three records; the second has a region code that is not in the code table."""
    return write_yaml(tmp_path / "mixed.yaml", [
        hotline("test-hotline-a", "测试热线甲"),
        hotline("test-hotline-bad", "测试热线乙", region="999999"),
        hotline("test-hotline-c", "测试热线丙"),
    ])


# -- help -------------------------------------------------------------------------------------


def test_every_documented_command_exists():
    assert DOCUMENTED <= {" ".join(c) for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "bangban")
def test_help_works_on_every_command(command, tmp_path):
    result = ok(run_cli(*command, "--help", cwd=tmp_path))
    assert f"Usage: bangban {' '.join(command)}".rstrip() in result.stdout, output(result)
    # --help must not create anything (no data dir, no database)
    assert list(tmp_path.iterdir()) == []


# -- db ---------------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_and_prints_the_revision(store: Store):
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert "empty" in ok(store("db", "current")).stdout
    assert f"database at revision {head}" in ok(store("db", "upgrade")).stdout
    assert ok(store("db", "current")).stdout.strip() == head
    # a second upgrade is a no-op that still reports where the database is
    assert f"database at revision {head}" in ok(store("db", "upgrade")).stdout


# -- validate and import ----------------------------------------------------------------------


def test_validate_reports_file_line_field_and_reason(mixed_file: Path, tmp_path: Path):
    result = run_cli("kb", "validate", mixed_file, cwd=tmp_path)
    assert result.returncode == 1, output(result)
    line = entry_line(mixed_file, 2)
    problem = re.search(rf"{re.escape(str(mixed_file))}:line {line}\b.*: region: (.+)",
                        result.stderr)
    assert problem, output(result)
    assert "999999" in problem.group(1) and "region" in problem.group(1)
    assert "3 records, 1 invalid" in result.stdout
    assert result.stderr.count(str(mixed_file)) == 1  # only the bad record is reported


def test_validate_accepts_a_good_file(tmp_path: Path):
    good = write_yaml(tmp_path / "good.yaml", [hotline("test-hotline-a", "测试热线甲")])
    assert "1 records, 0 invalid" in ok(run_cli("kb", "validate", good, cwd=tmp_path)).stdout


def test_validate_warns_of_a_question_two_entries_claim(tmp_path: Path):
    # the seed's M32 guide once had its FAQ's alias 变更财务负责人 too: asked in those words,
    # the bot picked one of them by chance
    text = (config_dir() / "kb" / "M32.yaml").read_text(encoding="utf-8")
    doubled = tmp_path / "M32.yaml"
    doubled.write_text(text.replace("aliases: [", "aliases: [变更财务负责人, ", 1), encoding="utf-8")
    result = ok(run_cli("kb", "validate", doubled, cwd=tmp_path))  # a warning, not a refusal
    assert ", 0 invalid, 1 warnings" in result.stdout
    assert re.search(r"warning: .*M32\.yaml:line \d+.*'变更财务负责人' is also a question of "
                     r"M32-guide-01", result.stderr), output(result)
    assert "warning" not in ok(run_cli("kb", "validate", config_dir() / "kb" / "M32.yaml",
                                       cwd=tmp_path)).stderr


def test_import_with_a_bad_record_imports_nothing(store: Store, mixed_file: Path):
    result = store("kb", "import", mixed_file)
    assert result.returncode == 1, output(result)
    assert "Traceback" not in result.stderr
    assert f"{mixed_file}:line {entry_line(mixed_file, 2)}" in result.stderr
    assert "region" in result.stderr and "nothing was imported" in result.stderr
    # nothing at all: on the embedded defaults not even a database, which export says
    exported = store("kb", "export", "-", "--format", "jsonl")
    assert exported.stdout == "", output(exported)
    assert exported.returncode == 0 or "no database in" in exported.stderr, output(exported)


def test_skip_invalid_imports_the_valid_records(store: Store, mixed_file: Path):
    result = ok(store("kb", "import", mixed_file, "--skip-invalid"))
    assert "imported 2 records: 2 created" in result.stdout
    assert f"{mixed_file}:line {entry_line(mixed_file, 2)}" in result.stderr  # still reported
    assert store.ids() == ["test-hotline-a", "test-hotline-c"]
    # again: the two valid records now clash with what is stored, so nothing is imported
    again = ok(store("kb", "import", mixed_file, "--skip-invalid"))
    assert "imported 0 records" in again.stdout and "3 skipped" in again.stdout, output(again)
    assert "already in the KB" in again.stderr
    assert store.ids() == ["test-hotline-a", "test-hotline-c"]


def test_skip_invalid_counts_records_not_problems(store: Store, tmp_path: Path):
    # one valid record, and two invalid ones with 1 and 5 problems: 2 records were skipped
    path = write_yaml(tmp_path / "bad.yaml", [
        hotline("qa3-good", "测试热线甲"),
        hotline("qa3-bad-2", "测试热线乙", region="999999"),
        hotline("qa3-bad-3", "测试热线丙", region="999999", valid="7", published_by="nobody",
                updated_by="nobody", updated_at="yesterday"),
    ])
    result = ok(store("kb", "import", path, "--skip-invalid"))
    assert "skipped 2 invalid or conflicting records" in result.stderr, output(result)
    assert "imported 1 records: 1 created, 0 updated, 0 unchanged, 2 skipped" in result.stdout
    assert result.stderr.count(str(path)) == 6  # every problem is still listed
    validated = run_cli("kb", "validate", path, cwd=tmp_path)
    assert "3 records, 2 invalid" in validated.stdout, output(validated)


def faq(entry_id: str, question: str, **fields: object) -> dict:
    return valid_record("faq", id=entry_id, question=question, **fields)


def test_a_question_already_in_the_kb_under_another_id_is_a_warning(store: Store,
                                                                     tmp_path: Path):
    stored = write_yaml(tmp_path / "kb.yaml", [faq("M03-faq-03", "在随申办上怎么办理居住证签注？")])
    ok(store("kb", "import", stored))
    # an entry imported again with --replace is not its own duplicate
    again = ok(store("kb", "import", stored, "--replace"))
    assert "warning" not in again.stderr, output(again)
    dup = write_yaml(tmp_path / "dup.yaml", [faq("QA3-bad-3", "在随申办上怎么办理居住证签注?")])
    warning = re.compile(r"warning: .*dup\.yaml:line 1 \(entry 1\): title: '在随申办上怎么办理居住证签注\?' "
                         r"is also a question of M03-faq-03 in the KB")
    checked = ok(store("kb", "validate", dup))  # the KB of --data-dir is checked too
    assert warning.search(checked.stderr) and "1 warnings" in checked.stdout, output(checked)
    result = ok(store("kb", "import", dup))  # a warning, not a refusal
    assert warning.search(result.stderr) and "1 created" in result.stdout, output(result)
    # without a KB only the files are compared, and the command says so
    alone = ok(run_cli("kb", "validate", dup, cwd=tmp_path))
    assert "warning" not in alone.stderr and "checked within these files only" in alone.stderr


def test_links_to_entries_that_exist_nowhere_are_warnings(store: Store, tmp_path: Path):
    ok(store("kb", "import", write_yaml(tmp_path / "kb.yaml", [
        valid_record("policy_interpretation", id="policy-known")])))
    rel = write_yaml(tmp_path / "rel.yaml", [faq(
        "rel-faq", "关联测试？", related_policies=["NO-SUCH-POLICY", "<script>", "policy-known"],
        related_articles=["NO-SUCH-ARTICLE"])])
    result = ok(store("kb", "validate", rel))
    assert "1 records, 0 invalid, 3 warnings" in result.stdout, output(result)
    for field, target in (("related_policies", "NO-SUCH-POLICY"),
                          ("related_policies", "<script>"),
                          ("related_articles", "NO-SUCH-ARTICLE")):
        assert (f"rel.yaml:line 1 (entry 1): {field}: '{target}' is not the id of an entry in "
                "these files or the KB") in result.stderr, output(result)
    imported = ok(store("kb", "import", rel))
    assert imported.stderr.count("is not the id of an entry") == 3, output(imported)
    # without a KB the link to policy-known cannot be found either, and the warning says where
    # it looked
    alone = ok(run_cli("kb", "validate", rel, cwd=tmp_path))
    assert "'policy-known' is not the id of an entry in these files" in alone.stderr


def test_export_of_an_unknown_matter_is_an_error_not_an_empty_list(store: Store, tmp_path):
    ok(store("kb", "import", write_yaml(tmp_path / "kb.yaml", [
        faq("a", "签注？", related_matters=["M03"])])))
    result = store("kb", "export", "--matter", "M99", "-")
    assert result.returncode == 2 and result.stdout == "", output(result)
    assert "M99" in result.stderr and "not a known matter" in result.stderr
    assert "Traceback" not in result.stderr
    assert '"a"' in ok(store("kb", "export", "--matter", "M03", "--format", "jsonl", "-")).stdout


def test_ids_in_the_file_are_kept_and_missing_ones_generated(store: Store, tmp_path: Path):
    path = write_yaml(tmp_path / "ids.yaml", [
        hotline("my-own-id.1", "测试热线甲"), hotline(None, "测试热线乙"),
    ])
    ok(store("kb", "import", path))
    by_name = {json.loads(line)["unit_name"]: json.loads(line)["id"]
               for line in store.export().splitlines()}
    assert by_name["测试热线甲"] == "my-own-id.1"
    assert re.fullmatch(r"hotline-[0-9a-f]+", by_name["测试热线乙"]), by_name


def test_reimport_needs_replace_and_keeps_revisions(store: Store, tmp_path: Path):
    path = write_yaml(tmp_path / "kb.yaml", [hotline("test-hotline-a", "测试热线甲")])
    ok(store("kb", "import", path))

    refused = store("kb", "import", path)
    assert refused.returncode == 1, output(refused)
    assert "test-hotline-a" in refused.stderr and "--replace" in refused.stderr

    # the same content again with --replace changes nothing and adds no revision
    assert "1 unchanged" in ok(store("kb", "import", path, "--replace")).stdout
    history = ok(store("kb", "history", "test-hotline-a")).stdout
    assert history.splitlines()[0].startswith("v1") and len(history.splitlines()) == 1

    write_yaml(path, [hotline("test-hotline-a", "测试热线甲", phone="021-12345678")])
    refused = store("kb", "import", path)
    assert refused.returncode == 1, output(refused)
    assert json.loads(store.export())["phone"] == "12345"  # refused means untouched

    assert "1 updated" in ok(store("kb", "import", path, "--replace", "--actor", "tester")).stdout
    assert json.loads(store.export())["phone"] == "021-12345678"
    lines = ok(store("kb", "history", "test-hotline-a")).stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["v1", "v2"]
    assert "update" in lines[1] and "tester" in lines[1] and "phone" in lines[1]
    assert lines[1].split()[2].endswith("+08:00")  # Beijing time, said so, as the console shows


def test_history_of_an_unknown_entry_is_an_error(store: Store):
    ok(store("db", "upgrade"))
    result = store("kb", "history", "no-such-entry")
    assert result.returncode == 1, output(result)
    assert "no-such-entry" in result.stderr and "Traceback" not in result.stderr


def test_on_a_fresh_checkout_ask_and_eval_set_up_the_default_data_dir(tmp_path):
    # no --data-dir, nothing in the environment: ./var is set up as serve's first run does,
    # seed included, so the README's "Trying the bot" works before the service ever ran
    result = run_cli("ask", "--json", "居住证签注要什么材料", cwd=tmp_path)
    assert result.returncode == 0, output(result)
    assert json.loads(result.stdout)["matters"] == ["M03"]
    assert "first run" in result.stderr and (tmp_path / "var" / "bangban.db").is_file()
    again = run_cli("ask", "--json", "居住证签注要什么材料", cwd=tmp_path)
    assert "first run" not in again.stderr  # once


def test_reading_commands_refuse_a_data_dir_without_a_database(store: Store, tmp_path):
    # a mistyped --data-dir: said so, and nothing is created there
    typo = tmp_path / "typo"
    for args in (("ask", "你好"), ("kb", "search", "居住证"), ("kb", "history", "x"),
                 ("kb", "export", "-"), ("figures",)):
        if store.env.get("BANGBAN_DATABASE_URL"):  # an external database: the data dir is moot
            break
        result = run_cli(*args, "--data-dir", typo, env=store.env, cwd=store.cwd)
        assert result.returncode == 1 and "no database in" in result.stderr, (args, output(result))
        assert "Traceback" not in result.stderr
    assert not typo.exists()


# -- export / import round trip ---------------------------------------------------------------


def test_export_import_export_is_byte_identical_in_every_format(make_store, tmp_path: Path):
    source = make_store()
    ok(source("kb", "import", config_dir() / "kb"))  # the seed: every type, rich text, lists
    differ = []
    for fmt in ("yaml", "json", "jsonl", "csv"):
        first, second = tmp_path / f"first.{fmt}", tmp_path / f"second.{fmt}"
        ok(source("kb", "export", first))
        target = make_store()  # a fresh data dir (a fresh database on PostgreSQL runs)
        ok(target("kb", "import", first))
        ok(target("kb", "export", second))
        if second.read_bytes() != first.read_bytes():
            differ.append(fmt)
    assert differ == []
    exported = (tmp_path / "second.jsonl").read_text().splitlines()
    assert len(exported) > 200  # the whole seed went through, not an empty file


# -- configuration errors ---------------------------------------------------------------------


def test_bad_port_in_the_environment_exits_2_naming_variable_and_field(store: Store):
    store.env["BANGBAN_SERVER__PORT"] = "notaport"
    result = run_cli("serve", "--data-dir", store.data_dir, env=store.env, cwd=store.cwd,
                     timeout=60)
    assert result.returncode == 2, output(result)
    assert "BANGBAN_SERVER__PORT" in result.stderr and "server.port" in result.stderr
    assert "integer" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("server:\n  port: 70000\n", ["server.port", "65535"]),
    ("server:\n  prot: 8081\n", ["server.prot", "unknown setting"]),
    ("database:\n  url: mysql://root@localhost/bangban\n", ["database.url", "postgresql://"]),
    ("server:\n  port: 8081\n  host: [oops\n", ["{path}:4", "not valid YAML"]),
], ids=["bad-port", "unknown-key", "bad-database-url", "yaml-syntax"])
def test_bad_config_file_exits_2_naming_file_and_field(tmp_path: Path, text, expected):
    path = tmp_path / "bangban.yaml"
    path.write_text(text)
    # no BANGBAN_* variables, so the file is the only thing that can be wrong
    result = run_cli("kb", "export", "-", "--config", path, "--data-dir", tmp_path / "data",
                     cwd=tmp_path)
    assert result.returncode == 2, output(result)
    assert str(path) in result.stderr, output(result)
    for part in expected:
        assert part.format(path=path) in result.stderr, output(result)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
