"""Zoom REST client: Server-to-Server OAuth, pagination of a day of one report, retries and rate limits."""

import json
import queue
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

import dagster as dg
import orjson
import requests
from pydantic import PrivateAttr

from zoom_pipeline.account import AccountState, AccountStoreUnavailable, BudgetSpent
from zoom_pipeline.constants import (
    DEFAULT_API_BASE_URL,
    DEFAULT_OAUTH_TOKEN_URL,
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
)
from zoom_pipeline.ledger import record_time
from zoom_pipeline.settings import shown_url
from zoom_pipeline.sources import OPERATION_LOGS, Source

MAX_RETRY_AFTER_SECONDS = 300.0
MINT_WAIT_SECONDS = 60.0  # longest wait for another run's mint before minting anyway
MAX_TOKEN_REFRESHES = 3  # token replacements after 401s within one report call


class ZoomError(Exception):
    """A Zoom failure that retrying cannot fix: the message says what to check."""


class ZoomRetryableError(Exception):
    """A transient Zoom failure that outlasted the client's own retries."""


class ZoomDailyLimitError(ZoomError):
    """The account's daily API quota is spent; nothing can succeed before `reset_at`."""

    def __init__(self, reset_at: datetime):
        self.reset_at = reset_at
        super().__init__(
            "Zoom's daily API limit for this account is exhausted (it is shared by every app on the "
            f"account), so re-run the partition after {reset_at:%Y-%m-%dT%H:%M:%SZ}, when calls can resume (a "
            "stopped backfill keeps the days it landed: relaunch it from failure then)."
        )


class ZoomBudgetSpentError(ZoomDailyLimitError):
    """This project's own daily budget (ZOOM_DAILY_REQUEST_BUDGET) is spent, before Zoom's limit is:
    no report call is made before `reset_at` (00:00 UTC)."""

    def __init__(self, budget: int, reset_at: datetime):
        self.budget = budget
        self.reset_at = reset_at
        ZoomError.__init__(
            self,
            f"Stopped before Zoom's own daily limit: this project's daily budget of {budget} report calls "
            f"(ZOOM_DAILY_REQUEST_BUDGET) is spent; calls resume at 00:00 UTC ({reset_at:%Y-%m-%dT%H:%M:%SZ}), "
            "and a stopped backfill keeps the days it landed: relaunch it from failure then.",
        )


class ZoomAccountStoreError(ZoomError):
    """The shared account store (pace, budget, token) cannot be reached; no Zoom call was made."""


class PageTokenExpired(Exception):
    """Zoom code 300 for a `next_page_token`: the day must be read again from page 1."""


@dataclass
class PassStats:
    """Counters of one pass over a day, shown as materialization metadata."""

    api_calls: int = 0
    pages: int = 0
    records: int = 0
    restarts: int = 0
    retries: int = 0
    token_mints: int = 0  # tokens this pass minted after Zoom rejected one
    tokens_adopted: int = 0  # newer tokens another run had shared, taken after Zoom rejected one
    calls_used_today: int | None = None  # report calls the account's runs made today (UTC), this pass's included
    invalid_utf8_records: int = 0
    malformed_pages: int = 0  # 200 answers that were not a page of the report (retried)
    stopped_early: bool = False
    started_at: float = field(default_factory=time.monotonic)


class Page(NamedTuple):
    """One page of a day as Zoom returned it."""

    number: int  # 1-based, counted from the day's first page (again after a restart)
    records: list
    invalid_utf8: int  # records that held bytes which are not UTF-8 (replaced by U+FFFD)


class _Cancelled(Exception):
    """The pass was abandoned while the fetcher waited to retry."""


