"""Retrieval quality and speed of our KbIndex, side by side with two common baselines.

    python bench/retrieval.py [--sets lcqmc,afqmc,dev] [--limit N] [--repeat R] [--data DIR]
    python bench/retrieval.py --export DIR     # the public sets as files for kb import / eval

Sets:

- ``lcqmc``, ``afqmc``: public question-matching dev splits used as paraphrase retrieval (protocol
  in ``/work/shared/benchmarks/README.md``): the KB holds sentence1 of every positive pair plus
  every sentence of the negative pairs (identical sentences are one KB entry); each sentence2 of
  a positive pair is a query; a hit is its sentence1's entry ranked first (hit@1) or in the top 3.
- ``dev``: ``tests/data/devset.tsv`` against the shipped KB ``config/kb/``: the matter-coded lines
  (M01…) and the entry-id lines; a hit is the expected matter among the top entry's matters, or the
  expected entry id (the same rule as ``bangban eval --mode retrieval``).

Methods:

- ours: ``core.nlu.index.KbIndex`` (BM25 over jieba words + character 1–2-grams, coverage
  features, max over an entry's rows). On the public sets each sentence becomes an FAQ record
  validated by ``entry_adapter`` (question = answer = the sentence, so the answer row adds no
  information), with ``Analyzer(synonyms={})`` so our government synonyms stay out of open-domain
  text, and also with the default synonyms to show what they do there. "as served" is what
  ``bangban eval --mode retrieval`` runs on an imported set: ``core.knowledge``'s analyzer and,
  for a KB without aliases, the re-ranker (``core.nlu.rerank``, fitted by ``bench/fit_rerank.py``
  on these very dev sets: its honest figure is fit_rerank's cross-validated one).
- jieba + rank-bm25: ``BM25Okapi`` over ``jieba.lcut`` tokens, ``get_scores`` per query, argsort.
- char TF-IDF: sklearn ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3))``, cosine as a
  sparse dot product of the L2-normalised vectors.

Query rates are for the query phase only (analysis of the query text included, index build
excluded); "batch" is 512 queries per call, "1-by-1" one call per query. Build time is the index
construction from already-parsed records. With ``--repeat R`` each query phase runs R times and
the median rate is printed (quality figures are deterministic).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=SyntaxWarning)  # jieba's regexes on Python 3.12+

import jieba  # noqa: E402
import numpy as np  # noqa: E402
from rank_bm25 import BM25Okapi  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402

from core.kb.models import entry_adapter  # noqa: E402
from core.knowledge import kb_analyzer, rerank_model_for  # noqa: E402
from core.nlu.index import KbIndex, entry_rows  # noqa: E402
from core.nlu.rerank import RerankModel  # noqa: E402
from core.nlu.text import Analyzer, normalise  # noqa: E402

jieba.setLogLevel(logging.WARNING)
BATCH = 512
TOP = 3
DEFAULT_DATA = REPO.parent / "shared" / "benchmarks"
PUBLIC_FILES = {"lcqmc": "lcqmc-dev.tsv", "afqmc": "afqmc-dev.tsv"}

# -- data -------------------------------------------------------------------------------------


@dataclass
class Task:
    """A retrieval task: entries (each with one or more searchable rows), queries, judge."""

    name: str
    entry_ids: list[str]
    rows: list[tuple[int, str, float]]         # (entry position, text, weight) — for baselines
    queries: list[str]
    expect: list[str]
    judge: Callable[[str, str], bool]          # (expected, entry id) → hit?
    kb_entries: list                           # validated KbEntryBase records, for ours
    note: str = ""


def load_pairs(path: Path) -> list[tuple[str, str, str]]:
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise SystemExit(f"{path}:{n}: expected sentence1<TAB>sentence2<TAB>label")
        pairs.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    return pairs


def faq_record(eid: str, text: str) -> dict:
    return {"id": eid, "type": "faq", "question": text, "answer": text, "region": "310000",
            "published_at": "2025-01-01 00:00:00", "published_by": "bigdata",
            "updated_at": "2025-01-01 00:00:00", "updated_by": "bigdata", "valid": "1"}


def paraphrase_task(name: str, path: Path, limit: int | None) -> Task:
    pairs = load_pairs(path)
    ids: dict[str, str] = {}  # sentence → entry id; identical sentences are one entry

    def entry(text: str) -> str:
        if text not in ids:
            ids[text] = f"s{len(ids):05d}"
        return ids[text]

    queries, expect = [], []
    for s1, s2, label in pairs:
        if label == "1":
            expect.append(entry(s1))
            queries.append(s2)
        else:
            entry(s1)
            entry(s2)
    if limit:
        queries, expect = queries[:limit], expect[:limit]
    texts = list(ids)
    records = [entry_adapter.validate_python(faq_record(ids[t], t)) for t in texts]
    rows = [(i, t, 1.0) for i, t in enumerate(texts)]
    return Task(name, [ids[t] for t in texts], rows, queries, expect,
                lambda want, got: want == got, records,
                f"{len(pairs):,} pairs -> KB {len(texts):,} distinct sentences, "
                f"{len(queries):,} queries")


def dev_task(limit: int | None, *, bodies: bool) -> Task:
    from core.evaluation import MATTER, load_cases
    from core.kb.importer import check_files
    from core.knowledge import answerable

    checked = check_files([REPO / "config" / "kb"])
    if checked.problems:
        raise SystemExit("config/kb does not validate: " + "; ".join(map(str, checked.problems[:3])))
    entries = answerable(checked.entries)
    by_id = {e.id: e for e in entries}
    cases = [c for c in load_cases(REPO / "tests" / "data" / "devset.tsv")
             if MATTER.match(c.expect) or c.expect in by_id]
    if limit:
        cases = cases[:limit]
    rows = []
    for i, e in enumerate(entries):
        for text, is_body in entry_rows(e):
            if bodies or not is_body:
                rows.append((i, text, 0.75 if is_body else 1.0))

    def judge(want: str, got: str) -> bool:
        return want in by_id[got].matters if MATTER.match(want) else got == want

    return Task("dev", [e.id for e in entries], rows, [c.question for c in cases],
                [c.expect for c in cases], judge, entries,
                f"{len(entries)} KB entries, {len(rows)} rows for the baselines "
                f"({'title + aliases + bodies' if bodies else 'title + aliases'}), "
                f"{len(cases)} retrieval cases")


# -- methods ----------------------------------------------------------------------------------


@dataclass
class Result:
    method: str
    hit1: float
    hit3: float
    build_s: float
    qps_batch: tuple[float, float] | None   # (wall-clock, CPU-time) queries per second
    qps_single: tuple[float, float] | None
    ties: int | None = None                  # queries whose best two entries score the same
    tie_lost: int | None = None              # …of which the expected entry lost the tie
    ranked: list[list[str]] | None = None    # each query's best entries, best first


def firsts(task: Task, ranked: Sequence[Sequence[str]]) -> list[bool]:
    """Per query: is its first-ranked entry a hit?"""
    return [bool(ids) and task.judge(want, ids[0])
            for want, ids in zip(task.expect, ranked, strict=True)]


def score(task: Task, ranked: Sequence[Sequence[str]]) -> tuple[float, float]:
    h3 = sum(any(task.judge(want, i) for i in ids[:TOP])
             for want, ids in zip(task.expect, ranked, strict=True))
    n = len(task.queries) or 1
    return sum(firsts(task, ranked)) / n, h3 / n


def timed_runs(fn: Callable[[], list], repeat: int, n: int) -> tuple[list, tuple[float, float]]:
    """Run fn repeat times: its result and the median (wall, CPU) rates for n queries.

    CPU time (this process) is printed beside wall time because the machine may be shared: it
    is what the query phase costs, whatever else is running.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return out, (n / statistics.median(walls), n / max(statistics.median(cpus), 1e-9))


