"""The 随申办 APP channel's settings and the JSON shapes at its API boundary.

Every request body, query and response of ``/api/app/v1`` is one of these pydantic models, and
the OpenAPI document (``adapters.app.openapi``) is generated from them, so what the server
accepts and what the document promises cannot drift apart.

String fields that end up in SQL or Redis keys carry a ``pattern`` that excludes control
characters (PostgreSQL cannot store NUL), so a request the document calls valid is one the
server can store.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from adapters.base import AdapterConfig
from core.dialog.models import MAX_TEXT, Attachment, Outbound

#: an app's id in the config and the ``X-Bangban-App`` header
APP_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
#: the app's own id for its user; the channel user is ``<app_id>:<user>``
USER_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"
#: control characters (but tab, LF, CR) may not appear in citizen text
_CTRL = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
#: free text with at least one visible character and no control characters
TEXT_PATTERN = rf"^[^{_CTRL}]*[^\s{_CTRL}][^{_CTRL}]*$"
#: printable ASCII, no spaces: client message ids and quick-reply payloads
TOKEN_PATTERN = r"^[\x21-\x7e]+$"
#: the largest ``after`` a client can send (message sequence numbers are 32-bit in SQL)
MAX_SEQ = 2**31 - 1
#: the longest ``wait`` the document allows; the server also caps it at ``long_poll_max_s``
MAX_WAIT_S = 60


# -- settings (config section ``channels.app``) ------------------------------------------------


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: messages one app user may send per window (HTTP and websocket together)
    messages: int = Field(30, ge=1)
    window_s: int = Field(60, ge=1, le=3600)


AppKey = Annotated[str, StringConstraints(min_length=32)]


class AppConfig(AdapterConfig):
    #: app_id → shared HMAC-SHA256 key (at least 32 characters)
    apps: dict[str, AppKey] = Field(default_factory=dict)
    #: a request's timestamp may differ from the server clock by at most this many seconds;
    #: nonces are remembered for twice this long
    replay_window_s: int = Field(300, ge=10, le=3600)
    #: longest a ``GET /messages`` long-poll is held open
    long_poll_max_s: float = Field(25, ge=0, le=MAX_WAIT_S)
    #: largest request body accepted, in bytes; larger ones get 413
    max_body_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024)
    rate_limit: RateLimit = Field(default_factory=RateLimit)

    @field_validator("apps")
    @classmethod
    def _app_ids(cls, apps: dict[str, str]) -> dict[str, str]:
        import re

        for app_id in apps:
            if not re.match(APP_ID_PATTERN, app_id):
                raise ValueError(f"app id {app_id!r} must be 1-32 letters, digits, '_' or '-'")
        return apps


# -- API models --------------------------------------------------------------------------------


class _Api(BaseModel):
    model_config = ConfigDict(extra="forbid")


User = Annotated[str, StringConstraints(pattern=USER_PATTERN)]
MsgId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=TOKEN_PATTERN)]
ConversationId = Annotated[str, StringConstraints(max_length=64, pattern=TOKEN_PATTERN)]


class TextMessage(_Api):
    """The citizen typed something."""

    user: User = Field(description="The app's own id for its user (namespaced by app).")
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT,
                                           pattern=TEXT_PATTERN)]
    msg_id: MsgId | None = Field(
        None, description="Client message id: a retry with the same id is answered once.")


class QuickReplyMessage(_Api):
    """The citizen tapped a quick reply the bot offered."""

    user: User
    payload: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                              pattern=TOKEN_PATTERN)]
    label: Annotated[str, StringConstraints(min_length=1, max_length=60, pattern=TEXT_PATTERN)]
    msg_id: MsgId | None = None


class SendResponse(_Api):
    conversation_id: str
    #: sequence number of the citizen's message in the conversation (0 for a duplicate)
    seq: int
    #: the replies, in order (empty for a duplicate: they were sent the first time)
    replies: list[Outbound]
    duplicate: bool = False


class PollQuery(_Api):
    """Query of ``GET /messages`` (and ``GET /ws``, which refuses ``wait``: it does not wait)."""

    user: User
    after: int = Field(0, ge=0, le=MAX_SEQ,
                       description="Return messages with a sequence number above this.")
    wait: float = Field(0, ge=0, le=MAX_WAIT_S, allow_inf_nan=False,
                        description="Seconds to wait for a message when there is none yet "
                                    "(capped by the server's long-poll limit).")
    conversation_id: ConversationId | None = Field(
        None, description="The conversation `after` refers to; when the citizen's current "
                          "conversation is another one, messages are returned from its start.")


class UploadQuery(_Api):
    """Query of ``POST /attachments``: the body is the file itself."""

    user: User
    name: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                           pattern=TEXT_PATTERN)] | None = Field(
        None, description="The file's name as the user knows it (shown to the agent; the "
                          "extension is replaced by the one of the detected type).")
    msg_id: MsgId | None = Field(
        None, description="Client message id: a retry with the same id is answered once.")


class UploadResponse(SendResponse):
    """The picture or voice message was stored and sent, as ``POST /messages`` answers."""

    #: what was stored: detected kind and type, size, and the URL to GET it from (signed)
    attachment: Attachment


class PollResponse(_Api):
    #: the citizen's current conversation (null if they never wrote)
    conversation_id: str | None
    messages: list[Outbound]


class Problem(_Api):
    field: str
    reason: str


class ErrorBody(_Api):
    """Every refusal: a machine-readable code and a reason a developer can act on."""

    error: str = Field(description="Machine-readable code, e.g. bad_signature, invalid.")
    message: str = Field(description="What was wrong, in words.")
    problems: list[Problem] | None = Field(
        None, description="For invalid input: each field and what was expected.")


class WsServerFrame(_Api):
    """A frame the server sends on the websocket.

    ``status`` frames carry a *transient* human-help status (a message with ``seq`` 0 and
    ``queue``: position, expected wait, agent): not stored, not replayed, to be shown in place
    of the previous status; the newest ``created_at`` wins, since stored messages carrying
    ``queue`` arrive by another path.
    """

    type: Literal["message", "status", "error"]
    message: Outbound | None = None
    error: str | None = None
    reason: str | None = None


class WsClientFrame(_Api):
    """A frame the client sends on the websocket: a ``text``, or a tapped quick reply's
    ``payload`` with its ``label`` (one of the two, as ``POST /messages`` takes them)."""

    type: Literal["send"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT,
                                           pattern=TEXT_PATTERN)] | None = None
    payload: Annotated[str, StringConstraints(min_length=1, max_length=200,
                                              pattern=TOKEN_PATTERN)] | None = None
    #: required with ``payload``: the button's label, shown in the transcript
    label: Annotated[str, StringConstraints(max_length=60, pattern=TEXT_PATTERN)] | None = None
    msg_id: MsgId | None = None
