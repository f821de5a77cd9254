"""What every run of an instance shares about one Zoom account: the report-call pace, the daily
budget and the current access token.

Zoom's limits are per account and shared by every app on it: Heavy APIs (reports) allow 10 requests a
second on Pro and 40 on Business and up, and 30,000 / 60,000 a day, reset at 00:00 UTC. Runs of this
project therefore count their report calls together, in a store every deployment already has:

- ``sqlite``: a file in the Dagster instance directory, ``$DAGSTER_HOME/zoom_account.sqlite`` (or an
  explicit path), shared by every process on the machine;
- ``postgres``: the instance's PostgreSQL (the ``DAGSTER_PG_*`` variables that deploy/dagster.yaml
  reads, or an explicit ``postgresql://`` URL), shared by every process of the deployment;
- ``memory``: this client alone, in this process (what a client built in code gets by default).

``auto`` (the deployed default, see definitions.py) picks PostgreSQL when ``DAGSTER_PG_HOST`` is set,
else the SQLite file when ``DAGSTER_HOME`` is set, else memory; it is resolved where the client first
calls Zoom, i.e. in the run worker.

The pace is pyrate-limiter's sliding-window log over its SQLite bucket (with its file lock, so the
check and the insert are one step across processes) or its PostgreSQL bucket (an exclusive table
lock per check). The budget is one row per account and UTC day, spent by a single atomic UPSERT that
never passes the cap. The shared token is sealed with Fernet under a key derived (HKDF-SHA256) from
the client secret, salted with the account and client ids: the store never holds it readable, a
different secret cannot open it, and nothing here logs it or shows it in a repr. It expires with
Zoom's ``expires_in``. One run at a time mints, holding a short lease row; the others wait for what
it publishes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pyrate_limiter import InMemoryBucket, Limiter, Rate, SQLiteBucket

DEFAULT_MAX_REQUESTS_PER_SECOND = 5.0
"""Half of Zoom's Pro limit for report calls (10/s), leaving the other half to the other apps on the
account, which share the same limit."""

DEFAULT_DAILY_REQUEST_BUDGET = 20_000
"""Two thirds of Zoom's Pro daily limit for report calls (30,000): enough for a busy day's collection,
its checks and a six-month backfill of a typical account in one day, while 10,000 calls stay for the
other apps on the account. Business and up (60,000) may raise it."""

ACCOUNT_DB_NAME = "zoom_account.sqlite"
STORE_KINDS = ("auto", "memory", "sqlite", "postgres")

PACE_MARGIN_MS = 50
"""Each pace window is this much longer than a second, so the jitter between taking a slot and the
request reaching Zoom cannot fit one call too many into a second as Zoom counts it."""

MINT_LEASE_SECONDS = 90.0
"""How long one run may hold the right to mint before another takes it over (a run that died)."""

BUDGET_DAYS_KEPT = 8
_TOKEN_INFO = b"zoom_pipeline shared access token v1"


class AccountStoreUnavailable(Exception):
    """The shared store cannot be opened or reached; the message is one sentence naming it."""


class BudgetSpent(Exception):
    """The daily budget is spent: no call may be made before `resume_at`."""

    def __init__(self, budget: int, resume_at: datetime):
        self.budget = budget
        self.resume_at = resume_at
        super().__init__(f"daily budget of {budget} report calls spent until {resume_at:%Y-%m-%dT%H:%M:%SZ}")


@dataclass(frozen=True)
class SharedToken:
    """An access token another run published (or this one), with its wall-clock times."""

    token: str
    issued_at: float
    renew_at: float  # use it until then: a minute before Zoom's expiry, as the client does
    expires_at: float

    def __repr__(self) -> str:  # never the token itself
        return f"SharedToken(issued_at={self.issued_at:.0f}, expires_at={self.expires_at:.0f})"


@dataclass(frozen=True)
class StoreSpec:
    """Where the shared state lives: kind 'memory', 'sqlite' (path) or 'postgres' (conninfo)."""

    kind: str
    path: str = ""
    conninfo: str = ""
    where: str = "this process"  # named in errors; never holds a password

    def __repr__(self) -> str:
        return f"StoreSpec({self.kind}: {self.where})"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def next_utc_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def check_store_setting(value: str) -> str:
    """`value` if it names a store (no I/O), else ValueError with one sentence."""
    v = (value or "").strip()
    if v.lower() in STORE_KINDS or v.startswith(("postgresql://", "postgres://", "sqlite:///")) or v.endswith(
        (".sqlite", ".sqlite3", ".db")
    ):
        return v
    raise ValueError(
        "ZOOM_ACCOUNT_STORE must be auto, memory, sqlite, postgres, a postgresql:// URL or a path to a .sqlite "
        f"file, got {value!r}."
    )


def resolve_store(value: str, env: Mapping[str, str] = os.environ) -> StoreSpec:
    """The store a setting names, with `auto` decided from the environment (see the module docstring)."""
    v = check_store_setting(value or "auto")
    kind = v.lower()
    if kind == "auto":
        kind = "postgres" if env.get("DAGSTER_PG_HOST") else "sqlite" if env.get("DAGSTER_HOME") else "memory"
    if kind == "memory":
        return StoreSpec("memory")
    if kind == "sqlite" or v.startswith("sqlite:///") or v.endswith((".sqlite", ".sqlite3", ".db")):
        if kind == "sqlite":
            if not env.get("DAGSTER_HOME"):
                raise AccountStoreUnavailable(
                    "ZOOM_ACCOUNT_STORE=sqlite keeps the shared account state in the Dagster instance directory, "
                    "but DAGSTER_HOME is not set."
                )
            path = str(Path(env["DAGSTER_HOME"]) / ACCOUNT_DB_NAME)
        else:
            path = v[len("sqlite:///") - 1:] if v.startswith("sqlite:///") else v
        return StoreSpec("sqlite", path=path, where=f"SQLite file {path}")
    if kind == "postgres":
        from psycopg.conninfo import make_conninfo

        missing = [name for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB") if not env.get(name)]
        if missing:
            raise AccountStoreUnavailable(
                f"ZOOM_ACCOUNT_STORE=postgres reads the instance's PostgreSQL settings, but {', '.join(missing)} "
                "is not set."
            )
        host, port, db = env["DAGSTER_PG_HOST"], env.get("DAGSTER_PG_PORT") or "5432", env["DAGSTER_PG_DB"]
        conninfo = make_conninfo(host=host, port=port, user=env["DAGSTER_PG_USER"],
                                 password=env.get("DAGSTER_PG_PASSWORD") or "", dbname=db)
        return StoreSpec("postgres", conninfo=conninfo, where=f"PostgreSQL at {host}:{port}/{db}")
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(v)
    where = f"PostgreSQL at {parts.get('host', 'localhost')}:{parts.get('port', '5432')}/{parts.get('dbname', '')}"
    return StoreSpec("postgres", conninfo=v, where=where)


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _fernet(secret: str, account_id: str, client_id: str) -> Fernet:
    salt = f"{account_id}\0{client_id}".encode()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_TOKEN_INFO).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


PACE_BATCH_SECONDS = 0.05


def _pace_rate(per_second: float) -> Rate:
    """pyrate-limiter counts whole calls per window: N calls per (1 s + margin), or one call per
    1/rate seconds below one call a second."""
    if per_second >= 1:
        return Rate(int(per_second), 1000 + PACE_MARGIN_MS)
    return Rate(1, round(1000 / per_second) + PACE_MARGIN_MS)


# ---- backends ------------------------------------------------------------------------------------
class _Backend:
    """The tables of the shared state; each method is one atomic step in its store."""

    def pace_bucket(self, rate: Rate, table: str):
        raise NotImplementedError

    def spend(self, account: str, day: str, budget: int | None) -> int | None:
        """Count one call for (account, day): the new count, or None if `budget` is already reached."""
        raise NotImplementedError

    def used(self, account: str, day: str) -> int:
        raise NotImplementedError

    def read_token(self, key: str) -> tuple[float, float, float, str] | None:
        raise NotImplementedError

    def write_token(self, key: str, issued_at: float, renew_at: float, expires_at: float, sealed: str) -> None:
        """Store the token unless a newer one (later `issued_at`) is already there."""
        raise NotImplementedError

    def drop_token(self, key: str, sealed: str) -> None:
        raise NotImplementedError

    def begin_mint(self, key: str, holder: str, now: float, until: float) -> bool:
        raise NotImplementedError

    def end_mint(self, key: str, holder: str) -> None:
        raise NotImplementedError

    def purge(self, oldest_day: str) -> None:
        """Forget budget days before `oldest_day` and expired tokens."""

    def close(self) -> None:
        pass


class _MemoryBackend(_Backend):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.budget: dict[tuple[str, str], int] = {}
        self.tokens: dict[str, tuple[float, float, float, str]] = {}
        self.leases: dict[str, tuple[str, float]] = {}

    def pace_bucket(self, rate: Rate, table: str):
        return InMemoryBucket([rate])

    def spend(self, account, day, budget):
        with self.lock:
            used = self.budget.get((account, day), 0)
            if budget is not None and used >= budget:
                return None
            self.budget[(account, day)] = used + 1
            return used + 1

    def used(self, account, day):
        with self.lock:
            return self.budget.get((account, day), 0)

    def read_token(self, key):
        with self.lock:
            return self.tokens.get(key)

    def write_token(self, key, issued_at, renew_at, expires_at, sealed):
        with self.lock:
            old = self.tokens.get(key)
            if old is None or issued_at >= old[0]:
                self.tokens[key] = (issued_at, renew_at, expires_at, sealed)

    def drop_token(self, key, sealed):
        with self.lock:
            if key in self.tokens and self.tokens[key][3] == sealed:
                del self.tokens[key]

    def begin_mint(self, key, holder, now, until):
        with self.lock:
            old = self.leases.get(key)
            if old is None or old[1] < now or old[0] == holder:
                self.leases[key] = (holder, until)
                return True
            return False

    def end_mint(self, key, holder):
        with self.lock:
            if self.leases.get(key, ("", 0))[0] == holder:
                del self.leases[key]


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS zoom_account_budget (
        account_key TEXT NOT NULL, day TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (account_key, day))""",
    """CREATE TABLE IF NOT EXISTS zoom_account_token (
        token_key TEXT PRIMARY KEY, issued_at DOUBLE PRECISION NOT NULL, renew_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL, sealed TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS zoom_account_mint_lease (
        token_key TEXT PRIMARY KEY, holder TEXT NOT NULL, until DOUBLE PRECISION NOT NULL)""",
)
_SPEND = """INSERT INTO zoom_account_budget (account_key, day, used) VALUES ({p}, {p}, 1)
    ON CONFLICT (account_key, day) DO UPDATE SET used = zoom_account_budget.used + 1
    WHERE {p} < 0 OR zoom_account_budget.used < {p}
    RETURNING used"""
