"""Checks on zoom_operation_logs: did yesterday land on time, and does a stored day still match Zoom."""

import gzip
from array import array
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta

import dagster as dg
import orjson

from zoom_pipeline.assets import validate_day, zoom_operation_logs
from zoom_pipeline.constants import PART_SUFFIX, ZOOM_API_POOL
from zoom_pipeline.io_manager import StoredDay, ZoomLogsIOManager, day_path
from zoom_pipeline.ledger import StoredMultiset, encode_record, line_digest
from zoom_pipeline.partitions import daily_partitions
from zoom_pipeline.zoom_client import RESTART, ZoomClient, ZoomError

DEFAULT_FRESHNESS_DEADLINE_HOUR = 3
YESTERDAY_LANDED = "yesterday_landed_by_deadline"
DAY_MATCHES_ZOOM = "day_matches_zoom"
# Written by the IO manager on each materialization; "complete" means the pass began after the day ended.
COMPLETE_PASS = "complete"


# ---- freshness: yesterday landed by the deadline ------------------------------------------------


def yesterday_freshness(instance: dg.DagsterInstance, now: datetime, deadline_hour: int) -> dg.AssetCheckResult:
    """Whether yesterday (relative to `now`, UTC) has a complete pass; overdue only after the deadline.

    The 15-minute sensor materializes a day while it is still open, so a materialization alone proves
    nothing: only one from a complete pass (begun after the day ended) counts as landed.
    """
    now = now.astimezone(UTC)
    day_end = datetime.combine(now.date(), time.min, tzinfo=UTC)
    yesterday = (now.date() - timedelta(days=1)).isoformat()
    deadline = day_end + timedelta(hours=deadline_hour)
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=zoom_operation_logs.key, asset_partitions=[yesterday], after_timestamp=day_end.timestamp()
        ),
        limit=100,
        ascending=True,
    ).records
    landed = next((r for r in records if _pass_of(r) in (COMPLETE_PASS, None)), None)
    metadata = {"partition": yesterday, "deadline": dg.MetadataValue.timestamp(deadline)}
    if landed is not None:
        landed_at = datetime.fromtimestamp(landed.timestamp, UTC)
        late = landed_at > deadline
        return dg.AssetCheckResult(
            passed=True,
            metadata={**metadata, "landed_at": dg.MetadataValue.timestamp(landed_at), "late": late},
            description=(
                f"{yesterday} landed at {landed_at:%H:%M} UTC, "
                f"{'after' if late else 'before'} its {deadline:%H:%M} UTC deadline."
            ),
        )
    if now < deadline:
        return dg.AssetCheckResult(
            passed=True,
            metadata={**metadata, "due": False},
            description=f"Not due yet: {yesterday} must land by {deadline:%H:%M} UTC.",
        )
    return dg.AssetCheckResult(
        passed=False,
        metadata={**metadata, "due": True},
        description=(
            f"{yesterday} has not landed and its {deadline:%H:%M} UTC deadline has passed: no run has completed a "
            "full pass over it. Check that zoom_daily_schedule is running and look at its latest runs."
        ),
    )


def _pass_of(record) -> str | None:
    value = record.asset_materialization.metadata.get("pass") if record.asset_materialization else None
    return getattr(value, "value", None)


def freshness_deadline_hour(value: str | None) -> int:
    """ZOOM_FRESHNESS_DEADLINE_HOUR as an hour of the UTC day, or the default when unset."""
    if not value:
        return DEFAULT_FRESHNESS_DEADLINE_HOUR
    if not value.strip().isdigit() or not 0 <= int(value) <= 23:
        raise ValueError(f"ZOOM_FRESHNESS_DEADLINE_HOUR must be a whole hour from 0 to 23 (UTC), got {value!r}.")
    return int(value)


def build_yesterday_landed_check(deadline_hour: int = DEFAULT_FRESHNESS_DEADLINE_HOUR) -> dg.AssetChecksDefinition:
    """The freshness check with its deadline; definitions.py passes ZOOM_FRESHNESS_DEADLINE_HOUR."""

    # Dagster's build_time_partition_freshness_checks looks at the last partition, which is today with
    # end_offset=1; the day that should have landed is yesterday.
    @dg.asset_check(
        asset=zoom_operation_logs,
        name=YESTERDAY_LANDED,
        description=(
            f"Yesterday's (UTC) operation logs were collected by a complete pass before {deadline_hour:02d}:00 UTC. "
            "Passes with a note before the deadline; fails after it until the day lands."
        ),
        metadata={"deadline_hour_utc": deadline_hour},
    )
    def zoom_yesterday_landed_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return yesterday_freshness(context.instance, datetime.now(UTC), deadline_hour)

    return zoom_yesterday_landed_check


