"""The simulator's second report endpoint, GET /v2/report/activities (sign-in / sign-out activity), always
over real HTTP, and what it shares with /report/operationlogs: every test that applies to both endpoints
is parametrized over them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import sys
import time
from collections import Counter
from typing import NamedTuple

import pytest
import requests

from tests import test_simulator
from tests.helpers import REPO
from tests.test_simulator import AUTH, DAY, GRANT, TODAY, api_error, mint
from zoom_pipeline.simulator import DEFAULT_SCOPES, FAULT_KINDS, LOGS, ZoomSimulator


class Endpoint(NamedTuple):
    log: str  # the simulator's `log=` value and the path's last segment
    key: str  # the response's list of records
    fields: list[str]  # a record's keys, in Zoom's order
    scope: str  # the granular scope it needs
    bound: str  # how the response echoes from=DAY


OPS = Endpoint("operationlogs", "operation_logs", ["action", "category_type", "operation_detail", "operator", "time"],
               "report:read:operation_logs:admin", DAY)
ACT = Endpoint("activities", "activity_logs", ["email", "time", "type", "ip_address", "client_type", "version"],
               "report:read:user_activities:admin", f"{DAY}T00:00:00Z")
BOTH = pytest.mark.parametrize("ep", [OPS, ACT], ids=lambda ep: ep.log)
sim, http = test_simulator.sim, test_simulator.http  # the same fixtures: ZoomSimulator(today=TODAY), a Session


def other(ep: Endpoint) -> Endpoint:
    return ACT if ep is OPS else OPS


def report(sim, http, token, ep: Endpoint, day=DAY, to=None, **params):
    return http.get(f"{sim.base_url}/report/{ep.log}", params={"from": day, "to": to or day, **params},
                    headers={"Authorization": f"Bearer {token}"}, timeout=10)


def page_all(sim, http, token, ep: Endpoint, day=DAY, page_size=300) -> list[dict]:
    """Every page of a day, following next_page_token until it is empty."""
    pages, page_token = [], None
    while True:
        extra = {"next_page_token": page_token} if page_token else {}
        r = report(sim, http, token, ep, day, page_size=page_size, **extra)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        page_token = pages[-1].get("next_page_token")
        if not page_token:
            return pages


def flat(pages: list[dict], ep: Endpoint) -> list[dict]:
    return [r for p in pages for r in p[ep.key]]


def canon(records: list[dict]) -> Counter:
    return Counter(json.dumps(r, sort_keys=True) for r in records)


# -- paging and records -----------------------------------------------------------------------------


@BOTH
def test_generated_day_pages_every_record_exactly_once(sim, http, ep):
    sim.generate_day(DAY, 1000, seed=3, twins=7, log=ep.log)
    pages = page_all(sim, http, mint(sim, http), ep)
    assert [len(p[ep.key]) for p in pages] == [300, 300, 300, 100]
    assert all(p["next_page_token"] for p in pages[:-1]) and pages[-1]["next_page_token"] == ""
    assert list(pages[0]) == ["from", "to", "page_size", "next_page_token", ep.key]
    assert pages[0]["from"] == pages[0]["to"] == ep.bound and pages[0]["page_size"] == 300
    records = flat(pages, ep)
    assert records == sim.day_records(DAY, log=ep.log) and sim.day_count(DAY, log=ep.log) == 1000
    assert all(list(r) == ep.fields for r in records)
    times = [r["time"] for r in records]
    assert times == sorted(times, reverse=True)
    assert all(re.fullmatch(DAY + r"T\d\d:\d\d:\d\dZ", t) for t in times)
    assert sum(a == b for a, b in zip(records, records[1:], strict=False)) == 7  # twins: identical neighbours
    assert len(canon(records)) == 993


def test_activity_records_are_realistic_and_deterministic(sim, http):
    sim.generate_day(DAY, 5000, seed=11, log="activities")
    records = sim.day_records(DAY, log="activities")
    assert report(sim, http, mint(sim, http), ACT, page_size=300).json()["activity_logs"] == records[:300]
    assert {r["type"] for r in records} == {"Sign in", "Sign out"}
    assert {"Browser", "Windows", "Mac", "Android", "iOS", "Zoom Rooms", "Linux"} <= {r["client_type"] for r in records}
    emails = {r["email"] for r in records}
    assert 200 <= len(emails) <= 400 and all(re.fullmatch(r"[a-z0-9._]+@[a-z0-9.-]+", e) for e in emails)
    assert all(r["email"].startswith("room_") for r in records if r["client_type"] == "Zoom Rooms")
    addresses = [ipaddress.ip_address(r["ip_address"]) for r in records]  # each one valid
    assert {a.version for a in addresses} == {4, 6}
    assert [str(a) for a in addresses] == [r["ip_address"] for r in records]  # printed compressed
    # Browsers report no client version; every other client a dotted one.
    assert any(r["version"] == "-" for r in records)
    assert all((r["version"] == "-") == (r["client_type"] == "Browser") for r in records)
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+", r["version"]) for r in records if r["version"] != "-")
    again = ZoomSimulator(today=TODAY)
    again.generate_day(DAY, 5000, seed=11, log="activities")
    assert again.day_records(DAY, 0, 300, log="activities") == records[:300]
    again.generate_day(DAY, 5000, seed=12, log="activities")
    assert again.day_records(DAY, 0, 300, log="activities") != records[:300]


@BOTH
def test_a_busy_generated_day_has_same_second_bursts_and_is_fast(sim, http, ep):
    sim.generate_day(DAY, 1_000_000, seed=1, twins=50, log=ep.log)
    token = mint(sim, http)
    started = time.perf_counter()
    first = report(sim, http, token, ep, page_size=300).json()[ep.key]
    tail = sim.day_records(DAY, 999_990, log=ep.log)
    assert time.perf_counter() - started < 1.0
    assert len(first) == 300 and len(tail) == 10 and tail[-1]["time"].startswith(f"{DAY}T00:00:")
    per_second = Counter(r["time"] for r in first)
    twins = sum(a == b for a, b in zip(first, first[1:], strict=False))
    assert max(per_second.values()) >= 10 and len(canon(first)) == len(first) - twins  # bursts of distinct records


# -- the two endpoints side by side -------------------------------------------------------------------


def test_operation_logs_and_activities_of_a_day_are_independent(sim, http):
    sim.generate_day(DAY, 400, seed=5)
    sim.generate_day(DAY, 250, seed=5, log="activities")
    sim.set_day(TODAY, sim.make_records(TODAY, 3, seed=1, log="activities"), log="activities")
    token = mint(sim, http)
    ops, act = flat(page_all(sim, http, token, OPS), OPS), flat(page_all(sim, http, token, ACT), ACT)
    assert (len(ops), len(act)) == (400, 250) and list(ops[0]) == OPS.fields and list(act[0]) == ACT.fields
    assert [r["time"] for r in ops[:250]] != [r["time"] for r in act]  # same seed, yet not the same times
    assert sim.day_count(TODAY) == 0 and sim.day_count(TODAY, log="activities") == 3

    sim.add_records(DAY, sim.make_records(DAY, 2, seed=9, start_time="23:59:59", log="activities"), log="activities")
    assert sim.day_records(DAY) == ops and sim.day_count(DAY, log="activities") == 252
    sim.set_day(DAY, [])
    assert sim.day_count(DAY) == 0 and sim.day_count(DAY, log="activities") == 252

    # A two-day range of activities, echoed as UTC midnights; a page token belongs to its endpoint.
    body = report(sim, http, token, ACT, day=DAY, to=TODAY, page_size=5).json()
    assert (body["from"], body["to"]) == (f"{DAY}T00:00:00Z", f"{TODAY}T00:00:00Z")
    assert [r["time"][:10] for r in body["activity_logs"]] == [TODAY] * 3 + [DAY] * 2
    page_token = report(sim, http, token, ACT, page_size=10).json()["next_page_token"]
    api_error(report(sim, http, token, OPS, next_page_token=page_token),
              400, 300, "The next page token is invalid or expired.")
    assert report(sim, http, token, ACT, next_page_token=page_token).status_code == 200

    stats, by_log = sim.stats(), sim.stats()["by_log"]
    assert set(by_log) == set(LOGS) == {"operationlogs", "activities"}
    calls = (by_log["operationlogs"]["report_calls"], by_log["activities"]["report_calls"], stats["report_calls"])
    assert calls == (3, 4, 7)
    assert by_log["operationlogs"]["status_counts"] == {"200": 2, "400": 1}
    assert by_log["activities"]["report_calls_by_day"] == {DAY: 3, f"{DAY}..{TODAY}": 1}
    assert stats["report_calls_by_day"] == {DAY: 3}  # operation logs only, as before
    assert by_log["activities"]["records_served"] == 250 + 5 + 10 + 10 and stats["records_served"] == 400 + 275
    with pytest.raises(ValueError):
        sim.generate_day(DAY, 10, log="activity")


@BOTH
def test_each_endpoint_needs_its_own_scope(sim, http, ep):
    assert sim.config()["scopes"] == DEFAULT_SCOPES
    token = http.post(sim.token_url, params=GRANT, auth=AUTH).json()
    assert set(token["scope"].split()) == {OPS.scope, ACT.scope}  # the default grants both
    token = token["access_token"]
    sim.configure(scopes=f"user:read:admin {other(ep).scope}")
    # Zoom answers a missing scope with 400 and code 4711, naming the endpoint's granular scope.
    api_error(report(sim, http, token, ep), 400, 4711, f"Invalid access token, does not contain scopes:[{ep.scope}]")
    assert report(sim, http, token, other(ep)).status_code == 200
    sim.configure(scopes="report:read:admin")  # the classic scope grants both
    assert report(sim, http, token, ep).status_code == report(sim, http, token, other(ep)).status_code == 200
    assert sim.stats()["by_log"][ep.log]["status_counts"] == {"400": 1, "200": 1}


@BOTH
def test_retention_and_date_validation(sim, http, ep):
    token = mint(sim, http)
    floor = dt.date.fromisoformat(TODAY) - dt.timedelta(days=180)
    assert report(sim, http, token, ep, day=floor.isoformat(), to=TODAY).status_code == 200
    api_error(report(sim, http, token, ep, day=(floor - dt.timedelta(days=1)).isoformat()),
              400, 300, "Only provide report in recent 6 months")
    r = report(sim, http, token, ep, day="2026/11/19")
    assert r.status_code == 400 and r.json()["code"] == 300 and "from" in r.json()["message"]
    r = report(sim, http, token, ep, day=TODAY, to=DAY)
    assert r.status_code == 400 and r.json()["code"] == 300


# -- faults -----------------------------------------------------------------------------------------


def attempt(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except requests.ConnectionError as exc:
        return exc


def parses(r) -> bool:
    try:
        r.json()
    except ValueError:
        return False
    return True


@BOTH
def test_every_fault_kind_is_served_on_its_endpoint_only(sim, http, ep):
    for endpoint in (OPS, ACT):
        sim.generate_day(DAY, 100, seed=1, log=endpoint.log)
    daily = "You have reached the maximum daily rate limit for this API. "
    checks = {  # kind: (params, what the faulted call answers)
        "rate_limit_qps": ({}, lambda r: r.status_code == 429 and r.headers["X-RateLimit-Type"] == "QPS"),
        "rate_limit_daily": ({}, lambda r: r.status_code == 429 and r.json()["message"].startswith(daily)
                             and r.headers["Retry-After"] == "2026-11-21T00:00:00Z"),
        "server_error": ({"status": 503}, lambda r: r.json() == {"code": 503, "message": "Service Unavailable"}),
        "truncated_body": ({}, lambda r: r.status_code == 200 and not parses(r)
                           and r.content.startswith(f'{{"from":"{ep.bound}"'.encode())),
        "token_expired": ({}, lambda r: r.json() == {"code": 124, "message": "Access token is expired."}),
        "invalid_page_token": ({}, lambda r: r.status_code == 400 and r.json()["code"] == 300),
        "connection_reset": ({}, lambda r: isinstance(r, requests.ConnectionError)),
        "slow": ({"seconds": 0.2}, lambda r: r.status_code == 200 and r.elapsed.total_seconds() >= 0.2),
        "raw_body": ({"body": '{"x":'}, lambda r: r.status_code == 200 and r.content == b'{"x":'),
        # The envelope of a last page, without its records list.
        "malformed_page": ({"shape": "null"}, lambda r: r.status_code == 200 and r.json() == {
            "from": ep.bound, "to": ep.bound, "page_size": 10, "next_page_token": "", ep.key: None}),
    }
    assert set(checks) == FAULT_KINDS
    for kind, (params, faulted) in checks.items():
        token = mint(sim, http)
        page_tokens = {e.log: report(sim, http, token, e, page_size=10).json()["next_page_token"] for e in (OPS, ACT)}
        sim.inject(kind, log=ep.log, **params)
        assert sim.pending_faults() == [{"kind": kind, "times": 1, "after_calls": 0, "log": ep.log, **params}]
        # Calls of the other endpoint pass by the fault, which waits for its own endpoint.
        r = report(sim, http, token, other(ep), page_size=10, next_page_token=page_tokens[other(ep).log])
        assert r.status_code == 200 and len(r.json()[other(ep).key]) == 10, kind
        r = attempt(report, sim, http, token, ep, page_size=10, next_page_token=page_tokens[ep.log])
        assert faulted(r), (kind, r)
        assert sim.pending_faults() == []
    by_log = sim.stats()["by_log"]
    assert by_log[ep.log]["faults_by_kind"] == dict.fromkeys(FAULT_KINDS, 1)
    assert by_log[other(ep).log]["faults_by_kind"] == {}

    # after_calls counts only the calls of the fault's endpoint.
    token = mint(sim, http)
    sim.inject("server_error", after_calls=1, log=ep.log)
    assert [report(sim, http, token, other(ep)).status_code for _ in range(3)] == [200] * 3
    assert [report(sim, http, token, ep).status_code for _ in range(3)] == [200, 500, 200]


def test_the_per_second_limit_is_the_accounts(http):
    """Both report endpoints are Heavy APIs under one account's limit."""
    with ZoomSimulator(today=TODAY) as sim:
        sim.configure(max_requests_per_second=2)
        token = mint(sim, http)
        statuses = [report(sim, http, token, ep).status_code for ep in (OPS, ACT, ACT)]
        assert statuses == [200, 200, 429]
        stats = sim.stats()
        assert stats["qps_rejections"] == stats["by_log"]["activities"]["qps_rejections"] == 1


