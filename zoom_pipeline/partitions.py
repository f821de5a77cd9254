"""The one partitioning of this project: UTC days, today included."""

import os
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from zoom_pipeline.constants import RETENTION_DAYS


def default_start_date(today: date | None = None) -> str:
    """Oldest day Zoom still serves: UTC today minus RETENTION_DAYS - 1."""
    today = today or datetime.now(UTC).date()
    return (today - timedelta(days=RETENTION_DAYS - 1)).isoformat()


def build_daily_partitions(start_date: str | None = None) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from `start_date`; `end_offset=1` makes today a partition too."""
    return dg.DailyPartitionsDefinition(
        start_date=start_date or default_start_date(),
        end_offset=1,
        timezone="UTC",
    )


# Partition keys must be known when definitions load, so ZOOM_LOGS_START_DATE is read here (no I/O).
# Unset, the first partition is the oldest day inside Zoom's retention window, so a backfill of
# days Zoom no longer has cannot be asked for by accident.
daily_partitions = build_daily_partitions(os.environ.get("ZOOM_LOGS_START_DATE") or None)
