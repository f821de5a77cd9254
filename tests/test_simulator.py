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
from collections import Counter
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
    assert body["scope"] == "report:read:operation_logs:admin report:read:user_activities:admin"
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


def same_second_day(sim) -> list[dict]:
    """A day with large same-second groups (a bulk admin operation): 1,000 records in one second,
    450 in another, singles around them; every record distinct."""
    made = sim.make_records(DAY, 1460, seed=21)
    times = ([f"{DAY}T12:00:0{i}Z" for i in (9, 8, 7)] + [f"{DAY}T12:00:05Z"] * 1000
             + [f"{DAY}T11:00:00Z"] * 5 + [f"{DAY}T10:30:00Z"] * 450 + [f"{DAY}T09:00:0{i}Z" for i in range(2)])
    records = [{**r, "time": t} for r, t in zip(made, times, strict=True)]
    sim.set_day(DAY, records)
    return sim.day_records(DAY)


def test_shuffle_within_second_permutes_each_call(sim, http):
    day = same_second_day(sim)
    everything = Counter(json.dumps(r) for r in day)
    token = mint(sim, http)
    assert [r for p in page_all(sim, http, token) for r in p["operation_logs"]] == day  # default off
    assert sim.configure(shuffle_within_second=True)["shuffle_within_second"] is True
    passes = []
    for _ in range(3):
        pages = page_all(sim, http, token)
        assert [len(p["operation_logs"]) for p in pages] == [300] * 4 + [260]
        for i, page in enumerate(pages):
            logs = page["operation_logs"]
            # One snapshot per call: distinct records of the day, times exactly where the listing has them.
            served = Counter(json.dumps(r) for r in logs)
            assert not served - everything and len(served) == len(logs)
            assert [r["time"] for r in logs] == [r["time"] for r in day[300 * i:300 * i + 300]]
        flat = [r for p in pages for r in p["operation_logs"]]
        times = [r["time"] for r in flat]
        assert times == sorted(times, reverse=True)  # newest first across seconds, pages included
        assert flat[:3] == day[:3] and flat[-2:] == day[-2:]  # singles keep their place
        # The 1,000-record second straddles pages: it is permuted whole, then cut, so page 1 holds
        # records the unshuffled listing has on pages 2-4.
        later = {json.dumps(r) for r in day[300:1003]}
        assert sum(json.dumps(r) in later for r in pages[0]["operation_logs"]) > 100
        passes.append(flat)
    bulk = [[r for r in flat if r["time"].endswith("12:00:05Z")] for flat in passes]
    assert bulk[0] != bulk[1] != bulk[2] != bulk[0]  # a fresh order every call
    # Pages cut the 1,000-record second; each page is a slice of its own call's permutation, so one
    # pass repeats some of its records and misses others (that is what an offset-paging client sees).
    assert any(len({json.dumps(r) for r in group}) < 1000 for group in bulk)

    sim.configure(shuffle_seed=7)  # same seed, same call numbers: the same pages
    sim.reset_stats()
    first = [r for p in page_all(sim, http, token) for r in p["operation_logs"]]
    sim.reset_stats()
    assert [r for p in page_all(sim, http, token) for r in p["operation_logs"]] == first != day
    sim.configure(shuffle_within_second=False)
    assert [r for p in page_all(sim, http, token) for r in p["operation_logs"]] == day
    assert sim.day_records(DAY) == day  # ground truth is never shuffled


def test_shuffle_within_second_over_control_endpoint(sim, http):
    ctl = sim.control_url
    config = http.post(f"{ctl}/config", json={"shuffle_within_second": True, "shuffle_seed": 3}).json()
    assert config["shuffle_within_second"] is True and config["shuffle_seed"] == 3
    assert http.post(f"{ctl}/config", json={"shuffle_within_second": "yes"}).status_code == 400
    day = same_second_day(sim)
    token = mint(sim, http)
    logs = report(sim, http, token, page_size=300).json()["operation_logs"]
    assert [r["time"] for r in logs] == [r["time"] for r in day[:300]] and logs != day[:300]
    assert http.post(f"{ctl}/config", json={"shuffle_seed": None}).json()["shuffle_seed"] is None