@BOTH
def test_raw_invalid_utf8_inside_a_record(sim, http, ep):
    records = sim.make_records(DAY, 2, seed=1, log=ep.log)
    field = ep.fields[0]
    raw = {**records[1], field: b"ops\xffadmin@acme-corp.com"}
    sim.set_day(DAY, [records[0], raw], log=ep.log)
    r = report(sim, http, mint(sim, http), ep)
    assert f'"{field}":"'.encode() + b'ops\xffadmin@acme-corp.com"' in r.content
    body = json.loads(r.content.decode("utf-8", "replace"))
    assert body[ep.key] == [records[0], {**records[1], field: "ops\ufffdadmin@acme-corp.com"}]


# -- listings that move, and an unspecified order within a second -------------------------------------


@BOTH
def test_late_events_and_arrivals_count_their_endpoints_calls(sim, http, ep):
    sim.generate_day(DAY, 100, seed=4, log=ep.log)
    sim.generate_day(DAY, 100, seed=4, log=other(ep).log)
    before, others = sim.day_records(DAY, log=ep.log), sim.day_records(DAY, log=other(ep).log)
    sim.late_events(DAY, after_call=1, position=29, count=1, seed=3, log=ep.log)
    token = mint(sim, http)
    assert report(sim, http, token, other(ep)).status_code == 200  # the other endpoint's call 1: no trigger
    assert sim.day_records(DAY, log=ep.log) == before
    pages = page_all(sim, http, token, ep, page_size=30)
    first, second = pages[0][ep.key], pages[1][ep.key]
    assert first == before[:30] and second[0] == first[-1] and second[1:] == before[30:59]
    late = sim.day_records(DAY, 29, 1, log=ep.log)
    assert late[0] not in before and late[0]["time"] == before[29]["time"] and list(late[0]) == ep.fields
    assert sim.day_records(DAY, log=ep.log) == before[:29] + late + before[29:]
    assert sim.day_records(DAY, log=other(ep).log) == others

    sim.reset_stats()
    sim.late_events(DAY, after_call=1, position=10, count=1, twins=True, log=ep.log)
    arrivals = sim.make_records(DAY, 2, seed=8, start_time="23:59:59", log=ep.log)
    sim.on_report_call(2, DAY, arrivals, log=ep.log)
    report(sim, http, token, ep)
    truth = sim.day_records(DAY, log=ep.log)
    assert truth[10] == truth[11] and sim.day_count(DAY, log=ep.log) == 102  # a late identical twin
    report(sim, http, token, ep)
    truth = sim.day_records(DAY, log=ep.log)
    assert len(truth) == 104 and all(a in truth[:3] for a in arrivals)  # newer than nearly everything
    assert sim.day_records(DAY, log=other(ep).log) == others


