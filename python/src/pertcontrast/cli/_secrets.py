"""Values that look like secrets (tokens, keys, passwords) passed where they do not belong
(``--tag``, ``--run-name``) are masked before they reach a log or the tracking server."""

from __future__ import annotations

import logging
import re

MASK = "***"
_SECRET_KEY = re.compile(r"token|passw|secret|api[_-]?key|credential|private[_-]?key", re.IGNORECASE)
_SECRET_VALUE = re.compile(
    r"(ghp_|gho_|ghs_|github_pat_|glpat-|xox[abposr]-|sk-|AKIA|ASIA|AIza|hf_)[A-Za-z0-9_\-]{8,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"  # a JWT
    r"|://[^/\s:@]+:[^/\s@]+@"  # user:password in a URI
    r"|-----BEGIN [A-Z ]*PRIVATE KEY"
)
_OPAQUE = re.compile(r"^[A-Za-z0-9+/=_\-]{32,}$")


def looks_like_secret(value: str, key: str = "") -> bool:
    """A token-shaped value, or any non-empty value of a key named like a secret."""
    value = str(value)
    if key and _SECRET_KEY.search(key) and value:
        return True
    if _SECRET_VALUE.search(value):
        return True
    # a long opaque string mixing letters and digits (hex or base64 keys), not a path or name
    return bool(_OPAQUE.match(value)) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def masked(value: str, what: str, key: str = "") -> str:
    """``value``, or MASK with a warning naming ``what`` when it looks like a secret."""
    if not looks_like_secret(value, key):
        return value
    logging.getLogger("pertcontrast").warning(
        "%s looks like a secret (a token, key or password); it was masked and is not sent to the tracking "
        "server. Credentials go in MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD.", what)
    return MASK


def mask_argv(argv: list[str]) -> list[str]:
    """The command line with secret-looking ``--tag``/``--run-name`` values masked (for the log)."""
    out, previous = [], ""
    for arg in argv:
        flag, eq, inline = arg.partition("=")
        if previous in ("--tag", "--run-name"):
            arg = _mask_option_value(previous, arg)
        elif eq and flag in ("--tag", "--run-name"):
            arg = f"{flag}={_mask_option_value(flag, inline)}"
        out.append(arg)
        previous = arg if arg.startswith("--") and "=" not in arg else ""
    return out


def _mask_option_value(flag: str, value: str) -> str:
    if flag == "--tag":
        key, sep, tag_value = value.partition("=")
        return f"{key}={MASK}" if sep and looks_like_secret(tag_value, key) else value
    return MASK if looks_like_secret(value) else value
