"""`dagster dev` with the local instance config: the UI sees the asset, its partitions, the schedules and the
sensor; a backfill launched the way the asset page launches one lands each day exactly; SIGTERM stops it."""

import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests

from tests.helpers import REPO, api_listing, canonical, days_ago, free_port, records_of, s3_day
from zoom_pipeline.partitions import default_start_date
from zoom_pipeline.sources import OPERATION_LOGS

BIN = Path(sys.executable).parent
RAW = dg.AssetKey(OPERATION_LOGS.name)

ASSET_QUERY = """
{ assetNodes(assetKeys: [{path: ["zoom_operation_logs"]}]) {
    jobNames
    partitionKeysByDimension { partitionKeys }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
} }"""
AUTOMATION_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    location { name }
    schedules { name cronSchedule executionTimezone scheduleState { status } }
    sensors { name minIntervalSeconds sensorState { status } }
} } } }"""
# What the asset page sends for "Materialize" over several days (an asset backfill).
BACKFILL_MUTATION = """
mutation($days: [String!], $assets: [AssetKeyInput!] = [{path: ["zoom_operation_logs"]}]) {
  launchPartitionBackfill(backfillParams: {assetSelection: $assets, partitionNames: $days, fromFailure: false}) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RUNS_QUERY = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
CHECK_QUERY = """
{ assetCheckExecutions(assetKey: {path: ["zoom_operation_logs"]}, checkName: "day_matches_zoom", limit: 10) {
    partition evaluation { success description } } }"""


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30).json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_until_up(url: str, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster dev exited early; log: {proc.log_path}"
        try:
            if requests.get(f"{url}/server_info", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    pytest.fail(f"dagster dev did not answer /server_info within {timeout}s; log: {proc.log_path}")


@pytest.mark.daemon
def test_dagster_dev_serves_the_pipeline_and_stops_on_sigterm(sim, zoom_env, bucket, s3, tmp_path, services):
    days = [days_ago(3), days_ago(4)]
    for n, day in enumerate(days):
        sim.generate_day(day, 400 + n, seed=n)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "S3_BUCKET": bucket}
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    dev = services.start(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"], env=env, name="dev"
    )
    wait_until_up(url, dev)

    [asset] = graphql(url, ASSET_QUERY)["assetNodes"]
    [keys] = asset["partitionKeysByDimension"]
    today = days_ago(0)
    assert keys["partitionKeys"][0] == default_start_date() and keys["partitionKeys"][-1] == today
    assert "zoom_operation_logs_job" in asset["jobNames"]
    assert {c["name"] for c in asset["assetChecksOrError"]["checks"]} == {
        "day_matches_zoom",
        "day_matches_fresh_listing",
        "every_day_in_zoom_window_collected",
        "yesterday_landed_by_deadline",
    }

    [repo] = graphql(url, AUTOMATION_QUERY)["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == "zoom_pipeline"
    schedules = {s["name"]: s for s in repo["schedules"]}
    assert schedules["zoom_daily_schedule"]["cronSchedule"] == "15 0 * * *"
    assert schedules["zoom_daily_schedule"]["executionTimezone"] == "UTC"
    assert schedules["zoom_daily_schedule"]["scheduleState"]["status"] == "STOPPED"
    assert "zoom_freshness_schedule" in schedules
    sensors = {s["name"]: s for s in repo["sensors"]}
    assert set(sensors) == {"zoom_today_sensor", "zoom_confirmation_sensor"}
    sensor = sensors["zoom_today_sensor"]
    assert sensor["minIntervalSeconds"] == 900
    assert sensor["sensorState"]["status"] == "STOPPED"

    both = [{"path": ["zoom_operation_logs"]}, {"path": ["zoom_operation_logs_udm"]}]
    launched = graphql(url, BACKFILL_MUTATION, {"days": days, "assets": both})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    runs = wait_for_backfill(url, launched["backfillId"], dev)
    assert all(r["status"] == "SUCCESS" for r in runs), f"log: {dev.log_path}"
    # One run collects both days (ZOOM_BACKFILL_DAYS_PER_RUN, default 30), tagged with their range; the
    # UDM asset maps them in runs of its own once they have landed.
    ranges = sorted(range_of(r) for r in runs)
    assert (min(days), max(days)) in ranges and len(runs) >= 2, ranges
    # The completeness check rode along with each run and compared that run's own pass: no second listing.
    assert sim.stats()["report_calls_by_day"] == {day: 2 for day in days}
    for day in days:
        raw = s3_day(s3, bucket, day)
        assert records_of(raw) == canonical(api_listing(sim, zoom_env, day)), day
        udm = s3_day(s3, bucket, day, prefix="zoom/operationlogs-udm/")
        assert [len(lines) for lines in udm.values()] == [len(lines) for lines in raw.values()], day
    # Each day's check is recorded against that day, as it landed.
    executions = graphql(url, CHECK_QUERY)["assetCheckExecutions"]
    assert sorted((c["partition"], c["evaluation"]["description"][:10], c["evaluation"]["success"])
                  for c in executions) == [(day, day, True) for day in sorted(days)]

    assert dev.poll() is None, f"dagster dev died; log: {dev.log_path}"
    elapsed = services.stop(dev)
    assert elapsed is not None and elapsed < 20, f"dagster dev ignored SIGTERM; log: {dev.log_path}"
    assert not services.group_alive(dev), "dagster dev left processes behind"


REEXECUTE_MUTATION = """
mutation($id: String!) { reexecutePartitionBackfill(reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE}) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS_QUERY = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } } }"""


def wait_for_backfill(url: str, backfill_id: str, dev, timeout: float = 150) -> list[dict]:
    """The backfill's runs once the backfill itself has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(url, BACKFILL_STATUS_QUERY, {"id": backfill_id})["partitionBackfillOrError"]["status"]
        if status not in ("REQUESTED", "CANCELING", "FAILING"):
            return graphql(url, RUNS_QUERY, {"id": backfill_id})["runsOrError"]["results"]
        time.sleep(1)
    pytest.fail(f"backfill {backfill_id} still running after {timeout}s; log: {dev.log_path}")


def range_of(run: dict) -> tuple[str, str]:
    tags = {t["key"]: t["value"] for t in run["tags"]}
    return tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]


@pytest.mark.daemon
def test_a_backfill_stopped_by_the_budget_continues_from_failure_after_the_reset(
    sim, zoom_env, bucket, s3, tmp_path, services
):
    """Many days in one run; the daily budget stops it on the third day with the two before landed and
    materialized; once the budget resets, "re-execute from failure" on the backfill reads only the rest."""
    days = [days_ago(8), days_ago(7), days_ago(6), days_ago(5)]
    for n, day in enumerate(days):
        sim.generate_day(day, 100 + n, seed=20 + n)  # one page each
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "S3_BUCKET": bucket,
           "ZOOM_BACKFILL_DAYS_PER_RUN": "4", "ZOOM_DAILY_REQUEST_BUDGET": "2"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dev = services.start(
        [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"], env=env, name="dev"
    )
    wait_until_up(url, dev)

    launched = graphql(url, BACKFILL_MUTATION, {"days": days})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    [run] = wait_for_backfill(url, launched["backfillId"], dev)
    assert run["status"] == "FAILURE" and range_of(run) == (days[0], days[-1])  # one run for the four days
    assert sim.stats()["report_calls"] == 2
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.get_materialized_partitions(RAW) == set(days[:2])
    assert [s3_day(s3, bucket, d) != {} for d in days] == [True, True, False, False]  # nothing half-written
    [failure] = instance.get_records_for_run(run["runId"], of_type=dg.DagsterEventType.STEP_FAILURE).records
    message = failure.event_log_entry.dagster_event.event_specific_data.error.message
    assert "daily budget of 2 report calls" in message and "relaunch" in message, message

    # The UTC day turns: the account's budget row for today is yesterday's now.
    with sqlite3.connect(home / "zoom_account.sqlite") as db:
        db.execute("UPDATE zoom_account_budget SET day = '2000-01-01'")
    sim.reset_stats()
    relaunched = graphql(url, REEXECUTE_MUTATION, {"id": launched["backfillId"]})["reexecutePartitionBackfill"]
    assert relaunched["__typename"] == "LaunchBackfillSuccess", relaunched
    [rerun] = wait_for_backfill(url, relaunched["backfillId"], dev)
    assert rerun["status"] == "SUCCESS" and range_of(rerun) == (days[2], days[3])
    assert sim.stats()["report_calls_by_day"] == {days[2]: 1, days[3]: 1}  # the landed days were not read again
    assert instance.get_materialized_partitions(RAW) == set(days)
    for day in days:
        assert records_of(s3_day(s3, bucket, day)) == canonical(api_listing(sim, zoom_env, day)), day
    services.stop(dev)
