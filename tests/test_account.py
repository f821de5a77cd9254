"""What runs share about the Zoom account (zoom_pipeline/account.py): one pace across processes, one
token across runs, one daily budget; against the simulator over real HTTP, SQLite files and PostgreSQL."""

import multiprocessing
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.helpers import SIM_SECRET, days_ago, free_port, materialize, resources, zoom_client
from zoom_pipeline.account import (
    ACCOUNT_DB_NAME,
    DEFAULT_DAILY_REQUEST_BUDGET,
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    AccountState,
    AccountStoreUnavailable,
    resolve_store,
)
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.zoom_client import RESTART, ZoomAccountStoreError, ZoomBudgetSpentError, ZoomDailyLimitError


def listed(day_pass) -> list[dict]:
    return [r for page in day_pass.pages() if page is not RESTART for r in page.records]


def one_sentence(text: str) -> bool:
    body = text.rstrip(".")
    return text.endswith(".") and ". " not in body and "\n" not in text


# ---- one pace for all runs -----------------------------------------------------------------------
def _paced_worker(env: dict, store: str, day: str, ready, go, results) -> None:
    client = zoom_client(env, page_size=10, account_store=store, max_requests_per_second=10)
    client.account()  # open the store before the clock starts
    ready.set()
    go.wait(30)
    got = listed(client.day_pass(day))
    client.close()
    results.put(len(got))


def test_two_processes_keep_one_pace_together(sim, zoom_env, tmp_path):
    """2 processes x 30 report calls at 10/s for the instance: Zoom (limited to 10/s) never throttles,
    and together they take the five-plus seconds that 60 calls at 10/s need, with one token."""
    day = days_ago(1)
    sim.generate_day(day, 300)  # 30 pages of 10
    sim.configure(max_requests_per_second=10)
    store = str(tmp_path / ACCOUNT_DB_NAME)
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    readies = [ctx.Event() for _ in range(2)]
    go = ctx.Event()
    procs = [ctx.Process(target=_paced_worker, args=(zoom_env, store, day, ready, go, results)) for ready in readies]
    for proc in procs:
        proc.start()
    try:
        assert all(ready.wait(60) for ready in readies), "workers did not start"
        started = time.monotonic()
        go.set()
        counts = [results.get(timeout=60) for _ in procs]
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    stats = sim.stats()
    assert counts == [300, 300]
    assert stats["report_calls"] == 60 and stats["qps_rejections"] == 0, stats
    assert stats["status_counts"].get("429", 0) == 0, stats
    assert elapsed >= 5.0, f"60 calls at 10/s took only {elapsed:.2f}s"
    assert stats["token_calls"] == 1, stats  # the second process took the first one's token


