"""Allow-list sanitising of the KB's rich-text (富文本) fields.

Answers are shown inside every channel's page, so a KB record is an injection path: we keep a
small set of formatting tags and attributes and drop everything else (script, style, iframes,
event handlers, ``javascript:``/``data:`` URLs). ammonia (via nh3) does the parsing; it is a
maintained HTML5 sanitiser, which a regex never is.
"""

from __future__ import annotations

import html
import re

import nh3

ALLOWED_TAGS = {
    "p", "br", "div", "span", "strong", "b", "em", "i", "u", "s", "sub", "sup",
    "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "blockquote",
    "table", "thead", "tbody", "tr", "th", "td", "caption", "a", "img", "hr",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto", "tel"}
# Dropped with their content, not just unwrapped: their text is never meant for a reader.
CLEAN_CONTENT_TAGS = {"script", "style", "iframe", "object", "embed", "noscript", "template"}

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLOCK_END = re.compile(r"</(p|div|li|tr|h[3-6]|blockquote|dd|dt)>|<br\s*/?>", re.I)


def sanitize_html(value: str) -> str:
    return nh3.clean(
        value.strip(),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        clean_content_tags=CLEAN_CONTENT_TAGS,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def html_to_text(value: str) -> str:
    """Plain text of a rich-text field, for indexing and text-only channels."""
    text = _BLOCK_END.sub("\n", value)
    text = html.unescape(_TAG.sub("", text))
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)
