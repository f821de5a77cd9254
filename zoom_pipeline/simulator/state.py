"""Per-account state: what Zoom keeps per account, and the faults waiting for its calls.

``_AccountState`` holds one account's Server-to-Server app (credentials, scopes, per-second limit),
the days of both report endpoints, access and page tokens, faults, triggers and counters; the
simulator's lock guards it. ``_Fault`` is one injected fault (``FAULT_KINDS`` for report calls,
``TOKEN_FAULT_KINDS`` for token calls), ``_take_fault`` serves them in order. ``_setting`` checks a
configure() value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

from zoom_pipeline.simulator.day import _Day
from zoom_pipeline.simulator.records import LOGS, _Log, _parse_day

DEFAULT_ACCOUNT = "default"  # the account of the constructor's credentials
DEFAULT_SCOPES = "report:read:operation_logs:admin report:read:user_activities:admin"  # both report endpoints
FAULT_KINDS = frozenset(
    {
        "rate_limit_qps",
        "rate_limit_daily",
        "server_error",
        "truncated_body",
        "token_expired",
        "invalid_page_token",
        "connection_reset",
        "slow",
        "raw_body",
        "malformed_page",
    }
)
# What a `malformed_page` fault answers with HTTP 200 (as gateways and proxies in front of an API do):
# the page's envelope with its records list missing, null or an object, or a bare error message.
MALFORMED_SHAPES = ("missing", "null", "object", "empty", "message")
TOKEN_FAULT_KINDS = frozenset({"token_server_error", "token_connection_reset", "token_slow"})
LAST_TOKEN_STYLES = ("empty", "null", "missing")


class _Fault:
    __slots__ = ("kind", "times", "after", "params", "log")

    def __init__(self, kind: str, times: int, after: int, params: dict, log: str | None) -> None:
        self.kind, self.times, self.after, self.params = kind, times, after, params
        self.log = log  # the report endpoint whose calls it fails; None for the token endpoint

    def as_dict(self) -> dict:
        where = {} if self.log is None else {"log": self.log}
        return {"kind": self.kind, "times": self.times, "after_calls": self.after, **where, **self.params}


class _PageToken(NamedTuple):
    log: str
    frm: str
    to: str
    offset: int
    size: int
    issued: float  # monotonic


class _Counts:
    """Counters of one endpoint (a report endpoint, or the token endpoint) since reset_stats."""

    __slots__ = ("calls", "by_day", "faults", "statuses", "pages", "records", "page_tokens", "qps")

    def __init__(self) -> None:
        self.calls = self.pages = self.records = self.page_tokens = self.qps = 0
        self.by_day: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.statuses: dict[str, int] = {}

    def as_dict(self) -> dict:
        return {"report_calls": self.calls, "report_calls_by_day": dict(self.by_day),
                "faults_by_kind": dict(self.faults), "status_counts": dict(self.statuses),
                "pages_served": self.pages, "records_served": self.records,
                "page_tokens_issued": self.page_tokens, "qps_rejections": self.qps}


def _summed(counters: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            out[key] = out.get(key, 0) + value
    return out


class _Token:
    __slots__ = ("issued", "revoked", "invalid")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.revoked = False  # answers "Access token is expired."
        self.invalid = False  # answers "Invalid access token." (a later mint of its app invalidated it)


class SimAccount(NamedTuple):
    """One simulated Zoom account's credentials, as a client is configured with them."""

    name: str
    account_id: str
    client_id: str
    client_secret: str


