"""The daily schedule (yesterday and the day before) and the 15-minute sensor for today."""

from datetime import UTC, datetime, time, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from tests.helpers import days_ago, materialize, output_metadata, resources
from zoom_pipeline.automation import holds_back_refresh, today_run_key, zoom_today_sensor
from zoom_pipeline.definitions import build_defs


@pytest.fixture
def defs(zoom_env):
    # Ticks resolve run config, so every EnvVar the resources read must be set (zoom_env does that).
    return build_defs()


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def schedule_tick(defs: dg.Definitions, instance, when: datetime):
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    return defs.get_repository_def().get_schedule_def("zoom_daily_schedule").evaluate_tick(context)


@pytest.mark.parametrize("at", [time(0, 15), time(13, 40), time(23, 59, 59)])
def test_daily_tick_requests_yesterday_and_the_day_before(defs, instance, at):
    today = datetime.now(UTC).date()
    tick = schedule_tick(defs, instance, datetime.combine(today, at, UTC))
    yesterday, day_before = (today - timedelta(days=1)).isoformat(), (today - timedelta(days=2)).isoformat()
    assert [r.partition_key for r in tick.run_requests] == [yesterday, day_before]
    assert [r.run_key for r in tick.run_requests] == [yesterday, day_before]
    for request in tick.run_requests:
        assert request.tags["dagster/priority"] == "5"  # ahead of backfill runs (priority 0)
        assert request.tags["dagster/partition"] == request.partition_key


def test_daily_tick_in_another_zone_still_means_utc_days(defs, instance):
    # 19:30 in New York is already 00:30 of the next day in UTC: the tick's UTC date decides.
    today = datetime.now(UTC).date()
    when = datetime.combine(today, time(0, 30), UTC).astimezone(ZoneInfo("America/New_York"))
    tick = schedule_tick(defs, instance, when)
    assert [r.partition_key for r in tick.run_requests] == [days_ago(1), days_ago(2)]


def test_daily_schedule_defaults_and_cron_override(zoom_env):
    schedule = build_defs().get_repository_def().get_schedule_def("zoom_daily_schedule")
    assert schedule.cron_schedule == "15 0 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "zoom_operation_logs_job"
    custom = (
        build_defs({"ZOOM_DAILY_SCHEDULE_CRON": "30 1 * * *"})
        .get_repository_def()
        .get_schedule_def("zoom_daily_schedule")
    )
    assert custom.cron_schedule == "30 1 * * *"


def sensor_tick(defs: dg.Definitions, instance):
    return zoom_today_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))


def test_sensor_requests_today_with_a_bucketed_run_key(defs, instance):
    before = today_run_key(datetime.now(UTC))
    [request] = sensor_tick(defs, instance).run_requests
    after = today_run_key(datetime.now(UTC))
    today = days_ago(0)
    assert request.partition_key == today
    assert request.run_key in (before, after)
    assert request.run_key.startswith(f"{today}@")
    assert request.tags["dagster/priority"] == "5"
    assert zoom_today_sensor.minimum_interval_seconds == 900
    assert zoom_today_sensor.default_status == dg.DefaultSensorStatus.STOPPED


def test_run_key_is_stable_within_a_15_minute_bucket_and_changes_with_the_next():
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    keys = [today_run_key(at + timedelta(seconds=s)) for s in (0, 1, 14 * 60 + 59, 15 * 60, 29 * 60 + 59, 30 * 60)]
    assert keys[0] == keys[1] == keys[2]
    assert keys[3] == keys[4] != keys[2]
    assert keys[5] != keys[4]
    assert all(key.startswith("2026-11-20@") for key in keys)
    # Buckets follow UTC wall-clock quarters, and a new day starts a new key even within one bucket count.
    assert today_run_key(datetime(2026, 11, 20, 23, 59, tzinfo=UTC)) != today_run_key(
        datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
    )


