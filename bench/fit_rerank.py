"""Fit the shipped re-ranker (``config/rerank.yaml``) on the public paraphrase sets, and say how
well it does on questions it was not fitted on.

    .venv/bin/python bench/fit_rerank.py [--sets lcqmc,afqmc[,kb]] [--folds 5] [--C 1.0]
                                         [--depth 10] [--write]

Task and data: as ``bench/retrieval.py`` (``paraphrase_task``): the KB holds the sentences, each
sentence2 of a positive pair is a query. Candidates are the product's search (``KbIndex`` with
``core.knowledge.kb_analyzer``, as ``bangban eval --mode retrieval`` builds it) and features are
the product's (``core.nlu.rerank.Reranker.features``), so what is fitted is what runs.

Training lists are *self-excluded*: in LCQMC 15 % of queries are also, verbatim, another KB entry
(from some negative pair), and the protocol counts finding that identical entry as a miss. A
learner shown those lists learns "identical text is wrong", which would break every citizen who
types a KB question as stored. So a candidate whose text equals the query (and is not the
expected entry) is dropped from training lists; scoring is reported both as the protocol scores
("as scored") and with that copy dropped for every method ("self-excluded").

Cross-validation: folds grouped by expected entry (all queries of one KB sentence together), so a
fold is scored by a model that never saw its targets; the other set is in every training fold,
as it is in the shipped model. Transfer: fitted on one set only, scored on the other (AFQMC alone
transfers badly to LCQMC: its questions are all alike and its labels close to chance, which is
why the shipped model sees both). ``--write`` fits on every list of every set and writes the
model.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from core.knowledge import kb_analyzer  # noqa: E402
from core.nlu.index import Hit, KbIndex  # noqa: E402
from core.nlu.rerank import FEATURES, Reranker, RerankModel  # noqa: E402
from core.nlu.text import Analyzer, normalise  # noqa: E402
from retrieval import DEFAULT_DATA, PUBLIC_FILES, paraphrase_task  # noqa: E402

DEPTH = 10  # candidates re-ranked per query (--depth)
SAME = FEATURES.index("same_text")
SKIP_BELOW = RerankModel.model_fields["skip_below"].default


@dataclass
class Lists:
    """Per query: its candidate lists and features, as scored and self-excluded."""

    want: list[int]                    # expected entry position per query
    asis: list[list[Hit]]
    excl: list[list[Hit]]
    X_asis: list[np.ndarray]
    X_excl: list[np.ndarray]


def build(name: str, data: Path, limit: int | None) -> tuple[Lists, float]:
    task = paraphrase_task(name, data / PUBLIC_FILES[name], limit)
    index = KbIndex(task.kb_entries, kb_analyzer(task.kb_entries))
    feats = Reranker(index, None, DEPTH)
    pos = {eid: i for i, eid in enumerate(index.ids)}
    t0 = time.perf_counter()
    hits = []
    for i in range(0, len(task.queries), 512):
        hits.extend(index.search_many(task.queries[i:i + 512], DEPTH + 1))
    out = Lists([], [], [], [], [])
    for q, want, hs in zip(task.queries, task.expect, hits, strict=True):
        wanted = pos[want]
        key = Analyzer.chars(normalise(q))
        excl = [h for h in hs if h.index == wanted
                or Analyzer.chars(normalise(index.row_text[h.row_index])) != key][:DEPTH]
        asis = hs[:DEPTH]
        words, chars = index.query_terms(q)
        out.want.append(wanted)
        out.asis.append(asis)
        out.excl.append(excl)
        out.X_asis.append(np.asarray(feats.features(q, words, chars, asis)).reshape(-1, len(FEATURES)))
        out.X_excl.append(np.asarray(feats.features(q, words, chars, excl)).reshape(-1, len(FEATURES)))
    print(f"== {name}: {task.note}; candidates and features {time.perf_counter() - t0:.1f} s")
    return out, 0.0


def build_kb(rounds: int = 3) -> Lists:
    """Lists from the shipped government KB (``config/kb``), asked in its own words: in round
    r the r-th alias (相似问法) of every entry is taken out of the KB and asked; the expected
    entry is its own. No evaluation set (tests/data) is read."""
    from core.kb.importer import check_files
    from core.knowledge import answerable

    checked = check_files([REPO / "config" / "kb"])
    entries = answerable(checked.entries)
    out = Lists([], [], [], [], [])
    t0 = time.perf_counter()
    for r in range(rounds):
        asked = {i: e.aliases[r] for i, e in enumerate(entries)
                 if len(getattr(e, "aliases", None) or []) > r}
        held = [e.model_copy(update={"aliases": [a for k, a in enumerate(e.aliases) if k != r]})
                if i in asked else e for i, e in enumerate(entries)]
        index = KbIndex(held, kb_analyzer(held))
        feats = Reranker(index, None, DEPTH)
        qs = list(asked.values())
        hits = index.search_many(qs, DEPTH)
        for (want, q), hs in zip(asked.items(), hits, strict=True):
            words, chars = index.query_terms(q)
            X = np.asarray(feats.features(q, words, chars, hs)).reshape(-1, len(FEATURES))
            out.want.append(want)
            out.asis.append(hs)
            out.excl.append(hs)
            out.X_asis.append(X)
            out.X_excl.append(X)
    print(f"== kb: config/kb, {len(entries)} entries, {len(out.want)} aliases asked "
          f"({rounds} rounds); {time.perf_counter() - t0:.1f} s")
    return out


def stack(X: list[np.ndarray], lists: list[list[Hit]], want: list[int], which: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    xs = [X[i] for i in which if len(lists[i])]
    ys = [np.asarray([h.index == want[i] for h in lists[i]], dtype=int)
          for i in which if len(lists[i])]
    return np.vstack(xs), np.concatenate(ys)


def fit(X: np.ndarray, y: np.ndarray, C: float) -> tuple[StandardScaler, LogisticRegression]:
    scaler = StandardScaler().fit(X)
    scaler.scale_[scaler.scale_ == 0] = 1.0
    model = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(X), y)
    return scaler, model


def hit1(X: list[np.ndarray], lists: list[list[Hit]], want: list[int], which, model=None
         ) -> float:
    n = hits = 0
    for i in which:
        n += 1
        hs = lists[i]
        if not hs:
            continue
        if model is None or (len(hs) > 1 and hs[1].score < SKIP_BELOW * hs[0].score):
            best = 0  # as RerankModel.skip_below leaves such a list
        else:  # as Reranker.rerank orders: the query's own text first, then the model
            scaler, lr = model
            z = lr.decision_function(scaler.transform(X[i]))
            best = int(np.lexsort((np.arange(len(z)), -z, -X[i][:, SAME]))[0])
        hits += hs[best].index == want[i]
    return hits / max(n, 1)


def folds(want: list[int], k: int, seed: int = 0) -> list[np.ndarray]:
    targets = np.unique(want)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(targets).tolist(), np.arange(len(targets)) % k, strict=True))
    f = np.asarray([fold_of[w] for w in want])
    return [np.flatnonzero(f == i) for i in range(k)]


def main() -> None:
    global DEPTH
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default="lcqmc,afqmc",
                   help="lcqmc, afqmc (public pairs), kb (the shipped KB's own aliases)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--depth", type=int, default=10, help="candidates re-ranked per query")
    p.add_argument("--write", action="store_true", help="write config/rerank.yaml")
    args = p.parse_args()
    DEPTH = args.depth
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    sets = {n: build_kb() if n == "kb" else build(n, args.data, args.limit)[0] for n in names}

    report: dict[str, str] = {}
    print(f"\n{'set':<6} {'method':<34} {'as scored':>9} {'self-excl':>9}")
    for name, L in sets.items():
        allq = np.arange(len(L.want))
        base = (hit1(L.X_asis, L.asis, L.want, allq), hit1(L.X_excl, L.excl, L.want, allq))
        others = [stack(M.X_excl, M.excl, M.want, np.arange(len(M.want)))
                  for o, M in sets.items() if o != name]
        cv_a, cv_e = [], []
        for test in folds(L.want, args.folds):
            train = np.setdiff1d(allq, test)
            # as the shipped model is fitted: the other sets whole, this one without the fold
            parts = [stack(L.X_excl, L.excl, L.want, train), *others]
            model = fit(np.vstack([x for x, _ in parts]), np.concatenate([y for _, y in parts]),
                        args.C)
            cv_a.append(hit1(L.X_asis, L.asis, L.want, test, model) * len(test))
            cv_e.append(hit1(L.X_excl, L.excl, L.want, test, model) * len(test))
        cv = (sum(cv_a) / len(allq), sum(cv_e) / len(allq))
        print(f"{name:<6} {'ours (search only)':<34} {base[0]:9.3f} {base[1]:9.3f}")
        print(f"{name:<6} {f'ours + re-ranker, {args.folds}-fold CV':<34} {cv[0]:9.3f} {cv[1]:9.3f}")
        report[f"{name} hit@1 as scored"] = f"search {base[0]:.3f}, re-ranked (CV) {cv[0]:.3f}"
        for other, M in sets.items():
            if other == name:
                continue
            model = fit(*stack(M.X_excl, M.excl, M.want, np.arange(len(M.want))), args.C)
            tr = (hit1(L.X_asis, L.asis, L.want, allq, model),
                  hit1(L.X_excl, L.excl, L.want, allq, model))
            print(f"{name:<6} {f'  fitted on {other} only':<34} {tr[0]:9.3f} {tr[1]:9.3f}")
            report[f"{name} hit@1 fitted on {other} only"] = f"{tr[0]:.3f}"

    X = np.vstack([stack(L.X_excl, L.excl, L.want, np.arange(len(L.want)))[0] for L in sets.values()])
    y = np.concatenate([stack(L.X_excl, L.excl, L.want, np.arange(len(L.want)))[1]
                        for L in sets.values()])
    scaler, lr = fit(X, y, args.C)
    print("\ncoefficients (standardised features), largest first:")
    for n, c in sorted(zip(FEATURES, lr.coef_[0], strict=True), key=lambda t: -abs(t[1])):
        print(f"  {n:<22} {c:+.3f}")
    model = RerankModel(features=list(FEATURES), mean=scaler.mean_.tolist(),
                        scale=scaler.scale_.tolist(), coef=lr.coef_[0].tolist(),
                        intercept=float(lr.intercept_[0]), depth=DEPTH,
                        fitted={"by": "bench/fit_rerank.py", "on": ", ".join(f"{n}-dev" for n in sets),
                                "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                                "C": str(args.C), **report})
    if args.write:
        path = REPO / "config" / "rerank.yaml"
        head = ("# The re-ranker's model (core/nlu/rerank.py): logistic regression over pair\n"
                "# features of the search's best candidates. Written by bench/fit_rerank.py from\n"
                "# public paraphrase pairs only; re-fit with it, do not edit by hand.\n")
        body = yaml.safe_dump(model.model_dump(), allow_unicode=True, sort_keys=False, width=100)
        path.write_text(head + body, encoding="utf-8")
        print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
