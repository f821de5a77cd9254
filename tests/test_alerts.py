"""Alerts on a failed day (zoom_pipeline/alerts.py): a receiver on 127.0.0.1 stands in for the chat's incoming
webhook. The sensors are ticked in-process (as the daemon's iteration calls them) for their logic, and once
under the real `dagster-daemon` process."""

import gzip
import json
import logging
import os
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType
from dagster._core.scheduler.instigation import InstigatorType

from tests.helpers import REPO, SIM_SECRET, days_ago, free_port, s3_day
from zoom_pipeline import alerts, assets
from zoom_pipeline.alerts import CHECK_ALERT_SENSOR_NAME, RUN_FAILURE_ALERT_SENSOR_NAME, Webhook, build_alert_sensors
from zoom_pipeline.config import load_accounts
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import SOURCES
from zoom_pipeline.zoom_client import ZoomClient

BIN = Path(sys.executable).parent
WEBSERVER = "http://dagster.example.test:3000"
HOOK_PATH = "/services/T0ALERTS/B0ALERTS/hook-path-is-a-secret-9c1e"


class Receiver:
    """A chat's incoming webhook: records each POST body; answers 500 to the next `failing` posts."""

    def __init__(self):
        self.posts: list[dict] = []
        self.raw: list[bytes] = []
        self.paths: list[str] = []
        self.failing = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.raw.append(body)
                receiver.paths.append(self.path)
                if receiver.failing > 0:
                    receiver.failing -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"upstream trouble")
                    return
                receiver.posts.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{HOOK_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=10)

    def texts(self) -> list[str]:
        return [post["text"] for post in self.posts]


@pytest.fixture
def receiver():
    running = Receiver()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def alert_env(zoom_env, bucket, receiver, monkeypatch):
    """The pipeline against the simulator, with alerts to the receiver; Zoom's 500s fail fast."""
    for name, value in {"S3_BUCKET": bucket, "ZOOM_ACCOUNT_STORE": "memory", "ZOOM_MAX_REQUESTS_PER_SECOND": "1000",
                        "ALERT_WEBHOOK_URL": receiver.url, "DAGSTER_WEBSERVER_URL": WEBSERVER + "/"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(ZoomClient, "_sleep_backoff", lambda self, *args, **kwargs: None)
    # A named account's assets are built anew (conftest's fast_step_retries covers the single account's).
    monkeypatch.setattr(assets, "RETRY", dg.RetryPolicy(max_retries=2, delay=0.01))
    monkeypatch.setattr(alerts, "POST_PAUSES_SECONDS", (0.0, 0.0))
    return dict(os.environ)


def tick(defs: dg.Definitions, instance, name: str, cursor: str | None):
    repo = defs.get_repository_def()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repo)
    return repo.get_sensor_def(name).evaluate_tick(context)


class Sensor:
    """One alert sensor ticked in-process, its cursor carried from tick to tick."""

    def __init__(self, defs, instance, name):
        self.defs, self.instance, self.name, self.cursor = defs, instance, name, None

    def __call__(self):
        result = tick(self.defs, self.instance, self.name, self.cursor)
        assert not result.run_requests
        self.cursor = result.cursor
        return result


def fail_every_report_call(sim):
    for source in SOURCES:
        sim.inject("server_error", times=1000, log=source.path.rsplit("/", 1)[-1])


def run_day_job(defs, instance, day: str, **kwargs) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("zoom_operation_logs_job")
    return job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False, **kwargs)


def collect_a_day(sim, defs, instance, day: str | None = None) -> None:
    """One complete pass on the instance: the freshness checks judge only an instance that collected a day."""
    day = day or days_ago(8)
    sim.generate_day(day, 5, seed=1)
    assert run_day_job(defs, instance, day).success


def assert_no_secret(receiver: Receiver, *logs: str) -> None:
    said = b"\n".join(receiver.raw).decode() + "\n".join(logs)
    for secret in (SIM_SECRET, HOOK_PATH, "hook-path-is-a-secret", receiver.url, "testing-secret-key"):
        assert secret not in said, f"{secret!r} leaked"
    assert all(path == HOOK_PATH for path in receiver.paths)  # it was used, only as the address


