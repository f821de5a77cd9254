"""``ZoomSimulator``: the simulated Zoom on a local port, its lifecycle, settings, accounts and counters.

Zoom keeps rate limits, tokens and data per account, and so does the simulator: besides account
``"default"`` (the constructor's credentials), ``add_account`` adds accounts with their own credentials,
scopes, per-second limit, days, access and page tokens, faults and counters. An access token serves its
own account's data only; every method that addresses days, faults, settings or counters takes
``account="default"``.

Use it in-process (``with ZoomSimulator().start() as sim: ...``), or from another process through the
JSON control endpoints under ``/_sim/`` (control.py). The class is assembled from parts, one concept
each: ``_Scenario`` (scenario.py: days, faults, triggers), ``_ZoomApi`` (api.py: the OAuth and report
endpoints) and ``_ControlEndpoints`` (control.py); this module holds the rest and routes requests.
"""

from __future__ import annotations

import datetime as dt
import secrets
import socket
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from zoom_pipeline.simulator.api import _ZoomApi
from zoom_pipeline.simulator.control import _ControlEndpoints
from zoom_pipeline.simulator.handler import _Handler, _Server
from zoom_pipeline.simulator.records import _LOGS
from zoom_pipeline.simulator.responses import _api_error, _oauth_error, _Resp
from zoom_pipeline.simulator.scenario import _Scenario
from zoom_pipeline.simulator.state import DEFAULT_ACCOUNT, DEFAULT_SCOPES, SimAccount, _AccountState, _setting


