"""Logging set-up, with personal data masked in every line.

Citizens type their ID-card and phone numbers into chats; those must never reach a log file or
an export in clear. The filter rewrites the formatted message, so it also covers arguments and
exception text.
"""

from __future__ import annotations

import logging
import re
import sys

# 18-digit resident ID (last digit may be X) and mainland mobile numbers; the look-arounds keep
# us from eating into longer digit runs such as order numbers.
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{6})\d{8}(\d{3}[\dXx])(?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask_personal_data(text: str) -> str:
    """Mask ID-card numbers (keep the region prefix and last 4) and mobile numbers (3+4)."""
    text = _ID_CARD.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logged as is, not dropped
            return True
        masked = mask_personal_data(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_personal_data(record.exc_text)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


def setup_logging(level: str = "INFO", mask: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    if mask:
        handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # jieba prints its own progress lines at DEBUG/INFO on first use
    logging.getLogger("jieba").setLevel(logging.WARNING)
    # alembic reports every migration context at INFO; "upgraded to X" is what operators need
    logging.getLogger("alembic").setLevel(logging.WARNING)
