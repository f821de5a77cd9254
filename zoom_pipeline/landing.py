"""Landing one pass: its temp part becomes the day's next numbered part, then the day's records.

    CollectedDay ─► conditional put of the next part (a racing run's records dropped) ─► its manifest
                 ─► manifests for parts a killed run left without one
                 ─► the pass record (complete passes; a racing run's later listing stands)

The raw asset lands each day itself, as soon as it is collected: Dagster stores an asset's output
only when its step ends, and a run of many days must keep the days before a failure.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from zoom_pipeline.collector import CollectedDay
from zoom_pipeline.confirmation import DayState
from zoom_pipeline.day_store import DayParts, DayStore, PartWriter, TempPart, manifest, utc_now
from zoom_pipeline.ledger import line_digests, line_time
from zoom_pipeline.storage import KeyTaken

MAX_RACES = 5


class ConcurrentWriteError(Exception):
    """Other runs kept writing this day's next part first; this run wrote nothing and can retry."""


@dataclass
class Landed:
    """What landing a pass stored."""

    name: str | None
    records: int
    bytes: int


def land(days: DayStore, found: CollectedDay, *, run_id: str | None, warn: Callable[[str], None]) -> dict:
    """Store what `found` collected and return the materialization's storage metadata."""
    day = found.day
    landed = Landed(None, 0, 0)
    try:
        if found.part is not None:
            landed = _commit(days, found, run_id=run_id, warn=warn)
        _heal_manifests(days, day, run_id=run_id, warn=warn)
        racing = _racing_parts(days, found, landed)
        stored_now = _stored_now(days, found, landed, racing)
        state = _settled_state(days, found, stored_now, warn=warn) if found.state is not None else None
        if state is not None:
            days.put_day_state(day, state, {
                "partition": day,
                "page_size": found.page_size,
                "records_listed": found.ledger.listed,
                "records_written": landed.records,
                "part": landed.name,
                "dagster_run_id": run_id,
                "written_at": utc_now(),
            })
    finally:
        if found.part is not None:
            found.part.discard()
    written = [days.uri(found.parts_before.folder + landed.name)] if landed.name else []
    return {
        "records_written": landed.records,
        "bytes_written": landed.bytes,
        "objects_written": written,
        "day_objects": len(found.parts_before.names) + len(written) + len(racing),
        "dagster/row_count": stored_now,
        "prefix": days.uri(found.parts_before.folder),
    }


def _racing_parts(days: DayStore, found: CollectedDay, landed: Landed) -> list[str]:
    """Parts other runs stored since this pass read the day."""
    return [n for n in days.parts(found.day).names if n not in found.parts_before.names and n != landed.name]


def _stored_now(days: DayStore, found: CollectedDay, landed: Landed, racing: list[str]) -> int:
    """Records the day holds once this pass's part is stored (racing runs' parts counted by their manifests,
    which every part has by now)."""
    stored = found.stored_before + landed.records
    if racing:
        manifests = days.manifests(found.day)
        stored += sum(int(manifests.get(name, {}).get("records") or 0) for name in racing)
    return stored


def _settled_state(days: DayStore, found: CollectedDay, stored_now: int, *, warn) -> DayState | None:
    """The day's state to record for this complete pass, now that its part is stored; None to record nothing.

    If a racing complete pass recorded the day meanwhile with a listing at least as long (a later look at
    the day), its record stands and becomes this pass's state too, counting what is stored now: an older,
    shorter listing recorded after it would hide copies Zoom lists (Zoom never deletes). Otherwise the
    pass's own state, counting what is stored now (racing runs' parts included)."""
    state = found.state
    latest = days.day_state(found.day)
    if latest is not None and latest != found.previous_state:  # another complete pass recorded meanwhile
        longest = max(state.longest_listed, latest.longest_listed)
        if latest.listed >= state.listed:
            warn(f"{found.day}: a racing run's complete pass listed {latest.listed} records while this one listed "
                 f"{state.listed}; its later listing is the day's record.")
            found.state = replace(latest, stored=stored_now, longest_listed=longest)
            return found.state if (stored_now, longest) != (latest.stored, latest.longest_listed) else None
        found.state = state = replace(state, longest_listed=longest)
    if stored_now != state.stored:
        found.state = state = replace(state, stored=stored_now)
    return state


def _commit(days: DayStore, found: CollectedDay, *, run_id, warn) -> Landed:
    """Put the part as the day's next part; a run that lost the race drops what the winner's
    part holds and tries the next number with the rest."""
    day, parts, part = found.day, found.parts_before, found.part
    for _ in range(MAX_RACES):
        name = days.part_name(day, days.next_seq(parts))
        key = parts.key(name)
        try:
            days.put_part(key, part)
        except KeyTaken:
            latest = days.parts(day)
            fresh = DayParts(latest.folder, tuple(n for n in latest.names if n not in parts.names))
            wrote = ", ".join(fresh.names) or f"{name} (not listed yet)"
            warn(f"{day}: another run wrote {wrote} meanwhile; writing only the rest.")
            rest = _without(part, days.digest(fresh).multiset)
            if rest is not part:
                part.discard()
                found.part = part = rest
            parts = latest
            if part is None:
                return Landed(None, 0, 0)
            continue
        days.put_manifest(day, name, manifest(days, day, key, part, run_id=run_id, pass_kind=found.pass_kind))
        return Landed(name, part.records, part.bytes)
    raise ConcurrentWriteError(f"{day}: kept losing the race for the next part number; retry the run.")


def _heal_manifests(days: DayStore, day: str, *, run_id, warn) -> None:
    """Give every part a manifest: a run that died between writing a part and its manifest leaves
    the part without one, and the retry (which finds nothing new to write) would never add it."""
    have = days.manifests(day)
    parts = days.parts(day)
    for name in parts.names:
        if name in have:
            continue
        warn(f"{day}: {name} had no manifest; writing one recomputed from the part.")
        described = days.describe(parts, name)
        try:
            days.put_manifest(day, name, manifest(days, day, parts.key(name), described, run_id=run_id,
                                                  pass_kind=None, recovered=True))
        finally:
            described.discard()


def _without(part: TempPart, theirs) -> TempPart | None:
    """The part minus one copy of each record `theirs` (a multiset) holds; the same part if none."""
    taken: dict[int, int] = {}
    writer = PartWriter()
    dropped = 0
    try:
        batch: list[bytes] = []
        for line in part.lines():
            batch.append(line)
            if len(batch) == 1000:
                dropped += _keep_unmatched(writer, batch, theirs, taken)
                batch = []
        dropped += _keep_unmatched(writer, batch, theirs, taken)
    except BaseException:
        writer.abort()
        raise
    if not dropped:
        writer.abort()
        return part
    return writer.finish()


def _keep_unmatched(writer: PartWriter, batch: list[bytes], theirs, taken: dict[int, int]) -> int:
    keep, dropped = [], 0
    for line, d in zip(batch, line_digests(batch), strict=True):
        if theirs.count(d) > taken.get(d, 0):
            taken[d] = taken.get(d, 0) + 1
            dropped += 1
        else:
            keep.append(line)
    writer.write(keep, [line_time(line) for line in keep])
    return dropped
