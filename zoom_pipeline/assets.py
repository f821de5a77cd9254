"""The project's assets, two per source (sources.py): its raw logs per UTC day, and their UDM events.

    zoom_operation_logs      per day: collector.collect(Zoom, stored day) ─► CollectedDay ─► landing.land: next part
    zoom_operation_logs_udm  IO manager: stored raw days ─► source.map_line ─► UdmParts ─► IO manager: same names
    zoom_activity_logs, zoom_activity_logs_udm   the same for sign-in/sign-out activity logs
"""

import time
from datetime import UTC, date, datetime

import dagster as dg

from zoom_pipeline.accounts import DEFAULT_ACCOUNT, Account
from zoom_pipeline.checks import ride_along_result
from zoom_pipeline.collector import CollectedDay, collect
from zoom_pipeline.constants import DAY_MATCHES_ZOOM, DEFAULT_BACKFILL_DAYS_PER_RUN
from zoom_pipeline.day_store import PartWriter, StoredDigests, ZoomStore
from zoom_pipeline.failures import retry_only_transient
from zoom_pipeline.io_manager import StoredDay, UdmParts
from zoom_pipeline.landing import land
from zoom_pipeline.ledger import line_digests
from zoom_pipeline.partitions import daily_partitions, validate_day
from zoom_pipeline.sources import ACTIVITY_LOGS, OPERATION_LOGS, SOURCES, Source
from zoom_pipeline.zoom_client import ZoomClient

# Transient trouble that outlasts the client's own retries (Zoom 5xx storms, S3 outages, a racing
# run) gets a few more tries at the step level, spaced out; fatal errors use allow_retries=False.
RETRY = dg.RetryPolicy(max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def build_source_assets(source: Source, account: Account = DEFAULT_ACCOUNT,
                        partitions_def: dg.DailyPartitionsDefinition = daily_partitions,
                        ) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The raw asset of `source` (with its ride-along check) and its UDM asset, for `account` (its name is
    the key prefix; the single account of a deployment without an accounts file has none)."""
    key = account.asset_key(source.name)
    zoom_key, store_key = account.resource_key("zoom"), account.resource_key("zoom_store")

    raw_spec = dict(
        name="__".join([*account.key_prefix, source.name]),
        specs=[
            dg.AssetSpec(
                key,
                description=(
                    f"Zoom {source.title} ({source.summary}) for one UTC day, stored exactly once: raw records "
                    f"exactly as Zoom's `GET /{source.path}` returns them, one per line in gzipped NDJSON under "
                    f"`{{{source.prefix[0]}}}YYYY/MM/DD/`. Each run reads what the day holds, pages through Zoom "
                    "and appends only what the day lacks, as one new part; no record is stored more often than "
                    "one page of Zoom's listing shows it."
                ),
                kinds={"zoom", "s3"},
                group_name=account.group,
                code_version="2",
                # A run of many days reports each day as it lands rather than through one output at the end.
                skippable=True,
            )
        ],
        partitions_def=partitions_def,
        pool=account.pool,
        # config.py replaces this with ZOOM_BACKFILL_DAYS_PER_RUN days a run.
        backfill_policy=dg.BackfillPolicy.multi_run(DEFAULT_BACKFILL_DAYS_PER_RUN),
        retry_policy=RETRY,
        check_specs=[
            dg.AssetCheckSpec(
                DAY_MATCHES_ZOOM,
                asset=key,
                description=(
                    "The stored day holds exactly what this run's complete pass listed, copy for copy (by record "
                    "digest), and every part has its manifest. WARN while same-second groups await confirmation."
                ),
            )
        ],
        # Lets a run of many days record the check day by day; the asset and its check always run together.
        can_subset=True,
    )

    def collect_days(context: dg.AssetExecutionContext, zoom: ZoomClient, zoom_store: ZoomStore):
        """Collect each day of the run from Zoom, land it, and report it (collector.py, landing.py).

        The days are collected one after another with one client. Each is landed as soon as it is
        collected; a run of many days (a backfill) records each day's materialization and check as it
        lands, so a failure on one day leaves the days before it landed and shown as materialized, and a
        re-execution of the backfill from failure reads only the rest. A one-day run reports its day as
        the step's result, which the UDM step of the same run then maps.
        """
        with retry_only_transient():  # only what may pass later goes to the RetryPolicy (failures.py)
            keys, lost = served_days(context.partition_keys, account)
            landed = landed_earlier(context, key) if len(context.partition_keys) > 1 else set()
            if landed:
                context.log.info(f"Not read again: {len(landed)} day(s) an earlier attempt of this run landed.")
            days = zoom_store.days(source)
            zoom.authenticate()  # bad credentials fail here, before storage is read
            for day in keys:
                if day in landed:
                    continue
                found = collect(zoom, days, day, log=context.log.info)
                stored = land(days, found, run_id=context.run_id, warn=context.log.warning)
                metadata = pass_metadata(found) | stored | {
                    "objects_written": dg.MetadataValue.json(stored["objects_written"])
                }
                verdict = ride_along_result(days, found)  # None for a refresh: the check is then not run
                if len(keys) == 1:
                    yield dg.MaterializeResult(asset_key=key, metadata=metadata,
                                               check_results=[verdict] if verdict else [])
                else:
                    yield dg.AssetMaterialization(asset_key=key, partition=day, metadata=metadata)
                    if verdict:
                        yield evaluation_of(key, verdict, day)
            if lost:
                raise dg.Failure(
                    f"Collected {len(keys)} of the run's {len(context.partition_keys)} days; Zoom no longer serves "
                    f"{', '.join(lost)} (outside its retention window, or not a day), so they cannot be collected.",
                    allow_retries=False,
                )

    # A named account's resources have keys of its own (zoom__<name>, zoom_store__<name>); the single account
    # keeps the parameters `zoom` and `zoom_store`, as before accounts existed.
    if account.name:
        @dg.multi_asset(**raw_spec, required_resource_keys={zoom_key, store_key})
        def raw_logs(context: dg.AssetExecutionContext):
            """Collect, land and report each day of the run (see collect_days)."""
            yield from collect_days(context, getattr(context.resources, zoom_key),
                                    getattr(context.resources, store_key))
    else:
        @dg.multi_asset(**raw_spec)
        def raw_logs(context: dg.AssetExecutionContext, zoom: ZoomClient, zoom_store: ZoomStore):
            """Collect, land and report each day of the run (see collect_days)."""
            yield from collect_days(context, zoom, zoom_store)

    @dg.asset(
        name=source.udm_name,
        key_prefix=account.key_prefix or None,
        description=(
            f"{source.udm_description} Gzipped NDJSON of bare UDM events (Chronicle API JSON) under "
            f"`{{{source.udm_prefix[0]}}}YYYY/MM/DD/`, one part per raw part with the same name, so re-runs add "
            "nothing and lineage stays one-to-one."
        ),
        partitions_def=partitions_def,
        io_manager_key=account.resource_key("zoom_logs_io_manager"),
        ins={"raw": dg.AssetIn(key=key, input_manager_key=account.resource_key("zoom_logs_io_manager"))},
        # Unlike the raw asset's, so a backfill maps the days in their own runs as the raw days land.
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=RETRY,
        kinds={"s3"},
        group_name=account.group,
        code_version="2",
    )
    def udm_events(raw: list[StoredDay]) -> dg.Output:
        """Map each stored raw day's new parts to UDM parts (udm.py / udm_activity.py)."""
        # Normalizing needs no Zoom call, so stored days older than Zoom's window can still be mapped.
        out: list[UdmParts] = []
        try:
            with retry_only_transient():
                for day in raw:
                    out.append(map_day(day))
        except BaseException:
            for mapped in out:
                for _, part in mapped.parts:
                    part.discard()
            raise
        return dg.Output(out)

    return raw_logs, udm_events


def served_days(keys: list[str], account: Account = DEFAULT_ACCOUNT) -> tuple[list[str], list[str]]:
    """The run's days Zoom still serves (from the account's first day on), and those it does not. A run
    with no day Zoom serves fails at once with the first one's reason, before any call; a run of many
    collects the rest first."""
    served, lost, first = [], [], None
    for key in keys:
        try:
            if account.logs_start_date and key < account.logs_start_date:
                raise dg.Failure(f"{key} is before {account.label}'s logs_start_date ({account.logs_start_date}), "
                                 "so nothing was fetched or written.", allow_retries=False)
            served.append(validate_day(key).isoformat())
        except dg.Failure as failure:
            lost.append(key)
            first = first or failure
    if first and not served:
        raise first
    return served, lost


def landed_earlier(context: dg.AssetExecutionContext, key: dg.AssetKey) -> set[str]:
    """Days this run, or the run it re-executes, already landed: a step retry or a re-execution from
    failure of a many-day run goes on from the day that failed instead of reading every day again."""
    days, run = set(), context.run
    for _ in range(10):  # a re-execution chain longer than this just reads a few days again
        records = context.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
        ).records
        for record in records:
            materialization = record.event_log_entry.asset_materialization
            if materialization and materialization.asset_key == key and materialization.partition:
                days.add(materialization.partition)
        # Only a re-execution *from failure* continues its parent; a full re-execution reads every day.
        if run.tags.get("dagster/is_resume_retry") != "true" or not run.parent_run_id:
            break
        if not (run := context.instance.get_run_by_id(run.parent_run_id)):
            break
    return days