_USED = "SELECT used FROM zoom_account_budget WHERE account_key = {p} AND day = {p}"
_PURGE_BUDGET = "DELETE FROM zoom_account_budget WHERE day < {p}"
_READ_TOKEN = "SELECT issued_at, renew_at, expires_at, sealed FROM zoom_account_token WHERE token_key = {p}"
_WRITE_TOKEN = """INSERT INTO zoom_account_token (token_key, issued_at, renew_at, expires_at, sealed)
    VALUES ({p}, {p}, {p}, {p}, {p})
    ON CONFLICT (token_key) DO UPDATE SET issued_at = excluded.issued_at, renew_at = excluded.renew_at,
        expires_at = excluded.expires_at, sealed = excluded.sealed
    WHERE excluded.issued_at >= zoom_account_token.issued_at"""
_DROP_TOKEN = "DELETE FROM zoom_account_token WHERE token_key = {p} AND sealed = {p}"
_PURGE_TOKENS = "DELETE FROM zoom_account_token WHERE expires_at < {p}"
_BEGIN_MINT = """INSERT INTO zoom_account_mint_lease (token_key, holder, until) VALUES ({p}, {p}, {p})
    ON CONFLICT (token_key) DO UPDATE SET holder = excluded.holder, until = excluded.until
    WHERE zoom_account_mint_lease.until < {p} OR zoom_account_mint_lease.holder = excluded.holder
    RETURNING holder"""
