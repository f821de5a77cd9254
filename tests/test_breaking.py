"""Adversarial tests: ranged runs under fatal and persistent faults, re-runs, both sources in one job,
the confirmation sensor for the activity source, custom prefixes, and identical records in two sources."""

import os
from collections import Counter

import dagster as dg

from tests.helpers import (
    api_listing,
    canonical,
    days_ago,
    materialize,
    output_metadata,
    records_of,
    resources,
    s3_day,
    sim_log,
)
from zoom_pipeline.assets import SOURCE_ASSETS
from zoom_pipeline.automation import zoom_operation_logs_job
from zoom_pipeline.checks import build_source_checks
from zoom_pipeline.constants import DAY_MATCHES_ZOOM
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES


def run_days(days, res, instance, source):
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    raw, _ = SOURCE_ASSETS[source]
    return dg.materialize([raw], tags=tags, resources=res, instance=instance, raise_on_error=False)


def materialized(result, source):
    out = {}
    for m in result.asset_materializations_for_node(source.name):
        assert m.partition not in out, f"{m.partition} materialized twice in one run"
        out[m.partition] = {k: v.value for k, v in m.metadata.items()}
    return out


def evaluations(result):
    return [
        (e.event_specific_data.partition, e.event_specific_data.passed)
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == DAY_MATCHES_ZOOM
    ]


def stored(s3, bucket, day, source):
    return s3_day(s3, bucket, day, prefix=source.prefix[1])


def all_keys(s3, bucket):
    keys, token = [], None
    while True:
        kw = {"Bucket": bucket, **({"ContinuationToken": token} if token else {})}
        page = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def steps(result):
    return {e.step_key: e.event_type_value for e in result.all_events
            if e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")}


# ---- ranged runs ----------------------------------------------------------------------------------


def test_ranged_run_with_persistently_failing_middle_day_then_full_rerun(sim, zoom_env, bucket, s3, source):
    days = [days_ago(20), days_ago(19), days_ago(18)]
    for n, day in enumerate(days):
        sim.generate_day(day, 40 + n, seed=200 + n, log=sim_log(source))
    # Day 1 takes one call; every call after it fails for the whole run, retries included.
    sim.inject("server_error", times=1000, after_calls=1, log=sim_log(source))
    instance = dg.DagsterInstance.ephemeral()
    res = resources(zoom_env, bucket=bucket)
    first = run_days(days, res, instance, source)

    assert not first.success
    assert list(materialized(first, source)) == days[:1]
    assert instance.get_materialized_partitions(dg.AssetKey(source.name)) == {days[0]}
    assert stored(s3, bucket, days[1], source) == {}
    assert stored(s3, bucket, days[2], source) == {}
    by_day = sim.stats()["by_log"][sim_log(source)]["report_calls_by_day"]
    assert by_day.get(days[2]) is None  # the later day was never asked for
    assert by_day[days[0]] == 1  # the step retries did not read the landed day again

    sim.clear_faults()
    second = run_days(days, res, instance, source)
    assert second.success
    got = materialized(second, source)
    assert list(got) == days
    assert [got[d]["records_written"] for d in days] == [0, 41, 42]
    assert all(got[d]["day_exact"] for d in days)
    for day in days:
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source))


def test_ranged_run_with_missing_scope_fails_fatally_without_retry(sim, zoom_env, bucket, s3):
    source = ACTIVITY_LOGS
    days = [days_ago(25), days_ago(24)]
    for n, day in enumerate(days):
        sim.generate_day(day, 30, seed=300 + n, log=sim_log(source))
    sim.configure(scopes=OPERATION_LOGS.scope)
    result = run_days(days, resources(zoom_env, bucket=bucket), dg.DagsterInstance.ephemeral(), source)
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert materialized(result, source) == {}
    assert not [k for k in all_keys(s3, bucket)]


def test_full_rerun_of_a_successful_range_writes_nothing(sim, zoom_env, bucket, s3, source):
    days = [days_ago(30), days_ago(29), days_ago(28)]
    for n, (day, count) in enumerate(zip(days, (350, 0, 610), strict=True)):
        if count:
            sim.generate_day(day, count, seed=400 + n, twins=3, log=sim_log(source))
    instance = dg.DagsterInstance.ephemeral()
    res = resources(zoom_env, bucket=bucket)
    first = run_days(days, res, instance, source)
    assert first.success
    keys_before = sorted(k for k in all_keys(s3, bucket) if "-pass-" not in k)

    second = run_days(days, res, instance, source)
    assert second.success
    got = materialized(second, source)
    assert list(got) == days
    assert all(got[d]["records_written"] == 0 for d in days)
    assert all(got[d]["day_exact"] for d in days)
    assert evaluations(second) == [(d, True) for d in days]
    assert sorted(k for k in all_keys(s3, bucket) if "-pass-" not in k) == keys_before  # pass records aside
    for day in days:
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source))


