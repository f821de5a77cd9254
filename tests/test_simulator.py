"""Tests for the Zoom API simulator, always over real HTTP."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from zoom_pipeline.simulator import ZoomSimulator

TODAY = "2026-11-20"
DAY = "2026-11-19"
AUTH = ("sim-client-id", "sim-client-secret")
GRANT = {"grant_type": "account_credentials", "account_id": "sim-account"}
KEYS = ["action", "category_type", "operation_detail", "operator", "time"]


@pytest.fixture
def sim():
    with ZoomSimulator(today=TODAY) as s:
        yield s


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


def mint(sim: ZoomSimulator, http: requests.Session) -> str:
    r = http.post(sim.token_url, params=GRANT, auth=AUTH, timeout=5)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def report(sim, http, token, day=DAY, to=None, **params):
    params = {"from": day, "to": to or day, **params}
    return http.get(f"{sim.base_url}/report/operationlogs", params=params,
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)


def page_all(sim, http, token, day=DAY, page_size=300):
    """Every page of a day, following next_page_token until it is empty, null or missing."""
    pages, page_token = [], None
    while True:
        extra = {"next_page_token": page_token} if page_token else {}
        r = report(sim, http, token, day, page_size=page_size, **extra)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        page_token = pages[-1].get("next_page_token")
        if not page_token:
            return pages


def api_error(r: requests.Response, status: int, code: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"code": code, "message": message}


# -- OAuth ------------------------------------------------------------------------------------------


def test_oauth_success_query_and_form_body(sim, http):
    r = http.post(sim.token_url, params=GRANT, auth=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert list(body) == ["access_token", "token_type", "expires_in", "scope", "api_url"]
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert body["scope"] == "report:read:operation_logs:admin"
    assert body["api_url"] + "/v2" == sim.base_url
    form = http.post(sim.token_url, data=GRANT, auth=AUTH).json()
    assert form["access_token"] != body["access_token"]
    assert report(sim, http, form["access_token"]).status_code == 200
    assert sim.stats()["token_calls"] == 2


@pytest.mark.parametrize(
    ("auth", "params", "expected"),
    [
        (("sim-client-id", "wrong"), GRANT,
         {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
        (("other-id", "sim-client-secret"), GRANT,
         {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
        (None, GRANT, {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}),
        (AUTH, {"grant_type": "account_credentials", "account_id": "nope"},
         {"reason": "Account does not exist", "error": "invalid_request"}),
        (AUTH, {"account_id": "sim-account"}, {"reason": "Missing grant_type", "error": "invalid_request"}),
    ],
)
def test_oauth_errors(sim, http, auth, params, expected):
    r = http.post(sim.token_url, params=params, auth=auth)
    assert r.status_code == 400
    assert r.json() == expected


def test_invalid_and_expired_access_token(http):
    with ZoomSimulator(today=TODAY, token_ttl=0.3) as sim:
        api_error(report(sim, http, "not-a-token"), 401, 124, "Invalid access token.")
        token = mint(sim, http)
        assert report(sim, http, token).status_code == 200
        time.sleep(0.4)
        api_error(report(sim, http, token), 401, 124, "Access token is expired.")
        assert report(sim, http, mint(sim, http)).status_code == 200


def test_missing_scope_is_400_4711(sim, http):
    token = mint(sim, http)
    sim.configure(scopes="user:read:admin meeting:read:admin")
    api_error(report(sim, http, token), 400, 4711,
              "Invalid access token, does not contain scopes:[report:read:operation_logs:admin]")
    sim.configure(scopes="user:read:admin report:read:admin")  # the classic scope is enough
    assert report(sim, http, token).status_code == 200


# -- paging -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("style", "last"), [("empty", ""), ("null", None), ("missing", "absent")])
def test_generated_day_pages_newest_first(http, style, last):
    with ZoomSimulator(today=TODAY, last_token_style=style) as sim:
        sim.generate_day(DAY, 1000, seed=3, twins=7)
        pages = page_all(sim, http, mint(sim, http))
    assert [len(p["operation_logs"]) for p in pages] == [300, 300, 300, 100]
    assert all(p["next_page_token"] for p in pages[:-1])
    assert pages[-1].get("next_page_token", "absent") == last
    assert [list(p) for p in pages[:1]] == [["from", "to", "page_size", "next_page_token", "operation_logs"]]
    assert pages[0]["from"] == pages[0]["to"] == DAY and pages[0]["page_size"] == 300
    records = [r for p in pages for r in p["operation_logs"]]
    assert len(records) == 1000
    assert all(list(r) == KEYS for r in records)
    times = [r["time"] for r in records]
    assert times == sorted(times, reverse=True)
    assert all(t.startswith(DAY + "T") and t.endswith("Z") and len(t) == 20 for t in times)
    assert times[0] > f"{DAY}T20:00:00Z" and times[-1] < f"{DAY}T04:00:00Z"  # spread over the day
    # Twins: byte-identical neighbours; every other record is distinct.
    assert sum(a == b for a, b in zip(records, records[1:], strict=False)) == 7
    assert len({json.dumps(r, sort_keys=True) for r in records}) == 993


def test_generated_records_are_realistic_and_deterministic(sim, http):
    sim.generate_day(DAY, 2000, seed=11)
    token = mint(sim, http)
    first = report(sim, http, token, page_size=300).json()["operation_logs"]
    assert report(sim, http, token, page_size=300).json()["operation_logs"] == first
    records = sim.day_records(DAY)
    assert records[:300] == first and sim.day_count(DAY) == 2000
    categories = {r["category_type"] for r in records}
    assert {"User", "User Group", "Account", "Role", "Zoom Rooms", "Recording", "Channels", "Team Chat"} <= categories
    operators = {r["operator"] for r in records}
    assert any("@" not in op for op in operators) and any(op.startswith("room_") for op in operators)
    details = [r["operation_detail"] for r in records]
    assert any("  - " in d for d in details) and any(d.endswith(" ") for d in details)
    assert any(not d.isascii() for d in details)
    other = ZoomSimulator(today=TODAY)
    other.generate_day(DAY, 2000, seed=12)
    assert other.day_records(DAY, 0, 300) != first


def test_million_record_day_is_lazy_and_fast(sim, http):
    sim.generate_day(DAY, 1_000_000, seed=1, twins=50)
    token = mint(sim, http)
    started = time.perf_counter()
    r = report(sim, http, token, page_size=300)
    assert len(r.json()["operation_logs"]) == 300
    tail = sim.day_records(DAY, 999_990)
    assert time.perf_counter() - started < 1.0
    assert len(tail) == 10 and tail[-1]["time"].startswith(f"{DAY}T00:00:")
    assert sim.day_count(DAY) == 1_000_000


def test_page_size_default_cap_and_multi_day_range(sim, http):
    sim.generate_day(DAY, 400, seed=1)
    sim.set_day(TODAY, sim.make_records(TODAY, 5, seed=1))
    token = mint(sim, http)
    assert len(report(sim, http, token).json()["operation_logs"]) == 30
    capped = report(sim, http, token, page_size=1000).json()
    assert capped["page_size"] == 300 and len(capped["operation_logs"]) == 300
    two_days = report(sim, http, token, day=DAY, to=TODAY, page_size=10).json()
    assert [r["time"][:10] for r in two_days["operation_logs"]] == [TODAY] * 5 + [DAY] * 5
    assert report(sim, http, token, day="2026-11-01").json()["operation_logs"] == []
    assert sim.stats()["report_calls_by_day"] == {DAY: 2, f"{DAY}..{TODAY}": 1, "2026-11-01": 1}


def test_explicit_and_added_records_order(sim, http):
    t = f"{DAY}T10:00:00Z"
    sim.set_day(DAY, [
        {"action": "A", "time": f"{DAY}T09:00:00Z"},
        {"action": "B", "time": t},
        {"action": "C", "time": t},
        {"action": "D", "time": f"{DAY}T11:00:00Z"},
    ])
    sim.add_records(DAY, [{"action": "E", "time": t}, {"action": "F", "time": t}])
    records = page_all(sim, http, mint(sim, http))[0]["operation_logs"]
    # Equal times: set_day keeps the given order; newly added go first, in their given order.
    assert [r["action"] for r in records] == ["D", "E", "F", "B", "C", "A"]


def test_added_records_precede_synthetic_ones_of_equal_time(sim, http):
    sim.generate_day(DAY, 50, seed=2)
    newest = sim.day_records(DAY, 0, 1)[0]
    added = sim.make_records(DAY, 2, seed=5, start_time=newest["time"])
    sim.add_records(DAY, added)
    records = page_all(sim, http, mint(sim, http), page_size=20)
    flat = [r for p in records for r in p["operation_logs"]]
    assert len(flat) == 52 and flat[0] == added[0] and flat[1] == newest  # equal time: the arrival first


def test_page_token_ttl_and_expire_page_tokens(http):
    with ZoomSimulator(today=TODAY, page_token_ttl=0.3) as sim:
        sim.generate_day(DAY, 100)
        token = mint(sim, http)
        page_token = report(sim, http, token, page_size=10).json()["next_page_token"]
        assert report(sim, http, token, page_size=10, next_page_token=page_token).status_code == 200
        time.sleep(0.4)
        api_error(report(sim, http, token, page_size=10, next_page_token=page_token),
                  400, 300, "The next page token is invalid or expired.")
        page_token = report(sim, http, token, page_size=10).json()["next_page_token"]
        sim.expire_page_tokens()
        api_error(report(sim, http, token, next_page_token=page_token),
                  400, 300, "The next page token is invalid or expired.")
        api_error(report(sim, http, token, next_page_token="garbage"),
                  400, 300, "The next page token is invalid or expired.")
        # A token is bound to its date range.
        page_token = report(sim, http, token, page_size=10).json()["next_page_token"]
        assert report(sim, http, token, day=TODAY, next_page_token=page_token).status_code == 400


def test_on_report_call_shift_repeats_records_across_pages(sim, http):
    sim.generate_day(DAY, 100, seed=4)
    arrivals = sim.make_records(DAY, 3, seed=9, start_time="23:59:59")
    sim.on_report_call(1, DAY, arrivals)
    pages = page_all(sim, http, mint(sim, http), page_size=30)
    first, second = pages[0]["operation_logs"], pages[1]["operation_logs"]
    assert second[:3] == first[-3:]  # offset paging: 3 arrivals pushed 3 records onto page 2
    flat = [r for p in pages for r in p["operation_logs"]]
    assert len(flat) == 103 and not any(r in flat for r in arrivals)  # arrivals landed behind the cursor
    assert sim.day_records(DAY, 0, 3) == arrivals


def test_retention_and_date_validation(sim, http):
    token = mint(sim, http)
    floor = dt.date.fromisoformat(TODAY) - dt.timedelta(days=180)
    assert report(sim, http, token, day=floor.isoformat(), to=TODAY).status_code == 200
    api_error(report(sim, http, token, day=(floor - dt.timedelta(days=1)).isoformat()),
              400, 300, "Only provide report in recent 6 months")
    for bad in ("2026/11/20", "20261120", "2026-13-01"):
        r = report(sim, http, token, day=bad, to=TODAY)
        assert r.status_code == 400 and r.json()["code"] == 300 and "from" in r.json()["message"]
    r = report(sim, http, token, day=TODAY, to=DAY)
    assert r.status_code == 400 and r.json()["code"] == 300


# -- faults -----------------------------------------------------------------------------------------


def test_rate_limit_qps(sim, http):
    sim.generate_day(DAY, 5)
    token = mint(sim, http)
    sim.inject("rate_limit_qps")
    sim.inject("rate_limit_qps", retry_after=2)
    for retry_after in (None, "2"):
        r = report(sim, http, token)
        api_error(r, 429, 429, "You have reached the maximum per-second rate limit for this API. Try again later.")
        assert r.headers["X-RateLimit-Category"] == "Heavy" and r.headers["X-RateLimit-Type"] == "QPS"
        assert r.headers.get("Retry-After") == retry_after
    assert report(sim, http, token).status_code == 200


def test_rate_limit_daily(sim, http):
    token = mint(sim, http)
    sim.inject("rate_limit_daily")
    r = report(sim, http, token)
    api_error(r, 429, 429, "You have reached the maximum daily rate limit for this API. "
                           "Refer to the response header for details on when you can make another request.")
    assert {k: r.headers[k] for k in ("X-RateLimit-Category", "X-RateLimit-Type", "X-RateLimit-Limit",
                                      "X-RateLimit-Remaining", "Retry-After")} == {
        "X-RateLimit-Category": "Heavy", "X-RateLimit-Type": "Daily-limit", "X-RateLimit-Limit": "30000",
        "X-RateLimit-Remaining": "0", "Retry-After": "2026-11-21T00:00:00Z"}


def test_server_errors_json_and_html(sim, http):
    token = mint(sim, http)
    sim.inject("server_error")
    sim.inject("server_error", status=503)
    sim.inject("server_error", status=502, body="html")
    api_error(report(sim, http, token), 500, 500, "Internal Server Error")
    api_error(report(sim, http, token), 503, 503, "Service Unavailable")
    r = report(sim, http, token)
    assert r.status_code == 502 and r.headers["Content-Type"] == "text/html"
    assert "<h1>502 Bad Gateway</h1>" in r.text
    assert report(sim, http, token).status_code == 200


def test_truncated_body(sim, http):
    sim.generate_day(DAY, 50)
    token = mint(sim, http)
    sim.inject("truncated_body")
    r = report(sim, http, token)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert int(r.headers["Content-Length"]) == len(r.content) > 100
    assert r.content.startswith(b'{"from":"' + DAY.encode())
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert len(report(sim, http, token).json()["operation_logs"]) == 30  # same connection still usable


def test_token_expired_fault_revokes_that_token(sim, http):
    token = mint(sim, http)
    sim.inject("token_expired")
    api_error(report(sim, http, token), 401, 124, "Access token is expired.")
    api_error(report(sim, http, token), 401, 124, "Access token is expired.")
    assert report(sim, http, mint(sim, http)).status_code == 200


def test_invalid_page_token_fault_waits_for_a_token_request(sim, http):
    sim.generate_day(DAY, 100)
    token = mint(sim, http)
    sim.inject("invalid_page_token")
    first = report(sim, http, token)  # no next_page_token: unaffected
    assert first.status_code == 200
    api_error(report(sim, http, token, next_page_token=first.json()["next_page_token"]),
              400, 300, "The next page token is invalid or expired.")
    assert len(page_all(sim, http, token, page_size=30)) == 4


def test_connection_reset_and_slow(sim, http):
    token = mint(sim, http)
    sim.inject("connection_reset")
    with pytest.raises(requests.ConnectionError):
        report(sim, http, token)
    sim.inject("slow", seconds=0.3)
    started = time.perf_counter()
    assert report(sim, http, token).status_code == 200
    assert time.perf_counter() - started >= 0.3
    stats = sim.stats()
    assert stats["faults_by_kind"] == {"connection_reset": 1, "slow": 1} and stats["faults_served"] == 2


def test_fault_times_and_after_calls(sim, http):
    token = mint(sim, http)
    sim.inject("server_error", times=2, after_calls=2)
    statuses = [report(sim, http, token).status_code for _ in range(5)]
    assert statuses == [200, 200, 500, 500, 200]


def test_token_server_error(sim, http):
    sim.inject("token_server_error")
    r = http.post(sim.token_url, params=GRANT, auth=AUTH)
    assert r.status_code == 500 and r.json()["error"] == "server_error"
    assert http.post(sim.token_url, params=GRANT, auth=AUTH).status_code == 200
    assert sim.stats()["faults_by_kind"] == {"token_server_error": 1}


def test_unknown_fault_kind_is_rejected(sim):
    with pytest.raises(ValueError):
        sim.inject("gremlins")


# -- statistics -------------------------------------------------------------------------------------


def test_max_concurrent_tokens(sim, http):
    a, b = mint(sim, http), mint(sim, http)
    for token in (a, b, a):  # run A is still going when run B starts
        report(sim, http, token)
    assert sim.stats()["max_concurrent_tokens"] == 2
    sim.reset_stats()
    for token in (a, a, b, b):  # one run after the other
        report(sim, http, token)
    stats = sim.stats()
    assert stats["max_concurrent_tokens"] == 1 and stats["tokens_used"] == 2 and stats["report_calls"] == 4


def test_keep_alive_and_concurrent_clients(sim, http):
    sim.generate_day(DAY, 30)
    token = mint(sim, http)
    for _ in range(5):
        report(sim, http, token)
    assert sim.stats()["connections"] == 1  # Content-Length framing lets one connection carry all calls
    sim.inject("slow", times=4, seconds=0.2)
    sim.reset_stats()
    threads = [threading.Thread(target=lambda: requests.get(
        f"{sim.base_url}/report/operationlogs", params={"from": DAY, "to": DAY},
        headers={"Authorization": f"Bearer {token}"}, timeout=5)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sim.stats()["max_in_flight"] >= 2 and sim.stats()["status_counts"] == {"200": 4}


# -- control endpoints ------------------------------------------------------------------------------


def test_control_endpoints_over_http(sim, http):
    ctl = sim.control_url
    assert http.post(f"{ctl}/day", json={"day": DAY, "generate": 60, "seed": 1, "twins": 2}).json() == {"ok": True}
    made = http.post(f"{ctl}/make_records", json={"day": TODAY, "count": 4, "seed": 3}).json()["records"]
    assert http.post(f"{ctl}/day", json={"day": TODAY, "records": made[:2]}).status_code == 200
    assert http.post(f"{ctl}/add", json={"day": TODAY, "records": made[2:]}).status_code == 200
    assert sim.day_count(TODAY) == 4 and sim.day_count(DAY) == 60
    remote = http.get(f"{ctl}/records", params={"day": DAY, "offset": 0, "limit": 5}).json()
    assert remote["count"] == 60 and remote["records"] == sim.day_records(DAY, 0, 5)

    token = mint(sim, http)
    assert http.post(f"{ctl}/fault", json={"kind": "server_error", "status": 503}).status_code == 200
    assert report(sim, http, token).status_code == 503
    arrivals = sim.make_records(DAY, 1, seed=8, start_time="23:59:59")
    assert http.post(f"{ctl}/trigger", json={"n": 2, "day": DAY, "records": arrivals}).status_code == 200
    page_token = report(sim, http, token, page_size=10).json()["next_page_token"]
    assert sim.day_records(DAY, 0, 1) == arrivals
    assert http.post(f"{ctl}/expire_page_tokens").status_code == 200
    assert report(sim, http, token, next_page_token=page_token).status_code == 400

    stats = http.get(f"{ctl}/stats").json()
    assert stats["report_calls"] == 3 and stats["faults_served"] == 1
    assert http.post(f"{ctl}/reset_stats").status_code == 200
    assert http.get(f"{ctl}/stats").json()["report_calls"] == 0

    config = http.post(f"{ctl}/config", json={"client_secret": "rotated", "scopes": "user:read:admin"}).json()
    assert config["client_secret"] == "rotated" and config["today"] == TODAY
    assert http.post(sim.token_url, params=GRANT, auth=AUTH).json()["error"] == "invalid_client"
    assert http.post(sim.token_url, params=GRANT, auth=("sim-client-id", "rotated")).status_code == 200
    assert report(sim, http, token).json()["code"] == 4711

    assert http.post(f"{ctl}/fault", json={"kind": "gremlins"}).status_code == 400
    assert http.post(f"{ctl}/day", json={"day": "yesterday", "records": []}).status_code == 400
    assert http.post(f"{ctl}/nope").status_code == 404


def test_stop_closes_keep_alive_connections(http):
    sim = ZoomSimulator(today=TODAY).start()
    token = mint(sim, http)
    assert report(sim, http, token).status_code == 200
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        report(sim, http, token)


def test_cli_serves_until_sigterm():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoom_pipeline.simulator", "--port", "0", "--generate", f"{DAY}=45:7:2",
         "--client-secret", "cli-secret", "--today", TODAY],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        urls = json.loads(proc.stdout.readline())
        assert urls["base_url"].endswith("/v2") and urls["token_url"].endswith("/oauth/token")
        with requests.Session() as http:
            r = http.post(urls["token_url"], params=GRANT, auth=("sim-client-id", "cli-secret"), timeout=5)
            token = r.json()["access_token"]
            r = http.get(f"{urls['base_url']}/report/operationlogs", params={"from": DAY, "to": DAY, "page_size": 50},
                         headers={"Authorization": f"Bearer {token}"}, timeout=5)
            logs = r.json()["operation_logs"]
            assert len(logs) == 45 and sum(a == b for a, b in zip(logs, logs[1:], strict=False)) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
