"""Both assets together: raw day -> UDM day, one event per raw record, same part names, exactly once."""

import orjson

from tests.helpers import days_ago, materialize, output_metadata, resources, s3_day


def test_udm_asset_maps_every_raw_record_once_with_stable_distinct_ids(sim, zoom_env, bucket, s3):
    day = days_ago(1)
    sim.generate_day(day, 1500, seed=40, twins=6)
    res = resources(zoom_env, bucket=bucket)
    first = materialize(day, res, udm=True)
    assert first.success
    raw = s3_day(s3, bucket, day)
    udm = s3_day(s3, bucket, day, prefix="zoom/operationlogs-udm/")
    assert [k.rsplit("/", 1)[1] for k in raw] == [k.rsplit("/", 1)[1] for k in udm]
    [raw_lines], [udm_lines] = [v[:-1] for v in raw.values()], [v[:-1] for v in udm.values()]
    assert len(udm_lines) == len(raw_lines) == 1500
    events = [orjson.loads(line) for line in udm_lines]
    ids = [e["metadata"]["productLogId"] for e in events]
    assert len(set(ids)) == 1500  # twins included
    for raw_line, event in zip(raw_lines, events, strict=True):
        record = orjson.loads(raw_line)
        assert event["metadata"]["eventTimestamp"] == record["time"]
        assert event["metadata"]["description"] == record["operation_detail"]
        assert event["metadata"]["logType"] == "ZOOM_OPERATION_LOGS"
    meta = output_metadata(first, "zoom_operation_logs_udm")
    assert meta["events_written"] == 1500
    assert meta["target_field_coverage"]["target.user.emailAddresses"] > 0

    # A new raw part maps to exactly one new UDM part; the old one is left alone and ids are stable.
    sim.add_records(day, sim.make_records(day, 7, seed=41))
    second = materialize(day, res, udm=True)
    assert output_metadata(second, "zoom_operation_logs_udm")["events_written"] == 7
    udm_after = s3_day(s3, bucket, day, prefix="zoom/operationlogs-udm/")
    assert len(udm_after) == 2
    assert udm_after[next(iter(udm))] == udm[next(iter(udm))]
    third = materialize(day, res, udm=True)
    assert output_metadata(third, "zoom_operation_logs_udm")["events_written"] == 0