def bulk_day(sim, ep: Endpoint) -> list[dict]:
    """A day with 400 distinct records in one second (a bulk operation, or a wave of sign-ins at 09:00)
    between single records."""
    made = sim.make_records(DAY, 460, seed=21, log=ep.log)
    times = [f"{DAY}T12:00:0{i}Z" for i in (9, 8, 7)] + [f"{DAY}T09:00:00Z"] * 400 + [f"{DAY}T08:{i:02d}:00Z"
                                                                                     for i in range(57)]
    sim.set_day(DAY, [{**r, "time": t} for r, t in zip(made, times, strict=True)], log=ep.log)
    return sim.day_records(DAY, log=ep.log)


@BOTH
def test_shuffle_within_second(sim, http, ep):
    day = bulk_day(sim, ep)
    token = mint(sim, http)
    sim.configure(shuffle_within_second=True, shuffle_seed=7)
    pages = page_all(sim, http, token, ep, page_size=100)
    served = flat(pages, ep)
    assert [r["time"] for r in served] == [r["time"] for r in day]  # newest first across seconds
    assert served != day and served[:3] == day[:3] and served[-57:] == day[-57:]  # only the burst moved
    for page in pages:
        assert not canon(page[ep.key]) - canon(day) and len(canon(page[ep.key])) == len(page[ep.key])
    # n-th call of the endpoint, n-th permutation: calls of the other endpoint do not change it.
    sim.reset_stats()
    report(sim, http, token, other(ep))
    assert flat(page_all(sim, http, token, ep, page_size=100), ep) == served
    sim.configure(shuffle_within_second=False)
    assert flat(page_all(sim, http, token, ep, page_size=100), ep) == day == sim.day_records(DAY, log=ep.log)


