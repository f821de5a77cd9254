"""The checks on each source's raw asset: yesterday landed by the deadline, and a stored day still matches Zoom."""

import gzip
from datetime import UTC, datetime, time, timedelta

import dagster as dg
import orjson
import pytest

from tests.helpers import days_ago, materialize, resources, s3_day, sim_log
from zoom_pipeline.checks import checked_day, yesterday_freshness
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import OPERATION_LOGS, SOURCES

RAW = dg.AssetKey("zoom_operation_logs")


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def defs(zoom_env, bucket, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", bucket)
    return build_defs()


def values(evaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


def run_completeness(defs, instance, day: str, source=OPERATION_LOGS):
    """zoom_completeness_job for one day, as launched with the run tag dagster/partition: `source`'s verdict."""
    job = defs.resolve_job_def("zoom_completeness_job")
    result = job.execute_in_process(instance=instance, tags={"dagster/partition": day}, raise_on_error=False)
    by_source = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert set(by_source) == {s.name for s in SOURCES}  # the job lists the day of every source
    return by_source[source.name]


def at(day_offset: int, hour: int) -> datetime:
    return datetime.combine(datetime.now(UTC).date() + timedelta(days=day_offset), time(hour), UTC)


# ---- completeness ---------------------------------------------------------------------------------


def test_completeness_passes_on_an_exact_day(sim, zoom_env, bucket, s3, defs, instance, source):
    day = days_ago(3)
    sim.generate_day(day, 650, seed=5, twins=3, log=sim_log(source))
    assert materialize(day, resources(zoom_env, bucket=bucket), instance=instance, source=source).success
    sim.reset_stats()

    evaluation = run_completeness(defs, instance, day, source)
    meta = values(evaluation)
    assert evaluation.passed, evaluation.description
    assert evaluation.partition == day
    assert meta["compared"] == "with a new listing"
    assert meta["zoom_records_listed"] == meta["stored_records_before"] == 650
    assert meta["missing_copies"] == meta["extra_copies"] == meta["awaiting_confirmation_records"] == 0
    assert meta["parts_without_manifest"] == meta["parts_not_matching_manifest"] == []
    # One full listing, nothing written (the other source's day is empty: one call).
    assert meta["api_calls"] == sim.stats()["by_log"][sim_log(source)]["report_calls"] == 3
    assert len(s3_day(s3, bucket, day, prefix=source.prefix[1])) == 1


def gz(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def tamper(s3, bucket: str, day: str, how: str, source=OPERATION_LOGS) -> None:
    [key] = s3_day(s3, bucket, day, prefix=source.prefix[1])
    lines = s3_day(s3, bucket, day, prefix=source.prefix[1])[key][:-1]
    if how == "extra line in a new part":
        s3.put_object(Bucket=bucket, Key=key.replace("-000001.", "-000002."), Body=gz(lines[:1]))
    elif how == "line removed":
        s3.put_object(Bucket=bucket, Key=key, Body=gz(lines[1:]))
    elif how == "line altered":
        record = orjson.loads(lines[0]) | {"operator": "mallory@example.com", "email": "mallory@example.com"}
        s3.put_object(Bucket=bucket, Key=key, Body=gz([orjson.dumps(record), *lines[1:]]))
    elif how == "object deleted":
        s3.delete_object(Bucket=bucket, Key=key)


@pytest.mark.parametrize(
    "how, missing, surplus",
    [("extra line in a new part", 0, 1), ("line removed", 1, 0), ("line altered", 1, 1), ("object deleted", 40, 0)],
)
def test_completeness_fails_on_a_tampered_day(sim, zoom_env, bucket, s3, defs, instance, how, missing, surplus,
                                              source):
    day = days_ago(4)
    sim.generate_day(day, 40, seed=6, log=sim_log(source))
    assert materialize(day, resources(zoom_env, bucket=bucket), instance=instance, source=source).success
    tamper(s3, bucket, day, how, source)

    evaluation = run_completeness(defs, instance, day, source)
    meta = values(evaluation)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert (meta["missing_copies"], meta["extra_copies"]) == (missing, surplus)
    assert f"{missing} listed copies are not stored" in evaluation.description
    assert f"{surplus} stored copies are more than Zoom lists" in evaluation.description


def test_a_part_without_its_manifest_only_warns(sim, zoom_env, bucket, s3, defs, instance, source):
    day = days_ago(5)
    sim.generate_day(day, 30, seed=7, log=sim_log(source))
    assert materialize(day, resources(zoom_env, bucket=bucket), instance=instance, source=source).success
    [manifest] = [m for m in s3.list_objects_v2(Bucket=bucket, Prefix=source.manifest_prefix[1])["Contents"]
                  if m["Key"].endswith(".manifest.json")]
    s3.delete_object(Bucket=bucket, Key=manifest["Key"])

    evaluation = run_completeness(defs, instance, day, source)
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    part = f"{source.part_prefix}{day.replace('-', '')}-000001.json.gz"
    assert values(evaluation)["parts_without_manifest"] == [part]


def test_late_records_are_missing_until_the_day_is_collected_again(sim, zoom_env, bucket, defs, instance, source):
    day, log = days_ago(2), sim_log(source)
    sim.generate_day(day, 100, seed=8, log=log)
    res = resources(zoom_env, bucket=bucket)
    assert materialize(day, res, instance=instance, source=source).success
    sim.add_records(day, sim.make_records(day, 3, seed=9, log=log), log=log)

    late = run_completeness(defs, instance, day, source)
    assert not late.passed and values(late)["missing_copies"] == 3
    assert materialize(day, res, instance=instance, source=source).success
    assert run_completeness(defs, instance, day, source).passed


def test_an_open_day_is_not_compared_and_the_check_is_not_run(sim, zoom_env, bucket, defs, instance):
    """Green means compared and equal: a day that has not ended is not compared, and the check shows as not
    executed in that run rather than passed."""
    today = days_ago(0)
    sim.generate_day(today, 20, seed=10)
    job = defs.resolve_job_def("zoom_completeness_job")
    result = job.execute_in_process(instance=instance, tags={"dagster/partition": today}, raise_on_error=False)
    assert result.success and result.get_asset_check_evaluations() == []
    assert sim.stats()["report_calls"] == 0
    [record] = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(RAW, "day_matches_fresh_listing"), limit=1)
    assert record.run_id == result.run_id and record.status.value == "PLANNED"  # planned, never evaluated


def test_riding_along_a_materialization_reuses_its_pass(sim, zoom_env, bucket, s3, defs, instance):
    """What the asset page and `dagster asset materialize` run: the asset, then its checks."""
    day = days_ago(6)
    sim.generate_day(day, 350, seed=11)
    asset_job = defs.resolve_implicit_global_asset_job_def()
    result = asset_job.execute_in_process(partition_key=day, instance=instance, asset_selection=[RAW])
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    meta = values(evaluations["day_matches_zoom"])
    assert evaluations["day_matches_zoom"].passed
    assert meta["compared"] == "with this run's complete pass" and meta["api_calls"] == 0
    assert sim.stats()["report_calls"] == 2  # the asset's own pass only

    # A surplus is still caught without a second listing: storage then holds more than the pass listed.
    tamper(s3, bucket, day, "extra line in a new part")
    again = asset_job.execute_in_process(partition_key=day, instance=instance, asset_selection=[RAW])
    [evaluation] = [e for e in again.get_asset_check_evaluations() if e.check_name == "day_matches_zoom"]
    assert not evaluation.passed and values(evaluation)["extra_copies"] == 1


def test_which_day_a_completeness_run_compares():
    now = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    assert checked_day({"dagster/partition": "2026-11-01"}, now) == "2026-11-01"
    one_day = {"dagster/asset_partition_range_start": "2026-11-02", "dagster/asset_partition_range_end": "2026-11-02"}
    assert checked_day(one_day, now) == "2026-11-02"
    assert checked_day({}, now) == "2026-11-18"  # untagged: the day before yesterday
    with pytest.raises(dg.Failure, match="one day at a time"):
        checked_day({**one_day, "dagster/asset_partition_range_end": "2026-11-05"}, now)


# ---- freshness ------------------------------------------------------------------------------------


def test_yesterday_that_landed_passes(sim, zoom_env, bucket, instance):
    yesterday = days_ago(1)
    sim.generate_day(yesterday, 10, seed=12)
    assert materialize(yesterday, resources(zoom_env, bucket=bucket), instance=instance).success

    result = yesterday_freshness(instance, at(0, 5), deadline_hour=3)
    assert result.passed and values(result)["partition"] == yesterday
    # It landed now, which is after a midnight deadline.
    late = yesterday_freshness(instance, at(0, 5), deadline_hour=0)
    assert late.passed and values(late)["late"] is True and "after its 00:00 UTC deadline" in late.description


def test_yesterday_not_yet_due_passes_with_a_note(instance):
    report(instance, days_ago(5), "complete")  # the instance has collected before
    result = yesterday_freshness(instance, at(0, 1), deadline_hour=3)
    assert result.passed and values(result)["due"] is False
    assert result.description.startswith("Not due yet")


def test_yesterday_overdue_fails(instance):
    report(instance, days_ago(5), "complete")  # the instance has collected before
    result = yesterday_freshness(instance, at(0, 5), deadline_hour=3)
    assert not result.passed and values(result)["due"] is True
    assert "deadline has passed" in result.description


def test_only_a_complete_pass_counts_as_landed(instance):
    # The 15-minute sensor materializes a day while it is open; that is not the day landing.
    instance.report_runless_asset_event(
        dg.AssetMaterialization(RAW, partition=days_ago(1), metadata={"pass": "refresh (day still open)"})
    )
    assert not yesterday_freshness(instance, at(0, 5), deadline_hour=3).passed
    instance.report_runless_asset_event(
        dg.AssetMaterialization(RAW, partition=days_ago(1), metadata={"pass": "complete"})
    )
    assert yesterday_freshness(instance, at(0, 5), deadline_hour=3).passed


def test_freshness_job_runs_the_check(zoom_env, instance):
    job = build_defs({"ZOOM_FRESHNESS_DEADLINE_HOUR": "0"}).resolve_job_def("zoom_freshness_job")
    evaluations = {e.check_name: e for e in job.execute_in_process(instance=instance).get_asset_check_evaluations()}
    assert {e.asset_key.path[-1] for e in job.execute_in_process(instance=instance).get_asset_check_evaluations()} == {
        s.name for s in SOURCES}
    assert set(evaluations) == {"yesterday_landed_by_deadline", "every_day_in_zoom_window_collected"}
    assert not evaluations["yesterday_landed_by_deadline"].passed  # nothing landed; a midnight deadline is past
    assert not evaluations["every_day_in_zoom_window_collected"].passed


# ---- gaps inside Zoom's window ----------------------------------------------------------------------


def report(instance, day: str, kind: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=RAW, partition=day, metadata={"pass": kind}))


def test_the_window_check_names_days_without_a_complete_pass_and_fails_for_those_about_to_be_lost(instance):
    from zoom_pipeline.checks import window_result
    from zoom_pipeline.partitions import oldest_served_day

    today = datetime.now(UTC).date()
    oldest = oldest_served_day(today)
    about_to_go, later, refreshed_only = (oldest + timedelta(days=n) for n in (3, 40, 90))
    for n in range((today - oldest).days):
        day = oldest + timedelta(days=n)
        if day not in (about_to_go, later, refreshed_only):
            report(instance, day.isoformat(), "complete")
    report(instance, refreshed_only.isoformat(), "refresh (day still open)")  # a refresh proves nothing

    result = window_result(instance, today)
    meta = values(result)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert meta["days_without_complete_pass"] == [d.isoformat() for d in (about_to_go, later, refreshed_only)]
    assert meta["days_lost_within_14_days"] == [about_to_go.isoformat()]
    assert result.description.startswith("Collect now or lose it: 1 day(s)")
    assert about_to_go.isoformat() in result.description

    report(instance, about_to_go.isoformat(), "complete")
    result = window_result(instance, today)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    for day in (later, refreshed_only):
        report(instance, day.isoformat(), "complete")
    assert window_result(instance, today).passed


# ---- a fresh instance ------------------------------------------------------------------------------


def test_on_a_fresh_instance_the_account_checks_have_nothing_to_judge_and_say_so_without_error(instance):
    from zoom_pipeline.checks import window_result

    for result in (yesterday_freshness(instance, at(0, 5), deadline_hour=3),
                   window_result(instance, datetime.now(UTC).date())):
        assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
        assert result.description.startswith("Nothing to judge yet: no day of operation logs has been collected")
    report(instance, days_ago(0), "refresh (day still open)")  # a refresh of today is no complete pass either
    assert yesterday_freshness(instance, at(0, 5), deadline_hour=3).severity == dg.AssetCheckSeverity.WARN


def test_a_first_manual_run_on_a_fresh_instance_shows_no_error(sim, zoom_env, bucket, defs, instance):
    """What a newcomer does first: materialize today from the asset page (every check of the asset selected).
    The refresh is not compared, and the checks that judge the whole account are left to their own job:
    none of them is evaluated, so none can read as a failure."""
    sim.generate_day(days_ago(0), 30, seed=21)
    asset_job = defs.resolve_implicit_global_asset_job_def()
    result = asset_job.execute_in_process(partition_key=days_ago(0), instance=instance, asset_selection=[RAW])
    assert result.success
    assert result.get_asset_check_evaluations() == []
    planned = {name: instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(RAW, name), limit=1) for name in ("day_matches_zoom", "day_matches_fresh_listing",
                                                             "yesterday_landed_by_deadline",
                                                             "every_day_in_zoom_window_collected")}
    assert {name: [r.status.value for r in records] for name, records in planned.items()} == dict.fromkeys(
        planned, ["PLANNED"])

