"""One pass over one day, as plain Python: read what the day holds, page through Zoom, keep what is new.

    stored day (DayStore) ─┐
                           ├─► PassLedger.admit, page by page ─► PartWriter (gzip temp part)
    Zoom pages (DayPass) ──┘

The result is a `CollectedDay`: the finished temp part (or none), the pass's counts, and, for a
complete pass, the day's new `DayState`. Nothing here is Dagster: the asset calls `collect` and
hands the result to landing.land, which stores it.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from zoom_pipeline.confirmation import DayState, after_pass, next_page_size, proven_by
from zoom_pipeline.day_store import DayParts, DayStore, PartWriter, TempPart
from zoom_pipeline.ledger import PassLedger, encode_record, line_digests, line_time, record_time
from zoom_pipeline.zoom_client import RESTART, PassStats, ZoomClient

PROGRESS_EVERY_PAGES = 25
EXAMPLES = 3


@dataclass
class Unshown:
    """The stored copies no page of the pass showed: `extra` where the pass proves their second's group
    (Zoom lists fewer: damage), `unproven` where it could not (a cut group: fine)."""

    extra: int = 0
    unproven: int = 0
    extra_examples: list[bytes] = field(default_factory=list)


@dataclass
class CollectedDay:
    """What one pass over a day found: what the asset lands (landing.land) and reports."""

    day: str
    complete: bool  # the pass began after the day ended, and read it to the end
    part: TempPart | None  # the records the day lacked, or None
    parts_before: DayParts  # what the day held when the pass began
    stored_before: int
    lines_per_part: dict[str, int]  # of the parts the day held when the pass began
    stats: PassStats
    ledger: PassLedger
    page_size: int
    state: DayState | None = None  # for a complete pass: what the day is proven to hold now
    previous_state: DayState | None = None
    outside_day: int = 0  # records whose time is not on the partition's UTC day
    odd: int = 0  # records without a well-formed time
    missing_examples: list[bytes] = field(default_factory=list)
    unshown: Unshown = field(default_factory=Unshown)
    oldest_listed: str | None = None
    newest_listed: str | None = None

    @property
    def pass_kind(self) -> str:
        return "complete" if self.complete else "refresh"


def day_bounds(day: str) -> tuple[str, str]:
    """The partition's first and last second as Zoom writes times."""
    return f"{day}T00:00:00Z", f"{day}T23:59:59Z"


def is_complete(day: str, now: datetime) -> bool:
    end = datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return now >= end