# -- control endpoints and the command line ---------------------------------------------------------------


def test_control_endpoints_take_the_log(sim, http):
    ctl, act = sim.control_url, {"log": "activities"}
    assert http.post(f"{ctl}/day", json={"day": DAY, "generate": 60, "seed": 1, **act}).status_code == 200
    made = http.post(f"{ctl}/make_records", json={"day": TODAY, "count": 3, "seed": 3, **act}).json()["records"]
    assert list(made[0]) == ACT.fields
    assert http.post(f"{ctl}/add", json={"day": TODAY, "records": made, **act}).status_code == 200
    assert (sim.day_count(DAY), sim.day_count(DAY, **act), sim.day_count(TODAY, **act)) == (0, 60, 3)
    remote = http.get(f"{ctl}/records", params={"day": DAY, "limit": 5, **act}).json()
    assert remote == {"records": sim.day_records(DAY, 0, 5, **act), "count": 60}
    assert http.post(f"{ctl}/fault", json={"kind": "server_error", "status": 502, **act}).status_code == 200
    assert http.get(f"{ctl}/faults").json() == [{"kind": "server_error", "times": 1, "after_calls": 0,
                                                 "log": "activities", "status": 502}]
    spec = {"day": DAY, "after_call": 2, "position": 5, "count": 2, "log": "activities"}
    assert http.post(f"{ctl}/late_events", json=spec).status_code == 200
    token = mint(sim, http)
    assert report(sim, http, token, OPS).status_code == 200
    assert report(sim, http, token, ACT).status_code == 502
    assert report(sim, http, token, ACT).status_code == 200 and sim.day_count(DAY, log="activities") == 62
    assert http.get(f"{ctl}/stats").json()["by_log"]["activities"]["status_counts"] == {"502": 1, "200": 1}
    assert http.post(f"{ctl}/day", json={"day": DAY, "generate": 1, "log": "nope"}).status_code == 400
    assert http.get(f"{ctl}/records", params={"day": DAY, "log": "nope"}).status_code == 400


