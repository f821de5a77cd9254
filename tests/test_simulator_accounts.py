"""The simulator stands in for several Zoom accounts: each has its own credentials, data, tokens, page
tokens, faults, per-second limit and counters, and an access token serves its own account only. Always
over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests import test_simulator
from tests.test_simulator import DAY, TODAY, api_error
from zoom_pipeline.simulator import DEFAULT_ACCOUNT, SimAccount, ZoomSimulator

sim, http = test_simulator.sim, test_simulator.http  # the same fixtures: ZoomSimulator(today=TODAY), a Session
INVALID_CLIENT = {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}
BAD_PAGE_TOKEN = "The next page token is invalid or expired."


def token_call(sim, http, acct: SimAccount, *, secret=None, account_id=None) -> requests.Response:
    return http.post(sim.token_url, auth=(acct.client_id, secret or acct.client_secret), timeout=5,
                     params={"grant_type": "account_credentials", "account_id": account_id or acct.account_id})


def mint(sim, http, acct: SimAccount) -> str:
    r = token_call(sim, http, acct)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def report(sim, http, token, log="operationlogs", day=DAY, **params) -> requests.Response:
    return http.get(f"{sim.base_url}/report/{log}", params={"from": day, "to": day, **params},
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)


def records(sim, http, token, log="operationlogs", key="operation_logs", day=DAY) -> list[dict]:
    """Every record of a day, following next_page_token."""
    out, page_token = [], None
    while True:
        r = report(sim, http, token, log, day, page_size=300, **({"next_page_token": page_token} if page_token else {}))
        assert r.status_code == 200, r.text
        out.extend(r.json()[key])
        page_token = r.json()["next_page_token"]
        if not page_token:
            return out


def test_accounts_have_distinct_ids_and_the_default_keeps_its_own(sim):
    default = sim.account()
    assert default == SimAccount(DEFAULT_ACCOUNT, "sim-account", "sim-client-id", "sim-client-secret")
    assert (sim.account_id, sim.client_id, sim.client_secret) == default[1:]
    b = sim.add_account("b", client_secret="b-secret")
    c = sim.add_account("c", client_secret="c-secret", account_id="acct-c", client_id="client-c")
    assert b == sim.account("b") and b.name == "b" and b.client_secret == "b-secret"
    assert (c.account_id, c.client_id) == ("acct-c", "client-c")
    assert sim.accounts() == [DEFAULT_ACCOUNT, "b", "c"]
    assert len({a.account_id for a in map(sim.account, sim.accounts())}) == 3
    assert len({a.client_id for a in map(sim.account, sim.accounts())}) == 3
    # A generated id steps around one already given to another account.
    d = sim.add_account("x", client_secret="s", account_id="sim-account-y")
    assert sim.add_account("y", client_secret="s").account_id not in {d.account_id, "sim-account-y"}
    for bad in ({"account_id": "acct-c"}, {"client_id": "sim-client-id"}):
        with pytest.raises(ValueError, match="account"):
            sim.add_account("z", client_secret="s", **bad)
    with pytest.raises(ValueError, match="already exists"):
        sim.add_account("b", client_secret="s")
    with pytest.raises(ValueError, match="client_id"):
        sim.configure(client_id="client-c")  # the default account may not take c's app either
    with pytest.raises(ValueError, match="unknown account"):
        sim.day_count(DAY, account="nobody")
    assert "z" not in sim.accounts() and sim.client_id == "sim-client-id"


def test_each_token_reads_its_own_accounts_data_only(sim, http):
    b = sim.add_account("b", client_secret="b-secret")
    sim.generate_day(DAY, 400, seed=1)
    sim.generate_day(DAY, 350, seed=2, account="b")
    sim.set_day(TODAY, sim.make_records(TODAY, 3, seed=3), account="b")
    sim.generate_day(DAY, 20, seed=4, log="activities", account="b")
    token_a, token_b = mint(sim, http, sim.account()), mint(sim, http, b)
    ops_a, ops_b = records(sim, http, token_a), records(sim, http, token_b)
    assert ops_a == sim.day_records(DAY) and len(ops_a) == 400
    assert ops_b == sim.day_records(DAY, account="b") and len(ops_b) == 350 and ops_a[:350] != ops_b
    # The token decides: A's token never reads B's days, whatever B holds.
    assert records(sim, http, token_a, day=TODAY) == [] and len(records(sim, http, token_b, day=TODAY)) == 3
    assert records(sim, http, token_a, "activities", "activity_logs") == []
    assert records(sim, http, token_b, "activities", "activity_logs") == sim.day_records(DAY, log="activities",
                                                                                        account="b")
    # Arrivals and late events land in their account's day, counted by its own calls.
    sim.on_report_call(1, DAY, sim.make_records(DAY, 2, seed=5, start_time="23:59:59"), account="b")
    sim.reset_stats(account="b")
    report(sim, http, token_a)
    assert (sim.day_count(DAY), sim.day_count(DAY, account="b")) == (400, 350)
    report(sim, http, token_b)
    assert (sim.day_count(DAY), sim.day_count(DAY, account="b")) == (400, 352)
    sim.reset(account="b")
    assert sim.day_count(DAY, account="b") == 0 and sim.day_count(DAY) == 400
    api_error(report(sim, http, token_b), 401, 124, "Invalid access token.")  # reset forgot B's tokens
    assert report(sim, http, token_a).status_code == 200


def test_the_token_endpoint_checks_credentials_against_their_account(sim, http):
    a = sim.account()
    b = sim.add_account("b", client_secret="b-secret", scopes="report:read:user_activities:admin")
    assert token_call(sim, http, b, secret="wrong").json() == INVALID_CLIENT
    assert token_call(sim, http, b, secret=a.client_secret).json() == INVALID_CLIENT  # A's secret, B's app
    assert token_call(sim, http, a, secret=b.client_secret).json() == INVALID_CLIENT
    # One account's app asking for another account's token: refused as Zoom refuses bad credentials.
    r = token_call(sim, http, a, account_id=b.account_id)
    assert r.status_code == 400 and r.json() == INVALID_CLIENT
    assert token_call(sim, http, b, account_id=a.account_id).json() == INVALID_CLIENT
    assert token_call(sim, http, b, account_id="nope").json() == {"reason": "Account does not exist",
                                                                  "error": "invalid_request"}
    # Scopes are the account's: B's app may read activities only.
    body = token_call(sim, http, b).json()
    assert body["scope"] == "report:read:user_activities:admin"
    api_error(report(sim, http, body["access_token"]), 400, 4711,
              "Invalid access token, does not contain scopes:[report:read:operation_logs:admin]")
    assert report(sim, http, body["access_token"], "activities").status_code == 200
    assert report(sim, http, mint(sim, http, a)).status_code == 200
    # Rotating B's secret leaves A's alone.
    assert sim.configure(client_secret="b-rotated", account="b")["client_secret"] == "b-rotated"
    assert token_call(sim, http, b).json() == INVALID_CLIENT
    assert token_call(sim, http, b, secret="b-rotated").status_code == 200
    assert token_call(sim, http, a).status_code == 200 and sim.client_secret == "sim-client-secret"
    with pytest.raises(ValueError, match="same for every account"):
        sim.configure(token_ttl=5, account="b")


def test_faults_for_one_account_hit_only_that_account(sim, http):
    a, b = sim.account(), sim.add_account("b", client_secret="b-secret")
    token_a, token_b = mint(sim, http, a), mint(sim, http, b)
    sim.inject("server_error", times=2, status=503, account="b")
    sim.inject("token_server_error", account="b")
    assert sim.pending_faults() == []
    assert [f["kind"] for f in sim.pending_faults(account="b")] == ["server_error", "token_server_error"]
    assert [report(sim, http, token_a).status_code for _ in range(3)] == [200] * 3
    assert token_call(sim, http, a).status_code == 200  # A's app mints; B's token fault waits for B
    assert token_call(sim, http, b).status_code == 500 and token_call(sim, http, b).status_code == 200
    assert [report(sim, http, token_b).status_code for _ in range(3)] == [503, 503, 200]
    assert sim.stats()["faults_by_kind"] == {}
    assert sim.stats(account="b")["faults_by_kind"] == {"server_error": 2, "token_server_error": 1}

    sim.expire_access_tokens(account="b")
    api_error(report(sim, http, token_b), 401, 124, "Access token is expired.")
    assert report(sim, http, token_a).status_code == 200
    # Each account's app invalidates its own earlier tokens only.
    sim.configure(invalidate_on_mint=True, account="b")
    fresh_b = mint(sim, http, b)
    assert report(sim, http, fresh_b).status_code == 200
    mint(sim, http, b)
    api_error(report(sim, http, fresh_b), 401, 124, "Invalid access token.")
    mint(sim, http, a)
    assert report(sim, http, token_a).status_code == 200  # A keeps invalidate_on_mint off
    sim.inject("server_error", account="b")
    sim.clear_faults()
    assert len(sim.pending_faults(account="b")) == 1
    sim.clear_faults(account="b")
    assert sim.pending_faults(account="b") == []


def test_per_second_limits_are_per_account():
    with ZoomSimulator(today=TODAY) as sim, requests.Session() as http:
        sim.configure(max_requests_per_second=3)
        b = sim.add_account("b", client_secret="b-secret", max_requests_per_second=3)
        c = sim.add_account("c", client_secret="c-secret")  # unlimited
        tokens = {name: mint(sim, http, sim.account(name)) for name in ("default", "b")}
        tokens["c"] = mint(sim, http, c)
        statuses = {name: [] for name in tokens}
        for _ in range(4):  # interleaved: each account reaches its own limit, never the others'
            for name, token in tokens.items():
                statuses[name].append(report(sim, http, token, "activities" if name == "b" else "operationlogs")
                                      .status_code)
        assert statuses == {"default": [200, 200, 200, 429], "b": [200, 200, 200, 429], "c": [200] * 4}
        r = report(sim, http, tokens["b"])
        assert r.status_code == 429 and r.headers["X-RateLimit-Type"] == "QPS"
        assert [sim.stats(account=n)["qps_rejections"] for n in ("default", "b", "c")] == [1, 2, 0]
        limits = [sim.config(account=n)["max_requests_per_second"] for n in ("default", b.name, c.name)]
        assert limits == [3.0, 3.0, None]


def test_a_page_token_belongs_to_its_account(sim, http):
    b = sim.add_account("b", client_secret="b-secret")
    sim.generate_day(DAY, 100, seed=1)
    sim.generate_day(DAY, 100, seed=1, account="b")  # the same listing in both accounts
    token_a, token_b = mint(sim, http, sim.account()), mint(sim, http, b)
    page_a = report(sim, http, token_a, page_size=10).json()["next_page_token"]
    page_b = report(sim, http, token_b, page_size=10).json()["next_page_token"]
    api_error(report(sim, http, token_b, page_size=10, next_page_token=page_a), 400, 300, BAD_PAGE_TOKEN)
    api_error(report(sim, http, token_a, page_size=10, next_page_token=page_b), 400, 300, BAD_PAGE_TOKEN)
    assert report(sim, http, token_a, page_size=10, next_page_token=page_a).status_code == 200
    sim.expire_page_tokens(account="b")
    api_error(report(sim, http, token_b, page_size=10, next_page_token=page_b), 400, 300, BAD_PAGE_TOKEN)
    assert report(sim, http, token_a, page_size=10, next_page_token=page_a).status_code == 200


def test_stats_are_per_account(sim, http):
    b = sim.add_account("b", client_secret="b-secret")
    sim.generate_day(DAY, 50, seed=1, account="b")
    token_a = mint(sim, http, sim.account())
    token_b, _ = mint(sim, http, b), mint(sim, http, b)
    token_call(sim, http, b, secret="wrong")
    report(sim, http, token_a)
    for _ in range(2):
        report(sim, http, token_b)
    report(sim, http, token_b, "activities", day=TODAY)
    a_stats, b_stats = sim.stats(), sim.stats(account="b")
    assert a_stats == sim.stats(account=DEFAULT_ACCOUNT)  # without account: the default account's, not totals
    assert (a_stats["report_calls"], a_stats["token_calls"], a_stats["tokens_issued"]) == (1, 1, 1)
    assert (b_stats["report_calls"], b_stats["token_calls"], b_stats["tokens_issued"]) == (3, 3, 2)
    assert a_stats["status_counts"] == {"200": 2} and b_stats["status_counts"] == {"200": 5, "400": 1}
    assert b_stats["report_calls_by_day"] == {DAY: 2} and b_stats["by_log"]["activities"]["report_calls"] == 1
    assert (a_stats["records_served"], b_stats["records_served"]) == (0, 60)
    assert (a_stats["tokens_used"], b_stats["tokens_used"]) == (1, 1) and b_stats["max_in_flight"] == 1
    sim.reset_stats(account="b")
    assert sim.stats(account="b")["report_calls"] == 0 and sim.stats()["report_calls"] == 1
    sim.reset_stats()
    assert sim.stats()["token_calls"] == 0


def test_control_endpoints_add_an_account_and_target_it(sim, http):
    ctl = sim.control_url
    r = http.post(f"{ctl}/account", json={"name": "b", "client_secret": "b-secret", "max_requests_per_second": 50})
    assert r.status_code == 200
    b = SimAccount(**r.json())
    assert b == sim.account("b") and b.client_secret == "b-secret"
    assert http.post(f"{ctl}/account", json={"name": "b", "client_secret": "s"}).status_code == 400
    assert http.post(f"{ctl}/account", json={"name": "c"}).json() == {"error": "missing field 'client_secret'"}
    assert http.post(f"{ctl}/account", json={"name": "c", "client_secret": "s", "qps": 1}).status_code == 400
    assert http.get(f"{ctl}/accounts").json() == [sim.account()._asdict(), b._asdict()]

    on_b = {"account": "b"}
    assert http.post(f"{ctl}/day", json={"day": DAY, "generate": 40, "seed": 2, **on_b}).status_code == 200
    assert (sim.day_count(DAY), sim.day_count(DAY, account="b")) == (0, 40)
    remote = http.get(f"{ctl}/records", params={"day": DAY, "limit": 3, **on_b}).json()
    assert remote == {"records": sim.day_records(DAY, 0, 3, account="b"), "count": 40}
    assert http.post(f"{ctl}/fault", json={"kind": "server_error", "status": 502, **on_b}).status_code == 200
    assert http.get(f"{ctl}/faults").json() == []
    assert http.get(f"{ctl}/faults", params=on_b).json() == [{"kind": "server_error", "times": 1, "after_calls": 0,
                                                              "log": "operationlogs", "status": 502}]
    config = http.post(f"{ctl}/config", json={"scopes": "report:read:admin", **on_b}).json()
    assert config["scopes"] == "report:read:admin" and config["max_requests_per_second"] == 50
    assert http.get(f"{ctl}/config").json()["scopes"] == sim.config()["scopes"] != "report:read:admin"
    assert http.post(f"{ctl}/config", json={"today": DAY, **on_b}).status_code == 400  # the server's, not B's

    token_b = mint(sim, http, b)
    assert report(sim, http, token_b).status_code == 502
    assert len(records(sim, http, token_b)) == 40
    stats = http.get(f"{ctl}/stats", params=on_b).json()
    assert stats["report_calls"] == 2 and stats["status_counts"] == {"200": 2, "502": 1}
    assert http.get(f"{ctl}/stats").json()["report_calls"] == 0
    assert http.post(f"{ctl}/expire_access_tokens", json=on_b).status_code == 200
    api_error(report(sim, http, token_b), 401, 124, "Access token is expired.")
    assert http.post(f"{ctl}/reset_stats", json=on_b).status_code == 200
    assert http.post(f"{ctl}/stats", json=on_b).json()["report_calls"] == 0
    assert http.post(f"{ctl}/reset", json=on_b).status_code == 200 and sim.day_count(DAY, account="b") == 0
    assert http.post(f"{ctl}/day", json={"day": DAY, "generate": 1, "account": "nobody"}).status_code == 400
    assert http.get(f"{ctl}/stats", params={"account": "nobody"}).status_code == 400


def test_cli_adds_accounts():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoom_pipeline.simulator", "--port", "0", "--today", TODAY,
         "--account", "b:b-secret", "--account", "c:c-secret"],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        line = json.loads(proc.stdout.readline())
        accounts = {a["name"]: SimAccount(**a) for a in line["accounts"]}
        assert list(accounts) == ["default", "b", "c"] and accounts["c"].client_secret == "c-secret"
        with requests.Session() as http:
            r = http.post(line["token_url"], auth=(accounts["b"].client_id, "b-secret"), timeout=5,
                          params={"grant_type": "account_credentials", "account_id": accounts["b"].account_id})
            assert r.status_code == 200, r.text
            stats = http.get(f"{line['control_url']}/stats", params={"account": "b"}, timeout=5).json()
            assert stats["tokens_issued"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