_END_MINT = "DELETE FROM zoom_account_mint_lease WHERE token_key = {p} AND holder = {p}"


class _SqlBackend(_Backend):
    """The same statements on SQLite (`?`) and PostgreSQL (`%s`), each one its own transaction."""

    placeholder = "?"

    def _run(self, statement: str, params: tuple = (), fetch: bool = False):
        raise NotImplementedError

    def _q(self, statement: str) -> str:
        return statement.format(p=self.placeholder)

    def purge(self, oldest_day: str) -> None:
        self._run(self._q(_PURGE_BUDGET), (oldest_day,))
        self._run(self._q(_PURGE_TOKENS), (time.time(),))

    def spend(self, account, day, budget):
        cap = -1 if budget is None else budget
        rows = self._run(self._q(_SPEND), (account, day, cap, cap), fetch=True)
        return int(rows[0][0]) if rows else None

    def used(self, account, day):
        rows = self._run(self._q(_USED), (account, day), fetch=True)
        return int(rows[0][0]) if rows else 0

    def read_token(self, key):
        rows = self._run(self._q(_READ_TOKEN), (key,), fetch=True)
        return tuple(rows[0]) if rows else None

    def write_token(self, key, issued_at, renew_at, expires_at, sealed):
        self._run(self._q(_WRITE_TOKEN), (key, issued_at, renew_at, expires_at, sealed))

    def drop_token(self, key, sealed):
        self._run(self._q(_DROP_TOKEN), (key, sealed))

    def begin_mint(self, key, holder, now, until):
        return bool(self._run(self._q(_BEGIN_MINT), (key, holder, until, now), fetch=True))

    def end_mint(self, key, holder):
        self._run(self._q(_END_MINT), (key, holder))


