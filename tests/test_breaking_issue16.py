"""A second reader's attacks on the fixes for issue 16.

1. No body that is not a page (on page 1, the last page, after a page-token restart, during a refresh of
   today, alternating with good answers, in a run of many days) ends a day early or makes it exact.
2. A complete pass listing fewer records than an earlier one proves nothing, whatever the record's age.
3. Overlapping complete passes (two or three, landing in any order) compare like with like, and a
   foreign object is damage with an example.
4. Confirmation page sizes stay within 1..300; settings fail at load with one sentence, without secrets.
5. The confirmation sensor asks again under a new key after confirming runs that met malformed pages.

Five defects this reader found are fixed, and their tests guard the fixes: a pass with nothing to write
recording its shorter listing over a racer's longer one; a deeply nested 200 escaping the retries as a
RecursionError; a foreign object's extra copy reported without an example; a URL whose password holds
'/', '?' or '#' shown in an error; the token URL's user:pass@ shown when the endpoint cannot be reached.
"""

import itertools
import random
import re

import dagster as dg
import orjson
import pytest
from dagster._serdes import serialize_value
from dagster_aws.s3 import S3Resource

from tests.helpers import (
    SIM_SECRET,
    api_listing,
    canonical,
    days_ago,
    error_text,
    free_port,
    materialize,
    output_metadata,
    records_of,
    resources,
    s3_day,
    sim_log,
)
from zoom_pipeline.assets import SOURCE_ASSETS
from zoom_pipeline.automation import CONFIRM_TRIES_PER_PASS, RUN_KEY_TAG, SENSOR_NAME_TAG
from zoom_pipeline.checks import fresh_listing_result, ride_along_result
from zoom_pipeline.collector import collect
from zoom_pipeline.confirmation import DayState, next_page_size
from zoom_pipeline.constants import DAY_MATCHES_ZOOM
from zoom_pipeline.day_store import PartWriter, ZoomStore
from zoom_pipeline.definitions import build_defs, build_resources
from zoom_pipeline.landing import land
from zoom_pipeline.ledger import GroupSpan, encode_record, line_time
from zoom_pipeline.simulator import MALFORMED_SHAPES
from zoom_pipeline.sources import OPERATION_LOGS
from zoom_pipeline.zoom_client import MalformedPage, ZoomClient, ZoomRetryableError, parse_page


def quiet(_message: str) -> None:
    pass


@pytest.fixture
def day_store(bucket, source):
    return ZoomStore(s3=S3Resource(), s3_bucket=bucket).days(source)


def meta_of(result) -> dict:
    return {k: getattr(v, "value", v) for k, v in result.metadata.items()}


def check_of(result: dg.ExecuteInProcessResult):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == DAY_MATCHES_ZOOM]
    return evaluation


def stored(s3, bucket, day, source):
    return records_of(s3_day(s3, bucket, day, prefix=source.prefix[1]))


def manifest_keys(s3, bucket, day, source) -> list[str]:
    folder = source.manifest_prefix[1] + day.replace("-", "/") + "/"
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])]


def early_end(source) -> str:
    """A well-formed last page with no records: nothing in its shape says the day goes on."""
    return f'{{"next_page_token":"","page_size":300,"{source.records_key}":[]}}'


def step_retries(result) -> int:
    return len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])


# ==== 1. bodies that are not pages ========================================================================


@pytest.mark.parametrize("after_calls, page, shape", [(0, 1, "empty"), (2, 3, "null"), (3, 4, "object"),
                                                      (3, 4, "message"), (1, 2, "missing")])
def test_a_lasting_malformed_page_anywhere_fails_naming_that_page_and_leaves_nothing(
        sim, zoom_env, bucket, s3, source, day_store, after_calls, page, shape):
    """Page 1, a middle page and the last page (1,000 records: pages of 300, 300, 300, 100)."""
    day, log = days_ago(5), sim_log(source)
    sim.generate_day(day, 1000, seed=101, log=log)
    sim.inject("malformed_page", times=1000, after_calls=after_calls, log=log, shape=shape)
    zoom = resources(zoom_env, bucket=bucket, max_attempts=2)["zoom"]
    with pytest.raises(ZoomRetryableError) as raised:
        collect(zoom, day_store, day, log=quiet)
    message = str(raised.value)
    assert f"Zoom {source.title} for {day}, page {page}: gave up after 2 attempts" in message
    assert f"HTTP 200 with a body that is not a page of {source.title}" in message
    assert "\n" not in message
    assert day_store.parts(day).names == () and day_store.day_state(day) is None
    assert manifest_keys(s3, bucket, day, source) == []


