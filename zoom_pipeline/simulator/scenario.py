"""What a test sets up on the simulator: days of records, faults, events that arrive while a client
pages, and the tokens it expires.

``_Scenario`` is a part of ``ZoomSimulator`` (server.py), kept apart by concept: every public method
here is the simulator's. Each takes ``log="operationlogs"`` (the default) or ``log="activities"`` (the
values of ``LOGS``: the last segment of the endpoint's path), where it applies, and ``account="default"``;
each endpoint has its own days, faults and call numbers, and each account its own of everything.

``on_report_call`` and ``late_events`` reproduce a listing that moves while a client pages: events
added right after the n-th report call, ``late_events`` at an exact position, even inside a group of
records of the same second. A ``bytes`` value in a record goes on the wire verbatim (raw invalid UTF-8).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from zoom_pipeline.simulator.day import _Day, _key
from zoom_pipeline.simulator.records import _day_str, _late_records, _Log, _log, _make_records
from zoom_pipeline.simulator.state import (
    DEFAULT_ACCOUNT,
    FAULT_KINDS,
    MALFORMED_SHAPES,
    TOKEN_FAULT_KINDS,
    _AccountState,
    _Fault,
)


class _Scenario:
    """Days, faults, triggers and token expiry of the simulator's accounts (mixed into ZoomSimulator)."""

    # From ZoomSimulator:
    _lock: threading.RLock
    _connections: int
    _account: Callable[[Any], _AccountState]

    # -- data --------------------------------------------------------------------------------------
    # Every method here takes ``log``: "operationlogs" (the default) or "activities" (see LOGS), and
    # ``account`` ("default" unless given).

    def set_day(self, day: str, records: list[dict], *, log: str = "operationlogs",
                account: str = DEFAULT_ACCOUNT) -> None:
        """Replace ``day`` with explicit records (served newest first, stable for equal times).

        A ``bytes`` value (here or in add_records) goes on the wire verbatim between quotes instead of
        JSON-encoded, e.g. ``{"operator": b"ops\\xffadmin@acme-corp.com", ...}`` puts an invalid UTF-8
        byte inside that string; the bytes must otherwise be valid JSON string content (no bare quote
        or backslash). The rest of the page stays valid JSON.
        """
        new = _Day(_day_str(day), log=_log(log))
        new.set_explicit(records)
        with self._lock:
            self._account(account).days[(new.log.name, new.day)] = new

    def generate_day(self, day: str, count: int, *, seed: int = 0, twins: int = 0, log: str = "operationlogs",
                     account: str = DEFAULT_ACCOUNT) -> None:
        """Replace ``day`` with ``count`` lazily generated records (``twins`` adjacent identical pairs)."""
        new = _Day(_day_str(day), int(count), int(seed), int(twins), _log(log))
        with self._lock:
            self._account(account).days[(new.log.name, new.day)] = new

    def add_records(self, day: str, records: list[dict], *, log: str = "operationlogs",
                    account: str = DEFAULT_ACCOUNT) -> None:
        """Events arriving now: merged by time; on equal time the newly added go first."""
        target = _log(log)
        with self._lock:
            self._account(account).add(target, _day_str(day), records)

    def day_count(self, day: str, *, log: str = "operationlogs", account: str = DEFAULT_ACCOUNT) -> int:
        """Records currently stored for ``day`` (ground truth for tests)."""
        key = (_log(log).name, _day_str(day))
        with self._lock:
            target = self._account(account).days.get(key)
            return target.total if target else 0

    def day_records(self, day: str, offset: int = 0, limit: int | None = None, *,
                    log: str = "operationlogs", account: str = DEFAULT_ACCOUNT) -> list[dict]:
        """The day's records as the API would serve them, newest first (ground truth for tests)."""
        key = (_log(log).name, _day_str(day))
        with self._lock:
            target = self._account(account).days.get(key)
            if target is None:
                return []
            return [dict(r) for r in target.slice(offset, target.total if limit is None else limit)]

    def make_records(self, day: str, count: int, *, seed: int, start_time: Any = None,
                     log: str = "operationlogs") -> list[dict]:
        """Realistic, distinct records for ``day``, newest first, deterministic per seed.

        Without ``start_time`` times are spread over the day. With it (``"HH:MM:SS"``, a full
        ``YYYY-MM-DDTHH:MM:SSZ`` or a ``datetime.time``), the first record has that time and each
        next one is 1-30 s older (never before 00:00:00).
        """
        return _make_records(_log(log), _day_str(day), count, seed, start_time)

    # -- faults and triggers -----------------------------------------------------------------------
    def inject(self, kind: str, *, times: int = 1, after_calls: int = 0, log: str = "operationlogs",
               account: str = DEFAULT_ACCOUNT, **params: Any) -> None:
        """Fail the next ``times`` report calls of ``log`` of ``account`` (its token calls for ``token_*``
        kinds, where ``log`` does not apply) once ``after_calls`` more such calls have been served with
        no fault. ``invalid_page_token`` only fires on a request that carries a ``next_page_token``.
        Faults fire before authentication, like a gateway would. Params: ``retry_after`` (rate limits;
        for daily it overrides the ISO timestamp), ``status`` and ``body`` ("json"/"html") for server
        errors, ``seconds`` for slow, ``limit`` for daily, ``shape`` for malformed_page (one of
        ``MALFORMED_SHAPES``: the records list ``missing`` (default), ``null`` or an ``object``, or the
        body ``{}`` (``empty``) or ``{"message": "upstream timeout"}`` (``message``)), ``body`` for raw_body."""
        if kind not in FAULT_KINDS and kind not in TOKEN_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of "
                             f"{sorted(FAULT_KINDS | TOKEN_FAULT_KINDS)}")
        if kind == "malformed_page" and params.get("shape", "missing") not in MALFORMED_SHAPES:
            raise ValueError(f"unknown malformed_page shape {params['shape']!r}; expected one of {MALFORMED_SHAPES}")
        if int(times) < 1 or int(after_calls) < 0:
            raise ValueError("need times >= 1 and after_calls >= 0")
        where = None if kind in TOKEN_FAULT_KINDS else _log(log).name
        fault = _Fault(kind, int(times), int(after_calls), dict(params), where)
        with self._lock:
            state = self._account(account)
            (state.faults if where else state.token_faults).append(fault)

    def clear_faults(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Drop every pending fault of ``account``."""
        with self._lock:
            state = self._account(account)
            state.faults.clear()
            state.token_faults.clear()

    def pending_faults(self, *, account: str = DEFAULT_ACCOUNT) -> list[dict]:
        """Faults of ``account`` not yet fully served, with their remaining ``times`` and ``after_calls``
        (and ``log``)."""
        with self._lock:
            state = self._account(account)
            return [f.as_dict() for f in state.faults + state.token_faults]

    def _after_call(self, state: _AccountState, log: _Log, n: int, action: Callable[[], None]) -> None:
        if int(n) < 1:
            raise ValueError("report calls are numbered from 1")
        with self._lock:
            state.triggers.setdefault((log.name, int(n)), []).append(action)

    def on_report_call(self, n: int, day: str, records: list[dict], *, log: str = "operationlogs",
                       account: str = DEFAULT_ACCOUNT) -> None:
        """Right after serving the n-th report call of ``log`` of ``account`` (1-based, since
        reset_stats), add_records(day, records, log=log, account=account)."""
        state, target = self._account(account), _log(log)
        self._after_call(state, target, n, functools.partial(state.add, target, _day_str(day),
                                                             [dict(r) for r in records]))

    def late_events(self, day: str, *, after_call: int, position: int, count: int, seed: int = 0,
                    twins: bool = False, log: str = "operationlogs", account: str = DEFAULT_ACCOUNT) -> None:
        """Right after serving report call ``after_call`` of ``log`` of ``account`` (1-based, since
        reset_stats), insert ``count`` records into ``day`` immediately above the record then at
        ``position`` (0 = newest, in day_records order), with its `time`: they take positions
        [position, position+count) and everything from there on moves down.

        The position may be among rows a client was already served (just above the last row of its
        previous page, or hundreds back), which reproduces a listing that moves while a client pages;
        unlike add_records it lands exactly there even inside a group of equal time. The new records
        are realistic, distinct from each other and from every record of that second, deterministic
        per ``seed``. ``twins=True`` inserts ``count`` byte-identical copies of the record at
        ``position`` instead (late identical twins). A position past the end appends at the end with
        the last record's time; an empty day gets distinct records at 00:00:00.
        """
        if int(position) < 0 or not 1 <= int(count) <= 10_000:
            raise ValueError("need position >= 0 and 1 <= count <= 10000")
        state, target = self._account(account), _log(log)
        self._after_call(state, target, after_call, functools.partial(
            self._late_locked, state, target, _day_str(day), int(position), int(count), int(seed), bool(twins)))

    @staticmethod
    def _late_locked(state: _AccountState, log: _Log, day: str, position: int, count: int, seed: int,
                     twins: bool) -> None:
        target = state.day(log, day)
        position = min(position, target.total)
        anchor = target.slice(min(position, target.total - 1), 1)
        if anchor and twins:
            target.insert_at(position, [dict(anchor[0]) for _ in range(count)])
            return
        when = anchor[0].get("time", "") if anchor else f"{day}T00:00:00Z"
        key = _key(anchor[0]) if anchor else when
        # Only records of the same second can be byte-identical to a new one.
        lo = target.count_newer(key)
        taken = {repr(r) for r in target.slice(lo, target.count_newer(key, inclusive=True) - lo)}
        target.insert_at(position, _late_records(log, day, seed, when, count, taken))

    def expire_page_tokens(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Invalidate every outstanding next_page_token of ``account``."""
        with self._lock:
            self._account(account).page_tokens.clear()

    def expire_access_tokens(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Make every access token issued to ``account`` answer 401 "Access token is expired."."""
        with self._lock:
            for tok in self._account(account).tokens.values():
                tok.revoked = True

    def reset(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Forget the days, tokens, faults, triggers (on_report_call, late_events) and statistics of
        ``account`` (configuration and the other accounts are kept)."""
        with self._lock:
            self._account(account).reset(self._connections)
