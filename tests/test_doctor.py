"""`zoom-pipeline doctor`: each case a real run against real local servers (the Zoom simulator, a moto S3
server process, a Dagster instance in a temporary DAGSTER_HOME), in-process through `main` or as a user
runs it (`python -m zoom_pipeline.doctor`, `.venv/bin/zoom-pipeline doctor`)."""

import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest

from tests.helpers import REPO, SIM_SECRET, HttpForwarder, days_ago, free_port
from zoom_pipeline import doctor
from zoom_pipeline.accounts import DEFAULT_ACCOUNT
from zoom_pipeline.doctor import main
from zoom_pipeline.sources import OPERATION_LOGS

LINE = re.compile(r"(ok  |warn|FAIL) \S")
WRONG_SECRET = "wrong-secret-4c1d-DO-NOT-LEAK"
SETTINGS = ("ZOOM_ACCOUNTS_FILE", "ZOOM_LOGS_START_DATE", "ZOOM_ACCOUNT_STORE", "S3_PREFIX", "ACTIVITY_S3_PREFIX",
            "MANIFEST_S3_PREFIX", "UDM_S3_PREFIX", "ACTIVITY_MANIFEST_S3_PREFIX", "ACTIVITY_UDM_S3_PREFIX",
            "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "S3_SSE_KMS_KEY_ID", "DAGSTER_PG_HOST", "PAGE_SIZE", "TIMEOUT")


def run_doctor(*args: str) -> tuple[int, list[str]]:
    """The doctor in this process, as `zoom-pipeline doctor ARGS`: (exit status, lines)."""
    out = io.StringIO()
    code = main(["doctor", *args], out=out)
    text = out.getvalue()
    check_output(text)
    return code, text.splitlines()


def check_output(text: str) -> None:
    """Every line is a finding, and no secret shows."""
    assert text, "the doctor printed nothing"
    for line in text.splitlines():
        assert LINE.match(line), f"not a finding: {line!r}"
    for secret in (SIM_SECRET, WRONG_SECRET, "testing-secret-key", "testing-access-key"):
        assert secret not in text


def finding(lines: list[str], level: str, subject: str) -> str:
    """The one line of `level` whose subject starts with `subject` (after the level and any account)."""
    found = [line for line in lines if line[:4].strip() == level and line[5:].startswith(subject)]
    assert len(found) == 1, f"expected one {level} line for {subject!r}, got {found} in:\n" + "\n".join(lines)
    return found[0]


def levels(lines: list[str]) -> set[str]:
    return {line[:4].strip() for line in lines}


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    """A fresh instance with the project's dagster.yaml (pools default_limit 2)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def healthy(sim, zoom_env, bucket, dagster_home, monkeypatch):
    """A ready deployment: the simulator with yesterday's records, a bucket, an instance."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("S3_BUCKET", bucket)
    sim.generate_day(days_ago(1), 40)
    sim.generate_day(days_ago(1), 25, log="activities")
    return bucket


def all_keys(s3, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


# ---- a healthy deployment ------------------------------------------------------------------------------


def test_a_healthy_deployment_is_ok_and_costs_one_call_per_source(healthy, sim, s3):
    code, lines = run_doctor()

    assert code == 0 and "FAIL" not in levels(lines)
    assert "ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET mint an access token" in finding(
        lines, "ok", "zoom credentials")
    day = days_ago(1)
    assert (f"GET /v2/report/operationlogs?from={day}&to={day}&page_size=1 answered page 1 with 1 record and more "
            "pages to follow: the scope report:read:operation_logs:admin") in finding(
        lines, "ok", "zoom operation logs")
    assert "report:read:user_activities:admin" in finding(lines, "ok", "zoom sign-in/sign-out activity logs")
    probe = finding(lines, "ok", "s3 conditional writes")
    assert re.search(rf"the probe s3://{healthy}/zoom/operationlogs-manifests/zoom-pipeline-doctor/probe-[0-9a-f-]{{36}}"
                     r"\.txt was refused \(PreconditionFailed\)", probe)
    assert "The probe was deleted." in probe  # moto lets these credentials delete; the writer's policy would not
    assert f"s3://{healthy}/zoom/operationlogs/ is empty" in finding(lines, "ok", "feed prefix zoom/operationlogs/")
    assert f"s3://{healthy}/zoom/activitylogs/ is empty" in finding(lines, "ok", "feed prefix zoom/activitylogs/")
    assert "limit 2 (the instance's default_limit)" in finding(lines, "ok", "pool zoom_api")
    assert "schedules and sensors never fire" in finding(lines, "warn", "dagster daemon")
    assert "ZOOM_LOGS_START_DATE is unset" in finding(lines, "ok", "start date")
    assert "at least 360 report calls (2 sources x 180 days" in finding(lines, "ok", "backfill")
    # A few Zoom calls, and nothing left in the bucket (nothing ever under a feed prefix).
    stats = sim.stats()
    assert (stats["token_calls"], stats["report_calls"]) == (1, 2)
    assert stats["by_log"]["operationlogs"]["report_calls"] == stats["by_log"]["activities"]["report_calls"] == 1
    assert all_keys(s3, healthy) == []


def test_as_a_user_runs_it_python_m_and_the_console_script(healthy):
    scripts = [[sys.executable, "-m", "zoom_pipeline.doctor"],
               [str(REPO / ".venv" / "bin" / "zoom-pipeline"), "doctor"]]
    outputs = []
    for command in scripts:
        done = subprocess.run(command, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120)
        check_output(done.stdout)
        assert SIM_SECRET not in done.stderr
        assert done.returncode == 0, done.stdout + done.stderr
        outputs.append([line.split(":")[0] for line in done.stdout.splitlines()])
    assert outputs[0] == outputs[1]  # the same findings, in the same order
    assert "ok   zoom credentials" in outputs[0]


def test_a_daemon_heartbeat_and_a_pool_without_limit(healthy, dagster_home):
    import dagster as dg
    from dagster._daemon.types import DaemonHeartbeat

    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")  # no pools default_limit
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for kind in ("SCHEDULER", "SENSOR", "BACKFILL"):
            instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), kind, None, None))

    code, lines = run_doctor()

    assert code == 0
    assert "SCHEDULER, SENSOR, BACKFILL sent heartbeats" in finding(lines, "ok", "dagster daemon")
    assert "run `dagster instance concurrency set zoom_api 2` before the first backfill" in finding(
        lines, "warn", "pool zoom_api")


