"""Staff accounts and sessions (core.staff) on the test database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from sqlalchemy import select

from core.db.schema import staff_sessions, staff_users
from core.errors import Conflict, NotFound, ValidationFailed
from core.staff import StaffStore, token_hash

PASSWORD = "correct horse battery"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class CountingHasher(PasswordHasher):
    """A cheap argon2id hasher that records which hashes it was asked to verify."""

    def __init__(self, **params) -> None:
        super().__init__(**{"time_cost": 1, "memory_cost": 1024, "parallelism": 1, **params})
        self.verified: list[str] = []

    def verify(self, hash, password):  # noqa: A002 - argon2's parameter name
        self.verified.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def store(engine, hasher, clock) -> StaffStore:
    return StaffStore(engine, hasher=hasher, clock=clock)


async def stored_hash(engine, username: str) -> str:
    async with engine.connect() as conn:
        return (await conn.execute(select(staff_users.c.password_hash).where(
            staff_users.c.username == username))).scalar_one()


# -- hashing ----------------------------------------------------------------------------------


async def test_passwords_are_stored_as_salted_argon2id_with_the_default_parameters(engine):
    store = StaffStore(engine)  # the hasher the service uses
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    await store.add_user("lisi", PASSWORD, roles=["agent"], units=["police"])
    first, second = await stored_hash(engine, "zhangsan"), await stored_hash(engine, "lisi")
    assert first.startswith("$argon2id$") and PASSWORD not in first
    params = extract_parameters(first)
    assert params.type is Type.ID
    assert (params.time_cost, params.memory_cost, params.parallelism) == (3, 65536, 4)
    assert first != second  # salted: the same password hashes differently
    assert (await store.authenticate("zhangsan", PASSWORD)).username == "zhangsan"


async def test_right_password_signs_in_and_records_the_time(store, clock):
    added = await store.add_user("ZhangSan ", PASSWORD, roles=["agent"], units=["police"],
                                 display_name="张三")
    assert added.username == "zhangsan" and added.last_login_at is None
    user = await store.authenticate("zhangsan", PASSWORD)
    assert user is not None and user.display_name == "张三"
    assert user.last_login_at == clock.now
    assert (await store.get_user("zhangsan")).last_login_at == clock.now
    # the login name is not case-sensitive
    assert await store.authenticate("ZHANGSAN", PASSWORD) is not None


async def test_wrong_password_is_refused(store):
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    assert await store.authenticate("zhangsan", PASSWORD + "x") is None
    assert await store.authenticate("zhangsan", "") is None
    assert (await store.get_user("zhangsan")).last_login_at is None


async def test_unknown_user_is_refused_after_a_full_verification(store, hasher):
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    real = await stored_hash(store.engine, "zhangsan")

    hasher.verified.clear()
    assert await store.authenticate("nobody", PASSWORD) is None
    assert len(hasher.verified) == 1  # one argon2 verification, against the dummy hash
    dummy = hasher.verified[0]
    assert dummy != real and dummy.startswith("$argon2id$")

    hasher.verified.clear()
    assert await store.authenticate("zhangsan", "wrong password") is None
    assert hasher.verified == [real]  # exactly as much work as for an unknown user

    hasher.verified.clear()
    assert await store.authenticate("<bad name>", PASSWORD) is None
    assert hasher.verified == [dummy]


async def test_disabled_user_is_refused_and_can_be_enabled_again(store):
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    disabled = await store.disable("zhangsan")
    assert disabled.active is False
    assert await store.authenticate("zhangsan", PASSWORD) is None
    await store.enable("zhangsan")
    assert await store.authenticate("zhangsan", PASSWORD) is not None


async def test_weak_passwords_are_refused(store):
    with pytest.raises(ValidationFailed, match="at least 10 characters"):
        await store.add_user("zhangsan", "short123", roles=["agent"], units=["police"])
    with pytest.raises(ValidationFailed, match="username"):
        await store.add_user("zhangsan12", "ZhangSan12", roles=["agent"], units=["police"])
    with pytest.raises(ValidationFailed, match="spaces"):
        await store.add_user("zhangsan", " " * 12, roles=["agent"], units=["police"])
    assert await store.list_users() == []
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    with pytest.raises(ValidationFailed, match="at least 10 characters"):
        await store.set_password("zhangsan", "123456789")


async def test_password_change_takes_effect_and_ends_sessions(store):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, _ = await store.create_session(user)
    await store.set_password("zhangsan", "a new passphrase")
    assert await store.authenticate("zhangsan", PASSWORD) is None
    assert await store.authenticate("zhangsan", "a new passphrase") is not None
    assert await store.get_session(token) is None
    with pytest.raises(NotFound):
        await store.set_password("nobody", "a new passphrase")


async def test_hash_is_upgraded_when_the_parameters_change(engine, clock):
    old = StaffStore(engine, hasher=CountingHasher(time_cost=1), clock=clock)
    await old.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    before = await stored_hash(engine, "zhangsan")
    assert extract_parameters(before).time_cost == 1

    new = StaffStore(engine, hasher=CountingHasher(time_cost=2), clock=clock)
    assert await new.authenticate("zhangsan", "wrong password") is None
    assert await stored_hash(engine, "zhangsan") == before  # only a right password rehashes
    assert await new.authenticate("zhangsan", PASSWORD) is not None
    after = await stored_hash(engine, "zhangsan")
    assert after != before and extract_parameters(after).time_cost == 2
    assert await new.authenticate("zhangsan", PASSWORD) is not None
    assert await stored_hash(engine, "zhangsan") == after  # nothing more to do


# -- roles, units and names -------------------------------------------------------------------


async def test_roles_and_units_are_validated(store):
    with pytest.raises(ValidationFailed, match="'boss' is not a role"):
        await store.add_user("zhangsan", PASSWORD, roles=["agent", "boss"], units=["police"])
    with pytest.raises(ValidationFailed, match="'atlantis' is not a unit"):
        await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police", "atlantis"])
    with pytest.raises(ValidationFailed, match="at least one role"):
        await store.add_user("zhangsan", PASSWORD, roles=[], units=["police"])
    with pytest.raises(ValidationFailed, match="'supervisor' needs at least one unit"):
        await store.add_user("zhangsan", PASSWORD, roles=["supervisor"])
    with pytest.raises(ValidationFailed, match="not a valid username"):
        await store.add_user("张三", PASSWORD, roles=["admin"])
    assert await store.list_users() == []

    # an administrator or KB editor may belong to no unit; duplicates collapse, in role order
    admin = await store.add_user("admin1", PASSWORD, roles=["admin", "kb_editor", "admin"])
    assert admin.roles == ["kb_editor", "admin"] and admin.units == []
    sup = await store.add_user("wang.wu", PASSWORD, roles=["supervisor", "agent"],
                               units=["district-310115", "police", "police"])
    assert sup.roles == ["agent", "supervisor"]
    assert sup.units == ["district-310115", "police"]
    assert sup.has_role("supervisor") and not sup.has_role("admin")
    assert sup.in_unit("police") and not sup.in_unit("hrss")
    assert [u.username for u in await store.list_users()] == ["admin1", "wang.wu"]


async def test_roles_and_units_can_be_changed_with_the_same_rules(store, clock):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, _ = await store.create_session(user)
    clock.advance(minutes=5)

    changed = await store.update_roles_units("ZhangSan", ["supervisor", "agent", "agent"],
                                             ["hrss", "police", "hrss"])
    assert changed.roles == ["agent", "supervisor"] and changed.units == ["hrss", "police"]
    assert changed.updated_at == clock.now and changed.created_at == user.created_at
    # the session is kept and sees the new roles at once (nothing cached in it)
    session = await store.get_session(token)
    assert session is not None and session.user.has_role("supervisor")
    assert session.user.units == ["hrss", "police"]

    # an administrator may belong to no unit
    admin = await store.update_roles_units("zhangsan", ["admin"], [])
    assert admin.roles == ["admin"] and admin.units == []

    # every refusal leaves the account as it was
    for roles, units, reason in ((["agent"], [], "'agent' needs at least one unit"),
                                 (["boss"], ["police"], "'boss' is not a role"),
                                 ([], ["police"], "at least one role"),
                                 (["agent"], ["atlantis"], "'atlantis' is not a unit")):
        with pytest.raises(ValidationFailed, match=reason):
            await store.update_roles_units("zhangsan", roles, units)
    after = await store.get_user("zhangsan")
    assert (after.roles, after.units) == (["admin"], [])
    for nobody in ("nobody", "张三"):
        with pytest.raises(NotFound):
            await store.update_roles_units(nobody, ["agent"], ["police"])


async def test_usernames_are_unique_whatever_their_case(store):
    await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    with pytest.raises(Conflict, match="already exists"):
        await store.add_user("ZhangSan", PASSWORD, roles=["agent"], units=["hrss"])


async def test_display_name_defaults_to_the_username_and_is_kept_verbatim(store):
    plain = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    assert plain.display_name == "zhangsan"
    odd = await store.add_user("lisi", PASSWORD, roles=["agent"], units=["police"],
                               display_name="  <b>李四</b>  ")
    assert odd.display_name == "<b>李四</b>"  # stored as typed; pages escape it
    with pytest.raises(ValidationFailed, match="name"):
        await store.add_user("wangwu", PASSWORD, roles=["agent"], units=["police"],
                             display_name="x" * 65)


async def test_unknown_users_are_not_found(store):
    for action in (store.get_user, store.disable, store.enable):
        with pytest.raises(NotFound, match="nobody"):
            await action("nobody")


# -- sessions ---------------------------------------------------------------------------------


async def test_a_session_carries_its_user_and_a_csrf_token(store):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, session = await store.create_session(user, user_agent="Mozilla/5.0")
    found = await store.get_session(token)
    assert found is not None and found.user.username == "zhangsan"
    assert found.csrf_token == session.csrf_token and len(found.csrf_token) >= 32
    assert found.user_agent == "Mozilla/5.0"
    other, _ = await store.create_session(user)
    assert other != token
    assert (await store.get_session(other)).csrf_token != session.csrf_token


async def test_only_a_hash_of_the_session_token_is_stored(store):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, _ = await store.create_session(user)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(staff_sessions))).all()
    assert [r.id for r in rows] == [token_hash(token)]
    assert all(token not in str(value) for value in rows[0])
    # the stored hash used as a token opens nothing
    assert await store.get_session(rows[0].id) is None


async def test_sessions_expire(store, clock):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, session = await store.create_session(user)
    assert session.expires_at == clock.now + timedelta(hours=12)
    clock.advance(hours=11, minutes=59)
    assert await store.get_session(token) is not None
    clock.advance(minutes=1)
    assert await store.get_session(token) is None
    clock.advance(minutes=-30)  # an expired session is gone, not just hidden
    assert await store.get_session(token) is None


async def test_expired_sessions_are_purged_when_someone_signs_in(store, clock):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    await store.create_session(user)
    clock.advance(hours=13)
    await store.create_session(user)
    async with store.engine.connect() as conn:
        assert len((await conn.execute(select(staff_sessions))).all()) == 1
    assert await store.count_sessions(user.id) == 1


async def test_revoked_session_is_refused(store):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, _ = await store.create_session(user)
    keep, _ = await store.create_session(user)
    assert await store.revoke_session(token) is True
    assert await store.get_session(token) is None
    assert await store.revoke_session(token) is False
    assert await store.get_session(keep) is not None
    assert await store.revoke_sessions(user.id) == 1
    assert await store.get_session(keep) is None


async def test_disabling_a_user_ends_their_sessions(store):
    user = await store.add_user("zhangsan", PASSWORD, roles=["agent"], units=["police"])
    token, _ = await store.create_session(user)
    await store.disable("zhangsan")
    assert await store.get_session(token) is None
    await store.enable("zhangsan")
    assert await store.get_session(token) is None  # enabling does not bring sessions back


@pytest.mark.parametrize("token", [None, "", "short", "x" * 500, "a b c d e f g h i j k l m n o p",
                                   "é" * 43])
async def test_malformed_tokens_open_nothing(store, token):
    assert await store.get_session(token) is None
    assert await store.revoke_session(token) is False