def test_without_a_shared_pace_the_simulated_limit_answers_429(sim, zoom_env):
    """The simulator's per-second limit is real: an unpaced burst is throttled, and the client's
    Retry-After / backoff handling still gets the day."""
    sim.configure(max_requests_per_second=3)
    token = zoom_client(zoom_env).authenticate()
    codes = [
        requests.get(zoom_env["ZOOM_API_BASE_URL"] + "/report/operationlogs",
                     params={"from": days_ago(1), "to": days_ago(1)},
                     headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code
        for _ in range(6)
    ]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    assert sim.stats()["qps_rejections"] == codes.count(429)
    time.sleep(1.1)
    day = days_ago(2)
    sim.generate_day(day, 80)
    unpaced = zoom_client(zoom_env, page_size=10, backoff_base_seconds=0.5, backoff_max_seconds=2)
    assert len(listed(unpaced.day_pass(day))) == 80  # backed off through the 429s


# ---- one token for all runs ----------------------------------------------------------------------
def _concurrent_passes(clients, day: str) -> list[list[dict]]:
    out: list = [None] * len(clients)
    errors: list = []
    start = threading.Barrier(len(clients))

    def run(i: int) -> None:
        try:
            start.wait(10)
            out[i] = listed(clients[i].day_pass(day))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return out


def test_three_concurrent_runs_share_one_token_when_each_mint_revokes_the_others(sim, zoom_env, tmp_path):
    day = days_ago(1)
    sim.generate_day(day, 2000, seed=3)
    sim.configure(invalidate_on_mint=True)
    store = str(tmp_path / ACCOUNT_DB_NAME)
    # Three clients, each with its own connection to the store: what three run processes have.
    clients = [zoom_client(zoom_env, page_size=100, account_store=store, max_requests_per_second=40)
               for _ in range(3)]
    got = _concurrent_passes(clients, day)
    stats = sim.stats()
    expected = sim.day_records(day)
    assert all(listing == expected for listing in got), "every run lands the whole day exactly"
    assert 1 <= stats["token_calls"] <= 2, stats
    assert stats["status_counts"].get("401", 0) <= 2, stats
    for client in clients:
        client.close()


def test_a_run_whose_token_was_revoked_takes_the_newer_shared_one(sim, zoom_env, tmp_path):
    day = days_ago(1)
    sim.generate_day(day, 50)
    sim.configure(invalidate_on_mint=True)
    store = str(tmp_path / ACCOUNT_DB_NAME)
    first, second = (zoom_client(zoom_env, page_size=50, account_store=store) for _ in range(2))
    assert first.authenticate() == second.authenticate()
    assert sim.stats()["token_calls"] == 1
    # Someone else mints (another app of the account, a manual call): both tokens are now invalid.
    requests.post(zoom_env["ZOOM_OAUTH_TOKEN_URL"], params={"grant_type": "account_credentials",
                  "account_id": zoom_env["ZOOM_ACCOUNT_ID"]}, auth=(zoom_env["ZOOM_CLIENT_ID"], SIM_SECRET), timeout=10)
    one = first.day_pass(day)
    assert len(listed(one)) == 50 and one.stats.token_mints == 1  # minted, and shared
    two = second.day_pass(day)
    assert len(listed(two)) == 50
    assert two.stats.token_mints == 0 and two.stats.tokens_adopted == 1  # took first's newer token
    assert sim.stats()["token_calls"] == 3  # ours, the outsider's, first's; not one more for second


def test_the_shared_token_is_sealed_at_rest_and_expires_with_zoom(sim, zoom_env, tmp_path):
    sim.configure(token_ttl=2)
    store = tmp_path / ACCOUNT_DB_NAME
    client = zoom_client(zoom_env, account_store=str(store))
    token = client.authenticate()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(ACCOUNT_DB_NAME))
    assert token.encode() not in stored and token.split(".")[-1].encode() not in stored
    assert SIM_SECRET.encode() not in stored
    assert token not in repr(client) and SIM_SECRET not in repr(client) and token not in repr(client.account())
    # Readable with the secret, not without it.
    same = AccountState.open(str(store), account_id=sim.account_id, client_id=sim.client_id,
                             client_secret=SIM_SECRET, oauth_token_url=sim.token_url)
    other = AccountState.open(str(store), account_id=sim.account_id, client_id=sim.client_id,
                              client_secret="some-other-secret", oauth_token_url=sim.token_url)
    assert same.shared_token().token == token
    assert other.shared_token() is None
    time.sleep(1.9)  # a 2 s token is renewed at 90 % of its life: no longer shared
    assert same.shared_token() is None
    assert zoom_client(zoom_env, account_store=str(store)).authenticate() != token
    for state in (same, other):
        state.close()
    client.close()


# ---- one daily budget ----------------------------------------------------------------------------
class Clock:
    def __init__(self, when: datetime):
        self.when = when

    def __call__(self) -> datetime:
        return self.when


