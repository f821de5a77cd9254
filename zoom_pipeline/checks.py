"""Checks on each source's raw asset: does a stored day match Zoom, record by record, and did yesterday land.

- `day_matches_zoom` rides along every materialization (the raw asset yields it once its part is
  stored): what this run listed against what storage holds now, digest by digest, at no extra call.
- `day_matches_fresh_listing` lists a finished day again (nothing is written) and compares it the
  same way; `zoom_completeness_job` runs it for one day.
- `yesterday_landed_by_deadline`: a complete pass over yesterday landed before the deadline hour.
- `every_day_in_zoom_window_collected`: every ended day Zoom still serves had a complete pass; fails for
  days that leave Zoom's window within two weeks ("collect now or lose it").

A drift says how many stored copies are *extra* (a page of the listing proves Zoom has fewer:
damage), how many listed copies are *missing* (a page proves Zoom has more), and how many records
*await confirmation* (a page boundary cut their second's group, so no page proved its content yet).
"""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

import dagster as dg

from zoom_pipeline.accounts import DEFAULT_ACCOUNT, Account
from zoom_pipeline.collector import CollectedDay, collect, is_complete
from zoom_pipeline.constants import (
    DAY_MATCHES_FRESH_LISTING,
    DAY_MATCHES_ZOOM,
    WINDOW_COLLECTED,
    YESTERDAY_LANDED,
)
from zoom_pipeline.day_store import DayParts, DayStore, ZoomStore
from zoom_pipeline.failures import retry_only_transient
from zoom_pipeline.ledger import line_digests
from zoom_pipeline.partitions import daily_partitions, oldest_served_day, validate_day
from zoom_pipeline.sources import OPERATION_LOGS, Source
from zoom_pipeline.zoom_client import ZoomClient

DEFAULT_FRESHNESS_DEADLINE_HOUR = 3
LOSE_IT_WITHIN_DAYS = 14
# Written by the raw asset on each materialization; "complete" means the pass began after the day ended.
COMPLETE_PASS = "complete"
EXAMPLES = 3


@dataclass
class Drift:
    """How a stored day differs from a listing of it."""

    missing: int = 0  # copies a page showed that storage lacks
    extra: int = 0  # stored copies beyond what Zoom lists (damage)
    awaiting: int = 0  # copies Zoom counts that no page has shown yet
    unproven: int = 0  # stored copies no page of this listing showed, in groups it could not prove (fine)
    awaiting_groups: int = 0
    missing_examples: list[bytes] = field(default_factory=list)
    extra_examples: list[bytes] = field(default_factory=list)
    parts_without_manifest: list[str] = field(default_factory=list)
    parts_not_matching_manifest: list[str] = field(default_factory=list)
    short_by: int = 0  # records this listing lacks against an earlier, longer one (it proves nothing)
    from_other_listings: int = 0  # copies a racing run stored from its own listing, which this one did not show

    def settle(self, listed: int, stored_after: int, provable_extra: int, longest: int = 0) -> None:
        """Storage never holds more of a record than one page showed, so once it holds as many records
        as Zoom lists it holds exactly Zoom's: the difference of the totals is what is still open. Zoom
        lists at least the longest listing any complete pass saw (it never deletes)."""
        known = max(listed, longest)
        self.short_by = known - listed
        self.extra = max(provable_extra, stored_after - known)
        self.awaiting = max(0, known - stored_after - self.missing)


