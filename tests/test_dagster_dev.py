"""`dagster dev` with the local instance config: the UI sees the asset, its partitions, the schedules and the
sensor; a backfill launched the way the asset page launches one lands each day exactly; SIGTERM stops it."""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO, api_listing, canonical, days_ago, free_port, records_of, s3_day
from zoom_pipeline.partitions import default_start_date

BIN = Path(sys.executable).parent

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
mutation($days: [String!]) { launchPartitionBackfill(backfillParams: {
    assetSelection: [{path: ["zoom_operation_logs"]}], partitionNames: $days, fromFailure: false}) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RUNS_QUERY = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { status tags { key value } } } } }"""
CHECK_QUERY = """
{ assetCheckExecutions(assetKey: {path: ["zoom_operation_logs"]}, checkName: "day_matches_zoom", limit: 10) {
    evaluation { success description } } }"""


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

    launched = graphql(url, BACKFILL_MUTATION, {"days": days})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        runs = graphql(url, RUNS_QUERY, {"id": launched["backfillId"]})["runsOrError"]["results"]
        if len(runs) == len(days) and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs):
            break
        time.sleep(1)
    assert [r["status"] for r in runs] == ["SUCCESS"] * len(days), f"log: {dev.log_path}"
    # multi_run(1): one run per day, each naming its day as a one-day range.
    assert sorted(
        next(t["value"] for t in r["tags"] if t["key"] == "dagster/asset_partition_range_start") for r in runs
    ) == sorted(days)
    # The completeness check rode along with each run and compared that run's own pass: no second listing.
    assert sim.stats()["report_calls_by_day"] == {day: 2 for day in days}
    for day in days:
        assert records_of(s3_day(s3, bucket, day)) == canonical(api_listing(sim, zoom_env, day)), day
    # Dagster 1.13 records a check run by an asset backfill without its partition (the day shows as
    # skipped), so the evaluation names its day itself.
    evaluations = [c["evaluation"] for c in graphql(url, CHECK_QUERY)["assetCheckExecutions"] if c["evaluation"]]
    assert sorted((e["description"][:10], e["success"]) for e in evaluations) == [(day, True) for day in sorted(days)]

    assert dev.poll() is None, f"dagster dev died; log: {dev.log_path}"
    elapsed = services.stop(dev)
    assert elapsed is not None and elapsed < 20, f"dagster dev ignored SIGTERM; log: {dev.log_path}"
    assert not services.group_alive(dev), "dagster dev left processes behind"
