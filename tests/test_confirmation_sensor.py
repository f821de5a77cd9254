"""The confirmation sensor when a confirming run fails: a new request on a later tick, under a run key of
its own (Dagster's sensor daemon never launches a key twice), up to CONFIRM_TRIES_PER_PASS runs per
unproven pass, then one warning and no more requests for that pass. And a day still unproven after
CONFIRM_MAX_PASSES complete passes: reported once, with what still awaits, and no more requests."""

import json
import logging
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time, load_remote_repo
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration

import zoom_pipeline.definitions
from tests.helpers import days_ago, materialize, output_metadata, resources
from zoom_pipeline.assets import SOURCE_ASSETS
from zoom_pipeline.automation import (
    CONFIRM_MAX_PASSES,
    CONFIRM_QUIET_PASSES,
    CONFIRM_TRIES_PER_PASS,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
)
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import OPERATION_LOGS
from zoom_pipeline.zoom_client import ZoomClient

RAW = dg.AssetKey(OPERATION_LOGS.name)
SENSOR = "zoom_confirmation_sensor"


def unproven_day(sim, day: str, seed: int) -> None:
    """A day whose first complete pass cannot prove a twin pair cut by the first page boundary."""
    records = sim.make_records(day, 600, seed=seed, start_time="20:00:00")
    records[300] = dict(records[299])
    sim.set_day(day, records)


def tick(defs: dg.Definitions, instance, cursor: str | None = None):
    repo = defs.get_repository_def()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repo)
    return repo.get_sensor_def(SENSOR).evaluate_tick(context)


def run_as_the_daemon_would(request: dg.RunRequest, res: dict, instance) -> dg.ExecuteInProcessResult:
    """The requested run, tagged as the sensor daemon tags it: the request's tags (with the sensor's name)
    and its run key in dagster/run_key."""
    assert request.tags[SENSOR_NAME_TAG] == SENSOR
    tags = {k: v for k, v in request.tags.items() if k != "dagster/partition"} | {RUN_KEY_TAG: request.run_key}
    assets = [a for a in SOURCE_ASSETS[OPERATION_LOGS] if set(a.keys) & set(request.asset_selection)]
    return dg.materialize(assets, partition_key=request.partition_key, resources=res, instance=instance,
                          tags=tags, raise_on_error=False)


@pytest.fixture
def defs(zoom_env):
    return build_defs()


def test_a_failed_confirming_run_is_requested_again_under_a_new_key_then_given_up_once(
    sim, zoom_env, bucket, defs, capfd
):
    day = days_ago(9)
    unproven_day(sim, day, seed=700)
    res = resources(zoom_env, bucket=bucket)
    with dg.instance_for_test() as instance:
        assert not output_metadata(materialize(day, res, instance=instance))["day_exact"]
        sim.inject("server_error", times=100_000)  # Zoom answers 500 to every report call from now on

        cursor, keys = None, []
        for n in range(CONFIRM_TRIES_PER_PASS):
            evaluation = tick(defs, instance, cursor)
            [request] = evaluation.run_requests
            assert request.partition_key == day
            # The daemon skips a request whose key a run of this sensor already carries (whatever that
            # run's outcome), so a try under an earlier try's key would never run.
            assert request.run_key not in keys, f"try {n + 1} repeats the key of a failed run: {request.run_key}"
            keys.append(request.run_key)
            assert not run_as_the_daemon_would(request, res, instance).success
            cursor = evaluation.cursor
        assert all(key.startswith(f"{OPERATION_LOGS.name}/{day}@confirm-") for key in keys)
        assert not instance.get_materialized_partitions(RAW) - {day}

        capfd.readouterr()
        gave_up = tick(defs, instance, cursor)
        assert not gave_up.run_requests
        assert f"stopped requesting {OPERATION_LOGS.name} {day} after 3 failed confirming runs" in gave_up.skip_message
        # The tick's log (Dagster's console logger here, the tick's captured log under the daemon).
        warned = [line for line in capfd.readouterr().err.splitlines() if "still awaits confirmation" in line]
        assert len(warned) == 1, warned
        said = f"WARNING - {OPERATION_LOGS.name} {day} still awaits confirmation after 3 failed confirming runs"
        assert said in warned[0], warned

        later = tick(defs, instance, gave_up.cursor)  # logged once: the pass is no longer awaited
        assert not later.run_requests
        assert later.skip_message == "No day awaits confirmation (0 waiting for a running pass)."
        assert "still awaits confirmation" not in capfd.readouterr().err

        # A new complete pass (a rerun once Zoom answers) is a new pass: it confirms the day.
        sim.clear_faults()
        assert output_metadata(materialize(day, res, instance=instance))["day_exact"]
        assert not tick(defs, instance, later.cursor).run_requests