def ride_along_drift(days: DayStore, found: CollectedDay) -> Drift:
    """What this run listed against what storage holds now that its part is stored."""
    drift = Drift()
    after = days.parts(found.day)
    manifests = days.manifests(found.day)
    drift.parts_without_manifest = [n for n in after.names if n not in manifests]
    added = tuple(n for n in after.names if n not in found.parts_before.names)
    stored_after = found.stored_before
    sha = found.part.sha256 if found.part is not None else None
    ours = next((n for n in added if sha and manifests.get(n, {}).get("sha256") == sha), None)
    others = tuple(n for n in added if n != ours)
    drift.unproven, drift.extra_examples = found.unshown.unproven, list(found.unshown.extra_examples)
    if ours is not None:
        stored_after += found.part.records
    if others:
        stored_after += _racing_copies(days, found, DayParts(after.folder, others), manifests, drift,
                                       ours=DayParts(after.folder, (ours,)) if ours is not None else None)
    elif ours is None and found.part is not None:
        drift.missing = found.part.records
    longest = found.previous_state.longest_listed if found.previous_state else 0
    drift.settle(found.ledger.listed, stored_after, found.unshown.extra, longest)
    drift.awaiting_groups = len(found.state.awaiting) if found.state and drift.awaiting else 0
    return drift


def _vouched(manifest: dict | None) -> bool:
    """A part a run of the pipeline stored and described itself (not one found without a manifest)."""
    return bool(manifest) and manifest.get("pass") in ("complete", "refresh") and not manifest.get("recovered")


def _racing_copies(days: DayStore, found: CollectedDay, racing: DayParts, manifests: dict, drift: Drift, *,
                   ours: DayParts | None) -> int:
    """The copies of parts other runs stored while this pass ran that count against this pass's listing.

    Like with like: a racing run stored its own listing of the day, which may be later and longer. Its
    copies this listing showed count; those it did not are that run's to judge (its own check), so they
    are set aside as `from_other_listings`, unless the part is not vouched for by a pipeline manifest:
    then nothing explains them, and they count (as extra, with examples). Sets `drift.missing` to the
    copies this listing showed that neither this run's part nor the racing parts hold."""
    available = Counter(found.ledger.written.all)  # what this listing showed beyond what the day held
    if ours is not None:  # less what this run's own part holds (read back: only when runs raced)
        for batch in days.batches(ours, ours.names[0]):
            for d in line_digests(batch):
                if available[d] > 0:
                    available[d] -= 1
    counted = 0
    for name in sorted(racing.names, key=lambda n: not _vouched(manifests.get(n))):  # vouched parts first
        vouched = _vouched(manifests.get(name))
        for batch in days.batches(racing, name):
            for line, d in zip(batch, line_digests(batch), strict=True):
                if available[d] > 0:
                    available[d] -= 1
                    counted += 1
                elif vouched:
                    drift.from_other_listings += 1
                else:
                    counted += 1
                    if len(drift.extra_examples) < EXAMPLES:
                        drift.extra_examples.append(line)
    drift.missing = sum(available.values())
    return counted


def fresh_listing_drift(days: DayStore, found: CollectedDay) -> Drift:
    """A listing made without writing (`collect(write=False)`) against what storage holds."""
    drift = Drift(missing=found.ledger.new, missing_examples=list(found.missing_examples))
    drift.unproven, drift.extra_examples = found.unshown.unproven, list(found.unshown.extra_examples)
    longest = found.previous_state.longest_listed if found.previous_state else 0
    drift.settle(found.ledger.listed, found.stored_before + found.ledger.new, found.unshown.extra, longest)
    drift.awaiting_groups = len(found.ledger.unconfirmed) if drift.awaiting else 0
    manifests = days.manifests(found.day)
    drift.parts_without_manifest = [n for n in found.parts_before.names if n not in manifests]
    drift.parts_not_matching_manifest = [
        n for n in found.parts_before.names
        if n in manifests and manifests[n].get("records") != found.lines_per_part.get(n)
    ]
    return drift


def _show(lines: list[bytes]) -> list[str]:
    return [line[:300].decode("utf-8", "replace") for line in lines]