def test_cli_generates_activity_days(services):
    proc = services.start([sys.executable, "-m", "zoom_pipeline.simulator", "--port", "0", "--today", TODAY,
                           "--generate-activities", f"{DAY}=45:7:2"],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, name="simulator")
    deadline = time.monotonic() + 20
    while not proc.log_path.read_text().endswith("\n"):  # the URLs, as one JSON line
        assert time.monotonic() < deadline and proc.poll() is None, proc.log_path.read_text()
        time.sleep(0.05)
    urls = json.loads(proc.log_path.read_text().splitlines()[0])
    with requests.Session() as http:
        token = http.post(urls["token_url"], params=GRANT, auth=AUTH, timeout=5).json()["access_token"]
        headers, query = {"Authorization": f"Bearer {token}"}, {"from": DAY, "to": DAY, "page_size": 50}
        logs = {ep.log: http.get(f"{urls['base_url']}/report/{ep.log}", params=query, headers=headers, timeout=5)
                .json()[ep.key] for ep in (OPS, ACT)}  # the default scopes grant both
    assert logs["operationlogs"] == [] and len(logs["activities"]) == 45
    assert sum(a == b for a, b in zip(logs["activities"], logs["activities"][1:], strict=False)) == 2
    assert services.stop(proc) is not None and proc.returncode == 0  # SIGTERM: a clean exit