class _SQLiteBackend(_SqlBackend):
    def __init__(self, spec: StoreSpec):
        self.path = spec.path
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self.conn.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise AccountStoreUnavailable(
                f"Cannot open the shared Zoom account store, {spec.where} ({type(exc).__name__}: {exc}), so no "
                "Zoom call was made."
            ) from None
        self.lock = threading.Lock()

    def _run(self, statement, params=(), fetch=False):
        with self.lock:
            cur = self.conn.execute(statement, params)
            rows = cur.fetchall() if fetch else None
            cur.close()
            return rows

    def pace_bucket(self, rate, table):
        # use_file_lock: pyrate-limiter's own cross-process lock around each check-and-insert.
        return SQLiteBucket.init_from_file([rate], table=table, db_path=self.path, use_file_lock=True)

    def close(self):
        with self.lock:
            self.conn.close()


class _PostgresBackend(_SqlBackend):
    placeholder = "%s"

    def __init__(self, spec: StoreSpec, connect_timeout: float = 5.0):
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.where = spec.where
        self.connect_timeout = connect_timeout
        # One connection per run, on top of the ones Dagster's own storage opens: the run calls Zoom from
        # one thread at a time, and each use of the store (budget, token, pace bucket) takes the connection
        # and gives it back before the next, so a second one would only sit idle. The schema is created on
        # that same connection.
        self.pool = ConnectionPool(
            spec.conninfo, min_size=1, max_size=1, open=False, timeout=30,
            # Not autocommit: pyrate-limiter's bucket locks its table inside the pooled transaction.
            kwargs={"connect_timeout": max(1, int(connect_timeout))},
            name="zoom-account",
        )
        try:
            self.pool.open(wait=True, timeout=max(1.0, connect_timeout))
            with self.pool.connection() as conn:
                # Concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's catalog.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (int(_key("zoom_account schema")[:7], 16),))
                for statement in _SCHEMA:
                    conn.execute(statement)
        except (psycopg.Error, PoolTimeout) as exc:
            self.pool.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise AccountStoreUnavailable(
                f"Cannot reach the shared Zoom account store, {spec.where} ({reason}), so no Zoom call was made."
            ) from None

    def _run(self, statement, params=(), fetch=False):
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if fetch else None

    def pace_bucket(self, rate, table):
        from pyrate_limiter import PostgresBucket

        return PostgresBucket(self.pool, table, [rate])

    def close(self):
        self.pool.close()