def test_the_daily_budget_stops_before_the_call_beyond_it_and_resumes_the_next_utc_day(sim, zoom_env, tmp_path):
    day = days_ago(1)
    sim.generate_day(day, 30)  # 3 pages of 10
    clock = Clock(datetime(2026, 11, 20, 23, 59, 30, tzinfo=UTC))
    store = str(tmp_path / ACCOUNT_DB_NAME)

    def client():
        state = AccountState.open(store, account_id=sim.account_id, client_id=sim.client_id,
                                  client_secret=SIM_SECRET, api_base_url=sim.base_url, oauth_token_url=sim.token_url,
                                  max_requests_per_second=None, daily_request_budget=5, now=clock)
        return zoom_client(zoom_env, page_size=10).use_account(state)

    first = client().day_pass(day)
    assert len(listed(first)) == 30 and first.stats.calls_used_today == 3
    with pytest.raises(ZoomBudgetSpentError) as err:
        listed(client().day_pass(day))  # another run: two calls left of five
    assert sim.stats()["report_calls"] == 5, "no call beyond the budget"
    message = str(err.value)
    assert message == (
        "Stopped before Zoom's own daily limit: this project's daily budget of 5 report calls "
        "(ZOOM_DAILY_REQUEST_BUDGET) is spent; calls resume at 00:00 UTC (2026-11-21T00:00:00Z), "
        "and a stopped backfill keeps the days it landed: relaunch it from failure then."
    )
    assert one_sentence(message) and isinstance(err.value, ZoomDailyLimitError)
    assert err.value.reset_at == datetime(2026, 11, 21, tzinfo=UTC)
    clock.when += timedelta(minutes=1)  # 00:00:30 UTC the next day
    resumed = client().day_pass(day)
    assert len(listed(resumed)) == 30 and resumed.stats.calls_used_today == 3
    assert client().calls_used_today() == 3


def test_a_spent_budget_fails_the_run_with_its_sentence_and_writes_nothing(sim, zoom_env, tmp_path):
    day = days_ago(1)
    sim.generate_day(day, 50)
    store_dir = tmp_path / "store"
    res = resources(zoom_env, local_dir=str(store_dir), page_size=10,
                    account_store=str(tmp_path / ACCOUNT_DB_NAME), daily_request_budget=3)
    result = materialize(day, res)
    assert not result.success
    failure = result.failure_data_for_node("zoom_operation_logs").error.message
    assert "daily budget of 3 report calls" in failure and "calls resume at 00:00 UTC" in failure
    assert sim.stats()["report_calls"] == 3
    assert not [p for p in store_dir.rglob("*") if p.is_file()], "nothing half-written"


# ---- settings and stores -------------------------------------------------------------------------
@pytest.mark.parametrize("name, value", [
    ("ZOOM_MAX_REQUESTS_PER_SECOND", "0"),
    ("ZOOM_MAX_REQUESTS_PER_SECOND", "-2"),
    ("ZOOM_MAX_REQUESTS_PER_SECOND", "ten"),
    ("ZOOM_DAILY_REQUEST_BUDGET", "0"),
    ("ZOOM_DAILY_REQUEST_BUDGET", "2.5"),
    ("ZOOM_DAILY_REQUEST_BUDGET", "lots"),
    ("ZOOM_ACCOUNT_STORE", "redis://cache:6379"),
])
def test_a_bad_limit_fails_when_the_definitions_load_with_one_sentence(name, value):
    with pytest.raises(ValueError) as err:
        build_defs({name: value})
    assert str(err.value).startswith(name) and repr(value) in str(err.value) and one_sentence(str(err.value))


def test_documented_defaults_reach_the_client():
    zoom = build_defs({}).resources["zoom"]
    assert zoom.max_requests_per_second == DEFAULT_MAX_REQUESTS_PER_SECOND == 5
    assert zoom.daily_request_budget == DEFAULT_DAILY_REQUEST_BUDGET == 20_000
    assert zoom.account_store == "auto"
    custom = build_defs({"ZOOM_MAX_REQUESTS_PER_SECOND": "20", "ZOOM_DAILY_REQUEST_BUDGET": "50000"}).resources["zoom"]
    assert (custom.max_requests_per_second, custom.daily_request_budget) == (20.0, 50_000)