def test_a_passing_malformed_last_page_is_retried_and_the_day_lands_exact(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(5), sim_log(source)
    sim.generate_day(day, 1000, seed=102, twins=2, log=log)
    sim.inject("malformed_page", times=2, after_calls=3, log=log, shape="message")  # page 4 of 4, twice
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert result.success and step_retries(result) == 0
    meta = output_metadata(result, source.name)
    assert meta["day_exact"] and meta["records_written"] == 1000 and meta["malformed_pages_retried"] == 2
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def test_malformed_pages_after_a_page_token_restart_are_retried_then_the_day_is_exact(
        sim, zoom_env, bucket, s3, source):
    day, log = days_ago(5), sim_log(source)
    sim.generate_day(day, 1000, seed=103, twins=3, log=log)
    # Call 2 (page 2) is refused as an expired page token; the day restarts; page 2 of the restart (call 4)
    # and its first retry (call 5) are malformed.
    sim.inject("invalid_page_token", times=1, after_calls=1, log=log)
    sim.inject("malformed_page", times=2, after_calls=2, log=log, shape="null")
    result = materialize(day, resources(zoom_env, bucket=bucket), source=source)
    assert result.success and step_retries(result) == 0
    meta = output_metadata(result, source.name)
    assert meta["day_restarts"] == 1 and meta["malformed_pages_retried"] == 2
    assert meta["day_exact"] and meta["records_written"] == 1000
    assert sim.stats()["by_log"][log]["faults_by_kind"] == {"invalid_page_token": 1, "malformed_page": 2}
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def test_a_lasting_malformed_page_after_a_restart_fails_and_leaves_nothing(sim, zoom_env, bucket, s3, source,
                                                                             day_store):
    day, log = days_ago(5), sim_log(source)
    sim.generate_day(day, 1000, seed=104, log=log)
    sim.inject("invalid_page_token", times=1, after_calls=2, log=log)  # page 3
    sim.inject("malformed_page", times=1000, after_calls=4, log=log, shape="empty")  # page 3 after the restart
    zoom = resources(zoom_env, bucket=bucket, max_attempts=2)["zoom"]
    with pytest.raises(ZoomRetryableError, match=rf"for {day}, page 3: gave up after 2 attempts; last problem: "
                                                 r"HTTP 200 with a body that is not a page"):
        collect(zoom, day_store, day, log=quiet)
    assert day_store.parts(day).names == () and day_store.day_state(day) is None


def test_malformed_and_valid_answers_alternating_each_page_passes_on_its_second_try(
        sim, zoom_env, bucket, s3, source):
    """Every page's first answer is malformed and its second is good: with two attempts per call the
    day lands whole and exact in one step attempt."""
    day, log = days_ago(5), sim_log(source)
    sim.generate_day(day, 1000, seed=105, twins=2, log=log)
    for n, shape in enumerate(("missing", "null", "object", "message")):
        sim.inject("malformed_page", times=1, after_calls=n, log=log, shape=shape)  # calls 1, 3, 5, 7
    result = materialize(day, resources(zoom_env, bucket=bucket, max_attempts=2), source=source)
    assert result.success and step_retries(result) == 0
    meta = output_metadata(result, source.name)
    assert meta["malformed_pages_retried"] == 4 and meta["api_calls"] == 8 and meta["pages"] == 4
    assert meta["day_exact"] and meta["records_written"] == 1000
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def test_a_malformed_page_during_a_refresh_of_today_writes_nothing_and_the_next_refresh_is_whole(
        sim, zoom_env, bucket, s3, source):
    day, log = days_ago(0), sim_log(source)
    sim.set_day(day, sim.make_records(day, 2000, seed=106, start_time="09:00:00", log=log), log=log)
    res = resources(zoom_env, bucket=bucket, max_attempts=2)
    assert materialize(day, res, source=source).success
    before = s3_day(s3, bucket, day, prefix=source.prefix[1])
    sim.add_records(day, sim.make_records(day, 400, seed=107, start_time="18:00:00", log=log), log=log)

    sim.inject("malformed_page", times=1000, after_calls=1, log=log, shape="message")  # page 2 of the refresh
    failed = materialize(day, res, source=source)
    assert not failed.success
    message = error_text(failed.failure_data_for_node(source.name).error)
    assert f"for {day}, page" in message and "not a page of" in message and "upstream timeout" in message
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == before  # page 1's new records not written

    sim.clear_faults()
    sim.inject("malformed_page", times=1, log=log, shape="empty")  # the first answer of the next refresh
    result = materialize(day, res, source=source)
    assert result.success
    meta = output_metadata(result, source.name)
    assert meta["pass"].startswith("refresh") and meta["records_written"] == 400
    assert meta["malformed_pages_retried"] == 1
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def run_days(days: list[str], res: dict, instance, source) -> dg.ExecuteInProcessResult:
    """One run of many days, tagged with the range as the backfill daemon tags it."""
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    raw, _ = SOURCE_ASSETS[source]
    return dg.materialize([raw], tags=tags, resources=res, instance=instance, raise_on_error=False)


def test_a_run_of_many_days_keeps_the_days_before_a_lasting_malformed_day_and_lands_nothing_of_it(
        sim, zoom_env, bucket, s3, source, day_store):
    days = [days_ago(9), days_ago(8), days_ago(7)]
    log = sim_log(source)
    for day, count, seed in zip(days, (50, 400, 30), (110, 111, 112), strict=True):
        sim.generate_day(day, count, seed=seed, log=log)
    expected = {day: canonical(api_listing(sim, zoom_env, day, source)) for day in days}
    sim.reset_stats()
    # Day 1 is one call, day 2 page 1 the second: from day 2's page 2 on, every answer is malformed.
    sim.inject("malformed_page", times=1000, after_calls=2, log=log, shape="missing")
    instance = dg.DagsterInstance.ephemeral()
    res = resources(zoom_env, bucket=bucket, max_attempts=2)
    result = run_days(days, res, instance, source)

    assert not result.success
    assert instance.get_materialized_partitions(dg.AssetKey(source.name)) == {days[0]}
    assert stored(s3, bucket, days[0], source) == expected[days[0]]
    for day in days[1:]:
        assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}
        assert day_store.day_state(day) is None and manifest_keys(s3, bucket, day, source) == []
    evaluations = {e.partition: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {days[0]} and evaluations[days[0]].passed
    message = error_text(result.failure_data_for_node(source.name).error)
    assert f"for {days[1]}, page 1: gave up after 2 attempts" in message  # the step's retries met it on page 1

    sim.clear_faults()
    again = run_days(days, res, instance, source)
    assert again.success
    landed = {m.partition: {k: v.value for k, v in m.metadata.items()}
              for m in again.asset_materializations_for_node(source.name)}
    assert [landed[d]["records_written"] for d in days] == [0, 400, 30]
    assert all(landed[d]["day_exact"] for d in days)
    for day in days:
        assert stored(s3, bucket, day, source) == expected[day], day


def _records_not_objects(source, records):
    return orjson.dumps({source.records_key: [records[0], "x", records[1]], "next_page_token": ""})


def _token_number(source, records):
    return orjson.dumps({source.records_key: records[:10], "next_page_token": 12})


def _token_object(source, records):
    return orjson.dumps({source.records_key: records[:10], "next_page_token": {"token": "abc"}})


def _one_too_many(source, records):
    return orjson.dumps({source.records_key: records[:11], "next_page_token": ""})


def _bare_list(source, records):
    return orjson.dumps(records[:10])


def _json_string(source, records):
    return b'"ok"'


def _latin1_garbage(source, records):
    return b"\xff\xfe<\x00h\x00t\x00m\x00l\x00>"


def _cut_json(source, records):
    return orjson.dumps({source.records_key: records[:10], "next_page_token": ""})[:-7]


@pytest.mark.parametrize("body, says", [
    (_records_not_objects, "record 2 of "),
    (_token_number, '"next_page_token" is a number, not a string'),
    (_token_object, '"next_page_token" is an object, not a string'),
    (_one_too_many, "holds 11 records, more than the page size of 10 asked for"),
    (_bare_list, "the body is a list, not an object"),
    (_json_string, "the body is a string, not an object"),
    (_latin1_garbage, "the body is not JSON"),
    (_cut_json, "the body is not JSON"),
], ids=lambda x: getattr(x, "__name__", "")[1:] or None)
def test_each_kind_of_non_page_on_page_2_fails_when_it_lasts_and_is_retried_when_it_passes(
        sim, zoom_env, bucket, s3, source, day_store, body, says):
    day, log = days_ago(4), sim_log(source)
    sim.generate_day(day, 25, seed=113, log=log)  # pages of 10: 10, 10, 5
    raw = body(source, api_listing(sim, zoom_env, day, source)).decode("latin-1")
    zoom = resources(zoom_env, bucket=bucket, max_attempts=2, page_size=10)["zoom"]
    sim.inject("raw_body", times=1000, after_calls=1, log=log, body=raw)
    with pytest.raises(ZoomRetryableError) as raised:
        collect(zoom, day_store, day, log=quiet)
    assert f"for {day}, page 2: gave up after 2 attempts" in str(raised.value) and says in str(raised.value)
    assert day_store.parts(day).names == ()

    sim.clear_faults()
    sim.inject("raw_body", times=1, after_calls=1, log=log, body=raw)
    found = collect(zoom, day_store, day, log=quiet)
    land(day_store, found, run_id="r", warn=quiet)
    assert found.stats.malformed_pages == 1 and found.state.exact and found.ledger.listed == 25
    assert ride_along_result(day_store, found).passed
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def test_a_malformed_body_with_bytes_that_are_not_utf8_fails_cleanly(sim, zoom_env, bucket, s3, source):
    day, log = days_ago(6), sim_log(source)
    sim.generate_day(day, 700, seed=114, log=log)
    sim.inject("raw_body", times=1000, after_calls=1, log=log, body='{"message": "\xff upstream \xfe", "\xfd": 1}')
    result = materialize(day, resources(zoom_env, bucket=bucket, max_attempts=2), source=source)
    assert not result.success
    message = error_text(result.failure_data_for_node(source.name).error)
    assert f"for {day}, page 1: gave up after 2 attempts" in message and " upstream " in message
    assert s3_day(s3, bucket, day, prefix=source.prefix[1]) == {}


DEEP = b"[" * 100_000


def test_a_deeply_nested_body_is_malformed():
    with pytest.raises(MalformedPage, match="not JSON"):
        parse_page(DEEP, OPERATION_LOGS.records_key, 300)


def test_a_passing_deeply_nested_body_is_retried_like_a_5xx(sim, zoom_env, bucket, s3, source, day_store):
    day, log = days_ago(4), sim_log(source)
    sim.generate_day(day, 700, seed=115, log=log)
    sim.inject("raw_body", times=1, after_calls=1, log=log, body=DEEP.decode())
    zoom = resources(zoom_env, bucket=bucket, max_attempts=3)["zoom"]
    found = collect(zoom, day_store, day, log=quiet)
    assert found.stats.malformed_pages == 1 and found.ledger.listed == 700


SECRET_LOOKING = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJub3QtdGhlLXNlY3JldCJ9.c2lnbmF0dXJlLW5vdC10aGUtc2VjcmV0"


def test_the_client_secret_never_appears_in_failures_logs_or_metadata(sim, zoom_env, bucket, s3, source, capfd):
    day, log = days_ago(6), sim_log(source)
    sim.generate_day(day, 700, seed=116, log=log)
    instance = dg.DagsterInstance.ephemeral()
    res = resources(zoom_env, bucket=bucket, max_attempts=2)
    body = f'{{"code": 124, "message": "Invalid access token: Bearer {SECRET_LOOKING}", "secret": "{SECRET_LOOKING}"}}'
    sim.inject("raw_body", times=1000, after_calls=1, log=log, body=body)
    failed = materialize(day, res, instance=instance, source=source)
    assert not failed.success
    message = error_text(failed.failure_data_for_node(source.name).error)
    assert SECRET_LOOKING[:40] in message  # the body's own words are quoted ...
    sim.clear_faults()
    for shape in MALFORMED_SHAPES:  # page 2 answers each shape once, then its page
        sim.inject("malformed_page", times=1, after_calls=1, log=log, shape=shape)
    passed = materialize(day, resources(zoom_env, bucket=bucket), instance=instance, source=source)
    assert passed.success and step_retries(passed) == 0
    assert output_metadata(passed, source.name)["malformed_pages_retried"] == 5
    # ... and the client secret nowhere: not in the failure, any event, any metadata, any console line.
    assert SIM_SECRET not in message
    for run in (failed, passed):
        for entry in instance.all_logs(run.run_id):
            assert SIM_SECRET not in serialize_value(entry)
    assert SIM_SECRET not in str(output_metadata(passed, source.name))
    out = capfd.readouterr()
    assert SIM_SECRET not in out.out and SIM_SECRET not in out.err


# ==== 1/2. a well-formed page that ends the day early ======================================================


def test_an_early_last_page_that_looks_valid_is_caught_only_against_an_earlier_longer_listing(
        sim, zoom_env, bucket, s3, source):
    """Documented limit: a 200 with Zoom's exact shape for a last page (`next_page_token: ""`, an empty
    list) is indistinguishable from the real end of a day, so on a day's *first* pass it ends the day at
    300 and the counting proof calls that exact; the daily schedule's re-read lands the rest. Once a longer
    listing is on record, the same early end proves nothing (promise 2)."""
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 1000, seed=120, log=log)
    res = resources(zoom_env, bucket=bucket)
    sim.inject("raw_body", times=1, after_calls=1, log=log, body=early_end(source))
    first = output_metadata(materialize(day, res, source=source), source.name)
    assert first["records_from_api"] == 300 and first["records_written"] == 300
    assert first["day_exact"] is True  # the limit: nothing in the body says the day goes on

    second = output_metadata(materialize(day, res, source=source), source.name)
    assert second["records_written"] == 700 and second["day_exact"]

    sim.inject("raw_body", times=1, after_calls=1, log=log, body=early_end(source))
    short = materialize(day, res, source=source)
    meta = output_metadata(short, source.name)
    assert meta["records_from_api"] == 300 and meta["records_written"] == 0 and not meta["day_exact"]
    evaluation = check_of(short)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    check = meta_of(evaluation)
    assert check["listing_short_by"] == 700 and check["extra_copies"] == 0 and check["missing_copies"] == 0
    assert output_metadata(materialize(day, res, source=source), source.name)["day_exact"]
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def test_a_full_page_under_a_smaller_confirmation_page_size_is_malformed(sim, zoom_env, bucket, s3, source):
    """The confirming pass asks for fewer than 300 records a page; a 300-record answer is more than it
    asked for, whatever PAGE_SIZE says."""
    day, log = days_ago(2), sim_log(source)
    records = twin_day(sim, day, log, seed=125)
    res = resources(zoom_env, bucket=bucket)
    assert not output_metadata(materialize(day, res, source=source), source.name)["day_exact"]
    full_page = orjson.dumps({"next_page_token": "", "page_size": 300, source.records_key: records[:300]})
    sim.inject("raw_body", times=1, log=log, body=full_page.decode("latin-1"))
    meta = output_metadata(materialize(day, res, source=source), source.name)
    assert meta["page_size"] < 300 and meta["malformed_pages_retried"] == 1
    assert meta["day_exact"] and meta["records_from_api"] == 600
    assert stored(s3, bucket, day, source) == canonical(records)


