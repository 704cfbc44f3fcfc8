"""`bangban eval`'s rules: reading question sets and scoring replies (no KB needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.dialog.bot import BotReply, Context
from core.dialog.models import AnswerMeta
from core.errors import ValidationFailed
from core.evaluation import (
    Case,
    dialog_correct,
    evaluate_dialog,
    evaluate_retrieval,
    format_report,
    group_of,
    load_cases,
)
from core.nlu.index import Hit


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- reading ----------------------------------------------------------------------------------


def test_tsv_with_comments_and_blank_lines(tmp_path):
    path = write(tmp_path, "set.tsv", (
        "# a header comment\n"
        "M03\t居住证续签\n"
        "\n"
        "  # an indented comment\n"
        "out_of_scope\t我要起诉房东\n"
        "M34-faq-01\t  个税清单怎么开  \n"
    ))
    cases = load_cases(path)
    assert [(c.expect, c.question) for c in cases] == [
        ("M03", "居住证续签"), ("out_of_scope", "我要起诉房东"), ("M34-faq-01", "个税清单怎么开")]
    assert [c.where for c in cases] == [f"{path}:2", f"{path}:5", f"{path}:6"]


def test_tsv_with_a_byte_order_mark_and_crlf(tmp_path):
    path = tmp_path / "excel.tsv"
    path.write_bytes("M03\t居住证续签\r\nhuman\t转人工\r\n".encode("utf-8-sig"))
    assert [(c.expect, c.question) for c in load_cases(path)] == [
        ("M03", "居住证续签"), ("human", "转人工")]


def test_jsonl(tmp_path):
    path = write(tmp_path, "set.jsonl", "\n".join([
        "# comment",
        json.dumps({"q": "居住证续签", "expect": "M03"}, ensure_ascii=False),
        "",
        json.dumps({"q": "护照怎么办", "expect": "unknown", "note": "extra keys are fine"},
                   ensure_ascii=False),
    ]))
    cases = load_cases(path)
    assert [(c.expect, c.question) for c in cases] == [("M03", "居住证续签"),
                                                       ("unknown", "护照怎么办")]
    assert cases[1].where == f"{path}:4"


def test_the_shipped_devset_loads():
    cases = load_cases(Path(__file__).resolve().parents[1] / "data" / "devset.tsv")
    assert len(cases) == 365
    assert {group_of(c.expect) for c in cases} == {"matter", "out_of_scope", "human", "unknown",
                                                   "entry"}


@pytest.mark.parametrize(("name", "text", "line"), [
    ("no-tab.tsv", "M03\t居住证续签\nM03 居住证续签\n", 2),
    ("empty-question.tsv", "# c\nM03\t居住证续签\nM03\t   \n", 3),
    ("empty-expect.tsv", "\t居住证续签\n", 1),
    ("bad-json.jsonl", '{"q": "居住证续签", "expect": "M03"}\n{"q": "签注", "expect": \n', 2),
    ("missing-key.jsonl", '{"q": "居住证续签"}\n', 1),
    ("not-an-object.jsonl", '\n["居住证续签", "M03"]\n', 2),
    ("empty-question.jsonl", '{"q": "", "expect": "M03"}\n', 1),
    ("null-question.jsonl", '{"q": null, "expect": "M03"}\n', 1),
])
def test_a_malformed_line_is_refused_naming_file_and_line(tmp_path, name, text, line):
    path = write(tmp_path, name, text)
    with pytest.raises(ValidationFailed) as err:
        load_cases(path)
    assert f"{path}:{line}:" in str(err.value)


def test_a_file_without_questions_is_refused(tmp_path):
    path = write(tmp_path, "empty.tsv", "# only comments\n\n")
    with pytest.raises(ValidationFailed, match="no questions"):
        load_cases(path)


# -- scoring ----------------------------------------------------------------------------------


def case(expect: str) -> Case:
    return Case("问题", expect, "set.tsv:1")


def answer(entry_id: str, matters: list[str]) -> BotReply:
    return BotReply("answer", "…", meta=AnswerMeta(entry_id=entry_id, matters=matters,
                                                   suggestions=["X-faq-09"]))


def clarify(suggestions: list[str], first_matters: list[str]) -> BotReply:
    return BotReply("clarify", "…", meta=AnswerMeta(entry_id=suggestions[0], matters=first_matters,
                                                    suggestions=suggestions))


@pytest.mark.parametrize(("expect", "reply", "correct"), [
    # a matter: an answer about it …
    ("M03", answer("M03-faq-01", ["M03"]), True),
    ("M13", answer("M14-guide-01", ["M14", "M13"]), True),
    ("M03", answer("M04-faq-01", ["M04"]), False),
    # … or a clarification whose FIRST suggestion is about it
    ("M03", clarify(["M03-faq-05", "M05-faq-04"], ["M03"]), True),
    ("M05", clarify(["M03-faq-05", "M05-faq-04"], ["M03"]), False),
    # anything else does not meet a matter
    ("M03", BotReply("fallback", "…", meta=AnswerMeta(suggestions=["M03-faq-01"])), False),
    ("M03", BotReply("handoff", "…", meta=AnswerMeta(matters=["M03"])), False),
    ("M03", BotReply("clarify", "…", meta=AnswerMeta(matters=["M03"])), False),
    # an entry id: that very entry, answered or offered first
    ("M06-faq-03", answer("M06-faq-03", ["M06"]), True),
    ("M06-faq-03", answer("M06-faq-02", ["M06"]), False),
    ("M06-faq-03", clarify(["M06-faq-03", "M10-faq-02"], ["M06"]), True),
    ("M06-faq-03", clarify(["M10-faq-02", "M06-faq-03"], ["M10"]), False),
    ("hotline-12329", answer("hotline-12329", []), True),
    # the special classes are met by the action alone
    ("out_of_scope", BotReply("out_of_scope", "…"), True),
    ("out_of_scope", answer("M17-faq-01", ["M17"]), False),
    ("out_of_scope", BotReply("fallback", "…"), False),
    ("human", BotReply("handoff", "…"), True),
    ("human", BotReply("fallback", "…"), False),
    ("unknown", BotReply("fallback", "…"), True),
    ("unknown", BotReply("clarify", "…", meta=AnswerMeta(suggestions=["M04-faq-01"])), False),
    ("unknown", answer("M01-faq-02", ["M01"]), False),
])
def test_dialog_scoring_rules(expect, reply, correct):
    assert dialog_correct(case(expect), reply) is correct


@pytest.mark.parametrize(("expect", "group"), [
    ("M03", "matter"), ("M135", "matter"), ("out_of_scope", "out_of_scope"), ("human", "human"),
    ("unknown", "unknown"), ("M06-faq-03", "entry"), ("hotline-12329", "entry"),
])
def test_groups(expect, group):
    assert group_of(expect) == group


class ScriptedBot:
    """Replies from a table; records the context each question arrived with."""

    def __init__(self, replies: dict[str, BotReply]) -> None:
        self.replies = replies
        self.contexts: list[Context] = []

    def respond(self, text: str, ctx: Context, payload: str | None = None) -> BotReply:
        self.contexts.append(ctx.model_copy())
        ctx.matter, ctx.suggestions = "M99", ["stale-choice"]  # what a real answer would leave
        return self.replies[text]


def test_evaluate_dialog_counts_classes_groups_and_misses():
    cases = [Case("居住证续签", "M03", "set.tsv:2"), Case("起诉房东", "out_of_scope", "set.tsv:3"),
             Case("护照", "unknown", "set.tsv:4"), Case("转人工", "human", "set.tsv:5")]
    bot = ScriptedBot({
        "居住证续签": answer("M03-faq-01", ["M03"]),
        "起诉房东": BotReply("out_of_scope", "…"),
        "护照": answer("M03-faq-03", ["M03"]),       # wrong: should have admitted it
        "转人工": BotReply("handoff", "…"),
    })
    report = evaluate_dialog(bot, cases)
    # each question is asked in a fresh conversation
    assert all(c.matter is None and c.suggestions == [] for c in bot.contexts)
    assert (report.total, report.correct) == (4, 3) and report.accuracy == 0.75
    data = report.as_dict()
    assert data["by_class"]["unknown"] == {"correct": 0, "total": 1, "accuracy": 0.0}
    assert data["by_group"]["matter"] == {"correct": 1, "total": 1, "accuracy": 1.0}
    assert data["hit@3"] is None
    [miss] = report.misses
    assert miss["where"] == "set.tsv:4" and miss["expect"] == "unknown"
    assert "M03-faq-03" in miss["got"]
    last = format_report(report).splitlines()[-1]
    assert last.startswith("overall") and "3/4" in last and "75.0%" in last


class ScriptedIndex:
    def __init__(self, ranked: dict[str, list[tuple[str, list[str]]]]) -> None:
        self.ranked = ranked

    def search_many(self, queries, top=5, boost=None):
        return [[Hit(eid, 1.0 - i / 10, q, i, ms) for i, (eid, ms) in
                 enumerate(self.ranked[q][:top])] for q in queries]


def test_evaluate_retrieval_scores_hit_at_1_and_hit_at_3():
    cases = [Case("a", "M03", "f:1"), Case("b", "M05", "f:2"), Case("c", "M06-faq-03", "f:3"),
             Case("d", "M10", "f:4")]
    index = ScriptedIndex({
        "a": [("M03-faq-01", ["M03"]), ("M04-faq-01", ["M04"])],                       # hit@1
        "b": [("M03-faq-05", ["M03"]), ("M09-faq-08", ["M09"]), ("M05-faq-04", ["M05"])],  # @3
        "c": [("M06-faq-02", ["M06"]), ("M06-faq-01", ["M06"]), ("M06-faq-04", ["M06"]),
              ("M06-faq-03", ["M06"])],                                                # 4th: no
        "d": [],
    })
    report = evaluate_retrieval(index, cases, batch=3)
    assert (report.total, report.correct, report.hit3) == (4, 1, 2)
    assert report.as_dict()["hit@3"] == 0.5
    text = format_report(report)
    assert any(line.startswith("hit@3") and "2/4" in line for line in text.splitlines())
    assert text.splitlines()[-1].startswith("overall")
    assert {m["where"] for m in report.misses} == {"f:2", "f:3", "f:4"}