def test_activity_range_with_late_events_and_shuffle_is_exactly_once(sim, zoom_env, bucket, s3):
    source = ACTIVITY_LOGS
    log = sim_log(source)
    days = [days_ago(35), days_ago(34)]
    for n, day in enumerate(days):
        sim.generate_day(day, 700, seed=500 + n, twins=4, log=log)
    sim.configure(shuffle_within_second=True)
    # While day 1 pages: late records and late identical twins land among served rows.
    sim.late_events(days[0], after_call=1, position=250, count=7, seed=1, log=log)
    sim.late_events(days[0], after_call=2, position=10, count=3, seed=2, twins=True, log=log)
    instance = dg.DagsterInstance.ephemeral()
    res = resources(zoom_env, bucket=bucket)
    first = run_days(days, res, instance, source)
    assert first.success, [e.message for e in first.all_events if e.event_type_value == "STEP_FAILURE"]
    for day in days:
        have, truth = records_of(stored(s3, bucket, day, source)), canonical(api_listing(sim, zoom_env, day, source))
        assert not (have - truth), f"{day}: stored copies Zoom does not list: {have - truth}"
    # A second run fills whatever the first could not prove, never more.
    second = run_days(days, res, instance, source)
    assert second.success
    for day in days:
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source))
    assert not any(k.startswith(OPERATION_LOGS.prefix[1]) for k in all_keys(s3, bucket))


# ---- both sources in the day job ----------------------------------------------------------------


def run_job(defs, day, instance):
    job = defs.resolve_job_def("zoom_operation_logs_job")
    return job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)