def drift_result(day: str, found: CollectedDay, drift: Drift, *, compared: str, api_calls: int,
                 prefix: str, check_name: str | None = None) -> dg.AssetCheckResult:
    """The check's verdict: ERROR on extra or missing copies, WARN while records await confirmation or a
    part's manifest is off, passed otherwise."""
    metadata = {
        "day": day,
        "compared": compared,
        "zoom_records_listed": found.ledger.listed,
        "stored_records_before": found.stored_before,
        "missing_copies": drift.missing,
        "extra_copies": drift.extra,
        "unproven_stored_copies": drift.unproven,
        "awaiting_confirmation_records": drift.awaiting,
        "awaiting_confirmation_groups": drift.awaiting_groups,
        "missing_examples": dg.MetadataValue.json(_show(drift.missing_examples)),
        "extra_examples": dg.MetadataValue.json(_show(drift.extra_examples)),
        "parts_without_manifest": dg.MetadataValue.json(drift.parts_without_manifest),
        "parts_not_matching_manifest": dg.MetadataValue.json(drift.parts_not_matching_manifest),
        "listing_short_by": drift.short_by,
        "copies_from_other_listings": drift.from_other_listings,
        "api_calls": api_calls,
        "prefix": prefix,
    }
    if drift.missing or drift.extra:
        return dg.AssetCheckResult(
            check_name=check_name, passed=False, metadata=metadata,
            description=(
                f"{day} drifted from Zoom: {drift.missing} listed copies are not stored (a later run of the day "
                f"adds records that arrived late) and {drift.extra} stored copies are more than Zoom lists "
                "(damage: an object changed or added outside the pipeline, or a listing of Zoom's that ended "
                "early)."
            ),
        )
    if drift.short_by or drift.awaiting or drift.parts_without_manifest or drift.parts_not_matching_manifest:
        notes = []
        if drift.short_by:
            notes.append(
                f"Zoom listed {found.ledger.listed} records, {drift.short_by} fewer than an earlier complete pass "
                "listed; Zoom never deletes, so this listing ended early and proves nothing (the day is not proven "
                "exact until a complete pass lists at least as many)"
            )
        if drift.awaiting:
            notes.append(
                f"Zoom counts {drift.awaiting} more record(s) than any page has shown yet: they await confirmation "
                f"in {drift.awaiting_groups} same-second group(s) a page boundary cut (or arrived while the day was "
                "read); the next complete pass reads the day with a page size that keeps those groups whole"
            )
        if drift.parts_without_manifest or drift.parts_not_matching_manifest:
            notes.append(
                f"{len(drift.parts_without_manifest)} part(s) have no manifest and "
                f"{len(drift.parts_not_matching_manifest)} hold another number of records than their manifest says"
            )
        return dg.AssetCheckResult(
            check_name=check_name, passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
            description=f"{day} holds every copy Zoom listed and none more, but " + "; ".join(notes) + ".",
        )
    return dg.AssetCheckResult(
        check_name=check_name, passed=True, metadata=metadata,
        description=(f"{day} matches Zoom record for record: {found.ledger.listed} records, none more often than a "
                     "page lists it, as many as Zoom counts."
                     + (f" A racing run stored {drift.from_other_listings} more cop(ies) from its own, later listing "
                        "of the day, which its own check compares." if drift.from_other_listings else "")),
    )


def ride_along_result(days: DayStore, found: CollectedDay) -> dg.AssetCheckResult | None:
    """`day_matches_zoom` for the run that just stored `found`; None when there is nothing to compare: a
    refresh of a day that has not ended reads only its newest records. The check is then not executed in
    that run (Dagster shows it as not run), so a green check always means compared and equal."""
    if not found.complete:
        return None
    return drift_result(found.day, found, ride_along_drift(days, found), compared="with this run's complete pass",
                        api_calls=0, prefix=days.uri(found.parts_before.folder), check_name=DAY_MATCHES_ZOOM)


# ---- a fresh listing of a finished day -------------------------------------------------------------