def test_without_a_bucket_or_an_instance_it_says_so_and_skips(healthy, monkeypatch, tmp_path):
    monkeypatch.delenv("S3_BUCKET")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("LOCAL_STORE_DIR", str(tmp_path / "store"))

    code, lines = run_doctor()

    assert code == 0
    assert f"days go to the local directory {tmp_path / 'store'} (LOCAL_STORE_DIR), not to a bucket" in finding(
        lines, "warn", "s3")
    assert "DAGSTER_HOME is not set" in finding(lines, "warn", "dagster instance")
    assert not [line for line in lines if line[5:].startswith(("pool", "feed prefix", "dagster daemon"))]


# ---- Zoom ----------------------------------------------------------------------------------------------


def test_a_wrong_secret_fails_naming_the_variables_never_the_secret(healthy, monkeypatch):
    monkeypatch.setenv("ZOOM_CLIENT_SECRET", WRONG_SECRET)
    command = [str(REPO / ".venv" / "bin" / "zoom-pipeline"), "doctor"]

    done = subprocess.run(command, cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    check_output(done.stdout)
    assert WRONG_SECRET not in done.stdout + done.stderr and SIM_SECRET not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert finding(lines, "FAIL", "zoom credentials") == (
        "FAIL zoom credentials: Zoom refused the OAuth credentials (HTTP 400: Invalid client_id or client_secret); "
        "check ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET of the Server-to-Server OAuth app.")
    assert "not checked: no access token" in finding(lines, "warn", "zoom operation logs")
    finding(lines, "ok", "s3 conditional writes")  # the other checks still ran


def test_a_missing_credential_variable_is_named_and_zoom_is_not_called(healthy, sim, monkeypatch):
    monkeypatch.delenv("ZOOM_CLIENT_SECRET")

    code, lines = run_doctor()

    assert code == 1
    assert "ZOOM_CLIENT_SECRET is not set" in finding(lines, "FAIL", "zoom credentials")
    assert sim.stats()["token_calls"] == 0


def test_a_missing_scope_fails_that_source_only(healthy, sim):
    sim.configure(scopes="report:read:operation_logs:admin")

    code, lines = run_doctor()

    assert code == 1
    finding(lines, "ok", "zoom operation logs")
    activities = finding(lines, "FAIL", "zoom sign-in/sign-out activity logs")
    assert "lacks a required scope" in activities
    assert "add the scope report:read:user_activities:admin (or report:read:admin)" in activities


def test_a_spent_daily_limit_says_when_it_resets(healthy, sim):
    sim.inject("rate_limit_daily", retry_after="2031-01-02T00:00:00Z")

    code, lines = run_doctor()

    assert code == 1
    assert "resets at 2031-01-02T00:00:00Z" in finding(lines, "FAIL", "zoom operation logs")
    assert "not checked: Zoom's daily API limit" in finding(lines, "FAIL", "zoom sign-in/sign-out activity logs")
    assert sim.stats()["report_calls"] == 1  # the second source was not asked


@pytest.mark.parametrize("setting, path, subject", [
    ("ZOOM_API_BASE_URL", "/v2", "zoom operation logs"),
    ("ZOOM_OAUTH_TOKEN_URL", "/oauth/token", "zoom credentials"),
])
def test_unreachable_zoom_says_host_and_why_within_seconds_and_s3_is_still_checked(healthy, monkeypatch, setting,
                                                                                     path, subject):
    port = free_port()  # nothing listens there
    monkeypatch.setenv(setting, f"http://127.0.0.1:{port}{path}")

    started = time.monotonic()
    code, lines = run_doctor()
    elapsed = time.monotonic() - started

    assert code == 1 and elapsed < 20
    line = finding(lines, "FAIL", subject)
    assert f"cannot reach 127.0.0.1:{port} ({setting} http://127.0.0.1:{port}{path}): connection refused" in line
    finding(lines, "ok", "s3 bucket")
    finding(lines, "ok", "s3 conditional writes")
    finding(lines, "ok", "feed prefix zoom/operationlogs/")


# ---- S3 ------------------------------------------------------------------------------------------------


@pytest.fixture
def ignoring_store(aws_env, monkeypatch):
    """A proxy on 127.0.0.1 in front of the S3 server that drops If-None-Match; AWS_ENDPOINT_URL points at it."""
    upstream = urlsplit(aws_env)
    proxy = HttpForwarder(upstream=(upstream.hostname, upstream.port), drop=("If-None-Match",))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    try:
        yield proxy.port
    finally:
        proxy.close()


def test_a_store_that_ignores_if_none_match_fails_with_why(healthy, ignoring_store, s3):
    code, lines = run_doctor()

    assert code == 1
    line = finding(lines, "FAIL", "s3 conditional writes")
    assert re.search(
        rf"127\.0\.0\.1:{ignoring_store} \(AWS_ENDPOINT_URL\) accepted a second write of the probe "
        rf"s3://{healthy}/zoom/operationlogs-manifests/zoom-pipeline-doctor/probe-[0-9a-f-]{{36}}\.txt despite "
        r"If-None-Match: \*, so it ignores create-only writes and exactly-once cannot hold there: two racing runs of "
        r"a day could replace each other's part under the same name, and a SecOps feed ingests a replaced object "
        r"again, whole\.", line)
    finding(lines, "ok", "s3 bucket")
    finding(lines, "ok", "feed prefix zoom/operationlogs/")
    assert all_keys(s3, healthy) == []  # deleted (these credentials may delete)


def test_unreachable_s3_says_host_and_why_and_zoom_is_still_checked(healthy, monkeypatch):
    port = free_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")

    started = time.monotonic()
    code, lines = run_doctor()

    assert code == 1 and time.monotonic() - started < 30
    assert f"cannot reach 127.0.0.1:{port} (AWS_ENDPOINT_URL): connection refused" in finding(
        lines, "FAIL", "s3 bucket")
    finding(lines, "ok", "zoom operation logs")


def lambda_key(day: str) -> str:
    return f"zoom/operationlogs/{day.replace('-', '/')}/zoom-operationlogs-{uuid.uuid4()}.json.gz"


def test_the_lambdas_leftovers_are_recognised_with_its_cursor_and_the_start_date(healthy, s3):
    cursor = days_ago(3)
    state = {"cursor_date": cursor, "next_page_token": None, "updated_at": "2026-01-01T00:00:00Z"}
    s3.put_object(Bucket=healthy, Key="zoom/operationlogs/state.json", Body=json.dumps(state).encode())
    for day in (days_ago(4), days_ago(3)):
        record = {"action": "Update", "operator": "admin@example.com", "time": f"{day}T08:00:00Z"}
        s3.put_object(Bucket=healthy, Key=lambda_key(day), Body=gzip.compress(json.dumps(record).encode() + b"n"))
    s3.put_object(Bucket=healthy, Key="zoom/activitylogs/notes.txt", Body=b"not a log")

    code, lines = run_doctor()

    assert code == 1
    state_line = [line for line in lines if "state.json" in line]
    assert len(state_line) == 1 and state_line[0].startswith("FAIL feed prefix zoom/operationlogs/: Google's Lambda")
    assert f"(cursor_date {cursor}: the days before it that the Lambda ran on reached SecOps in full" in state_line[0]
    assert "Replacing Google's Lambda" in state_line[0]
    objects = [line for line in lines if "objects of Google's Lambda" in line]
    assert len(objects) == 1 and objects[0].startswith("FAIL feed prefix zoom/operationlogs/: 2 objects")
    assert f"2 objects of Google's Lambda (zoom-operationlogs-<uuid4>.json.gz, written on 2 days: {days_ago(4)} to " \
           f"{cursor}" in objects[0]
    assert "1 object in s3://" in finding(lines, "FAIL", "feed prefix zoom/activitylogs/")
    assert "(zoom/activitylogs/notes.txt)" in finding(lines, "FAIL", "feed prefix zoom/activitylogs/")
    start = finding(lines, "warn", "start date")
    assert start.startswith(f"warn start date: the doctor would start at {cursor}, the cursor day of Google's Lambda")
    assert f"set ZOOM_LOGS_START_DATE={cursor} before the first backfill" in start
    assert f"{days_ago(3)} to today" in finding(lines, "ok", "backfill")
    # Nothing written or removed under the feed prefix.
    assert len([k for k in all_keys(s3, healthy) if k.startswith("zoom/operationlogs/")]) == 3


def test_the_lambdas_cursor_day_chosen_as_the_start_date_is_ok(healthy, s3, monkeypatch):
    cursor = days_ago(3)
    state = json.dumps({"cursor_date": cursor}).encode()
    s3.put_object(Bucket=healthy, Key="zoom/operationlogs/state.json", Body=state)
    monkeypatch.setenv("ZOOM_LOGS_START_DATE", cursor)

    code, lines = run_doctor()

    assert code == 1  # state.json still lies in the feed prefix
    assert f"ZOOM_LOGS_START_DATE={cursor} chooses completeness" in finding(lines, "ok", "start date")


def test_old_lambda_objects_without_its_state_are_a_warning(healthy, s3, monkeypatch):
    """A Lambda stopped days ago whose state.json was moved out: its objects were ingested once and stay
    harmless. moto stamps LastModified now, so the listing is given as the Lambda would have left it."""
    old = datetime.now(UTC) - timedelta(days=3)
    keys = [{"Key": lambda_key(days_ago(n)), "LastModified": old} for n in (5, 4)]
    monkeypatch.setattr(doctor, "_list", lambda client, bucket, prefix: iter(keys))
    out = io.StringIO()
    report = doctor.Report(out)
    setup = doctor.AccountSetup(DEFAULT_ACCOUNT, None, None, bucket=healthy,
                                prefixes={"S3_PREFIX": "zoom/operationlogs/"})

    doctor._check_feed_prefix(report, setup, OPERATION_LOGS, s3, os.environ)

    assert out.getvalue().startswith(
        f"warn feed prefix zoom/operationlogs/: 2 old objects of Google's Lambda (zoom-operationlogs-<uuid4>.json.gz, "
        f"written {days_ago(5)} to {days_ago(4)}, none in the last day) remain")
    assert not report.failed


# ---- several accounts ----------------------------------------------------------------------------------


def test_two_accounts_get_findings_each(healthy, sim, monkeypatch, tmp_path):
    beta = sim.add_account("beta", client_secret=SIM_SECRET + "-beta", scopes="report:read:operation_logs:admin")
    path = tmp_path / "accounts.yaml"
    path.write_text(f"""
accounts:
  acme:
    api_base_url: {sim.base_url}
    oauth_token_url: {sim.token_url}
  beta:
    api_base_url: {sim.base_url}
    oauth_token_url: {sim.token_url}
    daily_request_budget: 300
""")
    monkeypatch.setenv("ZOOM_ACCOUNTS_FILE", str(path))
    for name, creds in (("ACME", sim.account()), ("BETA", beta)):
        monkeypatch.setenv(f"ZOOM_{name}_ACCOUNT_ID", creds.account_id)
        monkeypatch.setenv(f"ZOOM_{name}_CLIENT_ID", creds.client_id)
        monkeypatch.setenv(f"ZOOM_{name}_CLIENT_SECRET", creds.client_secret)

    code, lines = run_doctor()

    assert code == 1
    assert "2 accounts (acme, beta)" in finding(lines, "ok", "configuration")
    assert "ZOOM_ACME_ACCOUNT_ID, ZOOM_ACME_CLIENT_ID, ZOOM_ACME_CLIENT_SECRET" in finding(
        lines, "ok", "acme: zoom credentials")
    finding(lines, "ok", "beta: zoom credentials")
    finding(lines, "ok", "acme: zoom sign-in/sign-out activity logs")
    assert "report:read:user_activities:admin" in finding(lines, "FAIL", "beta: zoom sign-in/sign-out activity logs")
    for account in ("acme", "beta"):
        finding(lines, "ok", f"{account}: s3 conditional writes")
        assert f"/zoom/{account}/operationlogs/ is empty" in finding(
            lines, "ok", f"{account}: feed prefix zoom/{account}/operationlogs/")
        finding(lines, "ok", f"{account}: feed prefix zoom/{account}/activitylogs/")
        assert "limit 2" in finding(lines, "ok", f"{account}: pool zoom_api_{account}")
    assert "daily_request_budget of account beta" in finding(lines, "ok", "beta: backfill")
    assert SIM_SECRET + "-beta" not in "\n".join(lines)
    assert (sim.stats(account="beta")["report_calls"], sim.stats()["report_calls"]) == (2, 2)
