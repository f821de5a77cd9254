"""The IO manager's contract: layout, append-only parts, and exactly-once under faults and shifting pages."""

import gzip
from collections import Counter

import orjson
import pytest
from dagster_aws.s3 import S3Resource

from tests.helpers import (
    api_listing,
    canonical,
    days_ago,
    materialize,
    output_metadata,
    records_of,
    resources,
    s3_day,
    sim_log,
)
from zoom_pipeline.collector import collect
from zoom_pipeline.day_store import ZoomStore
from zoom_pipeline.landing import land
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES


def by_hand(source, day: str, clock: str, who: str = "a") -> dict:
    """A record of `source` as Zoom documents it, written by hand; `who` tells records apart."""
    when = f"{day}T{clock}Z"
    if source is ACTIVITY_LOGS:
        return {"email": f"{who}@example.com", "time": when, "type": "Sign in", "ip_address": "198.51.100.7",
                "client_type": "Mac", "version": "6.2.5.43211"}
    return {"action": "Update", "category_type": "User", "operation_detail": f"Update User {who}@example.com  - "
            "Job Title: set to Contractor", "operator": "admin@example.com", "time": when}


def odd_records(source, day: str) -> list[dict]:
    """Records of `source` Zoom might send: fields missing or null, odd text, a huge value, no usable time."""
    if source is ACTIVITY_LOGS:
        return [
            {"type": "Sign in", "time": f"{day}T08:00:00Z"},
            {"type": None, "client_type": "Mac", "email": "no-time"},
            {"version": "line1\nline2 \u00e9\u4e2d\u6587 \U0001F600", "time": f"{day}T07:00:00Z", "extra": 5},
            {"client_type": "x" * 50_000, "time": "not a time"},
        ]
    return [
        {"action": "Update", "time": f"{day}T08:00:00Z"},
        {"action": None, "category_type": "User", "operator": "no-time"},
        {"operation_detail": "line1\nline2 \u00e9\u4e2d\u6587 \U0001F600", "time": f"{day}T07:00:00Z", "extra": 5},
        {"operation_detail": "x" * 50_000, "time": "not a time"},
    ]


def report_calls(sim, source) -> int:
    return sim.stats()["by_log"][sim_log(source)]["report_calls"]


def part_name(source, day: str, seq: int = 1) -> str:
    return f"{source.part_prefix}{day.replace('-', '')}-{seq:06d}.json.gz"


def test_one_day_lands_in_the_documented_layout(sim, zoom_env, bucket, s3, source):
    day = days_ago(2)
    sim.generate_day(day, 700, seed=1, log=sim_log(source))
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert result.success

    objects = s3_day(s3, bucket, day, prefix=source.prefix[1])
    key = f"{source.prefix[1]}{day.replace('-', '/')}/{part_name(source, day)}"
    assert list(objects) == [key]
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentType"] == "application/gzip"
    assert records_of(objects) == canonical(api_listing(sim, zoom_env, day, source))
    assert sum(records_of(objects).values()) == 700

    meta = output_metadata(result, source.name)
    assert meta["records_from_api"] == 700
    assert meta["records_written"] == 700
    assert meta["pages"] == 3 and meta["api_calls"] == 3
    assert meta["objects_written"] == [f"s3://{bucket}/{key}"]
    assert meta["dagster/row_count"] == 700
    assert meta["oldest_event_time"].startswith(day) and meta["newest_event_time"].startswith(day)
    # The manifest lives outside the feed prefix.
    manifests = s3.list_objects_v2(Bucket=bucket, Prefix=source.manifest_prefix[1])["Contents"]
    [manifest] = [orjson.loads(s3.get_object(Bucket=bucket, Key=m["Key"])["Body"].read())
                  for m in manifests if m["Key"].endswith(".manifest.json")]
    assert manifest["records"] == 700 and manifest["partition"] == day
    # Nothing of this source lands under another source's prefixes.
    assert sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(
        [key] + [m["Key"] for m in manifests])