def checked_day(tags: Mapping[str, str], now: datetime) -> str:
    """The day a completeness run compares, from its tags; the day before `now`'s yesterday by default."""
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    # Asset backfills tag each run with a partition range; Dagster 1.13 then records a partitioned check's
    # result without its partition, so every result also names its day.
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and start != end:
        raise dg.Failure(
            f"{DAY_MATCHES_FRESH_LISTING} compares one day at a time, but this run covers {start}...{end}; "
            "launch each day in its own run.",
            allow_retries=False,
        )
    return start or (now.astimezone(UTC).date() - timedelta(days=2)).isoformat()


def fresh_listing_result(zoom: ZoomClient, days: DayStore, day: str, *, log) -> dg.AssetCheckResult | None:
    """List a finished day from Zoom (writing nothing) and compare it with storage; None (not compared,
    no call) for a day that has not ended: Zoom's listing of it is still growing."""
    if not is_complete(day, datetime.now(UTC)):
        log(f"Not compared: {day} has not ended yet, so Zoom's listing of it is still growing.")
        return None
    with retry_only_transient():
        found = collect(zoom, days, day, log=log, write=False)
    return drift_result(day, found, fresh_listing_drift(days, found), compared="with a new listing",
                        api_calls=found.stats.api_calls, prefix=days.uri(found.parts_before.folder))


# ---- freshness: yesterday landed by the deadline ------------------------------------------------


def yesterday_freshness(instance: dg.DagsterInstance, now: datetime, deadline_hour: int,
                        source: Source = OPERATION_LOGS, key: dg.AssetKey | None = None) -> dg.AssetCheckResult:
    """Whether yesterday (relative to `now`, UTC) has a complete pass; overdue only after the deadline.

    The 15-minute sensor materializes a day while it is still open, so a materialization alone proves
    nothing: only one from a complete pass (begun after the day ended) counts as landed.
    """
    now = now.astimezone(UTC)
    day_end = datetime.combine(now.date(), time.min, tzinfo=UTC)
    yesterday = (now.date() - timedelta(days=1)).isoformat()
    deadline = day_end + timedelta(hours=deadline_hour)
    if not collected_anything(instance, key or dg.AssetKey(source.name)):
        return nothing_to_judge(source, f"this check judges yesterday once days are collected (the daily "
                                        f"schedule lands yesterday by {deadline_hour:02d}:00 UTC)")
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=key or dg.AssetKey(source.name), asset_partitions=[yesterday],
            after_timestamp=day_end.timestamp(),
        ),
        limit=100,
        ascending=True,
    ).records
    landed = next((r for r in records if pass_of(r) in (COMPLETE_PASS, None)), None)
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


def collected_anything(instance: dg.DagsterInstance, key: dg.AssetKey) -> bool:
    """Whether any day of the asset ever had a complete pass on this instance (a fresh instance has none)."""
    cursor = None
    while True:
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor)
        if any(pass_of(r) in (COMPLETE_PASS, None) for r in result.records):
            return True
        if not result.has_more:
            return False
        cursor = result.cursor


def nothing_to_judge(source: Source, then: str) -> dg.AssetCheckResult:
    """WARN, not ERROR, on an instance that never collected a day: a first run is no failure."""
    return dg.AssetCheckResult(
        passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"nothing_to_judge": True},
        description=f"Nothing to judge yet: no day of {source.title} has been collected by a complete pass on "
                    f"this instance; {then}.",
    )


def pass_of(record) -> str | None:
    value = record.asset_materialization.metadata.get("pass") if record.asset_materialization else None
    return getattr(value, "value", None)


def freshness_deadline_hour(value: str | None) -> int:
    """ZOOM_FRESHNESS_DEADLINE_HOUR as an hour of the UTC day, or the default when unset."""
    if not value:
        return DEFAULT_FRESHNESS_DEADLINE_HOUR
    if not value.strip().isdigit() or not 0 <= int(value) <= 23:
        raise ValueError(f"ZOOM_FRESHNESS_DEADLINE_HOUR must be a whole hour from 0 to 23 (UTC), got {value!r}.")
    return int(value)


# ---- gaps: every day Zoom still serves was collected ------------------------------------------------


