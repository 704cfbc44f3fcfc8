"""The knowledge model: the 9 field tables of the seed's 知识内容规范 as pydantic models.

Field names are the canonical English names of ``docs/kb-format.md``. Required fields follow the
seed's 必填项; code fields are checked against ``config/codes.yaml`` (or the tables passed in the
validation context as ``codes``); rich-text fields are sanitised; multi-valued fields accept a
list or the seed's wire format (``a~b``; terminals ``pc-app``).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, model_validator

# the field types live in fields.py; the names other modules know from here stay importable
from .fields import (  # noqa: F401 - STATUSES and new_entry_id are re-exported
    ID_PATTERN,
    STATUSES,
    AliasList,
    Code,
    CodeList,
    KbDate,
    KbDateTime,
    MatterList,
    OptText,
    RichText,
    Status,
    TerminalList,
    Text,
    _codes,
    new_entry_id,
)

# -- the models -------------------------------------------------------------------------------


class KbEntryBase(BaseModel):
    """Common fields (公共字段) of every type."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kb_class: ClassVar[str]
    label: ClassVar[str]
    #: the field shown as the entry's title in lists and search results
    title_field: ClassVar[str]
    #: fields holding the text the bot searches (beside aliases)
    search_fields: ClassVar[tuple[str, ...]] = ()

    id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    type: str
    published_at: KbDateTime
    published_by: Code("department")
    updated_at: KbDateTime
    updated_by: Code("department")
    valid: Code("valid_flag")
    status: Status = "published"
    last_reviewed_at: KbDateTime | None = None

    @property
    def display_title(self) -> str:
        return str(getattr(self, self.title_field))

    @property
    def matters(self) -> list[str]:
        return list(getattr(self, "related_matters", None) or [])

    def wire(self) -> dict[str, Any]:
        """The record as written to files and stored: JSON types, no empty optional fields."""
        data = self.model_dump(mode="json", exclude_none=True)
        out = {}
        for key in field_order(self.type):
            value = data.get(key)
            if value is None or (value == [] and key not in REQUIRED_LISTS):
                continue
            if key == "status" and value == "published":
                continue
            out[key] = value
        return out


REQUIRED_LISTS = {"terminals"}


class Regional(KbEntryBase):
    region: Code("region")


class Relations(BaseModel):
    related_policies: CodeList = []
    related_matters: MatterList = []
    related_services: CodeList = []
    related_projects: CodeList = []
    related_articles: CodeList = []


class Guide(Regional, Relations):
    kb_class = "business"
    label = "网上办事指引"
    title_field = "title"
    search_fields = ("title", "content")
    type: Literal["guide"]
    title: Text
    content: RichText
    source_url: OptText = None
    aliases: AliasList = []


class Faq(Regional, Relations):
    kb_class = "business"
    label = "常见问题"
    title_field = "question"
    search_fields = ("question", "answer")
    type: Literal["faq"]
    question: Text
    answer: RichText
    aliases: AliasList = []


class Term(KbEntryBase, Relations):
    kb_class = "business"
    label = "政务百科词条"
    title_field = "term"
    search_fields = ("term", "explanation")
    type: Literal["term"]
    term: Text
    explanation: RichText
    basis_name: OptText = None
    basis_url: OptText = None
    collector: Text
    collected_by: Code("department")
    aliases: AliasList = []


class PolicyOriginal(Regional):
    kb_class = "policy"
    label = "政策原文"
    title_field = "name"
    search_fields = ("name", "doc_number", "body")
    type: Literal["policy_original"]
    name: Text
    doc_number: Text
    source: Code("policy_source")
    category1: Code("policy_category1")
    category2: Code("policy_category2")
    audience: Code("audience")
    body: RichText
    level: Code("policy_level")
    phone: OptText = None
    source_url: OptText = None
    attachments: OptText = None
    effective_from: KbDate
    effective_to: KbDate

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> PolicyOriginal:
        parent = _codes(info).policy_category2[self.category2].parent
        if parent != self.category1:
            raise ValueError(
                f"category2 {self.category2!r} belongs to category1 {parent!r}, not {self.category1!r}"
            )
        if self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        return self


class PolicyInterpretation(Regional, Relations):
    kb_class = "policy"
    label = "政策解读"
    title_field = "title"
    search_fields = ("title", "content")
    type: Literal["policy_interpretation"]
    title: Text
    content: RichText
    source_url: OptText = None


class PolicyProject(Regional):
    kb_class = "policy"
    label = "申报项目"
    title_field = "name"
    search_fields = ("name", "conditions", "guide")
    type: Literal["policy_project"]
    name: Text
    audience: Code("audience")
    conditions: Text
    period: Text
    materials: Text
    guide: RichText
    system_url: Text
    process: Text
    accepting_dept: Code("department")
    prerequisite_projects: CodeList = []
    prerequisite_matters: MatterList = []


class Notice(Regional):
    kb_class = "policy"
    label = "通知公告"
    title_field = "title"
    search_fields = ("title", "body")
    type: Literal["notice"]
    title: Text
    source: Text
    date: KbDate
    body: RichText
    level: Code("article_level")
    terminals: TerminalList
    source_url: OptText = None
    attachments: OptText = None


class Hotline(Regional):
    kb_class = "help"
    label = "热线电话"
    title_field = "unit_name"
    search_fields = ("unit_name", "phone", "description")
    type: Literal["hotline"]
    phone: Text
    description: OptText = None
    unit_code: Code("department")
    unit_name: Text
    remark: OptText = None

    @property
    def display_title(self) -> str:
        return f"{self.unit_name} {self.phone}"


class Department(Regional):
    kb_class = "help"
    label = "部门信息"
    title_field = "name"
    search_fields = ("name", "description")
    type: Literal["department"]
    dept_code: Code("department")
    name: Text
    description: OptText = None
    phone: Text
    address: Text
    postcode: Text
    website: OptText = None
    remark: OptText = None


ENTRY_TYPES: dict[str, type[KbEntryBase]] = {
    "guide": Guide,
    "faq": Faq,
    "term": Term,
    "policy_original": PolicyOriginal,
    "policy_interpretation": PolicyInterpretation,
    "policy_project": PolicyProject,
    "notice": Notice,
    "hotline": Hotline,
    "department": Department,
}

KbEntry = Annotated[
    Union[Guide, Faq, Term, PolicyOriginal, PolicyInterpretation, PolicyProject, Notice,
          Hotline, Department],
    Field(discriminator="type"),
]
entry_adapter: TypeAdapter[KbEntry] = TypeAdapter(KbEntry)


_COMMON_TAIL = ("aliases", "related_matters", "related_policies", "related_services",
                "related_projects", "related_articles", "region", "published_at", "published_by",
                "updated_at", "updated_by", "valid", "status", "last_reviewed_at")


@cache
def field_order(entry_type: str) -> tuple[str, ...]:
    """Canonical field order of a type: id, type, its own fields, then the common ones."""
    model = ENTRY_TYPES[entry_type]
    own = [n for n in model.model_fields if n not in _COMMON_TAIL and n not in ("id", "type")]
    tail = [n for n in _COMMON_TAIL if n in model.model_fields]
    return ("id", "type", *own, *tail)


def field_names(entry_type: str) -> list[str]:
    return list(field_order(entry_type))


def all_field_names() -> list[str]:
    """Every field of every type, in a stable order: common first, then by type."""
    names: list[str] = []
    for entry_type in ENTRY_TYPES:
        for name in field_order(entry_type):
            if name not in names and name not in _COMMON_TAIL:
                names.append(name)
    return names + list(_COMMON_TAIL)