# ---- in-process ticks -------------------------------------------------------------------------------


def test_a_failed_day_posts_one_message_with_source_day_reason_and_link_even_after_retries(
    sim, alert_env, receiver, caplog, capfd
):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="urllib3")  # its request lines carry the path: filtered
    day = days_ago(5)
    defs = build_defs()
    with dg.instance_for_test() as instance:
        runs = Sensor(defs, instance, RUN_FAILURE_ALERT_SENSOR_NAME)
        assert "Started" in runs().skip_message  # the first tick starts after what has already failed
        fail_every_report_call(sim)
        first = run_day_job(defs, instance, day)
        assert not first.success
        retries = instance.get_records_for_run(first.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY).records
        assert len(retries) >= 2, "the steps should have been retried before the run failed"

        result = runs()
        assert "1 new alert(s) about failed runs, 1 posted" in result.skip_message
        [post] = receiver.posts
        text = post["text"]
        print("PAYLOAD", json.dumps(post))
        assert text.splitlines()[0] == "Zoom pipeline: a run failed"
        assert "Account" not in text  # a deployment without an accounts file has one, unnamed account
        assert ("Sources: operation logs (zoom_operation_logs), sign-in/sign-out activity logs (zoom_activity_logs)"
                in text)
        assert f"Day: {day}\n" in text
        [reason] = [line for line in text.splitlines() if line.startswith("Reason: ")]
        assert "HTTP 500 from Zoom." in reason and reason.endswith(".") and reason.count(". ") == 0, reason
        assert text.splitlines()[-1] == f"Run: {WEBSERVER}/runs/{first.run_id}"
        [block] = post["blocks"]
        assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
        assert f"<{WEBSERVER}/runs/{first.run_id}|Open the run in Dagster>" in block["text"]["text"]

        # A re-execution of the day that fails again: no second message.
        second = run_day_job(defs, instance, day, tags={"dagster/parent_run_id": first.run_id})
        assert not second.success
        again = runs()
        assert "0 new alert(s) about failed runs" in again.skip_message
        assert len(receiver.posts) == 1
        assert runs().skip_message.startswith("0 new alert(s)")  # nothing pending, nothing new

        # Another day is another alert, whichever job ran it (here the asset page's implicit asset job).
        other = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            partition_key=days_ago(6), instance=instance, raise_on_error=False,
            asset_selection=[dg.AssetKey(source.name) for source in SOURCES])
        assert not other.success and other.dagster_run.job_name == "__ASSET_JOB"
        runs()
        assert len(receiver.posts) == 2 and f"Day: {days_ago(6)}" in receiver.posts[1]["text"]
        assert other.run_id in receiver.posts[1]["text"]
    assert_no_secret(receiver, caplog.text, *capfd.readouterr())
    assert any("***" in r.getMessage() for r in caplog.records if r.name.startswith("urllib3")), \
        "urllib3's request lines were expected at DEBUG, with the path masked"


