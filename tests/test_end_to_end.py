"""The pipeline as a user runs it: `dagster asset materialize` in its own process, against real servers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.helpers import REPO, SIM_SECRET, api_listing, canonical, days_ago, records_of, s3_day

DAGSTER = str(Path(sys.executable).with_name("dagster"))


@pytest.fixture
def cli_env(zoom_env, aws_env, bucket, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # Create the instance's storage now: two CLI processes racing to create it is a test artifact.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.get_runs(limit=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOOM_", "S3_", "DAGSTER_"))}
    return {**env, **zoom_env, "S3_BUCKET": bucket, "DAGSTER_HOME": str(home), "AWS_ENDPOINT_URL": aws_env}


def materialize_cmd(day: str) -> list[str]:
    return [DAGSTER, "asset", "materialize", "-m", "zoom_pipeline.definitions",
            "--select", "zoom_operation_logs", "--partition", day]


def run_cli(day: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        materialize_cmd(day), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def start_cli(day: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        materialize_cmd(day), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )


def test_cli_materializes_one_day_exactly(sim, zoom_env, cli_env, bucket, s3):
    day = days_ago(1)
    sim.generate_day(day, 2500, seed=11, twins=4)
    done = run_cli(day, cli_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert records_of(s3_day(s3, bucket, day)) == canonical(api_listing(sim, zoom_env, day))
    assert SIM_SECRET not in done.stdout + done.stderr


def test_bad_credentials_fail_fast_clearly_and_never_show_the_secret(sim, cli_env, bucket, s3):
    day = days_ago(1)
    sim.generate_day(day, 100)
    wrong_secret = "wrong-secret-value-that-must-not-leak-91c2"
    done = run_cli(day, {**cli_env, "ZOOM_CLIENT_SECRET": wrong_secret})
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Zoom refused the OAuth credentials" in output and "ZOOM_CLIENT_SECRET" in output
    assert wrong_secret not in output and SIM_SECRET not in output
    assert sim.stats()["token_calls"] == 1  # no retry storm
    assert sim.stats()["report_calls"] == 0
    assert s3_day(s3, bucket, day) == {}


def test_partition_key_that_is_not_a_date_is_refused(cli_env):
    done = run_cli("2026-13-45", cli_env)
    assert done.returncode != 0
    assert "2026-13-45" in done.stdout + done.stderr


def test_killed_run_leaves_nothing_and_the_rerun_is_exact(sim, zoom_env, cli_env, bucket, s3):
    day = days_ago(2)
    sim.generate_day(day, 6000, seed=12, twins=3)
    expected = canonical(api_listing(sim, zoom_env, day))
    sim.reset_stats()
    sim.inject("slow", times=1000, seconds=0.2)  # a slow API, so the kill lands mid-pass
    proc = start_cli(day, cli_env)
    try:
        deadline = time.monotonic() + 90
        while sim.stats()["report_calls"] < 5:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert s3_day(s3, bucket, day) == {}  # no partial object

    sim.clear_faults()
    done = run_cli(day, cli_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert records_of(s3_day(s3, bucket, day)) == expected


def test_two_concurrent_runs_of_one_day_store_it_once(sim, zoom_env, cli_env, bucket, s3):
    day = days_ago(3)
    sim.generate_day(day, 3000, seed=13, twins=5)
    expected = canonical(api_listing(sim, zoom_env, day))
    sim.reset_stats()
    sim.inject("slow", times=1000, seconds=0.4)  # ~4 s of paging each, so the two passes overlap
    first, second = start_cli(day, cli_env), start_cli(day, cli_env)
    outputs = [p.communicate(timeout=180)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [out[-4000:] for out in outputs]
    objects = s3_day(s3, bucket, day)
    assert records_of(objects) == expected
    assert len(objects) == 1
    # Both passes were paging at once (sharing the account's one token), so both read the day before either
    # wrote and built the same part, byte for byte: the second conditional write found its own bytes under
    # the key, and wrote nothing more.
    assert sim.stats()["max_in_flight"] == 2 and sim.stats()["token_calls"] == 1, sim.stats()