def test_activity_5xx_storm_leaves_operation_logs_and_their_udm_exact(sim, zoom_env, bucket, s3, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", bucket)
    day = days_ago(5)
    sim.generate_day(day, 333, seed=600)
    sim.generate_day(day, 90, seed=601, log=sim_log(ACTIVITY_LOGS))
    sim.inject("server_error", times=100_000, log=sim_log(ACTIVITY_LOGS))
    # The shipped job and assets, with the tests' fast client back-off (production's takes minutes).
    defs = dg.Definitions(
        assets=[a for pair in SOURCE_ASSETS.values() for a in pair],
        asset_checks=[c for source in SOURCES for c in build_source_checks(source, 3)],
        jobs=[zoom_operation_logs_job],
        resources=resources(zoom_env, bucket=bucket),
        executor=dg.in_process_executor,
    )
    with dg.instance_for_test() as instance:
        result = run_job(defs, day, instance)
        assert not result.success
        s = steps(result)
        assert s[OPERATION_LOGS.name] == "STEP_SUCCESS"
        assert s[OPERATION_LOGS.udm_name] == "STEP_SUCCESS"
        assert s[ACTIVITY_LOGS.name] == "STEP_FAILURE"
        assert ACTIVITY_LOGS.udm_name not in s or s[ACTIVITY_LOGS.udm_name] != "STEP_SUCCESS"
        assert instance.get_materialized_partitions(dg.AssetKey(OPERATION_LOGS.name)) == {day}
        assert not instance.get_materialized_partitions(dg.AssetKey(ACTIVITY_LOGS.name))
    op = stored(s3, bucket, day, OPERATION_LOGS)
    assert records_of(op) == canonical(api_listing(sim, zoom_env, day, OPERATION_LOGS))
    udm = s3_day(s3, bucket, day, prefix=OPERATION_LOGS.udm_prefix[1])
    assert sum(len(lines) - 1 for lines in udm.values()) == 333
    assert stored(s3, bucket, day, ACTIVITY_LOGS) == {}
    assert not any(k.startswith("zoom/activitylogs") for k in all_keys(s3, bucket))


def test_custom_activity_prefix_is_honoured_and_nothing_leaks(sim, zoom_env, bucket, s3, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", bucket)
    day = days_ago(6)
    sim.generate_day(day, 120, seed=700)
    sim.generate_day(day, 80, seed=701, log=sim_log(ACTIVITY_LOGS))
    custom = {"ACTIVITY_S3_PREFIX": "custom/act/raw/", "ACTIVITY_UDM_S3_PREFIX": "custom/act/udm/",
              "ACTIVITY_MANIFEST_S3_PREFIX": "custom/act/man/"}
    defs = build_defs({**os.environ, **custom})
    with dg.instance_for_test() as instance:
        assert run_job(defs, day, instance).success
        assert run_job(defs, day, instance).success  # and again: nothing added
    keys = all_keys(s3, bucket)
    act_raw = s3_day(s3, bucket, day, prefix="custom/act/raw/")
    assert records_of(act_raw) == canonical(api_listing(sim, zoom_env, day, ACTIVITY_LOGS))
    assert len(act_raw) == 1
    assert sum(len(v) - 1 for v in s3_day(s3, bucket, day, prefix="custom/act/udm/").values()) == 80
    assert any(k.startswith("custom/act/man/") for k in keys)
    assert not any(k.startswith("zoom/activitylogs") for k in keys)
    # Operation logs keep their defaults, and hold only their own records.
    op = stored(s3, bucket, day, OPERATION_LOGS)
    assert records_of(op) == canonical(api_listing(sim, zoom_env, day, OPERATION_LOGS))
    assert all(k.startswith(("zoom/operationlogs", "custom/act/")) for k in keys), keys


def test_identical_records_in_both_sources_do_not_cross_talk(sim, zoom_env, bucket, s3, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", bucket)
    day = days_ago(7)
    records = sim.make_records(day, 250, seed=800, log=sim_log(ACTIVITY_LOGS))
    sim.set_day(day, records, log=sim_log(ACTIVITY_LOGS))
    sim.set_day(day, [dict(r) for r in records])  # the very same bytes in the operation-log report
    defs = build_defs()
    with dg.instance_for_test() as instance:
        result = run_job(defs, day, instance)
        assert result.success
        for source in SOURCES:
            [m] = list(result.asset_materializations_for_node(source.name))
            assert m.metadata["records_written"].value == 250, source.name
            assert m.metadata["records_already_stored"].value == 0, source.name
    for source in SOURCES:
        assert records_of(stored(s3, bucket, day, source)) == canonical(records), source.name
        udm = s3_day(s3, bucket, day, prefix=source.udm_prefix[1])
        assert sum(len(v) - 1 for v in udm.values()) == 250


def test_identical_day_content_across_two_days_of_one_range(sim, zoom_env, bucket, s3):
    """Two days in one range whose records are byte-identical except for the day: each day keeps its own."""
    source = ACTIVITY_LOGS
    d1, d2 = days_ago(40), days_ago(39)
    recs = sim.make_records(d1, 60, seed=900, log=sim_log(source))
    sim.set_day(d1, recs, log=sim_log(source))
    sim.set_day(d2, [dict(r, time=r["time"].replace(d1, d2)) for r in recs], log=sim_log(source))
    result = run_days([d1, d2], resources(zoom_env, bucket=bucket), dg.DagsterInstance.ephemeral(), source)
    assert result.success
    got = materialized(result, source)
    assert got[d1]["records_written"] == got[d2]["records_written"] == 60
    for day in (d1, d2):
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source))


# ---- confirmation sensor for the activity source -------------------------------------------------


def test_confirmation_sensor_requests_only_the_activity_source_and_stops_once_exact(sim, zoom_env, bucket, s3):
    defs = build_defs()
    log = sim_log(ACTIVITY_LOGS)
    day = days_ago(9)
    records = sim.make_records(day, 600, seed=1000, start_time="20:00:00", log=log)
    records[300] = dict(records[299])  # a twin pair cut by the first page boundary
    sim.set_day(day, records, log=log)
    op_day = days_ago(10)
    sim.generate_day(op_day, 50, seed=1001)
    res = resources(zoom_env, bucket=bucket)
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("zoom_confirmation_sensor")
    with dg.instance_for_test() as instance:
        first = materialize(day, res, instance=instance, source=ACTIVITY_LOGS)
        assert not output_metadata(first, ACTIVITY_LOGS.name)["day_exact"]
        assert output_metadata(materialize(op_day, res, instance=instance), OPERATION_LOGS.name)["day_exact"]

        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))
        [request] = tick.run_requests
        assert request.partition_key == day
        selected = set(request.asset_selection)
        assert dg.AssetKey(ACTIVITY_LOGS.name) in selected
        assert not selected & {dg.AssetKey(OPERATION_LOGS.name), dg.AssetKey(OPERATION_LOGS.udm_name)}
        assert request.run_key.startswith(f"{ACTIVITY_LOGS.name}/{day}@confirm-")

        again = materialize(day, res, instance=instance, source=ACTIVITY_LOGS)
        assert output_metadata(again, ACTIVITY_LOGS.name)["day_exact"]
        after = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                             repository_def=repo))
        assert not after.run_requests and "No day awaits confirmation" in after.skip_message
    assert records_of(stored(s3, bucket, day, ACTIVITY_LOGS)) == canonical(records)
    assert Counter(k.split("/")[1] for k in all_keys(s3, bucket) if "/" in k)  # something landed at all


