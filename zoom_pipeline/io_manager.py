"""IO manager: loads stored raw days for the UDM asset, and stores the UDM parts it returns.

- load: each day of the run's partitions as a `StoredDay` (its raw parts, lines streamed on demand).
- store: `UdmParts` per day, each UDM part under the same name as the raw part it maps.

The raw asset lands its own days (landing.py) as each is collected, so a run of many days keeps the
days before a failure; this IO manager never calls Zoom, and the layout is day_store.py's.
"""

from collections import Counter
from dataclasses import dataclass, field

import dagster as dg

from zoom_pipeline.day_store import DayParts, DayStore, TempPart, ZoomStore
from zoom_pipeline.sources import source_of
from zoom_pipeline.storage import KeyTaken


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


class ZoomLogsIOManager(dg.ConfigurableIOManager):
    """Loads stored days of a Zoom source and stores their UDM events as append-only gzipped NDJSON."""

    store: dg.ResourceDependency[ZoomStore]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if not (isinstance(obj, list) and all(isinstance(o, UdmParts) for o in obj)):
            raise TypeError(f"ZoomLogsIOManager stores UDM parts only, not {type(obj).__name__}")
        self._store_udm(context, obj)

    def load_input(self, context: dg.InputContext) -> list[StoredDay]:
        days = self.store.days(source_of(context.asset_key.path[-1]))
        return [StoredDay(days, day, days.parts(day)) for day in context.asset_partition_keys]

    # ---- UDM: one event part per raw part, same name ----------------------------------------
    def _store_udm(self, context: dg.OutputContext, out: list[UdmParts]) -> None:
        days = self.store.days(source_of(context.asset_key.path[-1]))
        written, problems, coverage = [], Counter(), Counter()
        try:
            for mapped in out:
                folder = days.parts(mapped.day, udm=True).folder
                for name, part in mapped.parts:
                    try:
                        days.put_part(folder + name, part)
                    except KeyTaken:
                        # A racing run mapped this raw part first (same name, other bytes): it is mapped.
                        context.log.warning(
                            f"{mapped.day}: {name} was mapped by another run meanwhile; keeping its part."
                        )
                        continue
                    written.append(days.uri(folder + name))
                problems.update(mapped.problems)
                coverage.update(mapped.coverage)
        finally:
            for mapped in out:
                for _, part in mapped.parts:
                    part.discard()
        # One day's figures, or a range's totals (a backfill maps many days in one run).
        context.add_output_metadata({
            "events_written": sum(m.events for m in out),
            "objects_written": dg.MetadataValue.json(written),
            "raw_parts": sum(m.raw_parts for m in out),
            "parse_problems": dg.MetadataValue.json(dict(sorted(problems.items()))),
            "target_field_coverage": dg.MetadataValue.json(dict(sorted(coverage.items()))),
            "prefix": days.uri(days.parts(out[0].day, udm=True).folder if len(out) == 1 else days.udm_prefix),
        })