def collect(
    zoom: ZoomClient,
    days: DayStore,
    day: str,
    *,
    log: Callable[[str], None],
    write: bool = True,
    now: datetime | None = None,
) -> CollectedDay:
    """One pass over `day`: every record Zoom lists that the day does not hold yet, as a temp part.

    A pass over a day that has not ended (a refresh) stops after the first page holding a record
    strictly older than the newest stored second: everything older is stored already. A complete
    pass reads the whole day with the page size the day's state asks for (see confirmation.py).
    With `write=False` (a check) nothing is written: the pass only counts what storage lacks.
    """
    now = now or datetime.now(UTC)
    complete = is_complete(day, now)
    parts = days.parts(day)
    first, last = day_bounds(day)
    # A stored record timed after the day (clock skew) must not make every refresh stop at page 1.
    stored = days.digest(parts, newest_time=None if complete else last)
    previous = days.day_state(day) if complete else None
    page_size = next_page_size(previous, zoom.page_size) if complete else zoom.page_size
    if page_size != zoom.page_size:
        log(f"{day}: {len(previous.awaiting)} same-second group(s) await confirmation; reading the day with "
            f"page size {page_size} so that they land whole on one page.")
    day_pass = zoom.day_pass(day, source=days.source, page_size=page_size, now=now)
    ledger = PassLedger(stored.multiset)
    writer = PartWriter() if write else None
    found = CollectedDay(day, complete, None, parts, len(stored.multiset), stored.lines_per_part, day_pass.stats,
                         ledger, page_size, previous_state=previous)
    last_progress = time.monotonic()
    try:
        # Records arrive newest first: a refresh of an open day can stop below the newest stored
        # second. Within that second order is unspecified, so only a strictly older record stops.
        for page in day_pass.pages(stop_before_time=stored.newest_time if not complete else None):
            if page is RESTART:
                log(f"{day}: page token expired; reading the day again from page 1.")
                ledger.reset()
                if writer:
                    writer.restart()
                found.outside_day = found.odd = 0
                found.missing_examples = []
                found.oldest_listed = found.newest_listed = None
                continue
            lines = [encode_record(rec) for rec in page.records]
            times = [record_time(rec) for rec in page.records]
            if page.invalid_utf8:
                log(f"{day}: page {page.number} holds {page.invalid_utf8} record(s) with bytes that are not UTF-8; "
                    "stored with each bad byte replaced by U+FFFD (counted as invalid_utf8_records).")
            known = [t for t in times if t is not None]
            found.odd += len(times) - len(known)
            if known:
                low, high = min(known), max(known)
                if found.oldest_listed is None or low < found.oldest_listed:
                    found.oldest_listed = low
                if found.newest_listed is None or high > found.newest_listed:
                    found.newest_listed = high
                if low < first or high > last:
                    found.outside_day += sum(1 for t in known if not first <= t <= last)
            flags = ledger.admit(line_digests(lines), times)
            if all(flags):
                kept, kept_times = lines, times
            else:
                kept = [line for line, f in zip(lines, flags, strict=True) if f]
                kept_times = [t for t, f in zip(times, flags, strict=True) if f]
            if writer:
                writer.write(kept, kept_times)
            elif len(found.missing_examples) < EXAMPLES:
                found.missing_examples.extend(kept[: EXAMPLES - len(found.missing_examples)])
            stats = day_pass.stats
            # Every few pages, but at most about once a second: each line is an event-log write.
            if stats.pages % PROGRESS_EVERY_PAGES == 0 and time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                rate = stats.records / max(last_progress - stats.started_at, 1e-9)
                log(f"{day}: {stats.records} records over {stats.pages} pages ({rate:,.0f} records/s), "
                    f"{ledger.new} new so far")
        ledger.finish()
        found.part = writer.finish() if writer else None
    except BaseException:
        if writer:
            writer.abort()
        raise
    if found.outside_day:
        log(f"{day}: {found.outside_day} record(s) have a time outside the partition's UTC day; they are stored "
            "with the day Zoom listed them under (Zoom's from/to are taken as UTC days).")
    found.complete = complete and not day_pass.stats.stopped_early
    if found.complete:
        longest = previous.longest_listed if previous else 0
        if ledger.listed < longest:
            # Zoom never deletes: a listing shorter than an earlier one ended early (a page that was not
            # what it seemed, a listing cut short) and proves nothing, neither copies nor damage.
            found.unshown = Unshown(unproven=sum(1 for _ in ledger.stored.unaccounted()))
            log(f"{day}: Zoom listed {ledger.listed} records, fewer than the {longest} an earlier complete pass "
                "listed; Zoom never deletes, so this listing is incomplete and proves nothing about the day.")
        else:
            found.unshown = unshown_copies(days, parts, ledger)
        if found.unshown.extra:
            log(f"{day}: {found.unshown.extra} stored copies are more than Zoom lists (the pass proves their "
                "second's group): the day was changed outside the pipeline.")
        found.state = after_pass(previous, ledger, page_size, extra=found.unshown.extra)
        if not found.state.exact:
            log(f"{day}: {found.state.awaiting_records} record(s) in {len(found.state.awaiting)} same-second "
                "group(s) await confirmation (a page boundary cut them with a record on both sides, or the listing "
                "moved); each is stored as often as one page showed it, and a later complete pass confirms them.")
    return found


def unshown_copies(days: DayStore, parts: DayParts, ledger: PassLedger) -> Unshown:
    """Sort the stored copies no page showed by whether the pass proves their group. Copies of records
    listed in a cut group (a twin pair split again) are known unproven without a look; only others
    need a read of the day (usually there are none)."""
    unshown = Counter(ledger.stored.unaccounted())
    found = Unshown()
    proven = proven_by(ledger)
    if ledger.moved or ledger.unsorted:
        found.unproven = sum(unshown.values())  # such a listing proves no group
        return found
    for d in [d for d in unshown if d in ledger.cut_digests]:
        found.unproven += unshown.pop(d)
    for name in parts.names:
        if not unshown:
            break
        for batch in days.batches(parts, name):
            for line, d in zip(batch, line_digests(batch), strict=True):
                copies = unshown.pop(d, 0)
                if not copies:
                    continue
                if proven(line_time(line)):
                    found.extra += copies
                    if len(found.extra_examples) < EXAMPLES:
                        found.extra_examples.append(line)
                else:
                    found.unproven += copies
    return found
