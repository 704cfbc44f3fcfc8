"""Where Bangban finds its shipped configuration and keeps its data."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def config_dir() -> Path:
    """The shipped ``config/`` directory (reference data, defaults, seed KB).

    In a checkout or an editable install it sits beside ``core/``; in a wheel it is installed
    as the ``config`` package data, which is the same relative place.
    """
    here = Path(__file__).resolve().parent.parent / "config"
    if (here / "default.yaml").is_file():
        return here
    import importlib.resources

    return Path(str(importlib.resources.files("config")))