def window_gaps(instance: dg.DagsterInstance, today, source: Source = OPERATION_LOGS, key: dg.AssetKey | None = None,
                first: str | None = None) -> tuple[list[str], list[str]]:
    """(ended days inside Zoom's window with no complete pass, those of them leaving it within 14 days),
    from `first` (the account's first day; the first partition by default)."""
    oldest = oldest_served_day(today)
    days = [(oldest + timedelta(days=n)).isoformat() for n in range((today - oldest).days)]
    first = max(first or "", daily_partitions.start.date().isoformat())
    days = [d for d in days if d >= first]
    collected: set[str] = set()
    cursor = None
    while True:  # every materialization of those days (refreshes of a day while it was today included)
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key or dg.AssetKey(source.name), asset_partitions=days), limit=5000,
            cursor=cursor,
        )
        collected.update(r.partition_key for r in result.records if pass_of(r) in (COMPLETE_PASS, None))
        if not result.has_more:
            break
        cursor = result.cursor
    gaps = [d for d in days if d not in collected]
    soon = (oldest + timedelta(days=LOSE_IT_WITHIN_DAYS)).isoformat()
    return gaps, [d for d in gaps if d < soon]


def window_result(instance: dg.DagsterInstance, today, source: Source = OPERATION_LOGS,
                  key: dg.AssetKey | None = None, first: str | None = None) -> dg.AssetCheckResult:
    gaps, urgent = window_gaps(instance, today, source, key, first)
    if gaps and not collected_anything(instance, key or dg.AssetKey(source.name)):
        return nothing_to_judge(source, f"{len(gaps)} ended day(s) inside Zoom's window can be backfilled from the "
                                        f"asset page, {len(urgent)} of them leaving the window within "
                                        f"{LOSE_IT_WITHIN_DAYS} days")
    metadata = {
        "oldest_day_zoom_serves": oldest_served_day(today).isoformat(),
        "days_without_complete_pass": dg.MetadataValue.json(gaps),
        "days_lost_within_14_days": dg.MetadataValue.json(urgent),
    }
    if urgent:
        return dg.AssetCheckResult(
            passed=False, metadata=metadata,
            description=(
                f"Collect now or lose it: {len(urgent)} day(s) leave Zoom's six-month window within "
                f"{LOSE_IT_WITHIN_DAYS} days without a complete pass: {', '.join(urgent[:10])}"
                f"{' ...' if len(urgent) > 10 else ''}. Backfill them from the asset page."
            ),
        )
    if gaps:
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata=metadata,
            description=(f"{len(gaps)} day(s) inside Zoom's window have no complete pass yet (the oldest: "
                         f"{gaps[0]}); none leaves the window within {LOSE_IT_WITHIN_DAYS} days."),
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata,
                               description="Every ended day inside Zoom's window had a complete pass.")


# ---- the checks of one source ------------------------------------------------------------------


