"""Responses: what the simulator answers, as status, body and headers, before the handler writes them.

Zoom's error bodies (``{"code": ..., "message": ...}`` for the API, ``{"reason": ..., "error": ...}``
for OAuth) and its messages verbatim, and pages whose records hold raw ``bytes`` (``_dumps_with_raw``).
"""

from __future__ import annotations

import secrets
from typing import Any, NamedTuple

import orjson

# Zoom's messages, verbatim.
MSG_INVALID_TOKEN = "Invalid access token."
MSG_EXPIRED_TOKEN = "Access token is expired."
MSG_BAD_PAGE_TOKEN = "The next page token is invalid or expired."
MSG_RETENTION = "Only provide report in recent 6 months"
MSG_QPS = "You have reached the maximum per-second rate limit for this API. Try again later."
MSG_DAILY = (
    "You have reached the maximum daily rate limit for this API. "
    "Refer to the response header for details on when you can make another request."
)

_JSON = "application/json;charset=UTF-8"


class _Resp(NamedTuple):
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    ctype: str = _JSON
    reset: bool = False  # drop the connection without answering


def _json(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Resp:
    return _Resp(status, orjson.dumps(obj), headers)


def _api_error(status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Resp:
    return _json(status, {"code": code, "message": message}, headers)


def _oauth_error(reason: str, error: str) -> _Resp:
    return _json(400, {"reason": reason, "error": error})


def _dumps_with_raw(body: dict, key: str) -> bytes:
    """orjson.dumps of a page whose records may hold ``bytes``: those go out verbatim between quotes.

    Each bytes value is swapped for a unique placeholder string, the page is encoded as usual, and the
    placeholder (quotes included) is replaced by the raw bytes, so everything else stays valid JSON.
    """
    nonce = secrets.token_hex(8)
    raws: list[bytes] = []
    logs = []
    for rec in body[key]:
        if any(isinstance(v, bytes) for v in rec.values()):
            rec = dict(rec)
            for k, v in rec.items():
                if isinstance(v, bytes):
                    rec[k] = f"sim-raw-{nonce}-{len(raws)}"
                    raws.append(v)
        logs.append(rec)
    out = orjson.dumps({**body, key: logs})
    for i, raw in enumerate(raws):
        out = out.replace(f'"sim-raw-{nonce}-{i}"'.encode(), b'"' + raw + b'"', 1)
    return out
