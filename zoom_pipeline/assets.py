"""The project's assets: Zoom operation logs per UTC day, and their UDM events.

    zoom_operation_logs      collector.collect(Zoom, stored day) ─► CollectedDay ─► IO manager: next part
    zoom_operation_logs_udm  stored raw parts ─► udm.map_line ─► UdmParts ─► IO manager: same-name UDM parts
"""

import time
from datetime import UTC, date, datetime

import dagster as dg

from zoom_pipeline.checks import ride_along_result
from zoom_pipeline.collector import CollectedDay, collect
from zoom_pipeline.constants import DAY_MATCHES_ZOOM, RAW_ASSET_KEY, ZOOM_API_POOL
from zoom_pipeline.day_store import PartWriter, StoredDigests, ZoomStore
from zoom_pipeline.io_manager import StoredDay, UdmParts
from zoom_pipeline.ledger import line_digests
from zoom_pipeline.partitions import daily_partitions, validate_day
from zoom_pipeline.udm import map_line
from zoom_pipeline.zoom_client import ZoomClient, zoom_failures

# Transient trouble that outlasts the client's own retries (Zoom 5xx storms, S3 outages, a racing
# run) gets a few more tries at the step level, spaced out; fatal errors use allow_retries=False.
RETRY = dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


@dg.asset(
    key=RAW_ASSET_KEY,
    partitions_def=daily_partitions,
    io_manager_key="zoom_logs_io_manager",
    pool=ZOOM_API_POOL,
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    retry_policy=RETRY,
    check_specs=[
        dg.AssetCheckSpec(
            DAY_MATCHES_ZOOM,
            asset=RAW_ASSET_KEY,
            description=(
                "The stored day holds exactly what this run's complete pass listed, copy for copy (by record "
                "digest), and every part has its manifest. WARN while same-second groups await confirmation."
            ),
        )
    ],
    kinds={"zoom", "s3"},
    group_name="zoom",
    code_version="2",
)
def zoom_operation_logs(context: dg.AssetExecutionContext, zoom: ZoomClient, zoom_store: ZoomStore):
    """Zoom operation logs (the account's admin audit trail) for one UTC day, stored exactly once.

    Raw records exactly as Zoom's `GET /report/operationlogs` returns them, one per line in gzipped
    NDJSON under `{S3_PREFIX}YYYY/MM/DD/`. Each run reads what the day holds, pages through Zoom and
    appends only what the day lacks, as one new part; no record is stored more often than one page of
    Zoom's listing shows it.
    """
    day = validate_day(context.partition_key).isoformat()
    days = zoom_store.days()
    with zoom_failures():
        zoom.authenticate()  # bad credentials fail here, before storage is read
        found = collect(zoom, days, day, log=context.log.info)
    yield dg.Output(found, metadata=pass_metadata(found))
    # The IO manager has stored the part by now: compare what this pass listed with the stored day.
    yield ride_along_result(days, found)


def pass_metadata(found: CollectedDay) -> dict:
    """What a pass did, for the materialization (the IO manager adds what it wrote)."""
    stats, ledger, state = found.stats, found.ledger, found.state
    elapsed = max(time.monotonic() - stats.started_at, 1e-9)
    return {
        "pass": "complete" if found.complete else "refresh (day still open)",
        "page_size": found.page_size,
        "records_from_api": ledger.listed,
        "records_new": ledger.new,
        "records_already_stored": ledger.already_stored,
        "records_moved_in_listing": ledger.moved,
        "odd_records": found.odd,
        "invalid_utf8_records": stats.invalid_utf8_records,
        "records_outside_day": found.outside_day,
        "pages": stats.pages,
        "api_calls": stats.api_calls,
        "api_retries": stats.retries,
        "token_mints": stats.token_mints,
        "tokens_adopted": stats.tokens_adopted,
        "zoom_calls_used_today": stats.calls_used_today if stats.calls_used_today is not None else 0,
        "day_restarts": stats.restarts,
        "stopped_early": stats.stopped_early,
        "day_exact": bool(state and state.exact),
        "complete_passes": state.passes if state else 0,
        "awaiting_confirmation_records": state.awaiting_records if state else 0,
        "awaiting_confirmation_groups": len(state.awaiting) if state else 0,
        "oldest_event_time": found.oldest_listed or "",
        "newest_event_time": found.newest_listed or "",
        "records_per_second": round(ledger.listed / elapsed, 1),
    }


@dg.asset(
    partitions_def=daily_partitions,
    io_manager_key="zoom_logs_io_manager",
    ins={"raw": dg.AssetIn(key=RAW_ASSET_KEY)},
    backfill_policy=dg.BackfillPolicy.multi_run(1),
    retry_policy=RETRY,
    kinds={"s3"},
    group_name="zoom",
    code_version="2",
)
def zoom_operation_logs_udm(context: dg.AssetExecutionContext, raw: StoredDay) -> dg.Output:
    """Each raw operation log normalized to a Google SecOps UDM event (one event per record).

    Gzipped NDJSON of bare UDM events (Chronicle API JSON) under `{UDM_S3_PREFIX}YYYY/MM/DD/`, one part
    per raw part with the same name, so re-runs add nothing and lineage stays one-to-one.
    """
    # Normalizing needs no Zoom call, so stored days older than Zoom's window can still be mapped.
    day_start = datetime.combine(date.fromisoformat(context.partition_key), datetime.min.time(), UTC)
    mapped = set(raw.days.parts(raw.day, udm=True).names)
    out = UdmParts(raw.day, [], raw_parts=len(raw.parts.names))
    todo = [name for name in raw.parts.names if name not in mapped]
    if not todo:
        return dg.Output(out)  # every raw part is mapped already: nothing to read
    # Occurrence numbers count identical raw lines across the whole day in part order, so two
    # identical events get different ids and a re-run computes the same ids.
    twins = _repeated(raw.days.digest(raw.parts))
    occurrences: dict[int, int] = {}
    try:
        for name in raw.parts.names:
            if name in mapped:
                if twins:
                    for d in line_digests(raw.lines(name)):
                        if d in twins:
                            occurrences[d] = occurrences.get(d, -1) + 1
                continue
            writer = PartWriter()
            try:
                batch: list[bytes] = []
                for line in raw.lines(name):
                    batch.append(line)
                    if len(batch) == 1000:
                        _map_batch(batch, twins, occurrences, day_start, writer, out)
                        batch = []
                _map_batch(batch, twins, occurrences, day_start, writer, out)
                part = writer.finish()
            except BaseException:
                writer.abort()
                raise
            if part is not None:
                out.parts.append((name, part))
    except BaseException:
        for _, part in out.parts:
            part.discard()
        raise
    return dg.Output(out)


def _map_batch(batch, twins, occurrences, day_start, writer: PartWriter, out: UdmParts) -> None:
    events = []
    for line, d in zip(batch, line_digests(batch), strict=True):
        occ = 0
        if d in twins:
            occ = occurrences[d] = occurrences.get(d, -1) + 1
        event, problems, covered = map_line(line, occ, day_start)
        events.append(event)
        for p in problems:
            out.problems[p] = out.problems.get(p, 0) + 1
        for f in covered:
            out.coverage[f] = out.coverage.get(f, 0) + 1
    out.events += len(events)
    writer.write(events, ())


def _repeated(stored: StoredDigests) -> set[int]:
    """Digests that occur more than once in the day (usually none), from its sorted multiset."""
    ordered = stored.multiset.digests
    return {a for a, b in zip(ordered, ordered[1:], strict=False) if a == b}