def build_source_checks(source: Source, deadline_hour: int = DEFAULT_FRESHNESS_DEADLINE_HOUR,
                        account: Account = DEFAULT_ACCOUNT,
                        partitions_def: dg.DailyPartitionsDefinition = daily_partitions,
                        ) -> list[dg.AssetChecksDefinition]:
    """The fresh listing, freshness and gap checks of `source`'s raw asset of `account` (its ride-along
    check is the asset's own); definitions.py passes ZOOM_FRESHNESS_DEADLINE_HOUR."""
    key = account.asset_key(source.name)
    zoom_key, store_key = account.resource_key("zoom"), account.resource_key("zoom_store")

    op_prefix = "__".join([*account.key_prefix, source.name])

    def materializes_the_asset(context: dg.AssetCheckExecutionContext) -> bool:
        return key in (context.run.asset_selection or ())

    # Partitioned like the asset (a preview feature in Dagster 1.13), so a run tagged with its day records
    # the result against that day. It reads storage itself rather than taking the asset as an input, which
    # would load every partition, and it calls Zoom, so it takes a slot of the account's pool. A multi-asset
    # check, so that a run in which it compares nothing leaves it not executed rather than passed.
    @dg.multi_asset_check(
        name=f"{op_prefix}__{DAY_MATCHES_FRESH_LISTING}",
        specs=[dg.AssetCheckSpec(
            DAY_MATCHES_FRESH_LISTING, asset=key, partitions_def=partitions_def,
            description=(
                f"A finished day still matches Zoom's {source.title}: lists the day again (nothing is written) "
                "and compares every stored record with it, copy for copy, plus each part against its manifest. "
                "The day is the run's tag dagster/partition=YYYY-MM-DD (zoom_completeness_job); untagged, the day "
                "before yesterday (the latest day the daily schedule has settled). Not executed in a run that "
                "materializes the day (day_matches_zoom compares that pass) or for a day that has not ended."
            ),
        )],
        can_subset=True,
        pool=account.pool,
        required_resource_keys={zoom_key, store_key},
    )
    def fresh_listing_check(context: dg.AssetCheckExecutionContext):
        day = validate_day(checked_day(context.run.tags, datetime.now(UTC))).isoformat()
        if materializes_the_asset(context):
            # Materializing the day from the asset page runs every check of the asset: its ride-along
            # day_matches_zoom has just compared that pass, so a second full listing would only double the calls.
            context.log.info(f"Not listed again: this run materialized {day}, and {DAY_MATCHES_ZOOM} compared its "
                             "pass with storage. Launch zoom_completeness_job to list the day afresh.")
            return
        zoom: ZoomClient = getattr(context.resources, zoom_key)
        zoom_store: ZoomStore = getattr(context.resources, store_key)
        result = fresh_listing_result(zoom, zoom_store.days(source), day, log=context.log.info)
        if result is not None:
            yield result._replace(asset_key=key, check_name=DAY_MATCHES_FRESH_LISTING)

    # Dagster's build_time_partition_freshness_checks looks at the last partition, which is today with
    # end_offset=1; the day that should have landed is yesterday. It and the window check judge the whole
    # account: zoom_freshness_job (on its schedule) runs them; a run materializing a day leaves them not run.
    @dg.multi_asset_check(
        name=f"{op_prefix}__{YESTERDAY_LANDED}",
        specs=[dg.AssetCheckSpec(
            YESTERDAY_LANDED, asset=key, metadata={"deadline_hour_utc": deadline_hour},
            description=(
                f"Yesterday's (UTC) {source.title} were collected by a complete pass before {deadline_hour:02d}:00 "
                "UTC. Passes with a note before the deadline; fails after it until the day lands; warns with "
                "nothing to judge on an instance that never collected a day."
            ),
        )],
        can_subset=True,
    )
    def yesterday_landed_check(context: dg.AssetCheckExecutionContext):
        if not materializes_the_asset(context):
            yield yesterday_freshness(context.instance, datetime.now(UTC), deadline_hour, source, key)._replace(
                asset_key=key, check_name=YESTERDAY_LANDED)

    @dg.multi_asset_check(
        name=f"{op_prefix}__{WINDOW_COLLECTED}",
        specs=[dg.AssetCheckSpec(
            WINDOW_COLLECTED, asset=key,
            description=(
                "Every ended day inside Zoom's ~six-month window had a complete pass. Fails naming the days that "
                f"leave the window within {LOSE_IT_WITHIN_DAYS} days without one; warns for other gaps, and with "
                "nothing to judge on an instance that never collected a day. No Zoom call."
            ),
        )],
        can_subset=True,
    )
    def window_collected_check(context: dg.AssetCheckExecutionContext):
        if not materializes_the_asset(context):
            yield window_result(context.instance, datetime.now(UTC).date(), source, key,
                                account.logs_start_date)._replace(asset_key=key, check_name=WINDOW_COLLECTED)

    return [fresh_listing_check, yesterday_landed_check, window_collected_check]
