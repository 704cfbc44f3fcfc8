"""Scoring the bot on a labelled question set (`bangban eval`).

A set is JSONL (``{"q": …, "expect": …}``) or TSV (``expect<TAB>question``; ``#`` starts a
comment). ``expect`` is a matter code (M01…), ``out_of_scope``, ``human``, ``unknown`` or a KB
entry id. In dialog mode each question is put to the full bot policy in a fresh conversation:

- a matter code is met by an answer about that matter, or by a clarification whose first
  suggestion is about it (the citizen is one tap from the answer);
- an entry id likewise, by that entry;
- ``out_of_scope`` by the out-of-scope reply, ``human`` by a handoff, ``unknown`` by a fallback.

Retrieval mode ranks the KB for each question (no policy): hit@1 / hit@3 of the expected entry
or matter.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .dialog.bot import Bot, BotReply, Context
from .errors import ValidationFailed
from .nlu.index import KbIndex

MATTER = re.compile(r"^M\d{2,3}$")
SPECIAL = {"out_of_scope": "out_of_scope", "human": "handoff", "unknown": "fallback"}


@dataclass(frozen=True, slots=True)
class Case:
    question: str
    expect: str
    where: str


def load_cases(path: Path) -> list[Case]:
    cases = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:  # Excel on a Chinese Windows saves GBK
        raise ValidationFailed(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                               "save it as UTF-8") from None
    jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{n}"
        if jsonl:
            try:
                obj = json.loads(line)
                q, expect = obj["q"], obj["expect"]
                if not (isinstance(q, str) and isinstance(expect, str)):
                    raise TypeError("q and expect must be strings")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValidationFailed(f"{where}: expected {{\"q\": …, \"expect\": …}} ({exc})") from None
        else:
            expect, sep, q = line.partition("\t")
            if not sep:
                raise ValidationFailed(f"{where}: expected 'expect<TAB>question'")
        if not q.strip() or not expect.strip():
            raise ValidationFailed(f"{where}: empty question or expectation")
        cases.append(Case(q.strip(), expect.strip(), where))
    if not cases:
        raise ValidationFailed(f"{path}: no questions in the file")
    return cases


def unknown_expectations(cases: Sequence[Case], entry_ids: set[str],
                         matter_codes: set[str]) -> list[Case]:
    """Cases whose ``expect`` names nothing that can be right: no class, no matter code of
    config/matters.yaml, no id of the KB scored against (a typo such as M99 or "unkown")."""
    return [c for c in cases if c.expect not in SPECIAL and c.expect not in matter_codes
            and c.expect not in entry_ids]


def group_of(expect: str) -> str:
    if MATTER.match(expect):
        return "matter"
    return expect if expect in SPECIAL else "entry"


def dialog_correct(case: Case, reply: BotReply) -> bool:
    expect = case.expect
    if expect in SPECIAL:
        return reply.action == SPECIAL[expect]
    if reply.action == "answer":
        target = reply.meta.entry_id
        matters = reply.meta.matters
    elif reply.action == "clarify" and reply.meta.suggestions:
        target = reply.meta.suggestions[0]
        matters = reply.meta.matters  # the first suggestion's
    else:
        return False
    return expect in matters if MATTER.match(expect) else target == expect


@dataclass
class Report:
    mode: str
    total: int = 0
    correct: int = 0
    hit3: int = 0
    seconds: float = 0.0
    by_class: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    by_group: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    misses: list[dict] = field(default_factory=list)

    def add(self, case: Case, ok: bool, ok3: bool, got: str) -> None:
        self.total += 1
        self.correct += ok
        self.hit3 += ok3
        for table, key in ((self.by_class, case.expect), (self.by_group, group_of(case.expect))):
            table[key][0] += ok
            table[key][1] += 1
        if not ok:
            self.misses.append({"q": case.question, "expect": case.expect, "got": got,
                                "where": case.where})

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def as_dict(self) -> dict:
        return {
            "mode": self.mode, "total": self.total, "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "hit@3": round(self.hit3 / self.total, 4) if self.mode == "retrieval" else None,
            "queries_per_s": round(self.total / self.seconds, 1) if self.seconds else None,
            "by_class": {k: {"correct": c, "total": t, "accuracy": round(c / t, 4)}
                         for k, (c, t) in sorted(self.by_class.items())},
            "by_group": {k: {"correct": c, "total": t, "accuracy": round(c / t, 4)}
                         for k, (c, t) in sorted(self.by_group.items())},
            "misses": self.misses,
        }


def evaluate_dialog(bot: Bot, cases: Sequence[Case]) -> Report:
    report = Report("dialog")
    start = time.perf_counter()
    for case in cases:
        reply = bot.respond(case.question, Context())
        ok = dialog_correct(case, reply)
        got = reply.action + (f" {reply.meta.entry_id} {','.join(reply.meta.matters)}"
                              if reply.meta.entry_id else "")
        report.add(case, ok, ok, got)
    report.seconds = time.perf_counter() - start
    return report


def evaluate_retrieval(index: KbIndex, cases: Sequence[Case], batch: int = 512) -> Report:
    report = Report("retrieval")
    start = time.perf_counter()
    results = []
    for i in range(0, len(cases), batch):
        results.extend(index.search_many([c.question for c in cases[i : i + batch]], top=3))
    report.seconds = time.perf_counter() - start
    for case, hits in zip(cases, results, strict=True):
        def met(h) -> bool:
            return case.expect in h.matters if MATTER.match(case.expect) else h.entry_id == case.expect
        ok = bool(hits) and met(hits[0])
        report.add(case, ok, any(met(h) for h in hits), hits[0].entry_id if hits else "-")
    return report


def format_report(report: Report) -> str:
    lines = []
    for key, (c, t) in sorted(report.by_class.items()):
        lines.append(f"{key:<24} {c:>5}/{t:<5} {c / t:6.1%}")
    lines.append("")
    for key, (c, t) in sorted(report.by_group.items()):
        lines.append(f"[{key}]{'':<{22 - len(key)}} {c:>5}/{t:<5} {c / t:6.1%}")
    if report.mode == "retrieval":
        lines.append(f"hit@3{'':<19} {report.hit3:>5}/{report.total:<5} "
                     f"{report.hit3 / report.total:6.1%}")
    if report.seconds:
        lines.append(f"speed{'':<19} {report.total / report.seconds:,.0f} questions/s")
    lines.append(f"overall{'':<17} {report.correct:>5}/{report.total:<5} {report.accuracy:6.1%}")
    return "\n".join(lines)