def test_shuffle_within_second_is_fast_on_a_million_record_day(sim, http):
    sim.generate_day(DAY, 1_000_000, seed=1, twins=50)
    sim.configure(shuffle_within_second=True)
    token = mint(sim, http)
    started, page_token, served = time.perf_counter(), None, []
    for _ in range(10):
        body = report(sim, http, token, page_size=300, **({"next_page_token": page_token} if page_token else {})).json()
        served.extend(body["operation_logs"])
        page_token = body["next_page_token"]
    assert time.perf_counter() - started < 2.0
    truth = sim.day_records(DAY, 0, 3000)
    assert [r["time"] for r in served] == [r["time"] for r in truth] and served != truth
    # Only the order inside a second moved: seconds wholly inside one page hold the same records.
    inner = {r["time"] for r in truth[1:299]} - {truth[0]["time"], truth[299]["time"]}
    assert (sorted(json.dumps(r) for r in served[:300] if r["time"] in inner)
            == sorted(json.dumps(r) for r in truth[:300] if r["time"] in inner))


def test_late_events_at_position_shift_later_pages(sim, http):
    sim.generate_day(DAY, 100, seed=4)
    before = sim.day_records(DAY)
    # After page 1 (rows 0-29), one late event lands just above row 29, the last row served.
    sim.late_events(DAY, after_call=1, position=29, count=1, seed=3)
    pages = page_all(sim, http, mint(sim, http), page_size=30)
    first, second = pages[0]["operation_logs"], pages[1]["operation_logs"]
    assert first == before[:30] and second[0] == first[-1] and second[1:] == before[30:59]
    late = sim.day_records(DAY, 29, 1)
    assert late[0] not in before and late[0]["time"] == before[29]["time"] and list(late[0]) == KEYS
    assert sim.day_records(DAY) == before[:29] + late + before[29:]
    assert not any(r in late for p in pages for r in p["operation_logs"])  # behind the cursor: missed

    # Hundreds of rows back: 4 late events after call 2 push the last 4 rows of page 2 onto page 3.
    sim.generate_day(DAY, 1000, seed=5)
    before = sim.day_records(DAY)
    sim.reset_stats()
    sim.late_events(DAY, after_call=2, position=150, count=4, seed=1)
    pages = page_all(sim, http, mint(sim, http), page_size=300)
    flat = [r for p in pages for r in p["operation_logs"]]
    assert pages[2]["operation_logs"][:4] == pages[1]["operation_logs"][-4:] and len(flat) == 1004
    late = sim.day_records(DAY, 150, 4)
    assert len({json.dumps(r) for r in late}) == 4 and {r["time"] for r in late} == {before[150]["time"]}
    assert sim.day_records(DAY) == before[:150] + late + before[150:]


def test_late_events_inside_a_same_second_group(sim, http):
    # Explicit day: add_records would put arrivals above the whole group; late_events hits the row.
    t = f"{DAY}T10:00:00Z"
    sim.set_day(DAY, [{"action": str(i), "time": t} for i in range(10)] + [{"action": "x", "time": f"{DAY}T09:00:00Z"}])
    sim.late_events(DAY, after_call=1, position=6, count=2, seed=2)
    token = mint(sim, http)
    report(sim, http, token)
    actions = [r["action"] for r in sim.day_records(DAY)]
    assert actions[:6] == list("012345") and actions[8:] == list("6789") + ["x"]
    assert {r["time"] for r in sim.day_records(DAY, 6, 2)} == {t}

    # Generated day: inside a run of synthetic records of one second, then served that way.
    sim.generate_day(DAY, 300_000, seed=6)
    before = sim.day_records(DAY, 0, 5000)
    p = next(i for i in range(2000, 5000) if before[i - 1]["time"] == before[i]["time"] == before[i + 1]["time"])
    sim.reset_stats()
    sim.late_events(DAY, after_call=1, position=p, count=2, seed=4)
    report(sim, http, token)
    late = sim.day_records(DAY, p, 2)
    assert all(r not in before and r["time"] == before[p]["time"] for r in late)
    assert sim.day_records(DAY, p - 100, 200) == before[p - 100:p] + late + before[p:p + 98]
    assert sim.day_count(DAY) == 300_002

    # twins=True: byte-identical copies of the record at the position (late identical twins).
    sim.reset_stats()
    sim.late_events(DAY, after_call=1, position=10, count=1, twins=True)
    report(sim, http, token)
    assert sim.day_records(DAY, 10, 2) == [before[10], before[10]] and sim.day_records(DAY, 9, 1) == [before[9]]