def test_rerun_writes_nothing_and_new_records_land_once(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 400, seed=2, log=log)
    res = resources(zoom_env, bucket=bucket)
    assert materialize(day, res, source=source).success
    again = materialize(day, res, source=source)
    assert again.success
    assert output_metadata(again, source.name)["records_written"] == 0
    assert len(s3_day(s3, bucket, day, prefix=source.prefix[1])) == 1

    late = sim.make_records(day, 5, seed=99, log=log)
    sim.add_records(day, late, log=log)
    third = materialize(day, res, source=source)
    assert output_metadata(third, source.name)["records_written"] == 5
    objects = s3_day(s3, bucket, day, prefix=source.prefix[1])
    assert sorted(objects) == [f"{source.prefix[1]}{day.replace('-', '/')}/{part_name(source, day, n)}"
                               for n in (1, 2)]
    second_part = objects[sorted(objects)[1]]
    assert canonical(orjson.loads(line) for line in second_part[:-1]) == canonical(late)
    assert records_of(objects) == canonical(api_listing(sim, zoom_env, day, source))


def test_identical_twins_are_both_kept(sim, zoom_env, bucket, s3, source):
    day = days_ago(4)
    twin = by_hand(source, day, "10:00:00")
    other = dict(twin, time=f"{day}T09:00:00Z")
    sim.set_day(day, [twin, dict(twin), other], log=sim_log(source))
    assert materialize(day, resources(zoom_env, bucket=bucket), source=source).success
    assert records_of(s3_day(s3, bucket, day, prefix=source.prefix[1])) == Counter({**canonical([twin, twin, other])})


def test_odd_records_are_kept_intact_and_counted(sim, zoom_env, bucket, s3, source):
    day = days_ago(5)
    odd = odd_records(source, day)
    sim.set_day(day, odd, log=sim_log(source))
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert result.success
    assert records_of(s3_day(s3, bucket, day, prefix=source.prefix[1])) == canonical(odd)
    assert output_metadata(result, source.name)["odd_records"] == 2


@pytest.mark.parametrize(
    "fault, times, params",
    [
        ("rate_limit_qps", 2, {}),
        ("rate_limit_qps", 2, {"retry_after": 0}),
        ("server_error", 2, {"status": 503}),
        ("server_error", 2, {"status": 500}),
        ("truncated_body", 2, {}),
        ("connection_reset", 2, {}),
        ("token_expired", 1, {}),
        ("invalid_page_token", 2, {}),
    ],
)
def test_transient_faults_are_survived_exactly(sim, zoom_env, bucket, s3, fault, times, params, source):
    day, log = days_ago(6), sim_log(source)
    sim.generate_day(day, 1000, seed=3, twins=3, log=log)
    expected = canonical(api_listing(sim, zoom_env, day, source))
    sim.reset_stats()
    sim.inject(fault, times=times, after_calls=1, log=log, **params)
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert result.success, fault
    objects = s3_day(s3, bucket, day, prefix=source.prefix[1])
    assert len(objects) == 1
    assert records_of(objects) == expected
    meta = output_metadata(result, source.name)
    assert meta["records_written"] == 1000
    assert sim.stats()["by_log"][log]["faults_by_kind"] == {fault: times}  # the faults hit this source
    if fault == "invalid_page_token":
        assert meta["day_restarts"] == 2


def test_token_rejected_twice_fails_clearly(sim, zoom_env, bucket, s3, source):
    day = days_ago(6)
    sim.generate_day(day, 1000, seed=3, log=sim_log(source))
    sim.inject("token_expired", times=2, after_calls=1, log=sim_log(source))
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert not result.success
    assert "freshly minted access token" in result.failure_data_for_node(source.name).error.message
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}


def test_daily_limit_fails_at_once_naming_the_reset_time(sim, zoom_env, bucket, s3, source):
    day = days_ago(6)
    sim.generate_day(day, 1000, seed=3, log=sim_log(source))
    sim.inject("rate_limit_daily", times=100, after_calls=1, log=sim_log(source))
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert not result.success
    message = str(result.failure_data_for_node(source.name).error.message)
    assert "daily API limit" in message and "T00:00:00Z" in message
    assert sim.stats()["report_calls"] == report_calls(sim, source) == 2  # no retry storm against a spent quota
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}