# ==== 2. a shorter listing proves nothing ================================================================


def twin_day(sim, day: str, log: str, seed: int) -> list[dict]:
    """600 records whose twin pair (positions 299 and 300) the first page boundary cuts."""
    records = sim.make_records(day, 600, seed=seed, start_time="20:00:00", log=log)
    records[300] = dict(records[299])
    sim.set_day(day, records, log=log)
    return records


def test_a_short_listing_after_an_awaiting_pass_that_matches_storage_is_not_exact(
        sim, zoom_env, bucket, s3, source, day_store):
    """Pass 1 stores 599 of 600 (a twin awaits). Zoom then lists 599 (the twin's second copy missing from
    the listing): storage holds as many as this listing, which without the earlier one would be proof."""
    day, log = days_ago(2), sim_log(source)
    records = twin_day(sim, day, log, seed=121)
    res = resources(zoom_env, bucket=bucket)
    first = output_metadata(materialize(day, res, source=source), source.name)
    assert not first["day_exact"] and first["awaiting_confirmation_records"] == 1

    sim.set_day(day, records[:300] + records[301:], log=log)
    short = materialize(day, res, source=source)
    meta = output_metadata(short, source.name)
    assert meta["records_from_api"] == 599 and meta["dagster/row_count"] == 599
    assert meta["page_size"] != 300 and not meta["day_exact"]
    check = meta_of(check_of(short))
    assert check_of(short).severity == dg.AssetCheckSeverity.WARN
    assert check["listing_short_by"] == 1 and check["extra_copies"] == 0 and check["missing_copies"] == 0
    assert day_store.day_state(day).longest_listed == 600 and not day_store.day_state(day).exact

    sim.set_day(day, records, log=log)  # Zoom lists the copy again
    for _ in range(2):  # at most two more quiet passes prove the day
        meta = output_metadata(materialize(day, res, source=source), source.name)
    assert meta["day_exact"]
    assert stored(s3, bucket, day, source) == canonical(records)