def add_run(defs, instance, status: dg.DagsterRunStatus, partition_key: str, job="zoom_operation_logs_job", **tags):
    return instance.create_run_for_job(
        job_def=defs.resolve_job_def(job), status=status, tags={"dagster/partition": partition_key, **tags}
    )


def test_sensor_skips_while_a_run_of_today_is_in_flight(defs, instance):
    run = add_run(defs, instance, dg.DagsterRunStatus.STARTED, days_ago(0))
    tick = sensor_tick(defs, instance)
    assert not tick.run_requests
    assert run.run_id in tick.skip_message and "started" in tick.skip_message


def test_sensor_ignores_finished_runs_and_runs_of_other_days(defs, instance):
    add_run(defs, instance, dg.DagsterRunStatus.SUCCESS, days_ago(0))
    add_run(defs, instance, dg.DagsterRunStatus.FAILURE, days_ago(0))
    add_run(defs, instance, dg.DagsterRunStatus.STARTED, days_ago(1))
    [request] = sensor_tick(defs, instance).run_requests
    assert request.partition_key == days_ago(0)


@pytest.mark.parametrize("first", [0, 5], ids=["one-day range", "range ending today"])
def test_sensor_sees_runs_from_the_asset_page_and_asset_backfills(defs, instance, first):
    # An asset-backfill run names its days with a range instead of dagster/partition.
    asset_job = defs.resolve_implicit_global_asset_job_def()
    instance.create_run_for_job(
        job_def=asset_job,
        status=dg.DagsterRunStatus.STARTED,
        asset_selection=frozenset({dg.AssetKey("zoom_operation_logs")}),
        tags={"dagster/asset_partition_range_start": days_ago(first),
              "dagster/asset_partition_range_end": days_ago(0)},
    )
    assert sensor_tick(defs, instance).skip_message


def test_sensor_ignores_a_completeness_run_of_today(defs, instance):
    # It reads today but never writes it.
    add_run(defs, instance, dg.DagsterRunStatus.STARTED, days_ago(0), job="zoom_completeness_job")
    assert sensor_tick(defs, instance).run_requests


def test_confirmation_sensor_asks_for_one_more_pass_of_a_day_awaiting_confirmation(sim, zoom_env, bucket, defs,
                                                                                    instance):
    day = days_ago(9)
    records = sim.make_records(day, 600, seed=70, start_time="20:00:00")
    records[300] = dict(records[299])  # a twin pair cut by the first page boundary
    sim.set_day(day, records)
    res = resources(zoom_env, bucket=bucket)
    assert not output_metadata(materialize(day, res, instance=instance))["day_exact"]

    sensor = defs.get_repository_def().get_sensor_def("zoom_confirmation_sensor")
    context = dg.build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
    tick = sensor.evaluate_tick(context)
    [request] = tick.run_requests
    assert request.partition_key == day and request.tags["dagster/priority"] == "-1"
    # That source only, and its UDM asset too: the part the confirming pass adds must be mapped as well.
    assert set(request.asset_selection) == {dg.AssetKey("zoom_operation_logs"), dg.AssetKey("zoom_operation_logs_udm")}
    assert sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                        repository_def=defs.get_repository_def())).run_requests

    assert output_metadata(materialize(day, res, instance=instance))["day_exact"]  # what the request runs
    after = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                         repository_def=defs.get_repository_def()))
    assert not after.run_requests and "No day awaits confirmation" in after.skip_message


def test_sensor_is_not_held_back_by_a_merely_queued_backfill_run_of_today():
    def run(status, **tags):  # the two fields the rule reads (a queued DagsterRun needs a code origin)
        return SimpleNamespace(status=status, tags=tags)

    assert not holds_back_refresh(run(dg.DagsterRunStatus.QUEUED, **{"dagster/backfill": "abcdefgh"}))
    assert holds_back_refresh(run(dg.DagsterRunStatus.STARTED, **{"dagster/backfill": "abcdefgh"}))
    assert holds_back_refresh(run(dg.DagsterRunStatus.QUEUED))  # its own earlier request, still queued
