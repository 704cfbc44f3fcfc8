"""Staff accounts' rules and models: roles, usernames, passwords, and the pydantic models of a
new account, a stored one and a session (``core.staff`` keeps them in SQL).

Roles are ``agent`` (坐席), ``supervisor`` (班长), ``kb_editor`` (知识库编辑) and ``admin``
(管理员); a role grants only itself. Units are department codes of ``config/codes.yaml``; agents
and supervisors need at least one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .errors import ValidationFailed
from .reference import load_codes

#: every role, in the order they are shown
ROLES: tuple[str, ...] = ("agent", "supervisor", "kb_editor", "admin")
ROLE_LABELS = {"agent": "坐席", "supervisor": "班长", "kb_editor": "知识库编辑", "admin": "管理员"}
#: roles that serve citizens of a unit, so an account with one of them must name its units
UNIT_ROLES = frozenset({"agent", "supervisor"})
MIN_PASSWORD_LENGTH = 10
#: longer passwords are refused (argon2 would take them, but nobody types 1,000 characters)
MAX_PASSWORD_LENGTH = 1024
#: a session lasts one working day; then the agent signs in again
SESSION_TTL = timedelta(hours=12)
#: login names: lower-case letters, digits, '.', '_' and '-' (employee numbers are fine)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MAX_DISPLAY_NAME = 64
#: the shape of a session token we issue (``secrets.token_urlsafe(32)``)
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def utcnow() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    """What ``staff_sessions.id`` holds for a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_password(password: str, username: str | None = None) -> None:
    """Refuse passwords too weak (or too long) to keep; raises ValidationFailed."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters are required",
            [("password", "password", "too short")])
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters",
            [("password", "password", "too long")])
    if not password.strip():
        raise ValidationFailed("the password must not be only spaces",
                               [("password", "password", "blank")])
    if username and normalise_username(password) == normalise_username(username):
        raise ValidationFailed("the password must not be the username",
                               [("password", "password", "same as the username")])


# -- models -----------------------------------------------------------------------------------


def _unit_codes() -> dict[str, str]:
    return load_codes().department


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


class NewStaffUser(BaseModel):
    """What ``add_user`` takes; validated before anything is hashed or written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    display_name: str
    roles: list[str]
    units: list[str] = []

    @field_validator("username", mode="before")
    @classmethod
    def _username(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = normalise_username(v)
            if not USERNAME.match(v):
                raise ValueError(
                    f"{v!r} is not a valid username (2-64 characters: lower-case letters, "
                    "digits, '.', '_' or '-', starting with a letter or digit)")
        return v

    @field_validator("display_name", mode="before")
    @classmethod
    def _display_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = " ".join(v.split())
            if not v:
                raise ValueError("the name must not be empty")
            if len(v) > MAX_DISPLAY_NAME or _CONTROL.search(v):
                raise ValueError(f"the name must be at most {MAX_DISPLAY_NAME} printable "
                                 "characters")
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(f"at least one role is required ({', '.join(ROLES)})")
        for role in v:
            if role not in ROLES:
                raise ValueError(f"{role!r} is not a role (roles: {', '.join(ROLES)})")
        return sorted(set(v), key=ROLES.index)

    @field_validator("units")
    @classmethod
    def _units(cls, v: list[str]) -> list[str]:
        codes = _unit_codes()
        for unit in v:
            if unit not in codes:
                raise ValueError(
                    f"{unit!r} is not a unit (a department code of config/codes.yaml, "
                    "e.g. police, hrss, district-310115)")
        return _dedupe(v)

    @model_validator(mode="after")
    def _units_for_unit_roles(self) -> NewStaffUser:
        needing = [r for r in self.roles if r in UNIT_ROLES]
        if needing and not self.units:
            raise ValueError(f"role {needing[0]!r} needs at least one unit (--unit)")
        return self

    @classmethod
    def create(cls, username: str, *, roles: Iterable[str], units: Iterable[str] = (),
               display_name: str | None = None) -> NewStaffUser:
        """Validate, turning pydantic's error into a ValidationFailed that names every field."""
        data = {"username": username, "roles": list(roles), "units": list(units),
                "display_name": display_name if display_name is not None else username}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = ".".join(str(p) for p in err["loc"]) or "user"
                reason = err["msg"].removeprefix("Value error, ")
                problems.append((str(username), field, reason))
            detail = "; ".join(f"{field}: {reason}" for _, field, reason in problems)
            raise ValidationFailed(f"invalid staff user: {detail}", problems) from None


class StaffUser(BaseModel):
    """A console account as the rest of Bangban sees it (never with its password hash)."""

    model_config = ConfigDict(frozen=True)

    id: str
    username: str
    display_name: str
    roles: list[str]
    units: list[str]
    active: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None = None

    def has_role(self, *roles: str) -> bool:
        """Whether the user holds any of ``roles`` (each role grants only itself)."""
        return any(r in self.roles for r in roles)

    def in_unit(self, unit: str | None) -> bool:
        return unit is not None and unit in self.units

    @classmethod
    def from_row(cls, row: Any) -> StaffUser:
        return cls(id=row.id, username=row.username, display_name=row.display_name,
                   roles=list(row.roles), units=list(row.units), active=bool(row.active),
                   created_at=row.created_at, updated_at=row.updated_at,
                   last_login_at=row.last_login_at)


class StaffSession(BaseModel):
    """A live sign-in: its user, its lifetime and the CSRF token its forms must carry."""

    model_config = ConfigDict(frozen=True)

    id: str
    user: StaffUser
    created_at: datetime
    expires_at: datetime
    csrf_token: str
    user_agent: str | None = None
