"""One name per unit, wherever staff or citizens read it: the code table (config/codes.yaml:
the admins' filters, KB pages), the matter list (config/matters.yaml: the citizen's department
menu) and the human-help units (config/units.yaml: the workspace's 转办 list)."""

from __future__ import annotations

from core.hours import load_units
from core.paths import config_dir
from core.reference import load_codes, load_matters


def test_a_unit_has_one_name_with_full_width_brackets():
    codes = load_codes().department
    matters = load_matters().units
    units = load_units(config_dir() / "units.yaml")
    for code, name in matters.items():
        if code == "districts":  # "各区": the district offices, named one by one below
            continue
        assert codes[code] == name, code
        if code in units:
            assert units[code].name == name, code
    for table in (codes, matters, {c: u.name for c, u in units.items()}):
        assert not [n for n in table.values() if "(" in n or ")" in n]