def test_a_failing_error_check_posts_once_and_a_warning_does_not(sim, alert_env, receiver, tmp_path, monkeypatch,
                                                                  zoom_env, capfd):
    """With an accounts file the account is named. Once a day was collected, the freshness job's checks fail
    with ERROR (yesterday has not landed and the deadline, 00:00, has passed) and WARN (days without a complete
    pass, none leaving Zoom's window soon: the account starts 30 days ago)."""
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text(f'accounts:\n  acme:\n    logs_start_date: "{days_ago(30)}"\n')
    monkeypatch.setenv("ZOOM_ACCOUNTS_FILE", str(accounts))
    monkeypatch.setenv("ZOOM_FRESHNESS_DEADLINE_HOUR", "0")
    for what in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.setenv(f"ZOOM_ACME_{what}", zoom_env[f"ZOOM_{what}"])
    defs = build_defs()
    job = defs.resolve_job_def("zoom_freshness_job")
    with dg.instance_for_test() as instance:
        collect_a_day(sim, defs, instance)
        checks = Sensor(defs, instance, CHECK_ALERT_SENSOR_NAME)
        checks()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        evaluations = {(e.check_name, e.severity, e.passed) for e in result.get_asset_check_evaluations()}
        assert evaluations == {("yesterday_landed_by_deadline", dg.AssetCheckSeverity.ERROR, False),
                               ("every_day_in_zoom_window_collected", dg.AssetCheckSeverity.WARN, False)}

        assert "1 new alert(s) about failed checks, 1 posted" in checks().skip_message
        [post] = receiver.posts
        print("PAYLOAD", json.dumps(post))
        lines = post["text"].splitlines()
        assert lines[0] == "Zoom pipeline: check yesterday_landed_by_deadline failed"
        assert lines[1] == "Account: acme"
        assert lines[2] == ("Sources: operation logs (acme/zoom_operation_logs), sign-in/sign-out activity logs "
                            "(acme/zoom_activity_logs)")
        assert lines[3] == f"Day: {days_ago(1)}"
        assert lines[4].startswith(f"Reason: {days_ago(1)} has not landed and its 00:00 UTC deadline has passed")
        assert lines[5] == f"Run: {WEBSERVER}/runs/{result.run_id}"
        assert "every_day_in_zoom_window_collected" not in json.dumps(receiver.posts)  # WARN: no alert

        # The next hourly evaluation fails the same way: nothing new.
        job.execute_in_process(instance=instance, raise_on_error=False)
        checks()
        assert len(receiver.posts) == 1

        # Whoever wants warnings too can build the sensors so.
        warn_repo = dg.Definitions(sensors=build_alert_sensors(load_accounts(), alert_on_warn=True,
                                                               prefix="warn_")).get_repository_def()
        context = dg.build_sensor_context(instance=instance, repository_def=warn_repo)
        cursor = warn_repo.get_sensor_def("warn_" + CHECK_ALERT_SENSOR_NAME).evaluate_tick(context).cursor
        job.execute_in_process(instance=instance, raise_on_error=False)
        context = dg.build_sensor_context(instance=instance, repository_def=warn_repo, cursor=cursor)
        warn_repo.get_sensor_def("warn_" + CHECK_ALERT_SENSOR_NAME).evaluate_tick(context)
        titles = sorted(post["text"].splitlines()[0] for post in receiver.posts[1:])
        assert titles == ["Zoom pipeline: check every_day_in_zoom_window_collected failed (warning)",
                          "Zoom pipeline: check yesterday_landed_by_deadline failed"]
    assert_no_secret(receiver, *capfd.readouterr())


def test_the_ride_along_check_alerts_on_an_error_of_a_day_and_not_on_a_warning(sim, alert_env, receiver, s3,
                                                                                 bucket):
    """day_matches_zoom from the asset page's runs (the implicit asset job): a day whose first pass could not
    prove a twin pair cut by a page boundary warns (records await confirmation: no alert); a day with a part
    added outside the pipeline fails with ERROR (one alert, not repeated by the next run of that day)."""
    warned, damaged = days_ago(9), days_ago(10)
    records = sim.make_records(warned, 600, seed=730, start_time="20:00:00")
    records[300] = dict(records[299])  # a twin pair the first page boundary cuts
    sim.set_day(warned, records)
    sim.generate_day(damaged, 40, seed=6)
    defs = build_defs()
    asset_job = defs.resolve_implicit_global_asset_job_def()
    raw = dg.AssetKey(SOURCES[0].name)

    def materialize(day):
        result = asset_job.execute_in_process(partition_key=day, instance=instance, asset_selection=[raw])
        [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "day_matches_zoom"]
        return result, evaluation

    with dg.instance_for_test() as instance:
        checks = Sensor(defs, instance, CHECK_ALERT_SENSOR_NAME)
        checks()
        _, evaluation = materialize(warned)
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        _, evaluation = materialize(damaged)
        assert evaluation.passed
        assert checks().skip_message.startswith("0 new alert(s)") and not receiver.posts

        # A part added outside the pipeline: one more copy of a stored record.
        [(key, lines)] = s3_day(s3, bucket, damaged).items()
        s3.put_object(Bucket=bucket, Key=key.replace("-000001.", "-000002."), Body=gzip.compress(lines[0] + b"\n"))
        result, evaluation = materialize(damaged)
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        checks()
        materialize(damaged)  # the same damage, found again
        checks()
    [post] = receiver.posts
    lines = post["text"].splitlines()
    assert lines[:3] == ["Zoom pipeline: check day_matches_zoom failed", "Source: operation logs (zoom_operation_logs)",
                         f"Day: {damaged}"]
    assert lines[3].startswith(f"Reason: {damaged} drifted from Zoom: 0 listed copies are not stored") and \
        "1 stored copies are more than Zoom lists" in lines[3] and lines[3].endswith(".")
    assert lines[4:] == [f"Run: {WEBSERVER}/runs/{result.run_id}"]
    assert_no_secret(receiver)