def evaluation_of(key: dg.AssetKey, result: dg.AssetCheckResult, day: str) -> dg.AssetCheckEvaluation:
    """The check's result recorded against `day` (a run of many days has no one partition to infer)."""
    return dg.AssetCheckEvaluation(
        asset_key=key,
        check_name=result.check_name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=day,
    )


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
        "malformed_pages_retried": stats.malformed_pages,
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


def map_day(raw: StoredDay) -> UdmParts:
    """UDM parts for the raw parts of `raw` that have none yet."""
    day_start = datetime.combine(date.fromisoformat(raw.day), datetime.min.time(), UTC)
    mapped = set(raw.days.parts(raw.day, udm=True).names)
    out = UdmParts(raw.day, [], raw_parts=len(raw.parts.names))
    todo = [name for name in raw.parts.names if name not in mapped]
    if not todo:
        return out  # every raw part is mapped already: nothing to read
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
                        _map_batch(raw.days.source.map_line, batch, twins, occurrences, day_start, writer, out)
                        batch = []
                _map_batch(raw.days.source.map_line, batch, twins, occurrences, day_start, writer, out)
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
    return out


def _map_batch(map_line, batch, twins, occurrences, day_start, writer: PartWriter, out: UdmParts) -> None:
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


SOURCE_ASSETS = {source: build_source_assets(source) for source in SOURCES}
zoom_operation_logs, zoom_operation_logs_udm = SOURCE_ASSETS[OPERATION_LOGS]
zoom_activity_logs, zoom_activity_logs_udm = SOURCE_ASSETS[ACTIVITY_LOGS]
