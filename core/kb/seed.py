"""Loading the shipped seed KB (config/kb/) into an empty knowledge base."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ImportFailed
from .importer import check_files, import_checked
from .store import KbStore

log = logging.getLogger(__name__)

SEED_ACTOR = "seed"


async def load_seed_if_empty(store: KbStore, seed_dir: Path) -> int:
    """Import the seed when the KB has no entries; return how many were imported.

    The seed is shipped with the code, so a record that fails validation is a bug of ours: it
    stops start-up with the file and line, rather than starting with half a KB.
    """
    if await store.count() > 0:
        return 0
    if not seed_dir.is_dir():
        log.warning("no seed KB at %s; starting with an empty knowledge base", seed_dir)
        return 0
    checked = check_files([seed_dir])
    if checked.problems:
        first = "\n  ".join(str(p) for p in checked.problems[:10])
        raise ImportFailed(f"the seed KB in {seed_dir} is invalid:\n  {first}")
    result, _ = await import_checked(store, checked, actor=SEED_ACTOR)
    log.info("seed KB loaded: %d entries from %s", len(result.created), seed_dir)
    return len(result.created)