def test_a_failed_run_of_a_named_account_names_it(sim, alert_env, receiver, tmp_path, monkeypatch, zoom_env, capfd):
    """With an accounts file: the account is named, each source by its own key; here Zoom refuses the account's
    credentials (a dg.Failure, not retried), and the reason says so without any of them."""
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("accounts:\n  acme: {}\n")
    monkeypatch.setenv("ZOOM_ACCOUNTS_FILE", str(accounts))
    monkeypatch.setenv("ZOOM_ACME_ACCOUNT_ID", zoom_env["ZOOM_ACCOUNT_ID"])
    monkeypatch.setenv("ZOOM_ACME_CLIENT_ID", zoom_env["ZOOM_CLIENT_ID"])
    monkeypatch.setenv("ZOOM_ACME_CLIENT_SECRET", "acme-wrong-client-secret-5d2b")
    day = days_ago(4)
    defs = build_defs()
    with dg.instance_for_test() as instance:
        runs = Sensor(defs, instance, RUN_FAILURE_ALERT_SENSOR_NAME)
        runs()
        run = run_day_job(defs, instance, day, tags={"zoom/account": "acme"})
        assert not run.success
        assert not instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY).records
        runs()
    [post] = receiver.posts
    print("PAYLOAD", json.dumps(post))
    lines = post["text"].splitlines()
    assert lines[1:4] == ["Account: acme", "Sources: operation logs (acme/zoom_operation_logs), sign-in/sign-out "
                          "activity logs (acme/zoom_activity_logs)", f"Day: {day}"]
    assert lines[4].startswith("Reason: ") and "credentials" in lines[4] and "Error:" not in lines[4], lines[4]
    assert_no_secret(receiver, *capfd.readouterr())
    assert "acme-wrong-client-secret" not in json.dumps(receiver.posts)


def test_a_post_that_fails_is_kept_in_the_cursor_and_posted_on_the_next_tick(sim, alert_env, receiver,
                                                                           monkeypatch, capfd):
    monkeypatch.setenv("ZOOM_FRESHNESS_DEADLINE_HOUR", "0")
    defs = build_defs()
    with dg.instance_for_test() as instance:
        collect_a_day(sim, defs, instance)
        checks = Sensor(defs, instance, CHECK_ALERT_SENSOR_NAME)
        checks()
        defs.resolve_job_def("zoom_freshness_job").execute_in_process(instance=instance, raise_on_error=False)
        receiver.failing = 3  # every try of the first tick
        result = checks()
        assert "2 new alert(s) about failed checks, 0 posted; 2 kept for the next tick" in result.skip_message
        assert "HTTP 500 from 127.0.0.1 (upstream trouble)" in result.skip_message
        assert len(json.loads(checks.cursor)["pending"]) == 2 and not receiver.posts
        err = capfd.readouterr().err  # the tick's log (Dagster's console logger here)
        [warning] = [line for line in err.splitlines() if "Posting an alert" in line]
        assert "2 alert(s) are kept and posted again on the next tick" in warning

        later = checks()
        assert "0 new alert(s) about failed checks, 2 posted." == later.skip_message
        assert sorted(p["text"].splitlines()[0] for p in receiver.posts) == [
            "Zoom pipeline: check every_day_in_zoom_window_collected failed",
            "Zoom pipeline: check yesterday_landed_by_deadline failed",
        ]
        assert not json.loads(checks.cursor)["pending"]
    assert_no_secret(receiver, err, *capfd.readouterr())


