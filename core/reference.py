"""Reference data: code tables (config/codes.yaml) and the matters (config/matters.yaml).

Loaded once, validated, and shared read-only. KB validation checks code fields against these
tables; routing (human help) reads the matters' responsible units.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError
from .paths import config_dir

CODE_TABLES = (
    "region",
    "department",
    "valid_flag",
    "policy_source",
    "policy_category1",
    "policy_category2",
    "audience",
    "policy_level",
    "article_level",
    "terminal",
)
MATTER_CODE = re.compile(r"^M\d{2,3}$")


class Category2(BaseModel):
    name: str
    parent: str


class Codes(BaseModel):
    """Tables 1–10 of the seed's KB specification, as code -> label."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: dict[str, str]
    department: dict[str, str]
    valid_flag: dict[str, str]
    policy_source: dict[str, str]
    policy_category1: dict[str, str]
    policy_category2: dict[str, Category2]
    audience: dict[str, str]
    policy_level: dict[str, str]
    article_level: dict[str, str]
    terminal: dict[str, str]

    @model_validator(mode="after")
    def _parents_exist(self) -> Codes:
        for code, cat in self.policy_category2.items():
            if cat.parent not in self.policy_category1:
                raise ValueError(f"policy_category2.{code}: parent {cat.parent!r} is not a category1")
        return self

    def table(self, name: str) -> dict:
        return getattr(self, name)

    def label(self, table: str, code: str) -> str:
        value = self.table(table)[code]
        return value.name if isinstance(value, Category2) else value


class Matter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(pattern=MATTER_CODE.pattern)
    name: str
    department: str
    audience: list[Literal["person", "enterprise"]]
    units: list[str]


class Matters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    units: dict[str, str]
    matters: list[Matter]
    regions: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> Matters:
        seen = set()
        for m in self.matters:
            if m.code in seen:
                raise ValueError(f"matter {m.code} is listed twice")
            seen.add(m.code)
            for unit in [m.department, *m.units]:
                if unit not in self.units:
                    raise ValueError(f"matter {m.code}: unit {unit!r} is not in units")
        return self

    def by_code(self) -> dict[str, Matter]:
        return {m.code: m for m in self.matters}


def load_model(path: Path, model):
    """A YAML file validated by a pydantic model; ConfigError names the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return model.model_validate(data)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read reference data ({exc})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


@cache
def load_codes(path: Path | None = None) -> Codes:
    return load_model(path or config_dir() / "codes.yaml", Codes)


@cache
def matter_names() -> dict[str, str]:
    """Matter code → name (config/matters.yaml), built once."""
    return {m.code: m.name for m in load_matters().matters}


def department_name(code: str) -> str:
    """A department code's name (config/codes.yaml), or the code itself when the table no
    longer has it (an entry or account older than a change to the table)."""
    try:
        return load_codes().label("department", code)
    except KeyError:
        return code


@cache
def load_matters(path: Path | None = None) -> Matters:
    return load_model(path or config_dir() / "matters.yaml", Matters)
