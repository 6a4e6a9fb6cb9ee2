"""Fill ``templates/page.html`` with a title, a body, the CSS and the table script, and a
Content-Security-Policy that lets the page run only that script and load only data: images.
Even markup that slipped past escaping could then neither run script nor fetch anything."""

from __future__ import annotations

import base64
import hashlib
import string
from functools import cache
from importlib.resources import files

from pertcontrast.report.markup import Html, escape


@cache
def template(name: str) -> str:
    return files("pertcontrast.report").joinpath("templates", name).read_text(encoding="utf-8")


def render_page(title: str, body: Html, generator: str = "pertcontrast") -> str:
    css, script = template("report.css"), template("table.js")
    csp = "; ".join((
        "default-src 'none'",
        "img-src data:",
        f"style-src {_hash(css)}",
        f"script-src {_hash(script)}",
        "base-uri 'none'",
        "form-action 'none'",
    ))
    return string.Template(template("page.html")).substitute(
        title=escape(title), body=body, css=css, script=script, csp=escape(csp), generator=escape(generator),
    )


def _hash(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"