class _AccountState:
    """Everything Zoom keeps per account: its Server-to-Server app's credentials and scopes, the days of
    both report endpoints, access and page tokens, faults, triggers, the per-second window and the
    counters since reset_stats. Callers hold the simulator's lock."""

    SETTINGS = ("account_id", "client_id", "client_secret", "scopes", "invalidate_on_mint",
                "max_requests_per_second")

    def __init__(self, name: str, account_id: str, client_id: str, client_secret: str, scopes: str) -> None:
        self.name = name
        self.account_id, self.client_id, self.client_secret, self.scopes = account_id, client_id, client_secret, scopes
        self.invalidate_on_mint = False
        self.max_requests_per_second: float | None = None
        self.days: dict[tuple[str, str], _Day] = {}  # (log, day) -> records
        self.tokens: dict[str, _Token] = {}
        self.page_tokens: dict[str, _PageToken] = {}
        self.faults: list[_Fault] = []
        self.token_faults: list[_Fault] = []
        self.triggers: dict[tuple[str, int], list[Callable[[], None]]] = {}  # (log, call n) -> run under the lock
        self.admitted: deque[float] = deque()  # monotonic times of report calls admitted in the last second
        self.reset_stats(0)

    def credentials(self) -> SimAccount:
        return SimAccount(self.name, self.account_id, self.client_id, self.client_secret)

    def day(self, log: _Log, day: str) -> _Day:
        """The (log, day) records, an empty day created on first touch."""
        target = self.days.get((log.name, day))
        if target is None:
            target = self.days[(log.name, day)] = _Day(day, log=log)
        return target

    def add(self, log: _Log, day: str, records: list[dict]) -> None:
        self.day(log, day).add(records)

    def reset_stats(self, connections: int) -> None:
        self.counts = {name: _Counts() for name in LOGS}  # per report endpoint
        self.token_counts = _Counts()  # the token endpoint's faults and statuses
        self.token_calls = 0
        self.tokens_issued = 0
        self.token_use: dict[str, list[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections_base = connections  # the server's connection count at reset_stats

    def reset(self, connections: int) -> None:
        self.days.clear()
        self.tokens.clear()
        self.page_tokens.clear()
        self.faults.clear()
        self.token_faults.clear()
        self.triggers.clear()
        self.reset_stats(connections)

    def over_qps(self) -> bool:
        """Whether this report call exceeds the per-second limit; admits it if not."""
        now = time.monotonic()
        window = self.admitted
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.max_requests_per_second:
            return True
        window.append(now)
        return False

    def stats(self, connections: int) -> dict:
        events = sorted(
            [(first, 0) for first, _ in self.token_use.values()]
            + [(last, 1) for _, last in self.token_use.values()]
        )  # at equal times starts sort before ends: touching intervals overlap
        current = peak = 0
        for _, is_end in events:
            current += -1 if is_end else 1
            peak = max(peak, current)
        logs = list(self.counts.values())
        faults = _summed([c.faults for c in [*logs, self.token_counts]])
        return {
            "report_calls": sum(c.calls for c in logs),
            "token_calls": self.token_calls,
            "tokens_issued": self.tokens_issued,
            "report_calls_by_day": dict(self.counts["operationlogs"].by_day),
            "faults_served": sum(faults.values()),
            "faults_by_kind": faults,
            "status_counts": _summed([c.statuses for c in [*logs, self.token_counts]]),
            "pages_served": sum(c.pages for c in logs),
            "records_served": sum(c.records for c in logs),
            "page_tokens_issued": sum(c.page_tokens for c in logs),
            "tokens_used": len(self.token_use),
            "max_concurrent_tokens": peak,
            "max_in_flight": self.max_in_flight,
            "connections": connections - self.connections_base,
            "pending_faults": len(self.faults) + len(self.token_faults),
            "qps_rejections": sum(c.qps for c in logs),
            "by_log": {name: c.as_dict() for name, c in self.counts.items()},
        }


def _take_fault(queue: list[_Fault], log: str | None, applies: Any) -> _Fault | None:
    """Pop the first due, applicable fault of ``log``; a call with no fault advances the countdown
    of every fault of ``log`` (None: the token endpoint)."""
    mine = [fault for fault in queue if fault.log == log]
    for fault in mine:
        if fault.after == 0 and applies(fault):
            fault.times -= 1
            if fault.times == 0:
                queue.remove(fault)
            return fault
    for fault in mine:
        if fault.after > 0:
            fault.after -= 1
    return None


def _setting(key: str, value: Any) -> Any:
    """A configure() value, checked and normalised."""
    if key == "last_token_style" and value not in LAST_TOKEN_STYLES:
        raise ValueError(f"last_token_style must be one of {LAST_TOKEN_STYLES}")
    if key == "today":
        return None if value is None else _parse_day(value)
    if key == "scopes" and isinstance(value, list | tuple):
        return " ".join(value)
    if key in ("token_ttl", "page_token_ttl"):
        return float(value) if not isinstance(value, int) else value
    if key == "retention_days":
        return int(value)
    if key in ("shuffle_within_second", "invalidate_on_mint") and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")  # "false" from a sloppy client must not mean on
    if key == "max_requests_per_second" and value is not None:
        value = float(value)
        if not value > 0:
            raise ValueError("max_requests_per_second must be a positive number or null")
    if key == "shuffle_seed":
        return None if value is None else int(value)
    if key in ("account_id", "client_id", "client_secret", "scopes"):
        return str(value)
    return value