def test_a_short_listing_keeps_the_day_awaiting_a_confirming_pass(sim, zoom_env, bucket, s3):
    day, log = days_ago(10), sim_log(OPERATION_LOGS)
    sim.generate_day(day, 1000, seed=126, log=log)
    res = resources(zoom_env, bucket=bucket)
    defs = build_defs()
    with dg.instance_for_test() as instance:
        assert output_metadata(materialize(day, res, instance=instance))["day_exact"]
        sim.inject("raw_body", times=1, after_calls=1, log=log, body=early_end(OPERATION_LOGS))
        assert not output_metadata(materialize(day, res, instance=instance))["day_exact"]
        evaluation = tick(defs, instance, None)
        [request] = evaluation.run_requests
        assert request.partition_key == day
        assert output_metadata(run_as_the_daemon_would(request, res, instance))["day_exact"]
        assert not tick(defs, instance, evaluation.cursor).run_requests


def write_pass_record(s3, bucket: str, source, day: str, seq: int, state: dict) -> None:
    folder = source.manifest_prefix[1] + day.replace("-", "/") + "/"
    key = f"{folder}{source.part_prefix}{day.replace('-', '')}-pass-{seq:06d}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=orjson.dumps({"partition": day, "state": state}))


def test_a_pass_record_of_the_earlier_format_still_makes_a_short_listing_prove_nothing(
        sim, zoom_env, bucket, s3, source, day_store):
    day, log = days_ago(2), sim_log(source)
    sim.generate_day(day, 1000, seed=122, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    land(day_store, collect(zoom, day_store, day, log=quiet), run_id="1", warn=quiet)
    # The record as the version before longest_listed wrote it (with its "exact" field).
    write_pass_record(s3, bucket, source, day, 2, {"listed": 1000, "stored": 1000, "page_size": 300,
                                                    "awaiting": [], "passes": 2, "extra": 0, "exact": True})
    assert day_store.day_state(day) == DayState(1000, 1000, 300, passes=2, longest_listed=1000)
    listing = api_listing(sim, zoom_env, day, source)
    sim.set_day(day, listing[:10] + listing[11:], log=log)
    short = collect(zoom, day_store, day, log=quiet)
    land(day_store, short, run_id="2", warn=quiet)
    verdict = ride_along_result(day_store, short)
    assert not short.state.exact and short.state.short_by == 1
    assert verdict.severity == dg.AssetCheckSeverity.WARN and meta_of(verdict)["listing_short_by"] == 1
    assert meta_of(verdict)["extra_copies"] == 0


def test_a_pass_record_of_the_first_format_is_read_as_no_record(sim, zoom_env, bucket, s3, source, day_store):
    """The first format had no `stored`: the day reads as never proven, and a pass proves it again."""
    day, log = days_ago(2), sim_log(source)
    sim.generate_day(day, 500, seed=123, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    land(day_store, collect(zoom, day_store, day, log=quiet), run_id="1", warn=quiet)
    write_pass_record(s3, bucket, source, day, 2, {"listed": 500, "page_size": 300, "exact": True,
                                                    "verified": True, "awaiting": [], "passes": 1})
    assert day_store.day_state(day) is None
    again = collect(zoom, day_store, day, log=quiet)
    land(day_store, again, run_id="2", warn=quiet)
    assert again.state.exact and again.ledger.new == 0 and ride_along_result(day_store, again).passed


def test_a_fresh_listing_that_ends_early_warns_and_writes_nothing(sim, zoom_env, bucket, s3, source, day_store):
    day, log = days_ago(2), sim_log(source)
    sim.generate_day(day, 1000, seed=124, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    land(day_store, collect(zoom, day_store, day, log=quiet), run_id="1", warn=quiet)
    keys = manifest_keys(s3, bucket, day, source)
    sim.inject("raw_body", times=1, after_calls=2, log=log, body=early_end(source))
    verdict = fresh_listing_result(zoom, day_store, day, log=quiet)
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.WARN
    meta = meta_of(verdict)
    assert meta["listing_short_by"] == 400 and meta["extra_copies"] == 0 and meta["missing_copies"] == 0
    assert manifest_keys(s3, bucket, day, source) == keys and len(day_store.parts(day).names) == 1


# ==== 3. overlapping complete passes =====================================================================


def test_a_shorter_listing_landing_first_then_the_longer_one_is_exact_and_no_damage(
        sim, zoom_env, bucket, s3, source, day_store):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 500, seed=130, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    run_a = collect(zoom, day_store, day, log=quiet)
    sim.add_records(day, sim.make_records(day, 1, seed=131, log=log), log=log)
    run_b = collect(zoom, day_store, day, log=quiet)
    land(day_store, run_a, run_id="a", warn=quiet)
    a_now = ride_along_result(day_store, run_a)
    warnings: list[str] = []
    land(day_store, run_b, run_id="b", warn=warnings.append)
    b_now = ride_along_result(day_store, run_b)
    assert a_now.passed and b_now.passed, (a_now.description, b_now.description)
    assert run_b.state.exact and day_store.day_state(day).listed == 501 and day_store.day_state(day).exact
    assert any("another run wrote" in w for w in warnings)
    assert ride_along_result(day_store, run_a).passed  # A's check, were it made only now
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


@pytest.mark.parametrize("order", list(itertools.permutations("ABC")), ids="".join)
def test_three_racing_passes_in_any_landing_order_store_the_day_once_and_report_no_damage(
        sim, zoom_env, bucket, s3, source, day_store, order):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 500, seed=132, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    runs = {"A": collect(zoom, day_store, day, log=quiet)}  # 500
    sim.add_records(day, sim.make_records(day, 1, seed=133, log=log), log=log)
    runs["B"] = collect(zoom, day_store, day, log=quiet)  # 501
    sim.add_records(day, sim.make_records(day, 1, seed=134, log=log), log=log)
    runs["C"] = collect(zoom, day_store, day, log=quiet)  # 502, all three read the empty day
    for name in order:
        land(day_store, runs[name], run_id=name, warn=quiet)
        verdict = ride_along_result(day_store, runs[name])
        assert verdict.passed, f"{name}: {verdict.description}"
    for name, run in runs.items():
        late = ride_along_result(day_store, run)
        assert late.passed and meta_of(late)["extra_copies"] == 0, f"{name}: {late.description}"
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))
    state = day_store.day_state(day)
    assert state.exact and state.listed == state.longest_listed == 502
    again = collect(zoom, day_store, day, log=quiet)
    assert again.ledger.new == 0 and again.state.exact


@pytest.mark.parametrize("first", ["full", "short"])
def test_a_short_racer_and_a_longer_racer_on_a_proven_day_leave_the_longer_record(
        sim, zoom_env, bucket, s3, source, day_store, first):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 1000, seed=135, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    land(day_store, collect(zoom, day_store, day, log=quiet), run_id="0", warn=quiet)
    sim.inject("raw_body", times=1, after_calls=1, log=log, body=early_end(source))
    short = collect(zoom, day_store, day, log=quiet)  # ends after 300
    sim.add_records(day, sim.make_records(day, 1, seed=136, log=log), log=log)
    full = collect(zoom, day_store, day, log=quiet)  # 1,001
    assert (short.ledger.listed, full.ledger.listed) == (300, 1001)
    verdicts = {}
    for name, run in (("full", full), ("short", short)) if first == "full" else (("short", short), ("full", full)):
        land(day_store, run, run_id=name, warn=quiet)
        verdicts[name] = ride_along_result(day_store, run)
    assert verdicts["full"].passed, verdicts["full"].description
    assert verdicts["short"].severity == dg.AssetCheckSeverity.WARN, verdicts["short"].description
    assert meta_of(verdicts["short"])["listing_short_by"] == 700
    assert meta_of(verdicts["short"])["extra_copies"] == 0
    state = day_store.day_state(day)
    assert state.exact and state.listed == state.longest_listed == 1001
    assert stored(s3, bucket, day, source) == canonical(api_listing(sim, zoom_env, day, source))


def test_an_earlier_pass_with_nothing_to_write_does_not_record_over_a_racers_longer_listing(
        sim, zoom_env, bucket, s3, source, day_store):
    """Both passes read a proven day of 1,000. Then Zoom lists a late identical copy of record 299, which
    the page boundary at 300 separates from it: the later pass B lists 1,001 and can store nothing yet (no
    page showed two copies), so it awaits confirmation; the earlier pass A listed 1,000 and wrote nothing.
    B lands first, then A: A's record must not say the day is exact at 1,000."""
    day, log = days_ago(3), sim_log(source)
    base = sim.make_records(day, 1000, seed=160, start_time="20:00:00", log=log)
    sim.set_day(day, base, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    land(day_store, collect(zoom, day_store, day, log=quiet), run_id="0", warn=quiet)
    run_a = collect(zoom, day_store, day, log=quiet)
    assert run_a.part is None and run_a.state.exact
    sim.set_day(day, base[:300] + [dict(base[299])] + base[300:], log=log)
    run_b = collect(zoom, day_store, day, log=quiet)
    assert run_b.ledger.listed == 1001 and run_b.part is None and run_b.state.awaiting_records == 1
    land(day_store, run_b, run_id="b", warn=quiet)
    assert ride_along_result(day_store, run_b).severity == dg.AssetCheckSeverity.WARN
    land(day_store, run_a, run_id="a", warn=quiet)
    assert sum(stored(s3, bucket, day, source).values()) == 1000  # Zoom lists 1,001
    state = day_store.day_state(day)
    assert state.longest_listed == 1001 and not state.exact, state  # today: DayState(1000, 1000, ..., exact)
    assert not run_a.state.exact  # A's materialization reports day_exact


def test_a_foreign_object_with_an_extra_copy_of_a_listed_record_is_damage_with_an_example(
        sim, zoom_env, bucket, s3, source, day_store):
    day, log = days_ago(3), sim_log(source)
    sim.generate_day(day, 500, seed=137, log=log)
    zoom = resources(zoom_env, bucket=bucket)["zoom"]
    run = collect(zoom, day_store, day, log=quiet)
    copy = encode_record(api_listing(sim, zoom_env, day, source)[17])  # a record Zoom lists once
    writer = PartWriter()
    writer.write([copy], [line_time(copy)])
    part = writer.finish()
    day_store.put_part(day_store.parts(day).key(day_store.part_name(day, 2)), part)  # not the pass's number
    part.discard()
    land(day_store, run, run_id="a", warn=quiet)
    verdict = ride_along_result(day_store, run)
    meta = meta_of(verdict)
    assert not verdict.passed and meta["extra_copies"] == 1  # holds today
    assert [x.encode() for x in meta["extra_examples"]] == [copy]  # the defect: []


# ==== 4. page sizes and settings ==========================================================================


def test_confirmation_page_sizes_stay_within_what_zoom_serves():
    rng = random.Random(140)
    for _ in range(60):  # 60 random days x 13 page-size settings: each call plans over two passes
        spans = []
        for _ in range(rng.randint(1, 6)):
            first = rng.randint(0, 3000)
            last = first + rng.randint(1, 400)
            spans.append(GroupSpan(f"2026-11-20T10:00:{rng.randint(0, 59):02d}Z", first, last, last - first + 1,
                                   [(first, last)]))
        state = DayState(listed=4000, stored=3990, page_size=300, awaiting=spans)
        for largest in (-5, 0, 1, 2, 7, 149, 150, 151, 299, 300, 301, 1000, 10**6):
            size = next_page_size(state, largest)
            assert 1 <= size <= 300, (largest, size)
    assert next_page_size(None, 10**6) == 300 and next_page_size(None, 0) == 1


@pytest.mark.parametrize("bad", ["３００", "+5", "5 0", "0x10", "1_0", "٣", "300.0", "00", "1e2"])
def test_page_size_odd_spellings_fail_at_load_with_one_sentence(bad):
    with pytest.raises(ValueError, match=r"^PAGE_SIZE must be a whole number from 1 to 300 .*\.$") as raised:
        build_defs({"PAGE_SIZE": bad})
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("name", ["ZOOM_API_BASE_URL", "ZOOM_OAUTH_TOKEN_URL"])
def test_a_bad_url_never_shows_a_password_with_url_delimiters(name):
    for password in ("pa/ss-w0rd", "pa?ss-w0rd", "pa#ss-w0rd"):
        with pytest.raises(ValueError) as raised:
            build_resources({name: f"https://bob:{password}@zoom.example/v2"})
        assert "ss-w0rd" not in str(raised.value), str(raised.value)


def test_an_unreachable_token_url_never_shows_its_credentials(zoom_env):
    url = f"http://proxyuser:PROXY-PASSWORD-9c1e@127.0.0.1:{free_port()}/oauth/token"
    zoom = ZoomClient(account_id="a", client_id="c", client_secret=SIM_SECRET, api_base_url=zoom_env[
        "ZOOM_API_BASE_URL"], oauth_token_url=url, max_attempts=2, backoff_base_seconds=0.01, backoff_max_seconds=0.02)
    with pytest.raises(ZoomRetryableError) as raised:
        zoom.authenticate()
    assert SIM_SECRET not in str(raised.value)
    assert "PROXY-PASSWORD-9c1e" not in str(raised.value), str(raised.value)


# ==== 5. the confirmation sensor after runs that met malformed pages ======================================

SENSOR = "zoom_confirmation_sensor"


def tick(defs: dg.Definitions, instance, cursor: str | None):
    repo = defs.get_repository_def()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repo)
    return repo.get_sensor_def(SENSOR).evaluate_tick(context)


def run_as_the_daemon_would(request: dg.RunRequest, res: dict, instance) -> dg.ExecuteInProcessResult:
    tags = {k: v for k, v in request.tags.items() if k != "dagster/partition"} | {RUN_KEY_TAG: request.run_key,
                                                                                   SENSOR_NAME_TAG: SENSOR}
    assets = [a for a in SOURCE_ASSETS[OPERATION_LOGS] if set(a.keys) & set(request.asset_selection)]
    return dg.materialize(assets, partition_key=request.partition_key, resources=res, instance=instance,
                          tags=tags, raise_on_error=False)


def test_confirming_runs_failed_by_malformed_pages_are_asked_again_and_the_third_confirms(
        sim, zoom_env, bucket, s3):
    day = days_ago(9)
    records = sim.make_records(day, 600, seed=150, start_time="20:00:00")
    records[300] = dict(records[299])
    sim.set_day(day, records)
    res = resources(zoom_env, bucket=bucket, max_attempts=2)
    defs = build_defs()
    with dg.instance_for_test() as instance:
        assert not output_metadata(materialize(day, res, instance=instance))["day_exact"]
        sim.inject("malformed_page", times=100_000, shape="message")
        cursor, keys = None, []
        for n in range(CONFIRM_TRIES_PER_PASS):
            if n == CONFIRM_TRIES_PER_PASS - 1:
                sim.clear_faults()  # the gateway recovers before the last try
            evaluation = tick(defs, instance, cursor)
            [request] = evaluation.run_requests
            assert request.partition_key == day and request.run_key not in keys
            keys.append(request.run_key)
            run = run_as_the_daemon_would(request, res, instance)
            cursor = evaluation.cursor
            if n < CONFIRM_TRIES_PER_PASS - 1:
                assert not run.success
                assert "upstream timeout" in error_text(run.failure_data_for_node(OPERATION_LOGS.name).error)
                assert len(instance.fetch_materializations(dg.AssetKey(OPERATION_LOGS.name), limit=10).records) == 1
            else:
                assert run.success and output_metadata(run)["day_exact"]
        assert not tick(defs, instance, cursor).run_requests
    assert stored(s3, bucket, day, OPERATION_LOGS) == canonical(records)
    assert re.fullmatch(rf"{OPERATION_LOGS.name}/{day}@confirm-\d+-try3", keys[-1])