zoom_freshness_job = dg.define_asset_job(
    "zoom_freshness_job",
    selection=dg.AssetSelection.checks(dg.AssetCheckKey(zoom_operation_logs.key, YESTERDAY_LANDED)),
    description="Evaluate whether yesterday's Zoom operation logs landed by the deadline.",
)


def build_zoom_freshness_schedule(deadline_hour: int = DEFAULT_FRESHNESS_DEADLINE_HOUR) -> dg.ScheduleDefinition:
    # Before the deadline the check can only say "not due"; from it until midnight, hourly, so a late
    # landing turns the check green within the hour.
    return dg.ScheduleDefinition(
        name="zoom_freshness_schedule",
        job=zoom_freshness_job,
        cron_schedule=f"5 {deadline_hour}-23 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Hourly from {deadline_hour:02d}:05 UTC: did yesterday's operation logs land on time?",
    )


# ---- completeness: a finished day still matches Zoom --------------------------------------------


def manifest_name(part: str) -> str:
    return part.removesuffix(PART_SUFFIX) + ".manifest.json"


def day_completeness(
    day: str, zoom: ZoomClient, io_manager: ZoomLogsIOManager, *, listed_by_this_run: int | None = None
) -> dg.AssetCheckResult:
    """Compare a finished day in storage with Zoom's listing of it, and each stored part with its manifest.

    Zoom is listed again (a full pass; nothing is written) unless `listed_by_this_run` gives the size of a
    complete pass that this very run has just made: that pass wrote whatever storage lacked, so storage
    holds the listing and only a surplus can remain, which the counts show without a second listing.
    """
    listed = None
    api_calls = 0
    if listed_by_this_run is None:
        day_pass = zoom.day_pass(day)
        if not day_pass.complete:
            return dg.AssetCheckResult(
                passed=True,
                metadata={"day": day, "compared": False},
                description=f"Not compared: {day} has not ended yet, so Zoom's listing of it is still growing.",
            )
        listed = _listing_digests(day_pass)
        api_calls = day_pass.stats.api_calls

    store = io_manager.store()
    parts = io_manager.day_parts(store, io_manager.s3_prefix, day)
    stored_day = StoredDay(store, day, parts)
    lines_per_part: dict[str, int] = {}
    if listed is not None:
        stored_digests = array("Q")
        for name in parts.names:
            before = len(stored_digests)
            stored_digests.extend(line_digest(line) for line in stored_day.lines(name))
            lines_per_part[name] = len(stored_digests) - before
        stored = StoredMultiset(stored_digests)
        missing = sum(1 for digest in listed if not stored.take(digest))
        zoom_records = len(listed)
        stored_records = len(stored)
        surplus = stored_records - (zoom_records - missing)
    else:
        # Counts only (see the docstring): newlines counted a MiB at a time, no per-line work.
        for name in parts.names:
            lines_per_part[name] = _count_lines(store, parts.key(name))
        stored_records = sum(lines_per_part.values())
        zoom_records = listed_by_this_run
        missing = max(0, zoom_records - stored_records)
        surplus = max(0, stored_records - zoom_records)

    manifests = _manifests(io_manager, store, day)
    without_manifest = [name for name in parts.names if manifest_name(name) not in manifests]
    off_manifest = [
        name
        for name in parts.names
        if manifest_name(name) in manifests and manifests[manifest_name(name)].get("records") != lines_per_part[name]
    ]
    metadata = {
        "day": day,
        "compared": "with a new listing" if listed is not None else "with this run's complete pass",
        "zoom_records": zoom_records,
        "stored_records": stored_records,
        "missing_records": missing,
        "surplus_records": surplus,
        "parts": len(parts.names),
        "manifests": len(manifests),
        "manifest_records": sum(int(m.get("records") or 0) for m in manifests.values()),
        "parts_without_manifest": dg.MetadataValue.json(without_manifest),
        "parts_not_matching_manifest": dg.MetadataValue.json(off_manifest),
        "api_calls": api_calls,
        "prefix": store.uri(parts.prefix),
    }
    if missing or surplus:
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=(
                f"{day} drifted from Zoom: {missing} listed record(s) are not stored and {surplus} stored "
                "record(s) are not listed. Missing records that arrived late are added by the next run of the "
                "day; surplus ones mean an object was changed or added outside the pipeline."
            ),
        )
    if without_manifest or off_manifest:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=metadata,
            description=(
                f"{day} matches Zoom record for record, but {len(without_manifest)} part(s) have no manifest and "
                f"{len(off_manifest)} hold a different number of records than their manifest says."
            ),
        )
    return dg.AssetCheckResult(
        passed=True,
        metadata=metadata,
        description=f"{day} matches Zoom: {zoom_records} records in {len(parts.names)} part(s), as the manifests say.",
    )


