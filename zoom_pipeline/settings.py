"""Checks of setting values, shared by the environment (definitions.py) and the accounts file (accounts.py).

Each returns the value or raises ValueError with one sentence naming the setting and what is expected.
"""

import re
from urllib.parse import urlsplit


def shown_url(raw: str) -> str:
    """`raw` fit for a message: anything before the last `@` after the scheme (user:pass) masked, even
    when the password holds `/`, `?` or `#`."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", r"\1***@", raw, flags=re.DOTALL) if "@" in raw else raw


def check_url(name: str, raw: str, example: str) -> str:
    """An absolute http(s) URL with a host; a user:pass@ part is never shown in the error."""
    try:
        parts = urlsplit(raw)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # e.g. an unclosed [IPv6 bracket or a port that is not a number
        ok = False
    if not ok or re.search(r"[\s\x00-\x1f\x7f]", raw):
        raise ValueError(f"{name} must be an absolute http:// or https:// URL with a host, such as {example!r}, "
                         f"got {shown_url(raw)!r}.")
    return raw


def check_positive(name: str, raw, *, whole: bool, what: str) -> int | float:
    """A positive number (a whole one when `whole`) of `what`."""
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int | float):
        value = raw if (not whole or float(raw).is_integer()) else None
        value = int(value) if whole and value is not None else value
    else:
        try:
            value = int(str(raw).strip()) if whole else float(str(raw).strip())
        except ValueError:
            value = None
    if value is None or not value > 0 or value != value or value == float("inf"):
        kind = "a positive whole number" if whole else "a positive number"
        raise ValueError(f"{name} must be {kind} of {what}, got {raw!r}.")
    return value