def test_auto_picks_the_instance_store(tmp_path):
    assert resolve_store("auto", {}).kind == "memory"
    sqlite = resolve_store("auto", {"DAGSTER_HOME": str(tmp_path)})
    assert (sqlite.kind, sqlite.path) == ("sqlite", str(tmp_path / ACCOUNT_DB_NAME))
    pg_env = {"DAGSTER_HOME": str(tmp_path), "DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "6543",
              "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "pw-not-shown", "DAGSTER_PG_DB": "dagster"}
    pg = resolve_store("auto", pg_env)
    assert pg.kind == "postgres" and pg.where == "PostgreSQL at db:6543/dagster"
    assert "pw-not-shown" not in repr(pg) and "pw-not-shown" not in pg.where
    with pytest.raises(AccountStoreUnavailable, match="DAGSTER_HOME is not set"):
        resolve_store("sqlite", {})


def test_an_unreachable_postgres_fails_with_one_sentence_before_any_zoom_call(sim, zoom_env, tmp_path, monkeypatch):
    port = free_port()  # nothing listens there
    for key, value in {"DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(port), "DAGSTER_PG_USER": "dagster",
                       "DAGSTER_PG_PASSWORD": "pw-not-shown", "DAGSTER_PG_DB": "dagster"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ZoomAccountStoreError) as err:
        zoom_client(zoom_env, account_store="auto").authenticate()
    message = str(err.value)
    assert f"PostgreSQL at 127.0.0.1:{port}/dagster" in message and "no Zoom call was made" in message
    assert one_sentence(message) and "pw-not-shown" not in message
    # A run: fails with that sentence, no Zoom call, nothing written.
    day = days_ago(1)
    sim.generate_day(day, 20)
    store_dir = tmp_path / "store"
    result = materialize(day, resources(zoom_env, local_dir=str(store_dir), account_store="postgres"))
    assert not result.success
    failure = result.failure_data_for_node("zoom_operation_logs").error.message
    assert f"PostgreSQL at 127.0.0.1:{port}/dagster" in failure
    assert sim.stats()["token_calls"] == 0 and sim.stats()["report_calls"] == 0
    assert not [p for p in store_dir.rglob("*") if p.is_file()]


def test_postgres_shares_pace_budget_and_token_across_runs(postgres, sim, zoom_env, monkeypatch):
    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    day = days_ago(1)
    sim.generate_day(day, 600, seed=4)
    sim.configure(invalidate_on_mint=True, max_requests_per_second=20)
    clients = [zoom_client(zoom_env, page_size=60, account_store="postgres", max_requests_per_second=20,
                           daily_request_budget=1000) for _ in range(3)]
    started = time.monotonic()
    got = _concurrent_passes(clients, day)
    elapsed = time.monotonic() - started
    stats = sim.stats()
    assert all(listing == sim.day_records(day) for listing in got)
    assert stats["token_calls"] == 1 and stats["qps_rejections"] == 0, stats
    assert elapsed >= 0.9  # 30 calls at 20/s
    assert all(client.calls_used_today() == 30 for client in clients)  # counted together
    for client in clients:
        client.close()


def test_a_run_holds_at_most_one_postgres_connection_for_the_account_store(postgres, sim, zoom_env, monkeypatch):
    """The account store shares the run's connection budget: one connection (schema, budget, token, pace),
    never a second, sampled from pg_stat_activity while a pass pages through a day."""
    import psycopg

    for key, value in postgres.items():
        monkeypatch.setenv(key, value)
    conninfo = (f"host={postgres['DAGSTER_PG_HOST']} port={postgres['DAGSTER_PG_PORT']} "
                f"user={postgres['DAGSTER_PG_USER']} dbname={postgres['DAGSTER_PG_DB']}")
    day = days_ago(1)
    sim.generate_day(day, 900, seed=5)
    peak, done = [0], threading.Event()

    def sample() -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            while not done.is_set():
                [(n,)] = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                                      "pg_backend_pid() AND backend_type = 'client backend'",
                                      (postgres["DAGSTER_PG_DB"],)).fetchall()
                peak[0] = max(peak[0], n)
                time.sleep(0.005)

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        client = zoom_client(zoom_env, page_size=30, account_store="postgres", max_requests_per_second=200,
                             daily_request_budget=1000)
        assert len(listed(client.day_pass(day))) == 900
        assert client.calls_used_today() == 30
        client.close()
    finally:
        done.set()
        watcher.join()
    assert peak[0] == 1
