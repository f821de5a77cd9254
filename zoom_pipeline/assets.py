"""The project's assets: Zoom operation logs per UTC day, and their UDM events."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import orjson

from zoom_pipeline.constants import RETENTION_DAYS, ZOOM_API_POOL
from zoom_pipeline.io_manager import StoredDay, UdmOutput
from zoom_pipeline.partitions import daily_partitions
from zoom_pipeline.udm import coverage, product_log_id, to_udm_event
from zoom_pipeline.zoom_client import ZoomClient, ZoomError

# Transient trouble that outlasts the client's own retries (Zoom 5xx storms, S3 outages, a racing
# run) gets a few more tries at the step level, spaced out; fatal errors use allow_retries=False.
RETRY = dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def validate_day(key: str, *, today: date | None = None) -> date:
    """The partition's day, refused with one clear sentence if Zoom cannot have its logs."""
    try:
        day = date.fromisoformat(key)
    except ValueError:
        raise dg.Failure(f"Partition key {key!r} is not a YYYY-MM-DD date.", allow_retries=False) from None
    today = today or datetime.now(UTC).date()
    oldest = today - timedelta(days=RETENTION_DAYS)
    if day < oldest:
        raise dg.Failure(
            f"{key} is outside Zoom's retention window: Zoom keeps operation logs for about six months, so the "
            f"oldest day it still serves is about {oldest.isoformat()}, so nothing was fetched or written.",
            allow_retries=False,
        )
    if day > today:
        raise dg.Failure(f"{key} is in the future (today is {today.isoformat()} UTC).", allow_retries=False)
    return day


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="zoom_logs_io_manager",
    pool=ZOOM_API_POOL,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    retry_policy=RETRY,
    kinds={"zoom", "s3"},
    group_name="zoom",
    code_version="1",
)
def zoom_operation_logs(context: dg.AssetExecutionContext, zoom: ZoomClient) -> dg.Output:
    """Zoom operation logs (the account's admin audit trail) for one UTC day, stored exactly once.

    Raw records exactly as Zoom's `GET /report/operationlogs` returns them, one per line in gzipped
    NDJSON under `{S3_PREFIX}YYYY/MM/DD/`. Each run appends only what the day does not hold yet.
    """
    day = validate_day(context.partition_key)
    try:
        zoom.authenticate()  # bad credentials fail here, before storage is touched
    except ZoomError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    # The pass is lazy: the IO manager pages through it and writes as it goes, so a day of any size
    # streams through in constant memory.
    return dg.Output(zoom.day_pass(day))


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="zoom_logs_io_manager",
    ins={"raw": dg.AssetIn(key=zoom_operation_logs.key)},
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    retry_policy=RETRY,
    kinds={"s3"},
    group_name="zoom",
    code_version="1",
)
def zoom_operation_logs_udm(context: dg.AssetExecutionContext, raw: StoredDay) -> dg.Output:
    """Each raw operation log normalized to a Google SecOps UDM event (one event per record).

    Gzipped NDJSON of bare UDM events (Chronicle API JSON) under `{UDM_S3_PREFIX}YYYY/MM/DD/`, one part
    per raw part with the same name, so re-runs add nothing and lineage stays one-to-one.
    """
    # Normalizing needs no Zoom call, so stored days older than Zoom's window can still be mapped.
    day_start = datetime.combine(date.fromisoformat(context.partition_key), datetime.min.time(), UTC)
    return dg.Output(UdmOutput(raw=raw, transform=udm_line_transform(day_start)))


def udm_line_transform(fallback_time: datetime):
    """Raw NDJSON line + occurrence number -> (UDM event line, problems, covered target fields)."""

    def transform(line: bytes, occurrence: int) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = line.decode("utf-8", "replace")  # still one event, flagged not_an_object
        event, problems = to_udm_event(
            record, log_id=product_log_id(line, occurrence), fallback_time=fallback_time
        )
        return orjson.dumps(event), problems, coverage(event)

    return transform