def test_persistent_server_errors_fail_without_writing(sim, zoom_env, bucket, s3, source):
    day = days_ago(6)
    sim.generate_day(day, 1000, seed=3, log=sim_log(source))
    sim.inject("server_error", times=1000, after_calls=1, status=502, log=sim_log(source))
    result = materialize(day, resources(zoom_env, bucket=bucket, max_attempts=3), source=source)
    assert not result.success
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}


def test_missing_scope_is_one_clear_error(sim, zoom_env, bucket, s3, source):
    day = days_ago(2)
    sim.generate_day(day, 10, log=sim_log(source))
    sim.configure(scopes="meeting:read:admin")
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert not result.success
    message = result.failure_data_for_node(source.name).error.message
    assert source.scope in message and not [s.scope for s in SOURCES if s is not source and s.scope in message]
    assert sim.stats()["report_calls"] == report_calls(sim, source) == 1
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}


def test_refresh_while_events_arrive_stores_no_duplicate_and_misses_nothing(sim, zoom_env, bucket, s3, source):
    """Today's pages shift as events arrive mid-pass; the stored day must stay a set of distinct records."""
    day, log = days_ago(0), sim_log(source)
    base = sim.make_records(day, 900, seed=5, start_time="12:00:00", log=log)
    sim.set_day(day, base, log=log)
    # New events are the newest: each batch is later than everything before it.
    arriving = [sim.make_records(day, 40, seed=10 + i, start_time=f"{20 + i}:00:00", log=log) for i in range(3)]
    for n, batch in enumerate(arriving, start=1):
        sim.on_report_call(n, day, batch, log=log)  # each page pushes 40 older records onto the next one
    res = resources(zoom_env, bucket=bucket)
    first = materialize(day, res, source=source)
    assert first.success
    meta = output_metadata(first, source.name)
    assert meta["pass"].startswith("refresh")
    assert meta["records_moved_in_listing"] > 0
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    assert max(stored.values()) == 1
    assert set(canonical(base)) <= set(stored)

    # A later refresh picks up whatever the shifting pass could not see, still without duplicates.
    assert materialize(day, res, source=source).success
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    assert stored == Counter(set(canonical(api_listing(sim, zoom_env, day, source))))


def test_local_directory_default_has_the_same_layout(sim, zoom_env, tmp_path, source):
    day = days_ago(2)
    sim.generate_day(day, 50, seed=7, log=sim_log(source))
    result = materialize(day, resources(zoom_env, local_dir=str(tmp_path)), source=source)
    assert result.success
    path = tmp_path / source.prefix[1] / day.replace("-", "/") / part_name(source, day)
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    assert lines[-1] == b"" and len(lines) == 51
    assert canonical(orjson.loads(x) for x in lines[:-1]) == canonical(api_listing(sim, zoom_env, day, source))
    assert output_metadata(result, source.name)["objects_written"] == [path.as_uri()]
    assert materialize(day, resources(zoom_env, local_dir=str(tmp_path)), source=source).success
    assert len(list(path.parent.iterdir())) == 1