def test_a_canceled_confirming_run_under_a_cursor_and_key_of_the_earlier_format_is_retried(sim, zoom_env, bucket,
                                                                                             defs):
    """A cursor written before retries existed still loads, and a run its sensor requested (the key
    `<source>/<day>@confirm-<storage id>`) counts as the first try."""
    day = days_ago(11)
    unproven_day(sim, day, seed=710)
    res = resources(zoom_env, bucket=bucket)
    with dg.instance_for_test() as instance:
        assert not output_metadata(materialize(day, res, instance=instance))["day_exact"]
        [record] = instance.fetch_materializations(RAW, limit=1).records
        waiting = f"{OPERATION_LOGS.name}/{day}"
        old_cursor = json.dumps({"after_by_source": {OPERATION_LOGS.name: record.storage_id},
                                 "awaiting_by_source": {waiting: record.storage_id}})
        job = defs.resolve_job_def("zoom_operation_logs_job")
        tags = {"dagster/partition": day, SENSOR_NAME_TAG: SENSOR}

        def add_run(status, run_key):
            return instance.create_run_for_job(job_def=job, status=status, tags={**tags, RUN_KEY_TAG: run_key})

        add_run(dg.DagsterRunStatus.CANCELED, f"{waiting}@confirm-{record.storage_id}")  # terminated by hand
        [request] = tick(defs, instance, old_cursor).run_requests
        assert request.run_key == f"{waiting}@confirm-{record.storage_id}-try2" and request.partition_key == day

        running = add_run(dg.DagsterRunStatus.STARTED, request.run_key)
        assert not tick(defs, instance, old_cursor).run_requests  # the second try is still running
        instance.report_run_failed(running)
        [request] = tick(defs, instance, old_cursor).run_requests
        assert request.run_key.endswith("-try3")


# ---- under the sensor daemon's own loop --------------------------------------------------------------


def test_the_sensor_daemon_launches_a_new_confirming_run_after_a_failed_one(sim, zoom_env, bucket, monkeypatch,
                                                                              caplog):
    """Dagster's sensor iteration (execute_sensor_iteration, as `dagster-daemon run` calls it) with runs
    launched synchronously in this process: each failed confirming run is followed by a new run on the next
    tick, three in all, and then no more."""
    day = days_ago(12)
    unproven_day(sim, day, seed=720)
    for name, value in {"S3_BUCKET": bucket, "ZOOM_ACCOUNT_STORE": "memory",
                        "ZOOM_MAX_REQUESTS_PER_SECOND": "1000"}.items():
        monkeypatch.setenv(name, value)
    # What the code location loads (and what the in-process launcher rebuilds each run's job from).
    monkeypatch.setattr(zoom_pipeline.definitions, "defs", build_defs())
    monkeypatch.setattr(ZoomClient, "_sleep_backoff", lambda self, *args, **kwargs: None)  # 500s fail fast
    origin = LoadableTargetOrigin(module_name="zoom_pipeline.definitions", attribute="defs",
                                  working_directory=str(zoom_pipeline.definitions.__file__).rsplit("/", 2)[0])
    target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(origin, location_name="zoom_pipeline"))
    logger = logging.getLogger("dagster.daemon.SensorDaemon")

    with (dg.instance_for_test(synchronous_run_coordinator=True, synchronous_run_launcher=True) as instance,
          create_test_daemon_workspace_context(target, instance) as workspace):
        assert not output_metadata(materialize(day, resources(zoom_env, bucket=bucket), instance=instance))["day_exact"]
        sim.inject("server_error", times=100_000)
        sensor = load_remote_repo(workspace, "__repository__").get_sensor(SENSOR)
        instance.start_sensor(sensor)
        start = datetime.now(UTC)

        def daemon_tick(n: int):
            with freeze_time(start + timedelta(minutes=16 * n)):  # past the sensor's 15-minute interval
                list(execute_sensor_iteration(workspace, logger, None, None))
            return instance.get_ticks(sensor.get_remote_origin_id(), sensor.selector_id, limit=1)[0]

        for n in range(CONFIRM_TRIES_PER_PASS):
            evaluation = daemon_tick(n)
            runs = instance.get_runs(dg.RunsFilter(tags={SENSOR_NAME_TAG: SENSOR}))
            assert len(runs) == n + 1, (
                f"tick {n + 1} launched no run ({evaluation.status.value}: {evaluation.skip_reason}); "
                f"runs so far: {[(r.tags[RUN_KEY_TAG], r.status.value) for r in runs]}"
            )
            assert evaluation.status == TickStatus.SUCCESS and len(evaluation.run_ids) == 1
        assert all(run.status == dg.DagsterRunStatus.FAILURE for run in runs)
        assert len({run.tags[RUN_KEY_TAG] for run in runs}) == CONFIRM_TRIES_PER_PASS
        assert {run.tags["dagster/partition"] for run in runs} == {day}

        for n in (CONFIRM_TRIES_PER_PASS, CONFIRM_TRIES_PER_PASS + 1):
            evaluation = daemon_tick(n)
            assert evaluation.status == TickStatus.SKIPPED and not evaluation.run_ids
        assert "after 3 failed confirming runs" not in (evaluation.skip_reason or "")  # said once, the tick before
        assert len(instance.get_runs(dg.RunsFilter(tags={SENSOR_NAME_TAG: SENSOR}))) == CONFIRM_TRIES_PER_PASS
    # What the daemon logs when it drops a request under a key it has launched before (the old sensor's
    # second tick): "Skipping 1 run for sensor ... already completed with run keys: [...]".
    assert not [r for r in caplog.records if "already completed with run keys" in r.getMessage()]


