"""What Dagster loads: the asset graph, jobs, schedules, sensor, checks, and the environment knobs."""

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import REPO
from zoom_pipeline.constants import RETENTION_DAYS, ZOOM_API_POOL
from zoom_pipeline.definitions import build_defs, build_resources, defs
from zoom_pipeline.partitions import build_daily_partitions, check_start_date
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


@pytest.mark.io  # starts a process of its own
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


# ---- settings checked when the definitions load, each refused with one sentence ------------------------


def test_page_size_must_be_a_whole_number_zoom_serves():
    for good in ("1", "150", "300"):
        assert build_resources({"PAGE_SIZE": good})["zoom"].page_size == int(good)
    assert build_resources({})["zoom"].page_size == 300  # the default: Zoom's maximum
    for bad in ("0", "301", "1000", "-1", "abc", "2.5"):
        with pytest.raises(ValueError, match=r"^PAGE_SIZE must be a whole number from 1 to 300 \(Zoom serves at most "
                                             rf"300 records a page\), got '{bad}'\.$"):
            build_defs({"PAGE_SIZE": bad})


@pytest.mark.parametrize("name, default", [("ZOOM_API_BASE_URL", "https://api.zoom.us/v2"),
                                           ("ZOOM_OAUTH_TOKEN_URL", "https://zoom.us/oauth/token")])
def test_zoom_urls_must_be_absolute_http_urls_with_a_host(name, default):
    for good in ("https://api.zoom.us/v2", "http://127.0.0.1:8080/v2", "https://proxy.example/zoom/",
                 "https://bob:s3cret@zoom.example/oauth/token"):
        assert isinstance(build_resources({name: good})["zoom"], dg.ConfigurableResource)
    for bad in ("not-a-url", "api.zoom.us/v2", "ftp://api.zoom.us/v2", "https://", "https:///v2", "http://[::1",
                "http://zoom.us:99999/", "http://zoom.us:port/", "https://api.zoom.us/v2\n", "https://api zoom.us/"):
        with pytest.raises(ValueError, match=rf"^{name} must be an absolute http:// or https:// URL with a host, such "
                                             rf"as '{default}', got .*\.$") as err:
            build_defs({name: bad})
        assert repr(bad) in str(err.value) and "\n" not in str(err.value)


def test_a_bad_url_never_shows_its_credentials():
    with pytest.raises(ValueError, match=r"got 'https://\*\*\*@/oauth'\.$") as err:
        build_defs({"ZOOM_OAUTH_TOKEN_URL": "https://bob:s3cret@/oauth"})
    assert "s3cret" not in str(err.value) and "bob" not in str(err.value)
    with pytest.raises(ValueError) as err:
        build_defs({"ZOOM_API_BASE_URL": "bob:s3cret@api.zoom.us"})
    assert "s3cret" not in str(err.value)


def test_timeout_must_be_a_positive_number_of_seconds():
    assert build_resources({"TIMEOUT": "2.5"})["zoom"].timeout == 2.5
    assert build_resources({})["zoom"].timeout == 30.0
    for bad in ("0", "-1", "abc", "nan", "inf"):
        with pytest.raises(ValueError, match=rf"^TIMEOUT must be a positive number of seconds per HTTP request, "
                                             rf"got '{bad}'\.$"):
            build_defs({"TIMEOUT": bad})


def test_a_bad_daily_schedule_cron_is_one_sentence():
    for bad in ("bad cron", "15 0 * *", "0 0 * * * *", "60 0 * * *", "0 0 30 2 *"):
        sentence = ("ZOOM_DAILY_SCHEDULE_CRON must be a five-field cron expression that can fire (minute hour day "
                    f"month weekday, UTC), such as '15 0 * * *', got '{bad}'.")
        with pytest.raises(ValueError, match=f"^{re.escape(sentence)}$"):
            build_defs({"ZOOM_DAILY_SCHEDULE_CRON": bad})
    assert build_defs({"ZOOM_DAILY_SCHEDULE_CRON": "@daily"}).get_repository_def().get_schedule_def(
        "zoom_daily_schedule").cron_schedule == "@daily"


def test_the_start_date_must_be_a_day_not_after_today():
    today = datetime.now(UTC).date()
    for bad in ("2026-02-30", "yesterday", "2026/01/01", "20260101", "2026-1-1", "2026-01-01T00:00:00", "٢٠٢٦-٠١-٠١"):
        with pytest.raises(ValueError, match=rf"^ZOOM_LOGS_START_DATE must be a date YYYY-MM-DD, got '{bad}'\.$"):
            build_daily_partitions(bad)
    tomorrow = (today + timedelta(days=1)).isoformat()
    with pytest.raises(ValueError, match=rf"^ZOOM_LOGS_START_DATE must not be after today \({today.isoformat()} UTC\), "
                                         rf"got '{tomorrow}'\.$"):
        build_daily_partitions(tomorrow)
    # Today is a partition; a start older than Zoom's window is kept (those days fail at run time, one sentence).
    assert build_daily_partitions(today.isoformat()).get_first_partition_key() == today.isoformat()
    too_old = (today - timedelta(days=RETENTION_DAYS + 60)).isoformat()
    assert build_daily_partitions(too_old).get_first_partition_key() == too_old
    assert check_start_date("2026-02-28", today=date(2026, 3, 1)) == "2026-02-28"


@pytest.mark.io  # starts a process of its own
@pytest.mark.parametrize("setting, value, sentence", [
    ("ZOOM_LOGS_START_DATE", "2026-02-30", "ZOOM_LOGS_START_DATE must be a date YYYY-MM-DD, got '2026-02-30'."),
    ("PAGE_SIZE", "0", "PAGE_SIZE must be a whole number from 1 to 300 (Zoom serves at most 300 records a page), "
                       "got '0'."),
    ("ZOOM_API_BASE_URL", "not-a-url", "ZOOM_API_BASE_URL must be an absolute http:// or https:// URL with a host, "
                                       "such as 'https://api.zoom.us/v2', got 'not-a-url'."),
])
def test_loading_with_a_bad_setting_fails_with_its_one_sentence(setting, value, sentence):
    result = subprocess.run(
        [sys.executable, "-c", "import zoom_pipeline.definitions"],
        cwd=REPO,
        env={**os.environ, setting: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"ValueError: {sentence}" in result.stderr.splitlines()
    assert result.stderr.count("Traceback") == 1 and "During handling" not in result.stderr
    assert not any(raw in result.stderr for raw in ("strptime", "time data", "invalid literal"))


@pytest.mark.io  # starts a process of its own
def test_loading_the_definitions_prints_no_warning_of_our_own_and_hides_no_other():
    """Dagster warns on every load about the beta and preview features the definitions use on purpose;
    zoom_pipeline/__init__.py silences exactly those, and a warning of any other kind still shows."""
    code = ("import warnings, zoom_pipeline.definitions, dagster as dg\n"
            "warnings.warn('Specifying something else is currently in preview', dg.PreviewWarning)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(warned) == 1 and "Specifying something else" in warned[0], done.stderr
