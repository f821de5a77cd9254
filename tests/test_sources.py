"""Both Zoom sources through the day job the schedule and the sensor run: each lands exactly under its own
prefixes and maps to its UDM, a source the app may not read fails alone, and odd records are kept."""


import os
import subprocess
import sys

import dagster as dg
import orjson
import pytest

from tests.helpers import SIM_SECRET, api_listing, canonical, days_ago, records_of, s3_day, sim_log
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES


@pytest.fixture
def defs(zoom_env, bucket, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", bucket)
    return build_defs()


def run_day(defs, day: str) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("zoom_operation_logs_job")
    with dg.instance_for_test() as instance:
        return job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)


def udm_events(s3, bucket: str, day: str, source) -> list[dict]:
    objects = s3_day(s3, bucket, day, prefix=source.udm_prefix[1])
    return [orjson.loads(line) for lines in objects.values() for line in lines[:-1]]


def test_one_run_a_day_collects_every_source_into_its_own_prefixes(sim, zoom_env, bucket, s3, defs):
    day = days_ago(2)
    sim.generate_day(day, 700, seed=31, twins=2)
    sim.generate_day(day, 650, seed=32, twins=2, log=sim_log(ACTIVITY_LOGS))
    result = run_day(defs, day)
    assert result.success
    for source in SOURCES:
        stored = s3_day(s3, bucket, day, prefix=source.prefix[1])
        assert records_of(stored) == canonical(api_listing(sim, zoom_env, day, source)), source.name
        assert all(f"/{source.part_prefix}" in key for key in stored)
        assert len(udm_events(s3, bucket, day, source)) == sum(records_of(stored).values())
    kinds = {event["metadata"]["eventType"] for event in udm_events(s3, bucket, day, ACTIVITY_LOGS)}
    assert {"USER_LOGIN", "USER_LOGOUT"} <= kinds
    assert all(e["metadata"]["logType"] == "ZOOM_OPERATION_LOGS" for e in udm_events(s3, bucket, day, ACTIVITY_LOGS))
    # One token for the run, both sources' calls on the same account pace.
    assert sim.stats()["tokens_issued"] == 1 + len(SOURCES)  # + api_listing's own above


def test_a_missing_activity_scope_fails_only_the_activity_asset(sim, zoom_env, bucket, s3, defs):
    day = days_ago(3)
    sim.generate_day(day, 120, seed=33)
    sim.generate_day(day, 80, seed=34, log=sim_log(ACTIVITY_LOGS))
    sim.configure(scopes=OPERATION_LOGS.scope)  # an app made for Google's guide: operation logs only
    result = run_day(defs, day)

    assert not result.success
    steps = {e.step_key: e for e in result.all_events if e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")}
    assert steps[OPERATION_LOGS.name].event_type_value == "STEP_SUCCESS"
    assert steps[OPERATION_LOGS.udm_name].event_type_value == "STEP_SUCCESS"
    assert steps[ACTIVITY_LOGS.name].event_type_value == "STEP_FAILURE"
    message = steps[ACTIVITY_LOGS.name].event_specific_data.error.message
    assert ACTIVITY_LOGS.scope in message and SIM_SECRET not in message
    assert [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"] == []  # fatal: no retry
    assert sum(records_of(s3_day(s3, bucket, day)).values()) == 120
    assert s3_day(s3, bucket, day, prefix=ACTIVITY_LOGS.prefix[1]) == {}


def test_odd_activity_records_are_stored_intact_and_counted(sim, zoom_env, bucket, s3, defs):
    day = days_ago(4)
    odd = [
        {"time": f"{day}T10:00:00Z", "type": "Sign in", "ip_address": "198.51.100.7", "client_type": "Mac",
         "version": "6.2.5.43211"},  # no email
        {"email": "eve@example.com", "time": f"{day}T10:00:01Z", "type": "Sign in", "ip_address": "not-an-ip",
         "client_type": "Browser", "version": "-"},
        {"email": "eve@example.com", "type": "Sign out", "ip_address": "2001:db8::7", "client_type": "iOS",
         "version": "6.1.0.1"},  # no time
        {"email": "ann@example.com", "time": f"{day}T10:00:02Z", "type": "Password reset", "ip_address": "192.0.2.1",
         "client_type": "Windows", "version": "6.2.0.1"},  # a type Zoom did not document
    ]
    sim.set_day(day, odd, log=sim_log(ACTIVITY_LOGS))
    result = run_day(defs, day)
    assert result.success
    stored = s3_day(s3, bucket, day, prefix=ACTIVITY_LOGS.prefix[1])
    assert records_of(stored) == canonical(odd)
    raw = next(m for m in result.asset_materializations_for_node(ACTIVITY_LOGS.name))
    assert raw.metadata["odd_records"].value == 1  # the one without a time
    mapped = next(m for m in result.asset_materializations_for_node(ACTIVITY_LOGS.udm_name))
    problems = mapped.metadata["parse_problems"].value
    assert problems["email_missing"] == problems["ip_invalid"] == problems["time_missing"] == 1
    assert problems["type_unknown"] == 1
    events = udm_events(s3, bucket, day, ACTIVITY_LOGS)
    assert sorted(e["metadata"]["eventType"] for e in events).count("USER_UNCATEGORIZED") == 1
    assert len(events) == len(odd)


@pytest.mark.io  # starts a process of its own
def test_the_demo_collects_both_sources_and_ends_with_how_to_open_the_ui(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOOM_", "S3_", "DAGSTER_", "AWS_"))}
    done = subprocess.run([sys.executable, "-m", "zoom_pipeline.demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for source in SOURCES:
        assert done.stdout.count(f" {source.title}: ") == 3, done.stdout
        assert (tmp_path / ".zoom_demo" / "store" / source.prefix[1]).is_dir()
    assert done.stdout.rstrip().splitlines()[-1] == "and open http://127.0.0.1:3000 (Ctrl-C stops it)."
    assert "Warning" not in done.stderr, done.stderr[-3000:]  # a newcomer's first run reads cleanly