def open_backend(spec: StoreSpec) -> _Backend:
    if spec.kind == "memory":
        return _MemoryBackend()
    if spec.kind == "sqlite":
        return _SQLiteBackend(spec)
    return _PostgresBackend(spec)


# ---- the account's state -------------------------------------------------------------------------
class AccountState:
    """The shared state of one Zoom account (at one API) and one OAuth app, in one store.

    - `acquire()` blocks until the account-wide pace allows one more report call;
    - `spend()` counts one report call against today's (UTC) budget, raising BudgetSpent when it is
      spent; `used_today()` says how many were counted. Every request counts, retries included, as
      Zoom may count them too;
    - `shared_token()` / `publish_token()` / `begin_mint()` / `end_mint()` share the access token.

    Pace and budget are keyed by API base URL and account id, the token also by token URL and client id.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        account_id: str,
        client_id: str,
        client_secret: str,
        api_base_url: str = "",
        oauth_token_url: str = "",
        max_requests_per_second: float | None = DEFAULT_MAX_REQUESTS_PER_SECOND,
        daily_request_budget: int | None = DEFAULT_DAILY_REQUEST_BUDGET,
        now: Callable[[], datetime] = _utcnow,
        where: str = "this process",
    ):
        if max_requests_per_second is not None and not max_requests_per_second > 0:
            raise ValueError(f"max_requests_per_second must be a positive number, got {max_requests_per_second!r}.")
        if daily_request_budget is not None and not daily_request_budget > 0:
            raise ValueError(f"daily_request_budget must be a positive whole number, got {daily_request_budget!r}.")
        self._backend = backend
        self.where = where
        self.account_key = _key("account", api_base_url.rstrip("/"), account_id)
        self._token_key = _key("token", oauth_token_url, account_id, client_id)
        self._fernet = _fernet(client_secret, account_id, client_id)
        self.max_requests_per_second = max_requests_per_second
        self.daily_request_budget = daily_request_budget
        self.now = now
        self.holder = uuid.uuid4().hex
        backend.purge((now().astimezone(UTC).date() - timedelta(days=BUDGET_DAYS_KEPT)).isoformat())
        self._limiter: Limiter | None = None
        self._slots, self._slots_until = 0, 0.0
        if max_requests_per_second is not None:
            bucket = backend.pace_bucket(_pace_rate(max_requests_per_second), f"zoom_pace_{self.account_key[:16]}")
            self._limiter = Limiter(bucket)

    @classmethod
    def open(cls, store: str | StoreSpec = "memory", *, env: Mapping[str, str] = os.environ, **kwargs) -> AccountState:
        """Open the state in the store `store` names (see resolve_store); AccountStoreUnavailable with one
        sentence if it cannot be opened or reached."""
        spec = store if isinstance(store, StoreSpec) else resolve_store(store, env)
        return cls(open_backend(spec), where=spec.where, **kwargs)

    def __repr__(self) -> str:
        return (f"AccountState({self.where}, max_requests_per_second={self.max_requests_per_second}, "
                f"daily_request_budget={self.daily_request_budget})")

    # -- pace ----------------------------------------------------------------------------------------
    def acquire(self, cancelled: threading.Event | None = None) -> bool:
        """Block until one more report call fits the account-wide pace; False if `cancelled` was set first.

        At high rates a run takes a few slots of the shared bucket at once (a twentieth of a second's
        worth) and spends them within PACE_BATCH_SECONDS, so the shared store is not touched on every
        call; unused slots lapse, so all runs together still stay within the rate (plus at most 5 %)."""
        if self._limiter is None:
            return True
        now = time.monotonic()
        if self._slots and now < self._slots_until:
            self._slots -= 1
            return True
        batch = max(1, int((self.max_requests_per_second or 0) * PACE_BATCH_SECONDS))
        while True:
            if cancelled is not None and cancelled.is_set():
                return False
            if self._limiter.try_acquire("zoom-report", weight=batch, blocking=True, timeout=0.5):
                self._slots, self._slots_until = batch - 1, time.monotonic() + PACE_BATCH_SECONDS
                return True

    # -- budget --------------------------------------------------------------------------------------
    def today(self) -> str:
        return self.now().astimezone(UTC).date().isoformat()

    def spend(self) -> int:
        """Count one report call for today (UTC): the calls counted today, this one included."""
        now = self.now()
        used = self._backend.spend(self.account_key, now.astimezone(UTC).date().isoformat(), self.daily_request_budget)
        if used is None:
            raise BudgetSpent(self.daily_request_budget or 0, next_utc_midnight(now))
        return used

    def used_today(self) -> int:
        return self._backend.used(self.account_key, self.today())

    # -- token ---------------------------------------------------------------------------------------
    def shared_token(self) -> SharedToken | None:
        """The account's current token if one is published, readable with this secret and not yet due
        for renewal; else None."""
        row = self._backend.read_token(self._token_key)
        if row is None:
            return None
        issued_at, renew_at, expires_at, sealed = row
        if time.time() >= renew_at:
            return None
        try:
            payload = orjson.loads(self._fernet.decrypt(sealed.encode()))
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None  # sealed under another secret (rotated): the next mint replaces it
        if payload.get("k") != self._token_key:
            return None
        return SharedToken(payload["t"], float(issued_at), float(renew_at), float(expires_at))

    def publish_token(self, token: str, expires_in: float, issued_at: float | None = None) -> SharedToken:
        """Share a token Zoom just minted (unless a newer one is already shared)."""
        issued_at = time.time() if issued_at is None else issued_at
        renew_at = issued_at + max(expires_in - 60, expires_in * 0.9)
        expires_at = issued_at + expires_in
        sealed = self._fernet.encrypt(orjson.dumps({"k": self._token_key, "t": token})).decode()
        self._backend.write_token(self._token_key, issued_at, renew_at, expires_at, sealed)
        return SharedToken(token, issued_at, renew_at, expires_at)

    def forget_token(self, token: str) -> None:
        """Drop the shared token if it is `token` (Zoom rejected it)."""
        row = self._backend.read_token(self._token_key)
        if row is None:
            return
        shared = self.shared_token()
        if shared is not None and shared.token == token:
            self._backend.drop_token(self._token_key, row[3])

    def begin_mint(self, lease_seconds: float = MINT_LEASE_SECONDS) -> bool:
        """Take the right to mint the next token, unless another run holds it."""
        now = time.time()
        return self._backend.begin_mint(self._token_key, self.holder, now, now + lease_seconds)

    def end_mint(self) -> None:
        self._backend.end_mint(self._token_key, self.holder)

    def close(self) -> None:
        if self._limiter is not None:
            self._limiter.close()  # also closes the pace bucket
            self._limiter = None
        self._backend.close()