def _raise_if_uncallable(exc: requests.RequestException, setting: str, url: str, example: str) -> None:
    """A URL requests cannot call (no scheme, a bad one, no host) is no connection error: no retry can fix
    it, so it fails at once with one sentence naming the setting (user:pass@ never shown)."""
    if isinstance(exc, requests.exceptions.InvalidProxyURL):
        raise ZoomError("The proxy setting (HTTPS_PROXY / HTTP_PROXY) is not a valid URL, so Zoom cannot be called."
                        ) from None
    if isinstance(exc, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                        requests.exceptions.InvalidURL)):
        raise ZoomError(f"{setting} must be an absolute http(s) URL with a host, such as '{example}', got "
                        f"{shown_url(url)!r}, which requests cannot call ({type(exc).__name__}).") from None


def _parse_retry_after_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _next_utc_midnight(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _zoom_message(resp: requests.Response) -> tuple[int | None, str]:
    """(code, message) of a Zoom error body, tolerant of non-JSON bodies."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None, resp.text[:200]
    if not isinstance(body, dict):
        return None, str(body)[:200]
    code = body.get("code")
    message = body.get("message") or body.get("reason") or body.get("error") or ""
    return (code if isinstance(code, int) else None), str(message)


class _ClientState:
    """A client's mutable state as plain attributes: the page loop reads it on every call, and a
    pydantic private attribute costs microseconds per read."""

    __slots__ = ("account", "account_lock", "lock", "send_settings", "session", "token", "token_expires",
                 "token_minted")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.account_lock = threading.Lock()
        self.account: AccountState | None = None
        self.session: requests.Session | None = None
        self.send_settings: dict | None = None
        self.token: str | None = None
        self.token_expires = 0.0
        self.token_minted = False  # whether `token` came from this client's own mint


class ZoomClient(dg.ConfigurableResource):
    """Zoom API client for the reports of sources.py (`GET /report/operationlogs`, `GET /report/activities`)
    with Server-to-Server OAuth.

    The token is cached until shortly before it expires and re-minted once on a 401 / code 124.
    Per-second 429s, 5xx, connection errors and unreadable 200 bodies are retried with exponential
    backoff and jitter (or exactly Zoom's Retry-After); a daily-limit 429, bad credentials and missing
    scopes fail at once.

    What runs share about the account lives in `account_store` (see zoom_pipeline.account): each report
    call first spends one call of `daily_request_budget` (per UTC day) and waits for a slot of
    `max_requests_per_second`, both counted across every run using the store; the access token is
    taken from the store when another run shared a valid one, minted (by one run at a time) only when
    none is, and shared sealed; after a 401 the client takes a newer shared token before minting.
    A client built in code keeps the old behaviour: `account_store="memory"` (this client alone), no
    pace and no budget. The deployed definitions set the shared defaults (definitions.py).
    """

    account_id: str
    client_id: str
    client_secret: str
    api_base_url: str = DEFAULT_API_BASE_URL
    oauth_token_url: str = DEFAULT_OAUTH_TOKEN_URL
    page_size: int = DEFAULT_PAGE_SIZE
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    max_day_restarts: int = 3
    account_store: str = "memory"  # auto | memory | sqlite | postgres | postgresql://... | path.sqlite
    max_requests_per_second: float | None = None  # account-wide pace of report calls; None: none
    daily_request_budget: int | None = None  # report calls per UTC day for all runs; None: no cap of ours
    account_name: str = ""  # the account's name in an accounts file: errors name its ZOOM_<NAME>_* variables

    _state: "_ClientState" = PrivateAttr(default_factory=lambda: _ClientState())

    def __repr_args__(self):
        # The secret never reaches a repr, a log line or a traceback's locals.
        return [(k, "**********" if k == "client_secret" else v) for k, v in super().__repr_args__()]

    # ---- the account's shared state ------------------------------------------------------
    def account(self) -> AccountState:
        """The account's shared state, opened on first use: before any Zoom call, so an unreachable
        store fails the run with one sentence and nothing done."""
        state = self._state
        if state.account is None:
            with state.account_lock:
                if state.account is None:
                    try:
                        state.account = AccountState.open(
                            self.account_store,
                            account_id=self.account_id,
                            client_id=self.client_id,
                            client_secret=self.client_secret,
                            api_base_url=self.api_base_url,
                            oauth_token_url=self.oauth_token_url,
                            max_requests_per_second=self.max_requests_per_second,
                            daily_request_budget=self.daily_request_budget,
                        )
                    except AccountStoreUnavailable as exc:
                        raise ZoomAccountStoreError(str(exc)) from None
        return state.account

    def use_account(self, account: AccountState) -> "ZoomClient":
        """Use `account` (e.g. one with an injected clock) instead of opening `account_store`."""
        self._state.account = account
        return self

    def calls_used_today(self) -> int:
        """Report calls the runs sharing this account's store made today (UTC)."""
        return self.account().used_today()

    def teardown_after_execution(self, context) -> None:
        self.close()

    def close(self) -> None:
        state = self._state
        with state.account_lock:
            if state.account is not None:
                state.account.close()
                state.account = None

    # ---- HTTP plumbing -------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        state = self._state
        if state.session is None:
            state.session = requests.Session()  # keep-alive across pages and token calls
            state.session.headers["Accept"] = "application/json"
        return state.session

    def _report_send_settings(self, url: str) -> dict:
        """Proxy, TLS and stream settings for report calls, as `Session.request` derives them from the
        environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE ...), resolved once per client: per call
        that lookup cost about as much CPU as a whole page's records."""
        state = self._state
        if state.send_settings is None:
            state.send_settings = self.session.merge_environment_settings(url, {}, None, None, None)
        return state.send_settings

    def _sleep_backoff(self, attempt: int, retry_after: float | None = None,
                       cancelled: threading.Event | None = None) -> None:
        """Exponential backoff with jitter, or exactly what the server's Retry-After asked for.

        A pass that is abandoned meanwhile (its step failed, the run was terminated) stops waiting
        at once: under real rate limits a wait can last minutes."""
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER_SECONDS)
        else:
            delay = min(self.backoff_base_seconds * (2**attempt), self.backoff_max_seconds) * random.uniform(0.5, 1.5)
        if cancelled is None:
            time.sleep(delay)
        elif cancelled.wait(delay):
            raise _Cancelled

    # ---- OAuth ---------------------------------------------------------------------------
    def authenticate(self, *, force: bool = False) -> str:
        """Return a valid access token: the cached one, else the account's shared one, else a new one.

        `force` discards the cached token (Zoom rejected it): a different valid token another run
        shared is taken, and only without one is a new token minted."""
        return self._token(rejected=self._state.token if force else None, force=force)

    def _token(self, *, rejected: str | None = None, force: bool = False, stats: PassStats | None = None) -> str:
        state = self._state
        with state.lock:
            if not force and state.token and time.monotonic() < state.token_expires:
                return state.token
            if rejected is not None and state.token is not None and state.token != rejected:
                return state.token  # another thread of this client already replaced it
            account = self.account()  # before any Zoom call
            bad = {rejected, state.token if force else None} - {None}
            if rejected:
                account.forget_token(rejected)
            state.token = None
            deadline = time.monotonic() + MINT_WAIT_SECONDS
            while True:
                shared = account.shared_token()
                if shared is not None and shared.token not in bad:
                    self._adopt(shared.token, shared.renew_at - time.time(), minted=False)
                    if stats is not None and rejected:
                        stats.tokens_adopted += 1
                    return shared.token
                if account.begin_mint() or time.monotonic() > deadline:
                    break
                time.sleep(random.uniform(0.05, 0.15))  # another run is minting: wait for what it shares
            try:
                shared = account.shared_token()  # published while we took the lease?
                if shared is not None and shared.token not in bad:
                    self._adopt(shared.token, shared.renew_at - time.time(), minted=False)
                    if stats is not None and rejected:
                        stats.tokens_adopted += 1
                    return shared.token
                token, expires_in, issued_at = self._mint()
                published = account.publish_token(token, expires_in, issued_at)
                self._adopt(token, published.renew_at - time.time(), minted=True)
                if stats is not None and rejected:
                    stats.token_mints += 1
                return token
            finally:
                account.end_mint()

    def _adopt(self, token: str, lifetime: float, *, minted: bool) -> None:
        state = self._state
        state.token = token
        state.token_minted = minted
        state.token_expires = time.monotonic() + lifetime

    def _mint(self) -> tuple[str, float, float]:
        """(token, expires_in, wall time it was issued) from Zoom's token endpoint."""
        last = ""
        for attempt in range(self.max_attempts):
            try:
                resp = self.session.post(
                    self.oauth_token_url,
                    data={"grant_type": "account_credentials", "account_id": self.account_id},
                    auth=(self.client_id, self.client_secret),
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                _raise_if_uncallable(exc, "ZOOM_OAUTH_TOKEN_URL", self.oauth_token_url, DEFAULT_OAUTH_TOKEN_URL)
                last = f"cannot reach Zoom's token endpoint {shown_url(self.oauth_token_url)} ({type(exc).__name__})"
                self._sleep_backoff(attempt)
                continue
            if resp.status_code == 200:
                try:
                    body = orjson.loads(resp.content)
                    token = body["access_token"]
                    expires_in = float(body.get("expires_in") or 3600)
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    last = "Zoom's token endpoint answered 200 without a usable access_token"
                    self._sleep_backoff(attempt)
                    continue
                # publish_token renews it a minute early (or at 90 % of a short lifetime): no call races expiry.
                return token, expires_in, time.time()
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"Zoom's token endpoint answered HTTP {resp.status_code}"
                self._sleep_backoff(attempt)
                continue
            raise ZoomError(self._credential_error(resp))
        raise ZoomRetryableError(f"Could not obtain a Zoom access token after {self.max_attempts} tries: {last}.")

    def _credential_error(self, resp: requests.Response) -> str:
        _, message = _zoom_message(resp)
        if "client" in message.lower():
            hint = f"check {self._var('CLIENT_ID')} and {self._var('CLIENT_SECRET')} of the Server-to-Server OAuth app"
        elif "account" in message.lower():
            hint = f"check {self._var('ACCOUNT_ID')} and that the app is activated for that account"
        else:
            hint = f"check {self._var('ACCOUNT_ID')}, {self._var('CLIENT_ID')} and {self._var('CLIENT_SECRET')}"
        whose = f" of account {self.account_name}" if self.account_name else ""
        return f"Zoom refused the OAuth credentials{whose} (HTTP {resp.status_code}: {message}); {hint}."

    def _var(self, what: str) -> str:
        """The name of the credential variable `what` of this client's account."""
        return f"ZOOM_{self.account_name.upper()}_{what}" if self.account_name else f"ZOOM_{what}"

    # ---- one report call -----------------------------------------------------------------
    def _get_page(self, source: Source, day: str, page_token: str | None, stats: PassStats, page_size: int,
                  cancelled: threading.Event | None = None, page_number: int = 1) -> tuple[dict, int]:
        """GET one page of a day, retrying what is transient: (body, records with invalid UTF-8).

        A 200 whose body is not a page of the report (see `parse_page`) is retried like a 5xx: a gateway
        in front of Zoom can answer 200 with an error or an empty object, and taking that for the last
        page would end the day early. Raises PageTokenExpired on code 300 for a page token."""
        params = {"from": day, "to": day, "page_size": page_size}
        if page_token:
            params["next_page_token"] = page_token
        url = f"{self.api_base_url.rstrip('/')}/{source.path}"
        refreshes = 0
        last = ""
        account = self.account()
        for attempt in range(self.max_attempts):
            token = self.authenticate()
            try:
                stats.calls_used_today = account.spend()
            except BudgetSpent as exc:
                raise ZoomBudgetSpentError(exc.budget, exc.resume_at) from None
            if not account.acquire(cancelled):
                raise _Cancelled
            stats.api_calls += 1
            try:
                # What Session.get does, minus re-reading the environment on every page.
                request = requests.Request("GET", url, params=params, headers={"Authorization": f"Bearer {token}"})
                resp = self.session.send(
                    self.session.prepare_request(request),
                    timeout=self.timeout,
                    allow_redirects=True,
                    **self._report_send_settings(url),
                )
            except requests.RequestException as exc:
                _raise_if_uncallable(exc, "ZOOM_API_BASE_URL", self.api_base_url, DEFAULT_API_BASE_URL)
                last = f"connection error ({type(exc).__name__})"
                stats.retries += 1
                self._sleep_backoff(attempt, cancelled=cancelled)
                continue
            status = resp.status_code
            if status == 200:
                try:
                    return parse_page(resp.content, source.records_key, page_size)
                except MalformedPage as exc:
                    last = f"HTTP 200 with a body that is not a page of {source.title}: {exc}"
                stats.retries += 1
                stats.malformed_pages += 1
                self._sleep_backoff(attempt, cancelled=cancelled)
                continue
            code, message = _zoom_message(resp)
            if status == 429:
                self._raise_if_daily_limit(resp, message)
                last = "per-second rate limit (429)"
                stats.retries += 1
                retry_after = resp.headers.get("Retry-After")
                hint = float(retry_after) if retry_after and retry_after.isdigit() else None
                self._sleep_backoff(attempt, hint, cancelled)
                continue
            if status >= 500:
                last = f"HTTP {status} from Zoom"
                stats.retries += 1
                self._sleep_backoff(attempt, cancelled=cancelled)
                continue
            if code == 124 or status == 401:
                # A token this client minted after a rejection, rejected again, is a real problem; a
                # shared one may just have been replaced meanwhile (by another run's mint), once more.
                fresh = refreshes > 0 and self._state.token_minted and self._state.token == token
                if fresh or refreshes >= MAX_TOKEN_REFRESHES:
                    raise ZoomError(
                        f"Zoom rejected a freshly minted access token ({message or status}); check that the "
                        f"Server-to-Server OAuth app is activated and {self._var('ACCOUNT_ID')} is its account."
                    )
                refreshes += 1
                self._token(rejected=token, force=True, stats=stats)
                continue
            if code == 300 and "token" in message.lower() and page_token:
                raise PageTokenExpired(message)
            raise ZoomError(self._request_error(source, day, status, code, message))
        raise ZoomRetryableError(
            f"Zoom {source.title} for {day}, page {page_number}: gave up after {self.max_attempts} attempts; "
            f"last problem: {last}. Nothing of the day was written by this pass."
        )

    @staticmethod
    def _raise_if_daily_limit(resp: requests.Response, message: str) -> None:
        retry_at = _parse_retry_after_timestamp(resp.headers.get("Retry-After"))
        daily = (
            resp.headers.get("X-RateLimit-Type", "").lower().startswith("daily")
            or retry_at is not None
            or "daily" in message.lower()
        )
        if daily:
            raise ZoomDailyLimitError(retry_at or _next_utc_midnight())

    @staticmethod
    def _request_error(source: Source, day: str, status: int, code: int | None, message: str) -> str:
        if code == 4711:
            return (
                f"Zoom says the app's token lacks a required scope ({message}), so add the scope "
                f"{source.scope} (or report:read:admin) to the Server-to-Server OAuth app."
            )
        if code == 300 and "month" in message.lower():
            return (
                f"Zoom no longer serves {source.title} for {day} ({message}); it keeps about six months. "
                "Choose a partition inside that window."
            )
        if code == 200 or "permission" in message.lower():
            return (
                f"Zoom denied access to {source.title} ({message}); {source.access_hint}."
            )
        return f"Zoom rejected the request for {source.title} of {day}: HTTP {status}, code {code}: {message}."

    # ---- a pass over one day -------------------------------------------------------------
    def day_pass(self, day: str | date, *, source: Source = OPERATION_LOGS, page_size: int | None = None,
                 now: datetime | None = None) -> "DayPass":
        """A lazy pass over one UTC day of `source`, newest first (see DayPass)."""
        day_str = day if isinstance(day, str) else day.isoformat()
        return DayPass(self, source, day_str, now or datetime.now(UTC), page_size or self.page_size)


RESTART = object()
"""Yielded by DayPass.pages() when the day is read again from page 1: consumers drop what they
counted so far in this pass."""


class DayPass:
    """One pass over a day: pages of raw records as Zoom returned them, newest first.

    `complete` is True when the pass starts after the day has ended; only such a pass sees the day's
    final content, so only it may be trusted for multiplicities of identical records.
    """

    def __init__(self, client: ZoomClient, source: Source, day: str, started_at: datetime, page_size: int):
        self.client = client
        self.source = source
        self.day = day
        self.page_size = page_size
        day_end = datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        self.complete = started_at >= day_end
        self.stats = PassStats()

    def pages(self, stop_before_time: str | None = None) -> Iterator["Page | object"]:
        """Yield each `Page` (and RESTART markers) until the last page.

        With `stop_before_time` (a `YYYY-MM-DDTHH:MM:SSZ` string), paging stops after the first page
        holding a record strictly older than it: everything older is already stored. Pages are fetched
        by a background thread that asks for the next page as soon as it has this one (a page token
        only comes with the page before it, so one call is in flight at a time), while the consumer
        handles earlier pages; it decides on the stop itself, so it never calls past the stop.
        """
        ready: queue.Queue = queue.Queue(maxsize=PAGES_AHEAD)
        cancelled = threading.Event()

        def hand_over(item) -> bool:
            while not cancelled.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def fetch() -> None:
            restarts = 0
            page_token: str | None = None
            number = 0
            try:
                while not cancelled.is_set():
                    try:
                        page, invalid = self.client._get_page(self.source, self.day, page_token, self.stats,
                                                              self.page_size, cancelled, number + 1)
                    except PageTokenExpired:
                        restarts += 1
                        self.stats.restarts = restarts
                        if restarts > self.client.max_day_restarts:
                            raise ZoomRetryableError(
                                f"Zoom's next_page_token for {self.day} kept expiring; restarted the day "
                                f"{restarts - 1} times."
                            ) from None
                        page_token, number = None, 0
                        if not hand_over(RESTART):
                            return
                        continue
                    records = page[self.source.records_key]
                    page_token = page.get("next_page_token") or None
                    number += 1
                    stop = stop_before_time is not None and _has_older(records, stop_before_time)
                    if not hand_over((Page(number, records, invalid), page_token, stop)):
                        return
                    # Fetch on only when this page cannot be the last one we need: never a call past the stop.
                    if not page_token or stop:
                        break
            except _Cancelled:
                return
            except BaseException as exc:  # re-raised by the consumer, after the pages before it
                hand_over(_Failed(exc))
                return
            hand_over(_DONE)

        fetcher = threading.Thread(target=fetch, name="zoom-prefetch", daemon=True)
        fetcher.start()
        try:
            while True:
                item = ready.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                if item is RESTART:
                    yield RESTART
                    continue
                page, page_token, stop = item
                self.stats.pages += 1
                self.stats.records += len(page.records)
                self.stats.invalid_utf8_records += page.invalid_utf8
                yield page
                if stop and page_token:
                    self.stats.stopped_early = True
        finally:
            # The consumer is done (or gone): the fetcher stops waiting to retry, finishes the call in
            # flight (if any) and exits.
            cancelled.set()
            fetcher.join()


PAGES_AHEAD = 4
"""Pages the fetcher may hold ready for a slower consumer (a few hundred kB each at most)."""

_DONE = object()


class _Failed:
    """An exception raised while fetching, handed to the consumer in page order."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


def _has_older(records: list, threshold: str) -> bool:
    """True if some record's well-formed `time` is strictly older than `threshold`."""
    for rec in records:
        t = record_time(rec)
        if t is not None and t < threshold:
            return True
    return False


class MalformedPage(ValueError):
    """A 200 whose body is not a page of the report; the message says what was wrong with it."""


def parse_page(body: bytes, records_key: str, page_size: int | None = None) -> tuple[dict, int]:
    """A page of records and how many held invalid UTF-8; MalformedPage for anything else.

    A page is what the endpoint documents: a JSON object whose `records_key` is a list of record
    objects, no longer than the page size asked for, and whose `next_page_token`, if present, is a
    string or null. Anything else (a truncated body, an error object, `{}`, a null or missing list)
    is not "the last page": it says nothing about where the day ends.
    """
    invalid = 0
    try:
        page = orjson.loads(body)
    except orjson.JSONDecodeError:
        # Valid JSON that orjson refuses (a lone surrogate escape, a huge integer, a byte that is
        # not UTF-8) is still Zoom's data: one odd record must not make a whole day uncollectable.
        try:
            page = json.loads(body.decode("utf-8", "surrogateescape"))
            if isinstance(page, dict) and isinstance(page.get(records_key), list):
                records = page[records_key]
                for i, rec in enumerate(records):
                    mended = _replace_undecodable(rec)
                    if mended is not rec:
                        records[i] = mended
                        invalid += 1
        except (ValueError, RecursionError):  # RecursionError: nested deeper than any page of records
            raise MalformedPage(f"the body is not JSON ({len(body)} bytes)") from None
    problem = _page_problem(page, records_key, page_size)
    if problem:
        raise MalformedPage(problem)
    return page, invalid


def _json_kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _page_problem(page, records_key: str, page_size: int | None) -> str | None:
    """What keeps `page` from being a page of the report, in a few words, or None."""
    if not isinstance(page, dict):
        return f"the body is {_json_kind(page)}, not an object"
    if records_key not in page:
        keys = ", ".join(sorted(str(k)[:40] for k in page)[:10]) or "none"
        said = page.get("message") or page.get("error") or page.get("reason")
        code = f"code {page['code']}: " if "code" in page else ""
        told = f' saying "{code}{str(said)[:160]}"' if said or code else ""
        return f'it has no "{records_key}" list (its keys: {keys}){told}'
    records = page[records_key]
    if not isinstance(records, list):
        return f'"{records_key}" is {_json_kind(records)}, not a list'
    odd = next((i for i, rec in enumerate(records) if not isinstance(rec, dict)), None)
    if odd is not None:
        return f'record {odd + 1} of "{records_key}" is {_json_kind(records[odd])}, not an object'
    if page_size is not None and len(records) > page_size:
        return f"it holds {len(records)} records, more than the page size of {page_size} asked for"
    token = page.get("next_page_token")
    if token is not None and not isinstance(token, str):
        return f'"next_page_token" is {_json_kind(token)}, not a string'
    return None


_UNDECODABLE = re.compile("[\udc80-\udcff]")


def _replace_undecodable(value):
    """`value` with each byte that was not UTF-8 (decoded as a surrogate escape) replaced by U+FFFD;
    the same object when there was none."""
    if isinstance(value, str):
        return _UNDECODABLE.sub("\ufffd", value) if _UNDECODABLE.search(value) else value
    if isinstance(value, dict):
        pairs = [(_replace_undecodable(k), _replace_undecodable(v)) for k, v in value.items()]
        changed = any(a is not k or b is not v for (a, b), (k, v) in zip(pairs, value.items(), strict=True))
        return dict(pairs) if changed else value
    if isinstance(value, list):
        items = [_replace_undecodable(v) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value