def run_ours(task: Task, analyzer: Analyzer, label: str, repeat: int, single: bool,
             rerank: RerankModel | None = None) -> Result:
    analyzer.words("预热")  # load the analyzer's private jieba dictionary outside the timings
    start = time.perf_counter()
    index = KbIndex(task.kb_entries, analyzer, rerank=rerank)
    build = time.perf_counter() - start
    q = task.queries

    def batch():
        out = []
        for i in range(0, len(q), BATCH):
            out.extend(index.search_many(q[i:i + BATCH], TOP))
        return out

    hits, qps_batch = timed_runs(batch, repeat, len(q))
    ranked = [[h.entry_id for h in hs] for hs in hits]
    qps_single = None
    if single:
        one, qps_single = timed_runs(lambda: [index.search(x, TOP) for x in q], repeat, len(q))
        one = [[h.entry_id for h in hs] for hs in one]
        if one != ranked:  # the two paths should agree
            diff = sum(a != b for a, b in zip(one, ranked))
            first = sum(a[:1] != b[:1] for a, b in zip(one, ranked))
            print(f"  ! {label}: batch and 1-by-1 rankings differ on {diff} queries "
                  f"({first} at rank 1) — equal scores ordered differently")
    ties = lost = 0
    for want, hs in zip(task.expect, hits if rerank is None else ()):  # re-ranked: scores unordered
        if len(hs) > 1 and hs[1].score >= hs[0].score - 1e-6:
            ties += 1
            lost += not task.judge(want, hs[0].entry_id) and any(
                task.judge(want, h.entry_id) and h.score >= hs[0].score - 1e-6 for h in hs)
    h1, h3 = score(task, ranked)
    return Result(label, h1, h3, build, qps_batch, qps_single,
                  ties if rerank is None else None, lost if rerank is None else None, ranked)