def test_late_events_over_control_endpoint(sim, http):
    sim.generate_day(DAY, 100, seed=4)
    before = sim.day_records(DAY)
    ctl = sim.control_url
    spec = {"day": DAY, "after_call": 2, "position": 45, "count": 3, "seed": 9}
    assert http.post(f"{ctl}/late_events", json=spec).json() == {"ok": True}
    assert http.post(f"{ctl}/late_events", json={**spec, "after_call": 0}).status_code == 400
    assert http.post(f"{ctl}/late_events", json={"day": DAY, "position": 1}).status_code == 400
    assert http.post(f"{ctl}/late_events", json={**spec, "twins": "false"}).status_code == 400
    pages = page_all(sim, http, mint(sim, http), page_size=25)
    assert pages[2]["operation_logs"][:3] == pages[1]["operation_logs"][-3:]
    remote = http.get(f"{ctl}/records", params={"day": DAY, "offset": 45, "limit": 4}).json()["records"]
    assert remote[3] == before[45] and remote[:3] == sim.day_records(DAY, 45, 3)
    twin = {**spec, "after_call": 1, "position": 0, "count": 1, "twins": True}
    sim.reset_stats()
    assert http.post(f"{ctl}/late_events", json=twin).status_code == 200
    report(sim, http, mint(sim, http))
    assert sim.day_records(DAY, 0, 2) == [before[0], before[0]]


def test_raw_invalid_utf8_byte_inside_a_record(sim, http):
    records = sim.make_records(DAY, 3, seed=1)
    raw = {**records[1], "operator": b"ops\xffadmin@acme-corp.com"}
    sim.set_day(DAY, [records[0], raw, records[2]])
    token = mint(sim, http)
    r = report(sim, http, token)
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(r.content))
    assert b'"operator":"ops\xffadmin@acme-corp.com","time":"' + records[1]["time"].encode() in r.content
    with pytest.raises(UnicodeDecodeError):
        r.content.decode("utf-8")
    body = json.loads(r.content.decode("utf-8", "replace"))
    assert body["operation_logs"] == [records[0], {**records[1], "operator": "ops\ufffdadmin@acme-corp.com"},
                                      records[2]]
    assert list(body) == ["from", "to", "page_size", "next_page_token", "operation_logs"]
    assert sim.day_records(DAY)[1] == raw  # ground truth keeps the bytes

    # Merged into a generated day, shuffled, or cut by a truncated body: still raw, never a 500.
    sim.generate_day(DAY, 50, seed=2)
    sim.add_records(DAY, [{**raw, "time": f"{DAY}T23:59:59Z"}])
    sim.configure(shuffle_within_second=True)
    sim.inject("truncated_body")
    assert report(sim, http, token).status_code == 200
    first = report(sim, http, token, page_size=5).content
    assert first.count(b"ops\xffadmin") == 1
    assert len(json.loads(first.decode("utf-8", "replace"))["operation_logs"]) == 5


def test_raw_bytes_over_control_endpoint(sim, http):
    ctl = sim.control_url
    rec = {**sim.make_records(DAY, 1, seed=3)[0], "operator": {"raw": "ops\u00ffadmin@acme-corp.com"}}
    assert http.post(f"{ctl}/day", json={"day": DAY, "records": [rec]}).status_code == 200
    assert sim.day_records(DAY)[0]["operator"] == b"ops\xffadmin@acme-corp.com"
    assert http.get(f"{ctl}/records", params={"day": DAY}).json()["records"] == [rec]  # same form back
    body = report(sim, http, mint(sim, http)).content
    assert b'"operator":"ops\xffadmin@acme-corp.com"' in body
    assert http.post(f"{ctl}/add", json={"day": DAY, "records": [{"operator": {"raw": "\u20ac"}}]}).status_code == 400


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
