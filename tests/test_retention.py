"""The retention guard: a day Zoom no longer serves fails at once with one clear message, nothing fetched
or written, and the partitions do not offer such days in the first place."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from tests.helpers import days_ago, zoom_client
from zoom_pipeline.assets import zoom_operation_logs
from zoom_pipeline.constants import RETENTION_DAYS
from zoom_pipeline.day_store import ZoomStore
from zoom_pipeline.definitions import build_defs
from zoom_pipeline.partitions import daily_partitions, default_start_date, oldest_served_day, validate_day


def test_a_day_older_than_zoom_keeps_fails_before_any_call(sim, zoom_env, tmp_path):
    too_old = days_ago(RETENTION_DAYS + 1)
    context = dg.build_asset_context(partition_key=too_old)
    with pytest.raises(dg.Failure) as failure:
        next(zoom_operation_logs(context, zoom=zoom_client(zoom_env), zoom_store=ZoomStore(local_dir=str(tmp_path))))
    message = failure.value.description
    assert message.startswith(f"{too_old} is outside Zoom's retention window:")
    assert message.endswith("so nothing was fetched or written.") and message.count(". ") == 0
    assert "\n" not in message
    assert failure.value.allow_retries is False  # retrying cannot bring the day back
    assert sim.stats()["report_calls"] == 0 and sim.stats()["token_calls"] == 0
    assert not any(tmp_path.iterdir())


def test_the_retention_window_edge():
    today = datetime.now(UTC).date()
    assert validate_day((today - timedelta(days=RETENTION_DAYS)).isoformat(), today=today)
    with pytest.raises(dg.Failure, match="outside Zoom's retention window"):
        validate_day((today - timedelta(days=RETENTION_DAYS + 1)).isoformat(), today=today)
    with pytest.raises(dg.Failure, match="in the future"):
        validate_day((today + timedelta(days=1)).isoformat(), today=today)


def test_partitions_start_on_the_first_of_the_month_of_the_oldest_day_zoom_serves(zoom_env):
    first = daily_partitions.get_first_partition_key()
    assert first == oldest_served_day().replace(day=1).isoformat() == default_start_date()
    assert not daily_partitions.has_partition_key((oldest_served_day().replace(day=1) - timedelta(days=1)).isoformat())
    job = build_defs().resolve_job_def("zoom_operation_logs_job")
    with pytest.raises(dg.DagsterUnknownPartitionError):
        job.execute_in_process(partition_key=days_ago(RETENTION_DAYS + 40))


def test_the_first_partition_moves_only_once_a_month_and_drops_only_days_zoom_no_longer_serves():
    # A first partition that moved every midnight would remove a day a running backfill targets.
    today = datetime(2026, 12, 1, tzinfo=UTC).date()
    starts = {default_start_date(today + timedelta(days=n)) for n in range(60)}
    assert len(starts) <= 3
    for n in range(400):
        day = today + timedelta(days=n)
        before, after = default_start_date(day - timedelta(days=1)), default_start_date(day)
        if before != after:  # the days it drops are all older than Zoom's window
            assert (datetime.fromisoformat(after).date() - timedelta(days=1)) < oldest_served_day(day)
