"""End to end on Dagster's production engine: deploy/dagster.yaml on a real PostgreSQL, dagster-daemon,
a job backfill of many days queued through the `zoom_api` pool, against the local S3 server and simulator."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import REPO, api_listing, canonical, days_ago, records_of, s3_day

BIN = Path(sys.executable).parent
DAYS = [days_ago(n) for n in range(2, 12)]  # 10 finished days, each its own run
RECORDS_PER_DAY = 650  # three pages of 300
POOL_LIMIT = 2
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def dagster_cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "dagster"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def wait_for_runs(instance: dg.DagsterInstance, job_name: str, count: int, timeout: float) -> list[dg.DagsterRun]:
    deadline = time.monotonic() + timeout
    runs: list[dg.DagsterRun] = []
    while time.monotonic() < deadline:
        runs = instance.get_runs(dg.RunsFilter(job_name=job_name))
        if len(runs) >= count and all(run.status in FINISHED for run in runs):
            return runs
        time.sleep(1)
    states = sorted(f"{run.tags.get('dagster/partition')}={run.status.value}" for run in runs)
    pytest.fail(f"{len(runs)}/{count} runs after {timeout:.0f}s, not all finished: {states}")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    current = peak = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.daemon
def test_daemon_backfill_on_postgres_lands_every_day_exactly_within_the_pool(
    postgres, sim, zoom_env, bucket, s3, tmp_path, monkeypatch, services
):
    for day in DAYS:
        sim.generate_day(day, RECORDS_PER_DAY, seed=int(day[-2:]))
    # Slow report calls keep each run inside Zoom for seconds, longer than a run takes to start, so the
    # API windows of runs overlap as far as the pool lets them.
    sim.inject("slow", times=len(DAYS) * 3, seconds=2.0)

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    for key, value in {**postgres, "DAGSTER_HOME": str(home), "S3_BUCKET": bucket}.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)  # ZOOM_*, AWS_* (fake keys, local endpoint), DAGSTER_PG_*, DAGSTER_HOME, S3_BUCKET

    # Before the first backfill, so no run waits on a pool without a limit.
    limit = dagster_cli(["instance", "concurrency", "set", "zoom_api", str(POOL_LIMIT)], env)
    assert limit.returncode == 0, limit.stderr

    daemon = services.start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env=env, name="daemon")
    backfill = dagster_cli(
        ["job", "backfill", "-j", "zoom_operation_logs_job", "--partitions", ",".join(DAYS), "--noprompt"]
        + ["-w", "workspace.yaml"],
        env,
    )
    assert backfill.returncode == 0, backfill.stdout + backfill.stderr

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = wait_for_runs(instance, "zoom_operation_logs_job", len(DAYS), timeout=300)
        failed = [run.run_id for run in runs if run.status != dg.DagsterRunStatus.SUCCESS]
        assert not failed, f"failed runs: {failed}; daemon log: {daemon.log_path}"
        assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(DAYS)
        records = instance.get_run_records(dg.RunsFilter(job_name="zoom_operation_logs_job"))
        overlap = max_overlap([(r.start_time, r.end_time) for r in records])
        materialized = instance.get_materialized_partitions(dg.AssetKey("zoom_operation_logs"))

    # Each run mints its own token: tokens in use at once = runs calling Zoom at once.
    stats = sim.stats()
    assert 1 <= stats["max_concurrent_tokens"] <= POOL_LIMIT, stats
    assert overlap == POOL_LIMIT, "the backfill should fill the pool, and never exceed it"
    assert materialized == set(DAYS)
    for day in DAYS:
        assert records_of(s3_day(s3, bucket, day)) == canonical(api_listing(sim, zoom_env, day)), day
    print(f"runs in flight at most: {overlap}; runs calling Zoom at once at most: {stats['max_concurrent_tokens']}")

    # The daemon stops on SIGTERM (not only SIGINT) because it starts with default dispositions.
    assert daemon.poll() is None, f"dagster-daemon died; log: {daemon.log_path}"
    assert services.stop(daemon) is not None, f"dagster-daemon ignored SIGTERM; log: {daemon.log_path}"