def _top_entries(row_scores: np.ndarray, row_entry: np.ndarray, n_entries: int) -> list[int]:
    """Best TOP entries when an entry scores as its best row."""
    if len(row_entry) == n_entries and np.array_equal(row_entry, np.arange(n_entries)):
        best = row_scores
    else:
        best = np.full(n_entries, -np.inf)
        np.maximum.at(best, row_entry, row_scores)
    return list(np.argsort(-best, kind="stable")[:TOP])


def run_bm25(task: Task, repeat: int) -> Result:
    jieba.initialize()
    row_entry = np.array([r[0] for r in task.rows])
    weight = np.array([r[2] for r in task.rows])
    n = len(task.entry_ids)
    start = time.perf_counter()
    bm25 = BM25Okapi([jieba.lcut(r[1]) for r in task.rows])
    build = time.perf_counter() - start

    def run():
        out = []
        for query in task.queries:
            s = bm25.get_scores(jieba.lcut(query)) * weight
            out.append([task.entry_ids[i] for i in _top_entries(s, row_entry, n)])
        return out

    ranked, qps = timed_runs(run, repeat, len(task.queries))
    h1, h3 = score(task, ranked)
    return Result("jieba + rank-bm25", h1, h3, build, None, qps, ranked=ranked)


def run_tfidf(task: Task, repeat: int, single: bool) -> Result:
    row_entry = np.array([r[0] for r in task.rows])
    weight = np.array([r[2] for r in task.rows])
    n = len(task.entry_ids)
    start = time.perf_counter()
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3))
    kb_t = vec.fit_transform([r[1] for r in task.rows]).T.tocsr()
    build = time.perf_counter() - start

    def block(queries):
        sims = (vec.transform(queries) @ kb_t).toarray() * weight
        return [[task.entry_ids[i] for i in _top_entries(s, row_entry, n)] for s in sims]

    def batch():
        out = []
        for i in range(0, len(task.queries), BATCH):
            out.extend(block(task.queries[i:i + BATCH]))
        return out

    nq = len(task.queries)
    ranked, qps_batch = timed_runs(batch, repeat, nq)
    qps_single = None
    if single:
        _, qps_single = timed_runs(lambda: [block([x])[0] for x in task.queries], repeat, nq)
    h1, h3 = score(task, ranked)
    return Result("char 1-3-gram TF-IDF", h1, h3, build, qps_batch, qps_single, ranked=ranked)