def test_an_unreachable_webhook_is_reported_without_its_url(sim, alert_env, receiver, monkeypatch, caplog):
    receiver.stop()  # nothing listens there any more
    monkeypatch.setattr(alerts, "POST_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setenv("ZOOM_FRESHNESS_DEADLINE_HOUR", "0")
    defs = build_defs()
    with dg.instance_for_test() as instance:
        collect_a_day(sim, defs, instance)
        checks = Sensor(defs, instance, CHECK_ALERT_SENSOR_NAME)
        checks()
        defs.resolve_job_def("zoom_freshness_job").execute_in_process(instance=instance, raise_on_error=False)
        result = checks()
    assert "ConnectionError reaching 127.0.0.1" in result.skip_message, result.skip_message
    assert len(json.loads(checks.cursor)["pending"]) == 2
    assert HOOK_PATH not in caplog.text and "hook-path" not in result.skip_message


# ---- definitions -------------------------------------------------------------------------------------


def test_the_webhook_url_is_checked_when_the_definitions_load_and_never_shown(zoom_env, monkeypatch):
    assert build_alert_sensors(env={}) == []
    names = {s.name for s in build_defs({**zoom_env}).get_repository_def().sensor_defs}
    assert not {RUN_FAILURE_ALERT_SENSOR_NAME, CHECK_ALERT_SENSOR_NAME} & names  # unset: no alert sensors

    secret = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
    sensors = build_alert_sensors(env={"ALERT_WEBHOOK_URL": secret})
    assert [s.name for s in sensors] == [RUN_FAILURE_ALERT_SENSOR_NAME, CHECK_ALERT_SENSOR_NAME]
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in sensors)
    assert all("XXXXsecret" not in (s.description or "") + repr(s.metadata) for s in sensors)
    assert repr(Webhook(secret)) == "Webhook(https://hooks.slack.com/***)"

    for bad in ("hooks.slack.com/services/T000/B000/XXXXsecretXXXX", "ftp://hooks.slack.com/services/XXXXsecret",
                "https://hooks.slack.com/services/XXXXsecret with space"):
        with pytest.raises(ValueError) as caught:
            build_defs({**zoom_env, "ALERT_WEBHOOK_URL": bad})
        message = str(caught.value)
        assert message.startswith("ALERT_WEBHOOK_URL must be an absolute http:// or https:// URL with a host")
        assert "XXXXsecret" not in message and "T000" not in message, message
    with pytest.raises(ValueError, match="DAGSTER_WEBSERVER_URL must be an absolute http"):
        build_alert_sensors(env={"ALERT_WEBHOOK_URL": secret, "DAGSTER_WEBSERVER_URL": "localhost:3000"})


def test_each_zoom_account_component_has_alert_sensors_of_its_own(tmp_path, monkeypatch):
    from tests.test_component import user_project

    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://chat.example.com/hooks/abc123secret")
    defs = user_project(tmp_path, monkeypatch, {
        f"zoom_{name}": f"type: zoom_pipeline.ZoomAccount\nattributes:\n  name: {name}\n" for name in ("acme", "beta")
    })
    names = {s.name for s in defs.get_repository_def().sensor_defs}
    assert {f"{a}_{n}" for a in ("acme", "beta") for n in (RUN_FAILURE_ALERT_SENSOR_NAME, CHECK_ALERT_SENSOR_NAME)} \
        <= names