def _count_lines(store, key: str) -> int:
    with store.open(key) as body, gzip.GzipFile(fileobj=body, mode="rb") as gz:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: gz.read(1 << 20), b""))


def _listing_digests(day_pass) -> array:
    """Digests of every record a full pass lists, as the IO manager would store them."""
    listed = array("Q")
    try:
        for page in day_pass.pages():
            if page is RESTART:
                listed = array("Q")  # the pass starts over from page 1
                continue
            listed.extend(line_digest(encode_record(record)) for record in page)
    except ZoomError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    return listed


def _listed_by_run(instance: dg.DagsterInstance, day: str, run_id: str) -> int | None:
    """How many records the run's own complete pass over `day` listed, if the run collected the day."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=zoom_operation_logs.key, asset_partitions=[day]), limit=1
    ).records
    if not records or records[0].run_id != run_id or _pass_of(records[0]) != COMPLETE_PASS:
        return None
    value = records[0].asset_materialization.metadata.get("records_from_api")
    return None if value is None else int(value.value)


def _manifests(io_manager: ZoomLogsIOManager, store, day: str) -> dict[str, dict]:
    folder = io_manager.manifest_prefix + day_path(day)
    out = {}
    for obj in store.list(folder):
        name = obj.key[len(folder) :]
        if "/" in name or not name.endswith(".manifest.json"):
            continue
        with store.open(obj.key) as body:
            out[name] = orjson.loads(body.read())
    return out


# Partitioned like the asset (a preview feature in Dagster 1.13), so a run tagged with its day records
# the result against that day. It reads storage itself rather than taking the asset as an input, which
# would load every partition, and it calls Zoom, so it takes a slot of the `zoom_api` pool.
@dg.asset_check(
    asset=zoom_operation_logs,
    name=DAY_MATCHES_ZOOM,
    partitions_def=daily_partitions,
    pool=ZOOM_API_POOL,
    required_resource_keys={"zoom", "zoom_logs_io_manager"},
)
def zoom_day_completeness_check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    """A finished day still matches Zoom: re-lists the day from the API (nothing is written) and compares
    every stored record, with multiplicity, plus each part against its manifest. Fails on drift.

    The day is the run's: the day it materialized, or the run tag dagster/partition=YYYY-MM-DD when
    zoom_completeness_job is launched; untagged, the day before yesterday (the latest day the daily
    schedule has settled).
    """
    day = validate_day(checked_day(context.run.tags, datetime.now(UTC))).isoformat()
    # Materializing a day from the asset page or the CLI runs this check right after the asset: reuse that
    # pass's listing rather than doubling the Zoom calls of every such run (and backfill).
    return day_completeness(
        day,
        context.resources.zoom,
        context.resources.zoom_logs_io_manager,
        listed_by_this_run=_listed_by_run(context.instance, day, context.run.run_id),
    )


def checked_day(tags: Mapping[str, str], now: datetime) -> str:
    """The day a completeness run compares, from its tags; the day before `now`'s yesterday by default."""
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    # Asset backfills tag each run with a partition range (one day each, with BackfillPolicy.multi_run(1));
    # Dagster 1.13 then records the result without its partition, so every result also names its day.
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and start != end:
        raise dg.Failure(
            f"day_matches_zoom compares one day at a time, but this run covers {start}...{end}; "
            "launch each day in its own run.",
            allow_retries=False,
        )
    return start or (now.astimezone(UTC).date() - timedelta(days=2)).isoformat()


zoom_completeness_job = dg.define_asset_job(
    "zoom_completeness_job",
    selection=dg.AssetSelection.checks(zoom_day_completeness_check),
    description="Re-list one finished day from Zoom and compare it with what storage holds.",
)