# -- output -----------------------------------------------------------------------------------


def fmt_rate(v: tuple[float, float] | None) -> str:
    return "—" if v is None else f"{v[0]:,.0f} / {v[1]:,.0f}"


def print_table(results: list[Result]) -> None:
    head = (f"{'method':<40} {'hit@1':>6} {'hit@3':>6} {'build s':>8} "
            f"{'q/s batch wall/cpu':>19} {'q/s 1-by-1 wall/cpu':>20}")
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.method:<40} {r.hit1:6.3f} {r.hit3:6.3f} {r.build_s:8.2f} "
              f"{fmt_rate(r.qps_batch):>19} {fmt_rate(r.qps_single):>20}")
    for r in results:
        if r.ties is not None:
            print(f"  {r.method}: {r.ties} queries have their best two entries at equal scores; "
                  f"on {r.tie_lost} of them the expected entry is among the tied and lost "
                  "the tie-break")


def print_ratio(ours: Result, bm25: Result) -> None:
    d = (ours.hit1 - bm25.hit1) * 100
    base = bm25.qps_single
    parts = [f"hit@1 {d:+.1f} points"]
    for mode, rate in (("batch", ours.qps_batch), ("1-by-1", ours.qps_single)):
        if rate and base:
            parts.append(f"speed ×{rate[0] / base[0]:.1f} wall, ×{rate[1] / base[1]:.1f} cpu ({mode})")
    print(f"{ours.method} vs jieba + rank-bm25: " + "; ".join(parts))


