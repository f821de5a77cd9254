"""What Dagster loads: the asset graph, jobs, schedules, sensor, checks, and the environment knobs."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import REPO
from zoom_pipeline.constants import ZOOM_API_POOL
from zoom_pipeline.definitions import build_defs, defs
from zoom_pipeline.sources import SOURCES

RAW, UDM = dg.AssetKey("zoom_operation_logs"), dg.AssetKey("zoom_operation_logs_udm")
KEYS = {source: (dg.AssetKey(source.name), dg.AssetKey(source.udm_name)) for source in SOURCES}
CHECKS = {"yesterday_landed_by_deadline", "day_matches_zoom", "day_matches_fresh_listing",
          "every_day_in_zoom_window_collected"}


def test_definitions_load_with_two_chains_one_per_source():
    graph = defs.resolve_asset_graph()
    assert graph.get_all_asset_keys() == {key for pair in KEYS.values() for key in pair}
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "zoom_operation_logs", "zoom_operation_logs_udm", "zoom_activity_logs", "zoom_activity_logs_udm"}
    for raw, udm in KEYS.values():
        assert graph.get(udm).parent_keys == {raw}  # the UI's lineage: raw ─► UDM, per source
        assert {key.name for key in graph.asset_check_keys if key.asset_key == raw} == CHECKS


def test_jobs_schedules_and_sensor_are_present():
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs()} >= {
        "zoom_operation_logs_job",
        "zoom_freshness_job",
        "zoom_completeness_job",
    }
    assert {s.name for s in repo.schedule_defs} == {"zoom_daily_schedule", "zoom_freshness_schedule"}
    assert sorted(s.name for s in repo.sensor_defs) == ["zoom_confirmation_sensor", "zoom_today_sensor"]
    assert all(s.default_status == dg.DefaultScheduleStatus.STOPPED for s in repo.schedule_defs)


def test_the_day_job_collects_every_source_per_day_with_only_the_ride_along_checks():
    job = defs.resolve_job_def("zoom_operation_logs_job")
    assert job.partitions_def is not None and job.partitions_def.get_last_partition_key() is not None
    assert job.asset_layer.executable_asset_keys == {key for pair in KEYS.values() for key in pair}
    # The fresh listing would add a second Zoom listing to every scheduled run; the ride-along costs none.
    assert job.asset_layer.asset_graph.asset_check_keys == {
        dg.AssetCheckKey(raw, "day_matches_zoom") for raw, _ in KEYS.values()}


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_zoom_calls_share_one_pool(source):
    raw, _ = KEYS[source]
    graph = defs.resolve_asset_graph()
    assert graph.assets_def_for_key(raw).op.pool == ZOOM_API_POOL
    completeness = dg.AssetCheckKey(raw, "day_matches_fresh_listing")
    assert graph.assets_def_for_key(completeness).op.pool == ZOOM_API_POOL


def test_environment_knobs_are_read_where_definitions_are_built():
    custom = build_defs({"ZOOM_DAILY_SCHEDULE_CRON": "45 2 * * *", "ZOOM_FRESHNESS_DEADLINE_HOUR": "6"})
    repo = custom.get_repository_def()
    assert repo.get_schedule_def("zoom_daily_schedule").cron_schedule == "45 2 * * *"
    assert repo.get_schedule_def("zoom_freshness_schedule").cron_schedule == "5 6-23 * * *"
    with pytest.raises(ValueError, match="ZOOM_FRESHNESS_DEADLINE_HOUR must be a whole hour from 0 to 23"):
        build_defs({"ZOOM_FRESHNESS_DEADLINE_HOUR": "25"})


def test_dagster_cli_validates_the_definitions():
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "zoom_pipeline.definitions"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_backfill_runs_take_many_days_while_the_day_job_takes_one(source):
    raw, udm = KEYS[source]
    graph = build_defs({"ZOOM_BACKFILL_DAYS_PER_RUN": "7"}).resolve_asset_graph()
    assert graph.get(raw).backfill_policy == dg.BackfillPolicy.multi_run(7)
    assert defs.resolve_asset_graph().get(raw).backfill_policy == dg.BackfillPolicy.multi_run(30)  # the default
    # Never the raw asset's policy: a run that reports its days one by one has no output for UDM to read.
    assert graph.get(udm).backfill_policy == dg.BackfillPolicy.single_run()
    for bad in ("0", "-3", "2.5", "many"):
        with pytest.raises(ValueError, match=r"^ZOOM_BACKFILL_DAYS_PER_RUN must be a positive whole number of days "
                                             rf"a backfill run, got '{bad}'\.$"):
            build_defs({"ZOOM_BACKFILL_DAYS_PER_RUN": bad})
