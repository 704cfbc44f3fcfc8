"""Staff accounts of the console and their sign-in sessions.

Passwords are hashed with argon2id (argon2-cffi's ``PasswordHasher``, RFC 9106 low-memory
profile by default) and rehashed on the next successful sign-in when the parameters change.
:meth:`StaffStore.authenticate` costs one argon2 verification whatever happens — an unknown
username is checked against a dummy hash — so response times do not tell which usernames exist.

A session is a random token held by the browser; the database keeps only its SHA-256, so a copy
of ``staff_sessions`` opens nothing. Each session carries its own CSRF token. Sessions expire
after a fixed lifetime (a working day); changing a password or disabling an account ends all of
that user's sessions.

The roles, the username and password rules and the models are in ``core.staff_models``; they
are imported here too, so ``from core.staff import StaffUser`` keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .conversations import new_id
from .db.schema import staff_sessions, staff_users
from .errors import Conflict, NotFound
from .staff_models import (  # re-exported (see __all__): the models' home used to be here
    MAX_DISPLAY_NAME, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, ROLE_LABELS, ROLES, SESSION_TTL,
    UNIT_ROLES, USERNAME, NewStaffUser, StaffSession, StaffUser, _TOKEN, check_password,
    normalise_username, token_hash, utcnow,
)

log = logging.getLogger(__name__)


# -- the store --------------------------------------------------------------------------------

_USER_COLUMNS = [c for c in staff_users.c if c.name != "password_hash"]


class StaffStore:
    """Staff accounts and sessions in SQL.

    ``hasher`` defaults to argon2-cffi's ``PasswordHasher()`` (argon2id); ``clock`` gives the
    current UTC time (tests move it). Hashing runs in threads, at most ``max_hashing`` at once,
    so a flood of sign-in attempts neither blocks the event loop nor takes all the memory.
    """

    def __init__(self, engine: AsyncEngine, *, hasher: PasswordHasher | None = None,
                 session_ttl: timedelta = SESSION_TTL,
                 clock: Callable[[], datetime] = utcnow, max_hashing: int = 4) -> None:
        self.engine = engine
        self.hasher = hasher or PasswordHasher()
        self.session_ttl = session_ttl
        self.clock = clock
        self._hashing = asyncio.Semaphore(max_hashing)
        self._dummy: str | None = None

    # -- hashing ------------------------------------------------------------------------------
    async def _hash(self, password: str) -> str:
        async with self._hashing:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, encoded: str, password: str) -> bool:
        async with self._hashing:
            try:
                return await asyncio.to_thread(self.hasher.verify, encoded, password)
            except VerifyMismatchError:
                return False
            except (VerificationError, InvalidHashError):
                log.warning("a stored staff password hash could not be verified")
                return False

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self._hash(secrets.token_urlsafe(24))
        return self._dummy

    # -- users --------------------------------------------------------------------------------
    async def add_user(self, username: str, password: str, *, roles: Iterable[str],
                       units: Iterable[str] = (), display_name: str | None = None) -> StaffUser:
        new = NewStaffUser.create(username, roles=roles, units=units, display_name=display_name)
        check_password(password, new.username)
        encoded = await self._hash(password)
        now = self.clock()
        row = {"id": new_id("s"), "username": new.username, "display_name": new.display_name,
               "password_hash": encoded, "roles": new.roles, "units": new.units,
               "active": True, "created_at": now, "updated_at": now, "last_login_at": None}
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(staff_users).values(**row))
        except IntegrityError:
            raise Conflict(f"a staff user {new.username!r} already exists") from None
        log.info("staff user %s added (roles %s, units %s)", new.username,
                 ",".join(new.roles), ",".join(new.units) or "-")
        return StaffUser.from_row(_Row(row))

    async def get_user(self, username: str) -> StaffUser:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*_USER_COLUMNS).where(
                staff_users.c.username == normalise_username(username)))).first()
        if row is None:
            raise NotFound(f"no staff user {normalise_username(username)!r}")
        return StaffUser.from_row(row)

    async def list_users(self) -> list[StaffUser]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(*_USER_COLUMNS).order_by(staff_users.c.username))).all()
        return [StaffUser.from_row(r) for r in rows]

    async def _update_user(self, username: str, **values: Any) -> StaffUser:
        name = normalise_username(username)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(staff_users).where(
                staff_users.c.username == name).values(updated_at=self.clock(), **values))
            if result.rowcount == 0:
                raise NotFound(f"no staff user {name!r}")
            row = (await conn.execute(select(*_USER_COLUMNS).where(
                staff_users.c.username == name))).one()
            if "password_hash" in values or values.get("active") is False:
                await conn.execute(delete(staff_sessions).where(
                    staff_sessions.c.user_id == row.id))
        return StaffUser.from_row(row)

    async def set_password(self, username: str, password: str) -> StaffUser:
        """A new password; every session of the user ends."""
        check_password(password, normalise_username(username))
        await self.get_user(username)  # NotFound before spending a hash
        user = await self._update_user(username, password_hash=await self._hash(password))
        log.info("staff user %s: password changed, sessions ended", user.username)
        return user

    async def disable(self, username: str) -> StaffUser:
        """The user can no longer sign in; every session of theirs ends."""
        user = await self._update_user(username, active=False)
        log.info("staff user %s disabled", user.username)
        return user

    async def enable(self, username: str) -> StaffUser:
        user = await self._update_user(username, active=True)
        log.info("staff user %s enabled", user.username)
        return user

    async def update_roles_units(self, username: str, roles: Iterable[str],
                                 units: Iterable[str]) -> StaffUser:
        """New roles and units, validated as for ``add_user``; nothing changes if invalid.

        Sessions are kept: each request reads the account afresh, so the change applies to the
        user's very next request (a role taken away is refused from then on).
        """
        name = normalise_username(username)
        if not USERNAME.match(name):  # no such account can exist: not a validation problem
            raise NotFound(f"no staff user {name!r}")
        checked = NewStaffUser.create(name, roles=roles, units=units)
        user = await self._update_user(name, roles=checked.roles, units=checked.units)
        log.info("staff user %s: roles %s, units %s", user.username, ",".join(user.roles),
                 ",".join(user.units) or "-")
        return user

    async def authenticate(self, username: str, password: str) -> StaffUser | None:
        """The user, if the password is right and the account active; otherwise None.

        One argon2 verification in every case (a dummy hash for unknown usernames, the first
        call included), so the time taken does not reveal whether the username exists.
        """
        dummy = await self._dummy_hash()
        name = normalise_username(username)
        row = None
        if USERNAME.match(name) and len(password) <= MAX_PASSWORD_LENGTH:
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(staff_users).where(
                    staff_users.c.username == name))).first()
        if row is None:
            await self._verify(dummy, password)
            return None
        if not await self._verify(row.password_hash, password):
            return None
        if not row.active:
            return None
        now = self.clock()
        values: dict[str, Any] = {"last_login_at": now}
        if self._needs_rehash(row.password_hash):
            values["password_hash"] = await self._hash(password)
            log.info("staff user %s: password rehashed with the current parameters", name)
        async with self.engine.begin() as conn:
            await conn.execute(update(staff_users).where(
                staff_users.c.id == row.id).values(**values))
        return StaffUser.from_row(row).model_copy(update={"last_login_at": now})

    def _needs_rehash(self, encoded: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(encoded)
        except (InvalidHashError, ValueError):
            return True

    # -- sessions -----------------------------------------------------------------------------
    async def create_session(self, user: StaffUser, *, user_agent: str | None = None
                             ) -> tuple[str, StaffSession]:
        """A new session for ``user``: the token for the cookie, and the session."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = StaffSession(id=token_hash(token), user=user, created_at=now,
                               expires_at=now + self.session_ttl,
                               csrf_token=secrets.token_urlsafe(32),
                               user_agent=(user_agent or "")[:256] or None)
        async with self.engine.begin() as conn:
            # sign-ins are rare: a good moment to forget the sessions that have run out
            await conn.execute(delete(staff_sessions).where(staff_sessions.c.expires_at <= now))
            await conn.execute(insert(staff_sessions).values(
                id=session.id, user_id=user.id, created_at=now, expires_at=session.expires_at,
                csrf_token=session.csrf_token, user_agent=session.user_agent))
        return token, session

    async def get_session(self, token: str | None) -> StaffSession | None:
        """The live session of ``token``, or None: unknown, revoked, expired or user disabled."""
        if not token or not _TOKEN.match(token):
            return None
        key = token_hash(token)
        query = (select(staff_sessions, *[c.label(f"u_{c.name}") for c in _USER_COLUMNS])
                 .join(staff_users, staff_users.c.id == staff_sessions.c.user_id)
                 .where(staff_sessions.c.id == key))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        if row.expires_at <= self.clock():
            async with self.engine.begin() as conn:
                await conn.execute(delete(staff_sessions).where(staff_sessions.c.id == key))
            return None
        user = StaffUser.from_row(_Row({c.name: getattr(row, f"u_{c.name}")
                                        for c in _USER_COLUMNS}))
        if not user.active:
            return None
        return StaffSession(id=row.id, user=user, created_at=row.created_at,
                            expires_at=row.expires_at, csrf_token=row.csrf_token,
                            user_agent=row.user_agent)

    async def revoke_session(self, token: str | None) -> bool:
        """End the session of ``token``; False if there was none."""
        if not token or not _TOKEN.match(token):
            return False
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(staff_sessions).where(
                staff_sessions.c.id == token_hash(token)))
        return result.rowcount > 0

    async def revoke_sessions(self, user_id: str) -> int:
        """End every session of one user; the number ended."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(staff_sessions).where(
                staff_sessions.c.user_id == user_id))
        return result.rowcount

    async def count_sessions(self, user_id: str) -> int:
        """Live sessions of one user (expired ones not counted)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(staff_sessions.c.expires_at).where(
                staff_sessions.c.user_id == user_id))).all()
        now = self.clock()
        return sum(1 for r in rows if r.expires_at > now)


class _Row:
    """Attribute access to a dict, so freshly written rows go through ``StaffUser.from_row``."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


__all__ = ["MAX_DISPLAY_NAME", "MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "ROLE_LABELS", "ROLES",
           "SESSION_TTL", "UNIT_ROLES", "USERNAME", "NewStaffUser", "StaffSession", "StaffStore",
           "StaffUser", "check_password", "normalise_username", "token_hash", "utcnow"]
