"""Sortable, searchable HTML tables (the behaviour is in ``templates/table.js``)."""

from __future__ import annotations

import math
import numbers

import pandas as pd

from pertcontrast.report.markup import Html, escape, format_number, tag

GENE_LIST_COLUMNS = ("top_up", "top_down")
GENES_SHOWN = 5  # of each ';'-separated list (the full lists are in effects.csv)


def sortable_table(table: pd.DataFrame, table_id: str, links: dict[str, str] | None = None,
                   search_label: str = "Search", placeholder: str = "perturbation, gene, cluster…") -> Html:
    """A search box, a row counter and the table; numeric columns sort numerically.

    ``links`` maps a value of the first column to the address it should link to.
    """
    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    head = tag("thead", tag("tr", *[
        tag("th", _breakable(column), data_type="number" if is_number else "text", tabindex="0", aria_sort="none",
            class_="num" if is_number else None, scope="col")
        for column, is_number in zip(table.columns, numeric)
    ]))
    rows = [_row(values, table.columns, numeric, links) for values in table.itertuples(index=False, name=None)]
    search = tag("div",
                 tag("label", f"{search_label} ",
                     tag("input", type="search", data_filter=table_id, data_counter=f"{table_id}-count",
                         placeholder=placeholder, autocomplete="off")),
                 tag("span", f"{len(rows)} of {len(rows)} rows", id=f"{table_id}-count", class_="note"),
                 class_="toolbar")
    body = tag("tbody", *rows)
    return search + tag("div", tag("table", head, body, id=table_id, class_="sortable"), class_="table-wrap")


def _breakable(name) -> Html:
    """A column name that may wrap after each underscore (its text stays the same)."""
    parts = [escape(part) for part in str(name).split("_")]
    return Html("_<wbr>".join(parts))


def _row(values, columns, numeric, links) -> Html:
    cells = []
    for position, (value, column, is_number) in enumerate(zip(values, columns, numeric)):
        if is_number:
            cells.append(tag("td", format_number(value), data_value=_sort_value(value), class_="num"))
            continue
        text = "" if _missing(value) else str(value)
        if column in GENE_LIST_COLUMNS:
            genes = [g for g in text.split(";") if g]
            shown = ", ".join(genes[:GENES_SHOWN]) + (" …" if len(genes) > GENES_SHOWN else "")
            cells.append(tag("td", shown, data_value=text, class_="genes", title=", ".join(genes) or None))
        elif position == 0 and links and text in links:
            cells.append(tag("td", tag("a", text, href=links[text]), data_value=text))
        else:
            cells.append(tag("td", text))
    return tag("tr", *cells)


def _sort_value(value) -> str:
    if _missing(value):
        return ""
    value = float(value)
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return math.isnan(float(value))
    return bool(pd.isna(value)) if not isinstance(value, (list, tuple, str)) else False
