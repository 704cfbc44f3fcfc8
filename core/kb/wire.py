"""Reading and writing KB files: YAML, JSON, JSONL and CSV (the seed's ``~``/``-`` wire format).

Readers yield raw records with a locator ("line 12", "entry 3") so validation errors point at the
place in the file a person has to fix. Writers take wire dicts (``KbEntryBase.wire()``) and are
deterministic, so export → import → export gives identical files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ImportFailed
from .models import ENTRY_TYPES, all_field_names

Format = Literal["yaml", "json", "jsonl", "csv"]
FORMATS: dict[str, Format] = {
    ".yaml": "yaml", ".yml": "yaml", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
    ".csv": "csv",
}
LIST_SEPARATOR = {"terminals": "-"}  # every other list field uses "~"
_LINE = "__line__"

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(slots=True)
class RawRecord:
    source: str
    where: str
    data: dict[str, Any]

    @property
    def locator(self) -> str:
        return f"{self.source}:{self.where}"


def detect_format(path: Path, explicit: str | None = None) -> Format:
    if explicit:
        if explicit not in ("yaml", "json", "jsonl", "csv"):
            raise ImportFailed(f"unknown format {explicit!r} (yaml, json, jsonl or csv)")
        return explicit  # type: ignore[return-value]
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImportFailed(
            f"{path}: cannot tell the format from the extension {path.suffix!r} "
            "(use .yaml, .json, .jsonl or .csv, or --format)"
        )
    return fmt


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a directory stands for its KB files, sorted by name."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in FORMATS))
        elif p.exists():
            out.append(p)
        else:
            raise ImportFailed(f"{p}: no such file or directory")
    return out


# -- readers ----------------------------------------------------------------------------------


class _LineLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Records the line where each mapping starts, so errors can name it."""

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        mapping = super().construct_mapping(node, deep=deep)
        mapping[_LINE] = node.start_mark.line + 1
        return mapping


def _apply_defaults(entry: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    if not defaults:
        return entry
    model = ENTRY_TYPES.get(entry.get("type"))  # type: ignore[arg-type]
    merged = dict(entry)
    for key, value in defaults.items():
        if key not in merged and (model is None or key in model.model_fields):
            merged[key] = value
    return merged


def _split_container(doc: Any, source: str) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(doc, list):
        return doc, {}
    if isinstance(doc, dict) and isinstance(doc.get("entries"), list):
        defaults = doc.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ImportFailed(f"{source}: 'defaults' must be a mapping of fields")
        defaults.pop(_LINE, None)
        return doc["entries"], defaults
    if doc is None:
        return [], {}
    raise ImportFailed(f"{source}: expected a list of entries or a mapping with 'entries'")


def _read_yaml(path: Path, text: str) -> Iterator[RawRecord]:
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise ImportFailed(f"{path}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    entries, defaults = _split_container(doc, str(path))
    for index, item in enumerate(entries, 1):
        line = item.pop(_LINE, None) if isinstance(item, dict) else None
        where = f"line {line} (entry {index})" if line else f"entry {index}"
        if isinstance(item, dict):
            item = {k: _strip_lines(v) for k, v in item.items()}
        yield RawRecord(str(path), where, _apply_defaults(item, defaults) if isinstance(item, dict) else item)


def _strip_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_lines(v) for k, v in value.items() if k != _LINE}
    return value


def _read_json(path: Path, text: str) -> Iterator[RawRecord]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{path}:line {exc.lineno}: not valid JSON ({exc.msg})") from None
    entries, defaults = _split_container(doc, str(path))
    for index, item in enumerate(entries, 1):
        data = _apply_defaults(item, defaults) if isinstance(item, dict) else item
        yield RawRecord(str(path), f"entry {index}", data)


def _read_jsonl(path: Path, text: str) -> Iterator[RawRecord]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            data = _Unparsable(f"not valid JSON ({exc.msg})")
        yield RawRecord(str(path), f"line {lineno}", data)


class _Unparsable(dict):
    """A line that could not be parsed: validation reports ``reason`` for it."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def _read_csv(path: Path, text: str) -> Iterator[RawRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "type" not in reader.fieldnames:
        raise ImportFailed(f"{path}:line 1: the CSV header must name the fields, 'type' included")
    for row in reader:
        data = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        if None in row:
            data = _Unparsable("more cells than header fields")
        yield RawRecord(str(path), f"line {reader.line_num}", data)


_READERS = {"yaml": _read_yaml, "json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv}


def read_records(path: Path, fmt: str | None = None) -> Iterator[RawRecord]:
    fmt = detect_format(path, fmt)
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate the BOM Excel writes
    except UnicodeDecodeError as exc:
        raise ImportFailed(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read ({exc.strerror})") from None
    return _READERS[fmt](path, text)


# -- writers ----------------------------------------------------------------------------------


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    pass


def _str_presenter(dumper, value: str):  # noqa: ANN001
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_presenter)


def dumps(entries: list[dict[str, Any]], fmt: Format) -> str:
    if fmt == "yaml":
        return yaml.dump(entries, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=4096)
    if fmt == "json":
        return json.dumps(entries, ensure_ascii=False, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
    return _dumps_csv(entries)


def _dumps_csv(entries: list[dict[str, Any]]) -> str:
    present = {k for e in entries for k in e}
    header = [name for name in all_field_names() if name in present]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for entry in entries:
        row = []
        for name in header:
            value = entry.get(name)
            if isinstance(value, list):
                value = LIST_SEPARATOR.get(name, "~").join(value)
            row.append("" if value is None else value)
        writer.writerow(row)
    return buf.getvalue()


def write_entries(path: Path, entries: list[dict[str, Any]], fmt: Format) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(entries, fmt), encoding="utf-8", newline="")
    tmp.replace(path)  # never leave a half-written export behind