class _DefaultAccount:
    """A setting of the default account, read and written as an attribute of the simulator
    (``sim.client_id``, ``sim.scopes``, ...)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, sim: ZoomSimulator | None, owner: type | None = None) -> Any:
        return self if sim is None else getattr(sim._accounts[DEFAULT_ACCOUNT], self.name)

    def __set__(self, sim: ZoomSimulator, value: Any) -> None:
        setattr(sim._accounts[DEFAULT_ACCOUNT], self.name, value)


class ZoomSimulator(_Scenario, _ZoomApi, _ControlEndpoints):
    """A Zoom S2S OAuth + report API (operation logs and sign-in / sign-out activities) on a local port.

    ``scopes`` (space-separated, as the token endpoint reports them) decides access per endpoint:
    operation logs need ``report:read:operation_logs:admin``, activities
    ``report:read:user_activities:admin``, and the classic ``report:read:admin`` grants both; a call
    without its endpoint's scope answers Zoom's 400, code 4711. The default grants both.

    ``today=None`` means the real UTC date at each call. ``token_ttl`` and ``page_token_ttl`` are in
    seconds and may be fractional so tests can expire tokens quickly.

    ``shuffle_within_second=True``: Zoom documents no order among records of the same second (a bulk
    admin operation writes hundreds in one), so every report call then serves each group of records
    sharing a `time` string in a fresh random order for that call; across seconds the listing stays
    newest first. A page is positions [offset, offset+page_size) of the listing as permuted for that
    call (a group cut by the page boundary is permuted whole, then cut), so consecutive pages of one
    pagination may repeat or skip records of a straddling group. ``shuffle_seed`` (an int) makes call
    n's permutation a function of (seed, n), n counted since reset_stats; None draws fresh randomness.
    day_records() always gives the unshuffled order.

    ``invalidate_on_mint=True``: like Zoom for one Server-to-Server app, every mint invalidates every
    token minted before it (they answer 401, code 124 "Invalid access token."), so runs that each mint
    their own token knock each other out. ``max_requests_per_second=N`` (None: unlimited): a report
    call that would be the (N+1)-th admitted within the last second answers Zoom's per-second 429
    (``X-RateLimit-Type: QPS``, no Retry-After) instead; ``stats()["qps_rejections"]`` counts them, and
    they count as ``status_counts["429"]`` and ``report_calls`` too (and take a call number). The limit
    is the account's, shared by both report endpoints (both are Heavy APIs).

    Each report endpoint numbers its own calls (1-based, since reset_stats): ``on_report_call``,
    ``late_events``, ``inject(after_calls=...)`` and ``shuffle_seed`` count the calls of their ``log``.

    Accounts: the constructor's credentials are account ``"default"``; ``add_account`` adds more. Each
    has its own credentials, scopes, ``invalidate_on_mint``, per-second limit, days, access and page
    tokens, faults, triggers, call numbers and counters; every method that addresses one of these takes
    ``account="default"``. A report call is the account's whose token it carries (a call with an unknown
    token is the default account's: its faults and counters); a token call is the account's whose
    client_id it carries (else the default's). ``sim.account_id``, ``sim.client_id``,
    ``sim.client_secret``, ``sim.scopes``, ``sim.invalidate_on_mint`` and ``sim.max_requests_per_second``
    are the default account's; TTLs, retention, ``today``, the last-token style and the shuffle are
    the server's, the same for every account.
    """

    _CONFIG_KEYS = ("account_id", "client_id", "client_secret", "token_ttl", "page_token_ttl",
                    "retention_days", "scopes", "last_token_style", "today", "shuffle_within_second",
                    "shuffle_seed", "invalidate_on_mint", "max_requests_per_second")
    account_id = _DefaultAccount()
    client_id = _DefaultAccount()
    client_secret = _DefaultAccount()
    scopes = _DefaultAccount()
    invalidate_on_mint = _DefaultAccount()
    max_requests_per_second = _DefaultAccount()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_id: str = "sim-account",
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",
        token_ttl: float = 3600,
        page_token_ttl: float = 900,
        retention_days: int = 180,
        scopes: str = DEFAULT_SCOPES,
        last_token_style: str = "empty",
        today: str | dt.date | None = None,
        shuffle_within_second: bool = False,
        shuffle_seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._connections = 0  # accepted since start; each account's stats count from its reset_stats
        self._accounts = {DEFAULT_ACCOUNT: _AccountState(DEFAULT_ACCOUNT, account_id, client_id, client_secret,
                                                         DEFAULT_SCOPES)}
        self.token_ttl = token_ttl
        self.page_token_ttl = page_token_ttl
        self.retention_days = retention_days
        self.last_token_style = last_token_style
        self.today: dt.date | None = None
        self.shuffle_within_second = False
        self.shuffle_seed: int | None = None
        self.configure(account_id=account_id, client_id=client_id, client_secret=client_secret,
                       last_token_style=last_token_style, today=today, scopes=scopes,
                       shuffle_within_second=shuffle_within_second, shuffle_seed=shuffle_seed)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ZoomSimulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self._server = server
        self._bound_port = server.server_address[1]  # kept after stop() so URLs stay meaningful
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"zoom-sim-{server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections so clients see the server go away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ZoomSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """``http://host:port``; also returned as ``api_url`` by the token endpoint."""
        port = self._bound_port or self.port
        if not port:
            raise RuntimeError("simulator not started (port 0 is chosen at start())")
        return f"http://{self.host}:{port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v2"

    @property
    def token_url(self) -> str:
        return self.root_url + "/oauth/token"

    @property
    def control_url(self) -> str:
        return self.root_url + "/_sim"

    # -- configuration -----------------------------------------------------------------------------
    def configure(self, *, account: str = DEFAULT_ACCOUNT, **settings: Any) -> dict:
        """Change credentials, scopes, TTLs, retention, last-token style, ``today`` or the within-second
        shuffle (``shuffle_within_second``, ``shuffle_seed``; see the class docstring); returns
        config(account=account). With another ``account`` than the default, only that account's settings
        (credentials, ``scopes``, ``invalidate_on_mint``, ``max_requests_per_second``) may be given.
        Nothing changes unless every setting is valid."""
        unknown = set(settings) - set(self._CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown setting(s): {sorted(unknown)}")
        values = {key: _setting(key, value) for key, value in settings.items()}
        with self._lock:
            target = self._account(account)
            shared = sorted(key for key in values if key not in _AccountState.SETTINGS)
            if shared and target.name != DEFAULT_ACCOUNT:
                raise ValueError(f"{shared} are the same for every account: configure them without an account")
            self._check_distinct(target, values.get("account_id", target.account_id),
                                 values.get("client_id", target.client_id))
            for key, value in values.items():
                setattr(target if key in _AccountState.SETTINGS else self, key, value)
            return self.config(account=account)

    def config(self, *, account: str = DEFAULT_ACCOUNT) -> dict:
        """Current settings as seen by ``account`` (``today`` as a string or None)."""
        with self._lock:
            target = self._account(account)
            out = {key: getattr(target if key in _AccountState.SETTINGS else self, key) for key in self._CONFIG_KEYS}
        out["today"] = out["today"].isoformat() if out["today"] else None
        return out

    def _today(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    # -- accounts ----------------------------------------------------------------------------------
    def add_account(self, name: str, *, client_secret: str, account_id: str | None = None,
                    client_id: str | None = None, scopes: str = DEFAULT_SCOPES,
                    max_requests_per_second: float | None = None) -> SimAccount:
        """Another Zoom account, with its own Server-to-Server app: ``account_id`` and ``client_id``
        default to generated ids (``sim-account-<name>``, ``sim-client-id-<name>``); both must differ
        from every other account's. Returns its credentials."""
        if not isinstance(name, str) or not name:
            raise ValueError("an account's name must be a non-empty string")
        if not isinstance(client_secret, str) or not client_secret:
            raise ValueError("client_secret must be a non-empty string")
        scopes, limit = _setting("scopes", scopes), _setting("max_requests_per_second", max_requests_per_second)
        with self._lock:
            if name in self._accounts:
                raise ValueError(f"account {name!r} already exists")
            ids = {}
            for key, given, stem in (("account_id", account_id, "sim-account"),
                                     ("client_id", client_id, "sim-client-id")):
                if given is None:
                    taken = {getattr(other, key) for other in self._accounts.values()}
                    given = f"{stem}-{name}"
                    while given in taken:
                        given = f"{stem}-{name}-{secrets.token_hex(3)}"
                ids[key] = _setting(key, given)
            state = _AccountState(name, ids["account_id"], ids["client_id"], client_secret, scopes)
            state.max_requests_per_second = limit
            self._check_distinct(state, state.account_id, state.client_id)
            self._accounts[name] = state
            return state.credentials()

    def account(self, name: str = DEFAULT_ACCOUNT) -> SimAccount:
        """The credentials of account ``name`` (as they are now)."""
        with self._lock:
            return self._account(name).credentials()

    def accounts(self) -> list[str]:
        """Names of every account, the default first, then in the order added."""
        with self._lock:
            return list(self._accounts)

    def _account(self, name: Any) -> _AccountState:
        state = self._accounts.get(name) if isinstance(name, str) else None
        if state is None:
            raise ValueError(f"unknown account {name!r}; accounts: {list(self._accounts)}")
        return state

    def _check_distinct(self, state: _AccountState, account_id: str, client_id: str) -> None:
        for other in self._accounts.values():
            if other is not state and account_id == other.account_id:
                raise ValueError(f"account_id {account_id!r} is account {other.name!r}'s")
            if other is not state and client_id == other.client_id:
                raise ValueError(f"client_id {client_id!r} is account {other.name!r}'s")

    # -- statistics --------------------------------------------------------------------------------
    def reset_stats(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Zero the counters of ``account``; its report calls are numbered from 1 again for
        on_report_call, late_events and shuffle_seed."""
        with self._lock:
            self._account(account).reset_stats(self._connections)

    def stats(self, *, account: str = DEFAULT_ACCOUNT) -> dict:
        """Counters of ``account`` since its last reset_stats: without ``account``, the default
        account's (not totals over accounts), as every other method addresses the default account.

        Report counters are totals over both report endpoints (``faults_by_kind`` and
        ``status_counts`` include the token endpoint's), except ``report_calls_by_day``: operation-log
        calls only, keyed by ``from`` (``"from..to"`` for a multi-day range). ``by_log`` has each
        report endpoint's own ``report_calls``, ``report_calls_by_day``, ``faults_by_kind``,
        ``status_counts``, ``pages_served``, ``records_served``, ``page_tokens_issued`` and
        ``qps_rejections``. ``token_calls`` counts the token calls carrying the account's client_id,
        ``tokens_issued`` those that minted. ``max_concurrent_tokens`` is the largest number of the
        account's access tokens whose [first use, last use] report-call intervals overlap;
        ``max_in_flight`` the most of its report requests open at once; ``connections`` the TCP
        connections the server accepted (from any client) since.
        """
        with self._lock:
            return self._account(account).stats(self._connections)

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._conns.add(conn)
                self._connections += 1
            else:
                self._conns.discard(conn)

    # -- routing -----------------------------------------------------------------------------------
    def _route(self, method: str, target: str, headers: Any, body: bytes) -> _Resp:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        log = _LOGS.get(path[len("/v2/report/"):]) if path.startswith("/v2/report/") else None
        if log is not None:
            if method != "GET":
                return _api_error(405, 405, "Method not allowed.")
            return self._report(query, headers, log)
        if path == "/oauth/token":
            if method != "POST":
                return _oauth_error("Method not allowed", "invalid_request")
            return self._token(query, headers, body)
        if path.startswith("/_sim/"):
            return self._control(method, path[len("/_sim/"):], query, body)
        return _api_error(404, 404, "Not Found")
