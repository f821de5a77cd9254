"""A run of many days (how a backfill runs): the days are collected one after another with one client,
each landed and reported as materialized as soon as it is collected, so a failure on one day keeps the
days before it, and a retry goes on from the day that failed."""

import dagster as dg
import pytest

from tests.helpers import api_listing, canonical, days_ago, records_of, resources, s3_day, sim_log
from zoom_pipeline.assets import SOURCE_ASSETS
from zoom_pipeline.constants import DAY_MATCHES_ZOOM, RETENTION_DAYS
from zoom_pipeline.partitions import daily_partitions


def run_days(days: list[str], res: dict, instance: dg.DagsterInstance, source) -> dg.ExecuteInProcessResult:
    """What a backfill run of `days` is: one run tagged with the range, as the backfill daemon tags it."""
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    raw, _ = SOURCE_ASSETS[source]
    return dg.materialize([raw], tags=tags, resources=res, instance=instance, raise_on_error=False)


def materialized(result: dg.ExecuteInProcessResult, source) -> dict[str, dict]:
    return {
        m.partition: {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node(source.name)
    }


def calls_by_day(sim, source) -> dict[str, int]:
    return sim.stats()["by_log"][sim_log(source)]["report_calls_by_day"]


def stored(s3, bucket: str, day: str, source) -> dict[str, list[bytes]]:
    return s3_day(s3, bucket, day, prefix=source.prefix[1])


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.event_specific_data.partition: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == DAY_MATCHES_ZOOM
    }


def test_a_run_of_many_days_lands_and_reports_each_day(sim, zoom_env, bucket, s3, source):
    days = [days_ago(6), days_ago(5), days_ago(4)]
    for n, (day, count) in enumerate(zip(days, (400, 10, 650), strict=True)):
        sim.generate_day(day, count, seed=70 + n, log=sim_log(source))
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(days, resources(zoom_env, bucket=bucket), instance, source)
    assert result.success
    stats, calls = sim.stats(), calls_by_day(sim, source)
    assert stats["tokens_issued"] == 1  # one client for the whole run
    assert {d: calls[d] for d in days} == {days[0]: 2, days[1]: 1, days[2]: 3}
    assert stats["report_calls"] == 6  # and no call to another source's report

    reported = materialized(result, source)
    assert list(reported) == days  # one materialization per day, in the order they landed
    assert [reported[d]["records_written"] for d in days] == [400, 10, 650]
    assert all(reported[d]["day_exact"] for d in days)
    assert evaluations(result) == {d: True for d in days}  # each day's check, recorded against its day
    assert instance.get_materialized_partitions(dg.AssetKey(source.name)) == set(days)
    for day in days:
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source)), day


def test_a_failing_day_keeps_the_days_before_it_and_the_retry_goes_on_from_it(sim, zoom_env, bucket, s3, source):
    days = [days_ago(9), days_ago(8), days_ago(7)]
    for n, day in enumerate(days):
        sim.generate_day(day, 50 + n, seed=80 + n, log=sim_log(source))
    # The third day's call fails every time the client tries it (6 tries), so the step fails; the
    # step's retry (RetryPolicy) then finds Zoom answering again.
    sim.inject("server_error", times=6, after_calls=2, log=sim_log(source))
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(days, resources(zoom_env, bucket=bucket), instance, source)

    assert result.success
    calls = calls_by_day(sim, source)
    assert list(materialized(result, source)) == days
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("Not read again: 2 day(s) an earlier attempt of this run landed." in m for m in logs)
    # The retry did not read the two landed days again.
    assert {d: calls.get(d) for d in days} == {days[0]: 1, days[1]: 1, days[2]: 7}
    for day in days:
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source)), day


def test_a_spent_budget_stops_the_run_with_the_days_before_it_landed(sim, zoom_env, bucket, s3, source):
    days = [days_ago(12), days_ago(11), days_ago(10)]
    for n, day in enumerate(days):
        sim.generate_day(day, 30 + n, seed=90 + n, log=sim_log(source))
    instance = dg.DagsterInstance.ephemeral()
    result = run_days(days, resources(zoom_env, bucket=bucket, daily_request_budget=2), instance, source)

    assert not result.success
    assert list(materialized(result, source)) == days[:2]
    assert instance.get_materialized_partitions(dg.AssetKey(source.name)) == set(days[:2])
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "budget" in message and "resume" in message, message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # waiting cannot help
    assert sim.stats()["report_calls"] == sim.stats()["by_log"][sim_log(source)]["report_calls"] == 2
    assert stored(s3, bucket, days[2], source) == {}  # nothing half-written


def test_days_zoom_no_longer_serves_fail_the_run_after_the_rest_landed(sim, zoom_env, bucket, s3, source):
    gone, kept = days_ago(RETENTION_DAYS + 1), days_ago(RETENTION_DAYS - 1)
    if not daily_partitions.has_partition_key(gone):
        pytest.skip("today the first partition is the oldest day Zoom serves: no older day to try")
    sim.retention_days = RETENTION_DAYS + 5  # the simulator would still serve it: our guard refuses it first
    sim.generate_day(kept, 20, seed=99, log=sim_log(source))
    result = run_days([gone, kept], resources(zoom_env, bucket=bucket), dg.DagsterInstance.ephemeral(), source)
    assert not result.success
    assert list(materialized(result, source)) == [days_ago(RETENTION_DAYS), kept]
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert f"Zoom no longer serves {gone}" in message and "\n" not in message.strip()
