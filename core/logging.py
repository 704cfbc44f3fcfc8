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
# People also write them grouped ("139 1234 5678", "139-1234-5678", "310101 19900101 1234"),
# with the country code glued on ("+8613912345678", "8613912345678"), or in full-width digits
# from a Chinese IME: the separators and the prefix are kept, the middle is masked.
_SEP = r"[ \-]?"
_ID_CARD = re.compile(rf"(?<![0-9A-Za-z])(\d{{6}}{_SEP})\d{{8}}({_SEP}\d{{3}}[\dXx])(?![0-9A-Za-z])",
                      re.ASCII)
_MOBILE = re.compile(rf"(?<!\d)((?:\+?86{_SEP})?1[3-9]\d{_SEP})\d{{4}}({_SEP}\d{{4}})(?!\d)", re.ASCII)
# full-width digits, X, plus and hyphen read as their ASCII forms (NFKC would touch more)
_HALF_WIDTH = str.maketrans("０１２３４５６７８９Ｘｘ＋－", "0123456789Xx+-")


def mask_personal_data(text: str) -> str:
    """Mask ID-card numbers (keep the region prefix and last 4) and mobile numbers (3+4)."""
    if not text.isascii():
        text = text.translate(_HALF_WIDTH)
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
