"""The Zoom API the simulator serves: Server-to-Server OAuth and the two report endpoints.

``POST /oauth/token`` (grant ``account_credentials``; client id and secret in HTTP Basic auth) mints
JWT-shaped tokens that only the simulator's tables give meaning. ``GET /v2/report/operationlogs`` and
``GET /v2/report/activities`` answer like Zoom: its error bodies and status codes, per-endpoint scopes
(a missing one is Zoom's 400, code 4711), retention, newest-first offset paging with expiring opaque
page tokens bound to their account, endpoint and date range, the account's per-second limit, and
injected faults, which fire before authentication as a gateway's would. Where Zoom is undocumented,
the choice is noted inline.

``_ZoomApi`` is a part of ``ZoomSimulator`` (server.py), kept apart by concept; ``_route`` there sends
each request here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import random
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson

from zoom_pipeline.simulator.records import _Log, _parse_day
from zoom_pipeline.simulator.responses import (
    MSG_BAD_PAGE_TOKEN,
    MSG_DAILY,
    MSG_EXPIRED_TOKEN,
    MSG_INVALID_TOKEN,
    MSG_QPS,
    MSG_RETENTION,
    _api_error,
    _dumps_with_raw,
    _json,
    _oauth_error,
    _Resp,
)
from zoom_pipeline.simulator.state import (
    DEFAULT_ACCOUNT,
    _AccountState,
    _Counts,
    _Fault,
    _PageToken,
    _take_fault,
    _Token,
)

DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 300


class _ZoomApi:
    """The token endpoint and the report endpoints (mixed into ZoomSimulator)."""

    # From ZoomSimulator:
    _lock: threading.RLock
    _accounts: dict[str, _AccountState]
    token_ttl: float
    page_token_ttl: float
    retention_days: int
    last_token_style: str
    shuffle_within_second: bool
    shuffle_seed: int | None
    root_url: str
    _today: Callable[[], dt.date]

    # -- OAuth -------------------------------------------------------------------------------------
    def _token(self, query: dict, headers: Any, body: bytes) -> _Resp:
        params = dict(query)
        if body and "json" not in (headers.get("Content-Type") or ""):
            # Zoom accepts the same parameters as an x-www-form-urlencoded body.
            params.update({k: v[0] for k, v in parse_qs(body.decode("latin-1"), keep_blank_values=True).items()})
        client_id = secret = None
        auth = headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
        with self._lock:
            # The call is the account's whose app the client_id names (an unknown one: the default's).
            state = next((a for a in self._accounts.values() if a.client_id == client_id),
                         self._accounts[DEFAULT_ACCOUNT])
            state.token_calls += 1
            fault = _take_fault(state.token_faults, None, lambda f: True)
            if fault is not None:
                state.token_counts.faults[fault.kind] = state.token_counts.faults.get(fault.kind, 0) + 1
        answer = functools.partial(self._status, state.token_counts)
        if fault is not None:
            if fault.kind == "token_connection_reset":
                return _Resp(0, reset=True)
            if fault.kind == "token_slow":
                time.sleep(float(fault.params.get("seconds", 1.0)))
            else:
                status = int(fault.params.get("status", 500))
                return answer(_json(status, {"reason": HTTPStatus(status).phrase, "error": "server_error"}))

        with self._lock:
            if client_id != state.client_id or secret != state.client_secret:
                return answer(_oauth_error("Invalid client_id or client_secret", "invalid_client"))
            grant_type = params.get("grant_type")
            if not grant_type:
                return answer(_oauth_error("Missing grant_type", "invalid_request"))
            if grant_type != "account_credentials":
                return answer(_oauth_error("Unsupported grant type", "unsupported_grant_type"))
            account = params.get("account_id")
            if not account:
                return answer(_oauth_error("Bad Request", "invalid_request"))
            if account != state.account_id:
                if any(other.account_id == account for other in self._accounts.values()):
                    # Another account's id: this app's credentials are not valid there.
                    return answer(_oauth_error("Invalid client_id or client_secret", "invalid_client"))
                return answer(_oauth_error("Account does not exist", "invalid_request"))
            if state.invalidate_on_mint:
                for earlier in state.tokens.values():  # they now answer 401, code 124 "Invalid access token."
                    earlier.invalid = True
            token = self._mint(state)
            state.tokens_issued += 1
            return answer(_json(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl,
                                      "scope": state.scopes, "api_url": self.root_url}))

    def _mint(self, state: _AccountState) -> str:
        # Looks like Zoom's JWT-shaped tokens, but only the account's table gives it meaning.
        now = time.time()

        def b64(obj: Any) -> str:
            return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()
        token = ".".join((b64({"sv": "00000001", "alg": "HS512", "v": "2.0", "kid": secrets.token_hex(8)}),
                          b64({"aud": "https://oauth.zoom.us", "uid": state.client_id, "ver": 9,
                               "auid": secrets.token_hex(16), "iat": int(now), "exp": int(now + self.token_ttl)}),
                          secrets.token_urlsafe(64)))
        state.tokens[token] = _Token(time.monotonic())
        return token

    def _owner(self, bearer: str) -> _AccountState:
        """The account that minted ``bearer``; the default account for a token nobody minted."""
        for state in self._accounts.values():
            if bearer in state.tokens:
                return state
        return self._accounts[DEFAULT_ACCOUNT]

    # -- report ------------------------------------------------------------------------------------
    def _report(self, query: dict, headers: Any, log: _Log) -> _Resp:
        auth = headers.get("Authorization") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        has_page_token = bool(query.get("next_page_token"))
        key = query.get("from", "")
        if query.get("to", key) != key:
            key = f"{key}..{query.get('to', '')}"
        with self._lock:
            state = self._owner(bearer)  # the token decides the account: its data, limits, faults, counters
            counts = state.counts[log.name]
            counts.calls += 1
            n = counts.calls
            counts.by_day[key] = counts.by_day.get(key, 0) + 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            if state.max_requests_per_second is not None and state.over_qps():
                counts.qps += 1
                state.in_flight -= 1
                return self._status(counts, _api_error(429, 429, MSG_QPS, (("X-RateLimit-Category", "Heavy"),
                                                                           ("X-RateLimit-Type", "QPS"))))
            token = state.tokens.get(bearer)
            if token is not None and not token.invalid:
                now = time.monotonic()
                state.token_use.setdefault(bearer, [now, now])[1] = now
            fault = _take_fault(state.faults, log.name,
                                lambda f: f.kind != "invalid_page_token" or has_page_token)
            if fault is not None:
                counts.faults[fault.kind] = counts.faults.get(fault.kind, 0) + 1
        try:
            if fault is not None and fault.kind == "slow":
                time.sleep(float(fault.params.get("seconds", 1.0)))  # outside the lock
                fault = None
            with self._lock:
                if fault is None:
                    resp = self._page(query, bearer, log, state, n)
                elif fault.kind == "truncated_body":
                    served = counts.records
                    full = self._page(query, bearer, log, state, n)
                    resp = full._replace(body=full.body[: len(full.body) // 2])
                    if full.status == 200:  # the client never gets these records
                        counts.pages -= 1
                        counts.records = served
                else:
                    resp = self._fault_response(fault, query, bearer, log, state)
                for action in state.triggers.pop((log.name, n), []):
                    action()
                return self._status(counts, resp)
        finally:
            with self._lock:
                state.in_flight -= 1

    def _status(self, counts: _Counts, resp: _Resp) -> _Resp:
        if not resp.reset:
            with self._lock:
                key = str(resp.status)
                counts.statuses[key] = counts.statuses.get(key, 0) + 1
        return resp

    def _fault_response(self, fault: _Fault, query: dict, bearer: str, log: _Log, state: _AccountState) -> _Resp:
        kind, params = fault.kind, fault.params
        if kind == "rate_limit_qps":
            headers = [("X-RateLimit-Category", "Heavy"), ("X-RateLimit-Type", "QPS")]
            if params.get("retry_after") is not None:
                headers.append(("Retry-After", str(params["retry_after"])))
            return _api_error(429, 429, MSG_QPS, tuple(headers))
        if kind == "rate_limit_daily":
            # The daily quota resets at 00:00 UTC; Retry-After is an ISO timestamp, not seconds.
            reset = params.get("retry_after") or f"{self._today() + dt.timedelta(days=1)}T00:00:00Z"
            return _api_error(429, 429, MSG_DAILY, (
                ("X-RateLimit-Category", "Heavy"), ("X-RateLimit-Type", "Daily-limit"),
                ("X-RateLimit-Limit", str(params.get("limit", 30000))), ("X-RateLimit-Remaining", "0"),
                ("Retry-After", str(reset))))
        if kind == "server_error":
            status = int(params.get("status", 500))
            phrase = HTTPStatus(status).phrase
            if params.get("body", "json") == "html":
                page = (f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
                        f"<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n")
                return _Resp(status, page.encode(), ctype="text/html")
            return _api_error(status, status, params.get("message", phrase))
        if kind == "token_expired":
            token = state.tokens.get(bearer)
            if token is not None:
                token.revoked = True
            return _api_error(401, 124, MSG_EXPIRED_TOKEN)
        if kind == "invalid_page_token":
            state.page_tokens.pop(query.get("next_page_token", ""), None)
            return _api_error(400, 300, MSG_BAD_PAGE_TOKEN)
        if kind == "connection_reset":
            return _Resp(0, reset=True)
        if kind == "malformed_page":  # a 200 without the records list; its token says "last page"
            shape = params.get("shape", "missing")
            if shape == "empty":
                return _json(200, {})
            if shape == "message":
                return _json(200, {"message": "upstream timeout"})
            body: dict[str, Any] = {"from": log.bound(query.get("from", "")), "to": log.bound(query.get("to", "")),
                                    "page_size": int(query.get("page_size") or DEFAULT_PAGE_SIZE),
                                    "next_page_token": ""}
            if shape != "missing":
                body[log.records_key] = None if shape == "null" else {}
            return _json(200, body)
        if kind == "raw_body":  # a 200 with exactly these bytes: JSON that strict parsers refuse, odd shapes
            body = params.get("body", "")
            return _Resp(200, body.encode("latin-1") if isinstance(body, str) else bytes(body))
        raise AssertionError(f"unhandled fault {kind}")

    def _page(self, query: dict, bearer: str, log: _Log, state: _AccountState, call: int = 0) -> _Resp:
        """Serve one page of ``log`` of ``state``'s account for its report call number ``call`` (caller
        holds the lock)."""
        now = time.monotonic()
        token = state.tokens.get(bearer)
        if token is None or token.invalid:
            return _api_error(401, 124, MSG_INVALID_TOKEN)
        if token.revoked or now - token.issued > self.token_ttl:
            return _api_error(401, 124, MSG_EXPIRED_TOKEN)
        if not any(scope in state.scopes.split() for scope in log.scopes):
            # Zoom answers a missing scope with 400, not 401/403.
            return _api_error(400, 4711, f"Invalid access token, does not contain scopes:[{log.scopes[0]}]")

        dates = {}
        for name in ("from", "to"):
            raw = query.get(name)
            if not raw:
                return _api_error(400, 300, f"The '{name}' field is required (yyyy-mm-dd).")
            try:
                dates[name] = _parse_day(raw)
            except ValueError:
                return _api_error(400, 300, f"Invalid date format for '{name}': {raw!r}. Expected yyyy-mm-dd.")
        frm, to = dates["from"].isoformat(), dates["to"].isoformat()
        if dates["to"] < dates["from"]:
            return _api_error(400, 300, "The 'to' date must not be earlier than the 'from' date.")
        if dates["from"] < self._today() - dt.timedelta(days=self.retention_days):
            return _api_error(400, 300, MSG_RETENTION)

        size = DEFAULT_PAGE_SIZE
        if query.get("page_size"):
            try:
                size = int(query["page_size"])
            except ValueError:
                return _api_error(400, 300, f"Invalid page_size: {query['page_size']!r}.")
            size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)

        offset = 0
        page_token = query.get("next_page_token")
        if page_token:
            entry = state.page_tokens.get(page_token)  # bound to its account, endpoint and date range
            if entry is None or now - entry.issued > self.page_token_ttl or entry[:3] != (log.name, frm, to):
                return _api_error(400, 300, MSG_BAD_PAGE_TOKEN)
            offset = entry.offset
            if not query.get("page_size"):
                size = entry.size

        rng = None
        if self.shuffle_within_second:  # one permutation per call, shared by every day of the range
            rng = random.Random() if self.shuffle_seed is None else random.Random(f"{self.shuffle_seed}/{call}")
        records: list[dict] = []
        total = 0
        skip = offset
        raw = False
        for day in sorted((d for name, d in state.days if name == log.name and frm <= d <= to), reverse=True):
            data = state.days[(log.name, day)]
            day_total = data.total
            total += day_total
            if len(records) < size and skip < day_total:
                raw = raw or data.raw
                if rng is None:
                    records.extend(data.slice(skip, size - len(records)))
                else:
                    records.extend(data.shuffled_slice(skip, size - len(records), rng))
                skip = 0
            else:
                skip = max(0, skip - day_total)

        body: dict[str, Any] = {"from": log.bound(frm), "to": log.bound(to), "page_size": size}
        counts = state.counts[log.name]
        if offset + len(records) < total:
            body["next_page_token"] = self._issue_page_token(
                state, _PageToken(log.name, frm, to, offset + len(records), size, now))
            counts.page_tokens += 1
        elif self.last_token_style == "empty":
            body["next_page_token"] = ""
        elif self.last_token_style == "null":
            body["next_page_token"] = None
        body[log.records_key] = records
        counts.pages += 1
        counts.records += len(records)
        return _Resp(200, _dumps_with_raw(body, log.records_key)) if raw else _json(200, body)

    def _issue_page_token(self, state: _AccountState, entry: _PageToken) -> str:
        if len(state.page_tokens) >= 10_000:  # drop expired entries so long runs stay bounded
            cutoff = entry.issued - self.page_token_ttl
            state.page_tokens = {k: v for k, v in state.page_tokens.items() if v.issued >= cutoff}
        token = secrets.token_urlsafe(24).replace("-", "x").replace("_", "Z")
        state.page_tokens[token] = entry
        return token
