"""The shipped seed knowledge base (config/kb/) against the coverage the service promises."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from core.kb.importer import check_files
from core.kb.seed import SEED_ACTOR, load_seed_if_empty
from core.kb.store import KbStore
from core.paths import config_dir
from core.reference import load_matters

SEED_DIR = config_dir() / "kb"
MATTERS = load_matters().by_code()
MATTER_CODES = [f"M{i:02d}" for i in range(1, 36)]
MATTER_FILE = re.compile(r"^(M\d{2})\.ya?ml$")


@pytest.fixture(scope="module")
def seed():
    return check_files([SEED_DIR])


@pytest.fixture(scope="module")
def by_matter(seed) -> dict[str, dict[str, list]]:
    """matter -> type -> entries whose related_matters contain it."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for entry in seed.entries:
        for matter in entry.matters:
            out[matter][entry.type].append(entry)
    return out


def test_the_seed_validates_without_problems(seed):
    assert [str(p) for p in seed.problems] == []
    # nor warnings: no question is claimed by two entries
    assert [str(w) for w in seed.warnings] == []
    assert seed.records == len(seed.entries) > 0


def test_every_matter_is_covered():
    # a failure here lists every matter still missing its file, not only the first
    assert sorted(MATTERS) == MATTER_CODES
    missing = [c for c in MATTER_CODES if not list(SEED_DIR.glob(f"{c}.y*ml"))]
    assert missing == [], f"no seed file for {missing}"


@pytest.mark.parametrize("matter", MATTER_CODES)
def test_each_matter_has_a_guide_six_faqs_and_a_term(by_matter, matter):
    found = by_matter.get(matter, {})
    counts = {t: len(found.get(t, [])) for t in ("guide", "faq", "term")}
    assert counts["guide"] >= 1 and counts["faq"] >= 6 and counts["term"] >= 1, counts


def test_every_faq_has_an_alias(seed):
    faqs = [e for e in seed.entries if e.type == "faq"]
    assert faqs
    assert [e.id for e in faqs if not e.aliases] == []


def test_the_main_hotlines_are_listed(seed):
    phones = {e.phone for e in seed.entries if e.type == "hotline"}
    assert {"12345", "12329", "12366", "962777"} <= phones


def test_every_responsible_unit_has_a_department_entry(seed):
    described = {e.dept_code for e in seed.entries if e.type == "department"}
    units = set(load_matters().units) - {"districts"}
    assert sorted(units - described) == []


@pytest.mark.parametrize("path", sorted(p.name for p in SEED_DIR.iterdir()
                                        if MATTER_FILE.match(p.name)))
def test_a_matter_file_is_published_by_the_matter_department(path):
    matter = MATTERS[MATTER_FILE.match(path)[1]]
    checked = check_files([SEED_DIR / path])
    assert checked.entries, f"{path} has no valid entries"
    wrong = [(e.id, e.published_by) for e in checked.entries
             if e.published_by != matter.department]
    assert wrong == [], f"{path}: expected published_by {matter.department}"


async def test_the_seed_loads_into_an_empty_kb_once(engine, seed):
    store = KbStore(engine)
    loaded = await load_seed_if_empty(store, SEED_DIR)
    assert loaded == len(seed.entries) == await store.count()
    some = seed.entries[0]
    assert (await store.get(some.id)).wire() == some.wire()
    assert (await store.revisions(some.id))[0].actor == SEED_ACTOR
    assert await load_seed_if_empty(store, SEED_DIR) == 0
    assert await store.count() == loaded


async def test_no_seed_directory_leaves_the_kb_empty(engine, tmp_path: Path):
    store = KbStore(engine)
    assert await load_seed_if_empty(store, tmp_path / "absent") == 0
    assert await store.count() == 0