def print_copies(task: Task, results: list[Result]) -> None:
    """hit@1 split by whether the query's own text is also a KB entry other than its target.

    The protocol puts every sentence of a negative pair in the KB, so some queries are, word
    for word, another entry; finding that entry counts as a miss. A product must rank a question
    typed exactly as stored first (ours does, by rule), so these queries measure the protocol,
    not retrieval: the split shows what each method does on the rest."""
    def key(text: str) -> str:
        return Analyzer.chars(normalise(text))

    owners: dict[str, set[str]] = {}
    for eid, (_, text, _) in zip(task.entry_ids, task.rows, strict=True):
        owners.setdefault(key(text), set()).add(eid)
    copy = [bool(owners.get(key(q), set()) - {want})
            for q, want in zip(task.queries, task.expect, strict=True)]
    n_copy = sum(copy)
    print(f"  hit@1 by query: {n_copy:,} queries ({n_copy / max(len(copy), 1):.1%}) are, after "
          "normalisation, the text of another KB entry (a miss for any method that ranks an "
          f"exact match first); {len(copy) - n_copy:,} are not")
    for r in results:
        if r.ranked is None:
            continue
        got = firsts(task, r.ranked)
        on = [g for g, c in zip(got, copy, strict=True) if c]
        off = [g for g, c in zip(got, copy, strict=True) if not c]
        print(f"    {r.method:<40} copies {sum(on) / max(len(on), 1):.3f}   "
              f"the rest {sum(off) / max(len(off), 1):.3f}")


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def export(out: Path, data: Path, names: list[str]) -> None:
    """The public sets as the product takes them: a KB file and a labelled question file."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        task = paraphrase_task(name, data / PUBLIC_FILES[name], None)
        with open(out / f"{name}-kb.jsonl", "w", encoding="utf-8") as f:
            for eid, (_, text, _) in zip(task.entry_ids, task.rows, strict=True):
                f.write(json.dumps(faq_record(eid, text), ensure_ascii=False) + "\n")
        with open(out / f"{name}-queries.tsv", "w", encoding="utf-8") as f:
            f.writelines(f"{e}\t{q}\n" for q, e in zip(task.queries, task.expect, strict=True))
        print(f"{name}: {out / f'{name}-kb.jsonl'} ({len(task.rows):,} entries), "
              f"{out / f'{name}-queries.tsv'} ({len(task.queries):,} questions)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="lcqmc,afqmc,dev")
    p.add_argument("--limit", type=int, default=None, help="only the first N queries of each set")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of the public .tsv sets")
    p.add_argument("--repeat", type=int, default=1, help="runs of each query phase (median rate)")
    p.add_argument("--no-single", action="store_true", help="skip the 1-by-1 query runs")
    p.add_argument("--export", type=Path, default=None, metavar="DIR",
                   help="write each public set as DIR/<set>-kb.jsonl and DIR/<set>-queries.tsv "
                        "(for `bangban kb import` + `bangban eval --mode retrieval`) and stop")
    args = p.parse_args()
    if args.export:
        export(args.export, args.data, [s for s in args.sets.split(",") if s in PUBLIC_FILES])
        return
    single = not args.no_single
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"batch = {BATCH} queries per call, top = {TOP}, repeat = {args.repeat}")

    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    for name in names:
        if name not in (*PUBLIC_FILES, "dev"):
            raise SystemExit(f"unknown set {name!r} (lcqmc, afqmc, dev)")
    for name in names:
        print()
        if name in PUBLIC_FILES:
            task = paraphrase_task(name, args.data / PUBLIC_FILES[name], args.limit)
            print(f"== {name} ({PUBLIC_FILES[name]}): {task.note}; load average {loadavg()}")
            served = run_ours(task, kb_analyzer(task.kb_entries), "ours as served (+ re-ranker)",
                              args.repeat, single, rerank_model_for(task.kb_entries))
            ours = run_ours(task, Analyzer(synonyms={}), "ours search only, synonyms={}",
                            args.repeat, single)
            results = [served, ours,
                       run_ours(task, kb_analyzer(task.kb_entries), "ours search only, as served",
                                args.repeat, False),
                       run_bm25(task, args.repeat), run_tfidf(task, args.repeat, single)]
            print_table(results)
            print_ratio(served, results[3])
            print_ratio(ours, results[3])
            print_copies(task, results)
            print("  ours: each sentence is an FAQ record (question = answer = the sentence), indexed\n"
                  "  by KbIndex. 'as served' is what `bangban kb import` + `bangban eval --mode\n"
                  "  retrieval` run: core.knowledge's analyzer and re-ranker (this KB has no aliases,\n"
                  "  so it is re-ranked). rank-bm25 and TF-IDF index the same distinct sentences.")
        elif name == "dev":
            task = dev_task(args.limit, bodies=False)
            full = dev_task(args.limit, bodies=True)
            print(f"== dev (tests/data/devset.tsv vs config/kb): {task.note}; "
                  f"load average {loadavg()}")
            from core.reference import load_matters  # same extra words as core.knowledge.build_snapshot
            served_words = [e.display_title for e in task.kb_entries if e.type == "term"]
            served_words += [m.name for m in load_matters().matters if len(m.name) <= 12]
            ours = run_ours(task, Analyzer(), "ours KbIndex, default synonyms", args.repeat, single)
            results = [ours,
                       run_ours(task, Analyzer(synonyms={}), "ours KbIndex, synonyms={}", args.repeat, False),
                       run_ours(task, Analyzer(extra_words=served_words),
                                "ours as served (+term/matter words)", args.repeat, False)]
            b1, t1 = run_bm25(task, args.repeat), run_tfidf(task, args.repeat, single)
            b2, t2 = run_bm25(full, args.repeat), run_tfidf(full, args.repeat, single)
            b1.method += ", title+aliases"
            t1.method += ", title+aliases"
            b2.method += ", + bodies ×0.75"
            t2.method += ", + bodies ×0.75"
            results += [b1, b2, t1, t2]
            print_table(results)
            print_ratio(ours, b1)
            print("  ours indexes each entry's title/question, its aliases and the first 400 chars of\n"
                  "  its body (weight 0.75), scoring an entry as its best row. The baselines score\n"
                  "  an entry as its best row too: 'title+aliases' rows only, or the very rows ours\n"
                  "  indexes (core.nlu.index.entry_rows) with body rows' scores ×0.75.")
        print(f"  load average after: {loadavg()}")


if __name__ == "__main__":
    main()
