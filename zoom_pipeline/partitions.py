"""The one partitioning of this project: UTC days, today included, and the edge of Zoom's window."""

import os
import re
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from zoom_pipeline.constants import RETENTION_DAYS


def oldest_served_day(today: date | None = None) -> date:
    """The oldest day Zoom still serves: UTC today minus RETENTION_DAYS."""
    return (today or datetime.now(UTC).date()) - timedelta(days=RETENTION_DAYS)


def default_start_date(today: date | None = None) -> str:
    """The first of the month that holds the oldest day Zoom still serves.

    Not that day itself: the first partition would then move every midnight, and Dagster fails a
    running backfill whose partitions disappear. This way it moves once a month, dropping only days
    Zoom no longer serves, and the up to 30 days before the window fail at once with one sentence."""
    return oldest_served_day(today).replace(day=1).isoformat()


def check_start_date(value: str, today: date | None = None, *, name: str = "ZOOM_LOGS_START_DATE") -> str:
    """ZOOM_LOGS_START_DATE as YYYY-MM-DD, else ValueError with one sentence.

    A day after today is refused (not even today would be a partition); a day older
    than Zoom's window is allowed: its partitions exist and fail at run time with one sentence each."""
    text = value.strip()
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}.") from None
    today = today or datetime.now(UTC).date()
    if day > today:
        raise ValueError(
            f"{name} must not be after today ({today.isoformat()} UTC), got {value!r}."
        )
    return text


def build_daily_partitions(start_date: str | None = None) -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions from `start_date` (checked: see check_start_date); `end_offset=1` makes today
    a partition too."""
    return dg.DailyPartitionsDefinition(
        start_date=check_start_date(start_date) if start_date else default_start_date(),
        end_offset=1,
        timezone="UTC",
    )


def validate_day(key: str, *, today: date | None = None) -> date:
    """The partition's day, refused with one clear sentence if Zoom cannot have its logs."""
    try:
        day = date.fromisoformat(key)
    except ValueError:
        raise dg.Failure(f"Partition key {key!r} is not a YYYY-MM-DD date.", allow_retries=False) from None
    today = today or datetime.now(UTC).date()
    oldest = oldest_served_day(today)
    if day < oldest:
        raise dg.Failure(
            f"{key} is outside Zoom's retention window: Zoom keeps its reports for about six months, so the "
            f"oldest day it still serves is about {oldest.isoformat()}, so nothing was fetched or written.",
            allow_retries=False,
        )
    if day > today:
        raise dg.Failure(f"{key} is in the future (today is {today.isoformat()} UTC).", allow_retries=False)
    return day


# Partition keys must be known when definitions load, so ZOOM_LOGS_START_DATE is read here (no I/O).
daily_partitions = build_daily_partitions(os.environ.get("ZOOM_LOGS_START_DATE") or None)