# ---- a day still awaiting after CONFIRM_MAX_PASSES: reported once, with its counts -------------------------


def record_passes(instance, day: str, *passes: tuple[bool, int, int, int], key: dg.AssetKey = RAW) -> None:
    """Complete passes of `day` as the raw asset reports them: (day_exact, complete_passes, awaiting
    records, awaiting groups) each."""

    @dg.op
    def complete_passes():
        for exact, n, records, groups in passes:
            yield dg.AssetMaterialization(asset_key=key, partition=day, metadata={
                "pass": "complete", "day_exact": exact, "complete_passes": n,
                "awaiting_confirmation_records": records, "awaiting_confirmation_groups": groups})
        yield dg.Output(None)

    dg.GraphDefinition(name="passes", node_defs=[complete_passes]).to_job().execute_in_process(instance=instance)


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if "still awaits confirmation after" in line]


def test_a_day_still_awaiting_after_the_last_pass_the_sensor_allows_is_reported_once_with_its_counts(defs, capfd):
    day = days_ago(4)
    with dg.instance_for_test() as instance:
        record_passes(instance, day, (False, CONFIRM_MAX_PASSES - 1, 3, 2))
        below = tick(defs, instance)
        [request] = below.run_requests  # one pass more is still allowed
        assert request.partition_key == day

        record_passes(instance, day, (False, CONFIRM_MAX_PASSES, 2, 1))  # that pass did not prove it either
        capfd.readouterr()
        capped = tick(defs, instance, below.cursor)
        assert not capped.run_requests
        [warned] = warnings_in(capfd.readouterr().err)
        assert (f"WARNING - {OPERATION_LOGS.name} {day} still awaits confirmation after {CONFIRM_MAX_PASSES} complete "
                "passes: 2 record(s) Zoom lists in 1 same-second group(s) that no page has shown whole") in warned
        assert f"a quiet day is exact within {CONFIRM_QUIET_PASSES}" in warned
        assert capped.skip_message == (
            f"No day awaits confirmation (0 waiting for a running pass); {OPERATION_LOGS.name} {day} still await(s) "
            f"confirmation after {CONFIRM_MAX_PASSES} complete passes: no more passes requested.")
        assert json.loads(capped.cursor)["reported_at_cap"] == [f"{OPERATION_LOGS.name}/{day}"]

        # A rerun by hand that still proves nothing: said once already, so not again; nothing requested.
        record_passes(instance, day, (False, CONFIRM_MAX_PASSES + 1, 2, 1))
        again = tick(defs, instance, capped.cursor)
        assert not again.run_requests and not warnings_in(capfd.readouterr().err)
        assert again.skip_message == "No day awaits confirmation (0 waiting for a running pass)."
        assert tick(defs, instance, again.cursor).skip_message == again.skip_message

        # Exact at last: forgotten (a cursor without the key is what earlier versions wrote).
        record_passes(instance, day, (True, CONFIRM_MAX_PASSES + 2, 0, 0))
        assert "reported_at_cap" not in json.loads(tick(defs, instance, again.cursor).cursor)


def test_a_day_reported_at_the_cap_is_forgotten_once_zoom_no_longer_serves_it(defs):
    old = f"{OPERATION_LOGS.name}/{days_ago(400)}"
    recent = f"{OPERATION_LOGS.name}/{days_ago(4)}"
    cursor = json.dumps({"after_by_source": {}, "awaiting_by_source": {}, "reported_at_cap": [old, recent]})
    with dg.instance_for_test() as instance:
        assert json.loads(tick(defs, instance, cursor).cursor)["reported_at_cap"] == [recent]


def test_the_report_at_the_cap_names_the_account(tmp_path, monkeypatch, capfd):
    for name in ("ACME", "BETA"):
        for what in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"):
            monkeypatch.setenv(f"ZOOM_{name}_{what}", "fake")
    path = tmp_path / "accounts.yaml"
    path.write_text("accounts:\n  acme: {}\n  beta: {}\n")
    defs = build_defs({"ZOOM_ACCOUNTS_FILE": str(path)})
    day = days_ago(3)
    with dg.instance_for_test() as instance:
        record_passes(instance, day, (False, CONFIRM_MAX_PASSES, 7, 3), key=dg.AssetKey(["beta", OPERATION_LOGS.name]))
        capfd.readouterr()
        assert not tick(defs, instance).run_requests
        [warned] = warnings_in(capfd.readouterr().err)
    assert (f"beta/{OPERATION_LOGS.name} {day} (account beta) still awaits confirmation after {CONFIRM_MAX_PASSES} "
            "complete passes: 7 record(s) Zoom lists in 3 same-second group(s)") in warned