@pytest.mark.parametrize("k", [0, 1, 299, 300, 301, 700])
def test_refresh_after_k_new_records_costs_at_most_ceil_k_over_page_size_plus_one_calls(sim, zoom_env, bucket, s3, k,
                                                                                        source):
    day, log = days_ago(0), sim_log(source)
    sim.set_day(day, sim.make_records(day, 2000, seed=20, start_time="09:00:00", log=log), log=log)
    res = resources(zoom_env, bucket=bucket)
    assert materialize(day, res, source=source).success
    new = sim.make_records(day, k, seed=21, start_time="18:00:00", log=log)
    sim.add_records(day, new, log=log)
    sim.reset_stats()
    result = materialize(day, res, source=source)
    meta = output_metadata(result, source.name)
    bound = -(-k // 300) + 1
    assert sim.stats()["report_calls"] == report_calls(sim, source) == meta["api_calls"] <= bound
    assert meta["records_written"] == k
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    assert max(stored.values()) == 1
    assert set(stored) == set(canonical(api_listing(sim, zoom_env, day, source)))


def test_refresh_with_events_arriving_during_the_pass_stays_cheap_and_exact(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(0), sim_log(source)
    sim.set_day(day, sim.make_records(day, 2000, seed=30, start_time="09:00:00", log=log), log=log)
    res = resources(zoom_env, bucket=bucket)
    assert materialize(day, res, source=source).success
    sim.add_records(day, sim.make_records(day, 500, seed=31, start_time="15:00:00", log=log), log=log)
    sim.reset_stats()
    sim.on_report_call(1, day, sim.make_records(day, 120, seed=32, start_time="16:00:00", log=log), log=log)
    result = materialize(day, res, source=source)
    assert sim.stats()["report_calls"] == report_calls(sim, source) <= -(-(500 + 120) // 300) + 1
    assert output_metadata(result, source.name)["records_moved_in_listing"] > 0
    assert materialize(day, res, source=source).success  # the next refresh picks up the 120 that arrived mid-pass
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    assert max(stored.values()) == 1
    assert set(stored) == set(canonical(api_listing(sim, zoom_env, day, source)))


def _late(source, day: str, n: int, clock: str) -> dict:
    return by_hand(source, day, clock, who=f"late{n}")


def test_late_event_during_a_complete_pass_is_neither_duplicated_nor_missed(sim, zoom_env, bucket, s3, source):
    """A late event shifts the pages of an ended day mid-pass; the shifted repeat must not become a twin."""
    day, log = days_ago(1), sim_log(source)
    sim.set_day(day, sim.make_records(day, 900, seed=50, start_time="23:00:00", log=log), log=log)
    # Newest: everything below moves down one.
    sim.on_report_call(1, day, [_late(source, day, 1, "23:59:59")], log=log)
    res = resources(zoom_env, bucket=bucket)
    result = materialize(day, res, source=source)
    assert result.success
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    listing = canonical(api_listing(sim, zoom_env, day, source))
    assert max(stored.values()) == 1 and not stored - listing  # never more than Zoom lists
    meta = output_metadata(result, source.name)
    assert meta["api_calls"] == 4 and not meta["day_exact"]  # no re-read in the same run
    again = materialize(day, res, source=source)  # the listing is quiet now: the next complete pass is exact
    assert records_of(s3_day(s3, bucket, day, prefix=source.prefix[1])) == listing
    assert output_metadata(again, source.name)["day_exact"]


def test_identical_twins_across_a_page_boundary_are_both_kept(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(1), sim_log(source)
    records = sim.make_records(day, 600, seed=51, start_time="20:00:00", log=log)
    records[300] = dict(records[299])  # a genuine twin pair: last of page 1, first of page 2
    sim.set_day(day, records, log=log)
    res = resources(zoom_env, bucket=bucket)
    first = materialize(day, res, source=source)
    assert first.success
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    assert max(stored.values()) == 1  # no page showed two copies yet: one is stored, the day awaits
    meta = output_metadata(first, source.name)
    assert meta["api_calls"] == 2 and meta["awaiting_confirmation_groups"] == 1 and not meta["day_exact"]
    second = materialize(day, res, source=source)  # another page size puts the pair on one page
    meta = output_metadata(second, source.name)
    assert meta["page_size"] != 300 and meta["day_exact"]
    stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
    assert stored == canonical(records) and max(stored.values()) == 2


def test_a_day_that_keeps_moving_stores_each_record_at_most_as_often_as_listed(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(1), sim_log(source)
    sim.set_day(day, sim.make_records(day, 700, seed=52, start_time="20:00:00", log=log), log=log)
    for n, call in enumerate((1, 4, 7, 10)):  # a late event during every pass
        sim.on_report_call(call, day, [_late(source, day, n, f"23:59:5{n}")], log=log)
    res = resources(zoom_env, bucket=bucket)
    for _ in range(3):
        assert materialize(day, res, source=source).success
        stored = records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))
        assert max(stored.values()) == 1 and not stored - canonical(api_listing(sim, zoom_env, day, source))
    sim.clear_faults()
    for _ in range(2):  # the day has settled: at most two quiet complete passes make it exact
        result = materialize(day, res, source=source)
    assert records_of(s3_day(s3, bucket, day, prefix=source.prefix[1])) == canonical(
        api_listing(sim, zoom_env, day, source))
    assert output_metadata(result, source.name)["day_exact"]


def test_lone_surrogate_records_are_stored_byte_for_byte(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(2), sim_log(source)
    sim.set_day(day, sim.make_records(day, 5, seed=56, log=log), log=log)
    first_field = b'"action":"Update","operation_detail"' if source is OPERATION_LOGS else b'"type":"Sign in","email"'
    raw_page = (b'{"next_page_token":"","' + source.records_key.encode() + b'":[{' + first_field + b':"Edit Group '
                b'\\ud83d broken","time":"' + day.encode() + b'T01:00:00Z"}]}')
    sim.inject("raw_body", times=1, body=raw_page.decode("latin-1"), log=log)
    assert materialize(day, resources(zoom_env, bucket=bucket), source=source).success
    [lines] = s3_day(s3, bucket, day, prefix=source.prefix[1]).values()
    assert b'"Edit Group \\ud83d broken"' in lines[0]


def test_a_part_left_without_its_manifest_gets_one_on_the_next_run(sim, zoom_env, bucket, s3, source):
    day = days_ago(2)
    sim.generate_day(day, 420, seed=57, log=sim_log(source))
    res = resources(zoom_env, bucket=bucket)
    assert materialize(day, res, source=source).success
    prefix = f"{source.manifest_prefix[1]}{day.replace('-', '/')}/"
    [manifest] = [m for m in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
                  if m["Key"].endswith(".manifest.json")]
    assert manifest["Key"] == f"{prefix}{part_name(source, day).removesuffix('.json.gz')}.manifest.json"
    s3.delete_object(Bucket=bucket, Key=manifest["Key"])  # as if the run died between part and manifest
    assert materialize(day, res, source=source).success
    healed = orjson.loads(s3.get_object(Bucket=bucket, Key=manifest["Key"])["Body"].read())
    assert healed["records"] == 420 and healed["recovered"] is True
    assert healed["oldest_event_time"].startswith(day)


def test_a_run_that_lost_the_race_writes_only_what_the_winner_lacks(sim, zoom_env, bucket, s3, source):
    """Two passes read the day before either wrote; the later one's part is not identical to the winner's."""
    day, log = days_ago(2), sim_log(source)
    sim.generate_day(day, 500, seed=60, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    store = ZoomStore(s3=S3Resource(), s3_bucket=bucket)
    days = store.days(source)
    winner = collect(zoom, days, day, log=lambda _: None)
    sim.add_records(day, sim.make_records(day, 7, seed=61, log=log), log=log)
    loser = collect(zoom, days, day, log=lambda _: None)  # read the same empty day, listed 7 more
    warnings = []
    metadata = [land(days, found, run_id=None, warn=warnings.append) for found in (winner, loser)]
    assert len(warnings) == 1 and "another run wrote" in warnings[0]
    objects = s3_day(s3, bucket, day, prefix=source.prefix[1])
    assert len(objects) == 2
    # The loser's metadata counts the winner's part, which landed after it read the day.
    assert [(m["day_objects"], m["records_written"], len(m["objects_written"])) for m in metadata] == [(1, 500, 1),
                                                                                                       (2, 7, 1)]
    assert records_of(objects) == canonical(api_listing(sim, zoom_env, day, source))
    assert [len(lines) - 1 for lines in objects.values()] == [500, 7]