def test_a_message_never_carries_a_known_secret(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value-123")
    scrub = alerts.Scrubber(Webhook("https://hooks.slack.com/services/T1/B1/zzzzsecret"))
    said = scrub("failed: https://user:pa/ss@host/x?access_token=abc123&x=1 Bearer eyJhbGciOi.abc "
                 "aws-secret-value-123 https://hooks.slack.com/services/T1/B1/zzzzsecret /services/T1/B1/zzzzsecret")
    for secret in ("pa/ss", "abc123", "eyJhbGciOi", "aws-secret-value-123", "zzzzsecret"):
        assert secret not in said, said
    assert alerts.first_sentence("Zoom said no.  Then more.\nAnd more") == "Zoom said no."
    assert alerts.Alert("t", ("",), ("s",), "d", "<!channel> & x", "", ("k",)).payload()["blocks"][0]["text"][
        "text"].endswith("&lt;!channel&gt; &amp; x")


# ---- under the real dagster-daemon ---------------------------------------------------------------------


def sensor_cursor(instance: dg.DagsterInstance, name: str) -> dict | None:
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.name == name and state.instigator_data and state.instigator_data.cursor:
            return json.loads(state.instigator_data.cursor)
    return None


def wait_for(what: str, condition, timeout: float, daemon):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, f"dagster-daemon exited; log: {daemon.log_path}"
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f}s; daemon log: {daemon.log_path}")


@pytest.mark.daemon
def test_the_daemon_posts_one_message_per_failed_day_and_per_failed_check(
    sim, alert_env, receiver, tmp_path, services, monkeypatch
):
    """dagster-daemon evaluates the sensors (running by default) in its code server; the runs fail in this
    process against the same instance."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ZOOM_FRESHNESS_DEADLINE_HOUR", "0")
    env = dict(os.environ)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # Create the SQLite storages first: the daemon and its code server would otherwise race to stamp them.
        instance.get_runs(limit=1)
        instance.all_instigator_state()
    daemon = services.start([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env=env, name="daemon")
    day = days_ago(3)
    defs = build_defs()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for name in (RUN_FAILURE_ALERT_SENSOR_NAME, CHECK_ALERT_SENSOR_NAME):
            wait_for(f"no first tick of {name}", lambda n=name: sensor_cursor(instance, n), 60, daemon)
        collect_a_day(sim, defs, instance)
        fail_every_report_call(sim)
        failed = [run_day_job(defs, instance, day) for _ in range(2)]  # the day, then a rerun of it
        assert not any(run.success for run in failed)
        defs.resolve_job_def("zoom_freshness_job").execute_in_process(instance=instance, raise_on_error=False)
        last = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1).records[0].storage_id

        wait_for("the run sensor did not read both failures",
                 lambda: sensor_cursor(instance, RUN_FAILURE_ALERT_SENSOR_NAME)["after"] >= last, 90, daemon)
        wait_for("no check alerts", lambda: len(receiver.posts) >= 3, 60, daemon)
    titles = sorted(post["text"].splitlines()[0] for post in receiver.posts)
    assert titles == ["Zoom pipeline: a run failed",
                      "Zoom pipeline: check every_day_in_zoom_window_collected failed",
                      "Zoom pipeline: check yesterday_landed_by_deadline failed"], receiver.texts()
    [run_post] = [p for p in receiver.posts if p["text"].startswith("Zoom pipeline: a run failed")]
    print("PAYLOAD", json.dumps(run_post))
    assert f"Day: {day}" in run_post["text"] and f"Run: {WEBSERVER}/runs/{failed[0].run_id}" in run_post["text"]
    assert services.stop(daemon) is not None
    # The sensors' tick logs (captured under $DAGSTER_HOME/storage/<repository>/<sensor>/), the runs' and the
    # daemon's own.
    tick_logs = [p.read_text(errors="replace") for p in (home / "storage" / "__repository__").rglob("*.err")]
    assert any(f"failed like an alerted run of {day}" in log for log in tick_logs), "the rerun was not seen"
    logs = [daemon.log_path.read_text(errors="replace"), *tick_logs]
    logs += [p.read_text(errors="replace") for p in home.rglob("*") if p.suffix in (".err", ".out")]
    assert_no_secret(receiver, *logs)