def test_confirmation_sensor_reads_days_of_a_ranged_run_and_both_sources_of_one_day(sim, zoom_env, bucket, s3):
    """Days a many-day run reported one by one (AssetMaterialization with a partition) are seen; one day
    awaiting in both sources gets one request per source, each of its own source only."""
    defs = build_defs()
    repo = defs.get_repository_def()
    sensor = repo.get_sensor_def("zoom_confirmation_sensor")
    days = [days_ago(14), days_ago(13)]
    for source in SOURCES:
        log = sim_log(source)
        sim.generate_day(days[0], 40, seed=1100, log=log)
        records = sim.make_records(days[1], 600, seed=1101, start_time="20:00:00", log=log)
        records[300] = dict(records[299])  # cut by the first page boundary
        sim.set_day(days[1], records, log=log)
    res = resources(zoom_env, bucket=bucket)
    with dg.instance_for_test() as instance:
        for source in SOURCES:
            got = materialized(run_days(days, res, instance, source), source)
            assert got[days[0]]["day_exact"] and not got[days[1]]["day_exact"], source.name
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))
        requests = {r.run_key.split("@")[0]: r for r in tick.run_requests}
        assert set(requests) == {f"{source.name}/{days[1]}" for source in SOURCES}
        for source in SOURCES:
            request = requests[f"{source.name}/{days[1]}"]
            assert request.partition_key == days[1]
            others = {dg.AssetKey(s.name) for s in SOURCES if s != source}
            assert dg.AssetKey(source.name) in set(request.asset_selection)
            assert not set(request.asset_selection) & others
        # The operation logs confirm; the activity day still waits.
        assert output_metadata(materialize(days[1], res, instance=instance), OPERATION_LOGS.name)["day_exact"]
        after = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=tick.cursor,
                                                             repository_def=repo))
        assert [r.run_key.split("@")[0] for r in after.run_requests] == [f"{ACTIVITY_LOGS.name}/{days[1]}"]
    for source in SOURCES:
        for day in days:
            have = records_of(stored(s3, bucket, day, source))
            truth = canonical(api_listing(sim, zoom_env, day, source))
            if (source, day) == (ACTIVITY_LOGS, days[1]):  # still awaiting: one twin copy unproven, none extra
                assert not have - truth and sum((truth - have).values()) == 1
            else:
                assert have == truth, (source.name, day)


def test_ranged_run_ending_today_refreshes_today_and_a_rerun_adds_only_new_records(sim, zoom_env, bucket, s3, source):
    log = sim_log(source)
    days = [days_ago(1), days_ago(0)]
    sim.generate_day(days[0], 120, seed=1200, log=log)
    early = sim.make_records(days[1], 40, seed=1201, start_time="00:10:00", log=log)
    sim.set_day(days[1], early, log=log)
    instance = dg.DagsterInstance.ephemeral()
    res = resources(zoom_env, bucket=bucket)
    first = run_days(days, res, instance, source)
    assert first.success
    got = materialized(first, source)
    assert got[days[0]]["pass"] == "complete" and got[days[0]]["day_exact"]
    assert got[days[1]]["pass"] == "refresh (day still open)"
    assert got[days[1]]["records_written"] == 40
    newer = sim.make_records(days[1], 5, seed=1202, start_time="00:20:00", log=log)
    sim.add_records(days[1], newer, log=log)
    second = materialized(run_days(days, res, instance, source), source)
    assert second[days[0]]["records_written"] == 0
    assert second[days[1]]["records_written"] == 5
    for day in days:
        assert records_of(stored(s3, bucket, day, source)) == canonical(api_listing(sim, zoom_env, day, source))
