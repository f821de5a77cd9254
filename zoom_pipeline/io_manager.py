"""IO manager: stores what the assets return as append-only parts, and loads a stored day for UDM.

- `CollectedDay` (the raw asset's pass): its temp part becomes the day's next numbered part, with a
  conditional write; then its manifest, and the pass record of a complete pass.
- `UdmParts` (the UDM asset): each UDM part under the same name as the raw part it maps.

It calls nobody but the store: collecting is the asset's work (collector.py), the layout is
day_store.py's.
"""

from dataclasses import dataclass, field

import dagster as dg

from zoom_pipeline.collector import CollectedDay
from zoom_pipeline.day_store import DayParts, DayStore, PartWriter, TempPart, ZoomStore, manifest, utc_now
from zoom_pipeline.ledger import line_digests, line_time
from zoom_pipeline.storage import KeyTaken

MAX_RACES = 5


class ConcurrentWriteError(Exception):
    """Other runs kept writing this day's next part first; this run wrote nothing and can retry."""


@dataclass
class StoredDay:
    """A day's raw parts as stored: what the UDM asset receives. Lines are streamed on demand."""

    days: DayStore
    day: str
    parts: DayParts

    def lines(self, name: str):
        return self.days.lines(self.parts, name)


@dataclass
class UdmParts:
    """The UDM asset's result: a UDM part for each raw part that had none yet, and their counts."""

    day: str
    parts: list[tuple[str, TempPart]]  # (raw part name, its UDM part)
    raw_parts: int
    events: int = 0
    problems: dict[str, int] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)


@dataclass
class Landed:
    """What the IO manager stored for a pass."""

    name: str | None
    records: int
    bytes: int


class ZoomLogsIOManager(dg.ConfigurableIOManager):
    """Stores Zoom operation logs and their UDM events as append-only, exactly-once gzipped NDJSON."""

    store: dg.ResourceDependency[ZoomStore]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if isinstance(obj, CollectedDay):
            self._store_pass(context, obj)
        elif isinstance(obj, UdmParts):
            self._store_udm(context, obj)
        else:
            raise TypeError(f"ZoomLogsIOManager cannot store {type(obj).__name__}")

    def load_input(self, context: dg.InputContext) -> StoredDay:
        keys = context.asset_partition_keys
        if len(keys) != 1:
            raise dg.Failure(f"The UDM step maps one day at a time, got {len(keys)} partitions.", allow_retries=False)
        days = self.store.days()
        return StoredDay(days, keys[0], days.parts(keys[0]))

    # ---- raw records ------------------------------------------------------------------------
    def _store_pass(self, context: dg.OutputContext, found: CollectedDay) -> None:
        days = self.store.days()
        day = found.day
        landed = Landed(None, 0, 0)
        try:
            if found.part is not None:
                landed = self._commit(context, days, found)
            self._heal_manifests(context, days, day)
            if found.state is not None:
                days.put_day_state(day, found.state, {
                    "partition": day,
                    "page_size": found.page_size,
                    "records_listed": found.ledger.listed,
                    "records_written": landed.records,
                    "part": landed.name,
                    "dagster_run_id": _run_id(context),
                    "written_at": utc_now(),
                })
        finally:
            if found.part is not None:
                found.part.discard()
        written = [days.uri(found.parts_before.folder + landed.name)] if landed.name else []
        context.add_output_metadata({
            "records_written": landed.records,
            "bytes_written": landed.bytes,
            "objects_written": dg.MetadataValue.json(written),
            "day_objects": len(found.parts_before.names) + len(written),
            "dagster/row_count": found.stored_before + landed.records,
            "prefix": days.uri(found.parts_before.folder),
        })

    def _commit(self, context: dg.OutputContext, days: DayStore, found: CollectedDay) -> Landed:
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
                context.log.warning(
                    f"{day}: another run wrote {', '.join(fresh.names)} meanwhile; writing only the rest."
                )
                rest = _without(part, days.digest(fresh).multiset)
                if rest is not part:
                    part.discard()
                    found.part = part = rest
                parts = latest
                if part is None:
                    return Landed(None, 0, 0)
                continue
            days.put_manifest(day, name, manifest(days, day, key, part, run_id=_run_id(context),
                                                  pass_kind=found.pass_kind))
            return Landed(name, part.records, part.bytes)
        raise ConcurrentWriteError(f"{day}: kept losing the race for the next part number; retry the run.")

    def _heal_manifests(self, context: dg.OutputContext, days: DayStore, day: str) -> None:
        """Give every part a manifest: a run that died between writing a part and its manifest leaves
        the part without one, and the retry (which finds nothing new to write) would never add it."""
        have = days.manifests(day)
        parts = days.parts(day)
        for name in parts.names:
            if name in have:
                continue
            context.log.warning(f"{day}: {name} had no manifest; writing one recomputed from the part.")
            described = days.describe(parts, name)
            try:
                days.put_manifest(day, name, manifest(days, day, parts.key(name), described, run_id=_run_id(context),
                                                      pass_kind=None, recovered=True))
            finally:
                described.discard()

    # ---- UDM: one event part per raw part, same name ----------------------------------------
    def _store_udm(self, context: dg.OutputContext, out: UdmParts) -> None:
        days = self.store.days()
        folder = days.parts(out.day, udm=True).folder
        written = []
        try:
            for name, part in out.parts:
                try:
                    days.put_part(folder + name, part)
                except KeyTaken:
                    # A racing run mapped this raw part first (same name, other bytes): it is mapped.
                    context.log.warning(f"{out.day}: {name} was mapped by another run meanwhile; keeping its part.")
                    continue
                written.append(days.uri(folder + name))
        finally:
            for _, part in out.parts:
                part.discard()
        context.add_output_metadata({
            "events_written": out.events,
            "objects_written": dg.MetadataValue.json(written),
            "raw_parts": out.raw_parts,
            "parse_problems": dg.MetadataValue.json(dict(sorted(out.problems.items()))),
            "target_field_coverage": dg.MetadataValue.json(dict(sorted(out.coverage.items()))),
            "prefix": days.uri(folder),
        })


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


def _run_id(context: dg.OutputContext) -> str | None:
    try:
        return context.run_id
    except Exception:  # an OutputContext built outside a run has none
        return None
