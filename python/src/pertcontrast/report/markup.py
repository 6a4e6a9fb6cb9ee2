"""HTML built from Python with escaping as the default.

Every string is escaped when it enters the page unless it is already ``Html`` (markup
this package built itself). User-supplied text (perturbation labels, gene names, ids,
settings) therefore cannot add elements or script: ``<script>`` arrives as the text
``<script>``.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable

VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "col"})
SAFE_URL_SCHEMES = ("http://", "https://")


class Html(str):
    """A string of markup that is already safe to insert as is."""

    def __add__(self, other):
        return Html(str(self) + str(escape(other)))


def escape(value) -> Html:
    """``value`` as safe markup: ``Html`` passes through, anything else is escaped text."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable, separator: str = "") -> Html:
    return Html(separator.join(escape(part) for part in parts))


def tag(name: str, *children, **attributes) -> Html:
    """``<name attributes>children</name>``; children and attribute values are escaped.

    Attribute names come from code, never from data: ``class_`` becomes ``class`` and
    ``data_value`` becomes ``data-value``; ``None``/``False`` attributes are left out.
    """
    rendered = []
    for key, value in attributes.items():
        if value is None or value is False:
            continue
        key = key.rstrip("_").replace("_", "-")
        rendered.append(key if value is True else f'{key}="{escape(value)}"')
    opening = f"<{name}{' ' if rendered else ''}{' '.join(rendered)}>"
    if name in VOID_TAGS:
        return Html(opening)
    return Html(f"{opening}{join(children)}</{name}>")


def safe_url(url: str | None) -> str | None:
    """``url`` when it is a plain web address, else ``None`` (no ``javascript:`` links)."""
    if url and str(url).lower().startswith(SAFE_URL_SCHEMES):
        return str(url)
    return None


def format_number(value, digits: int = 3) -> str:
    """Numbers for tables: integers with thousands separators, floats to ``digits``
    significant digits, missing values as an en dash."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    return str(value)


def key_value_table(values: dict, class_: str = "kv") -> Html:
    """A two-column table (setting, value); nested dicts are flattened with dots."""
    rows = [tag("tr", tag("th", key), tag("td", _plain(value))) for key, value in _flatten(values).items()]
    return tag("table", tag("tbody", *rows), class_=class_)


def _plain(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return format_number(value, digits=4)
    return "none" if value is None else str(value)


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
