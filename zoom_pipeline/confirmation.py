"""When a stored day is proven to equal Zoom's, and which page size the next complete pass uses.

Pure logic, no I/O. Each complete pass leaves a `DayState` (stored as the day's pass record):

- a *clean* pass (no record on two pages, nothing out of order) listed exactly Zoom's day, so after
  it the day is exact;
- otherwise the same-second groups a page boundary cut with a record on both sides (`GroupSpan`)
  were not proven. If Zoom lists as many records as at the previous complete pass, nothing arrived
  in between (Zoom never deletes), so every other group of this pass is proven, and a group stays
  awaiting only if neither pass proved it. If the count changed, nothing of this pass is taken as
  proven beyond what it wrote.

The next complete pass picks a page size whose boundaries cut none of the awaiting groups (when one
exists), so they land whole on one page, where a single page's count is the truth.
"""

from dataclasses import asdict, dataclass, field

from zoom_pipeline.ledger import GroupSpan, PassLedger

SMALLEST_PAGE_SIZE = 150  # at most twice the calls of a full-size pass


@dataclass
class DayState:
    """What the complete passes so far prove about a stored day."""

    listed: int  # records Zoom listed at the end of the latest complete pass
    page_size: int
    exact: bool
    verified: bool  # False: the listing moved (or this was the first pass); `awaiting` is provisional
    awaiting: list[GroupSpan] = field(default_factory=list)
    passes: int = 1

    @property
    def awaiting_records(self) -> int:
        return sum(g.records for g in self.awaiting)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "DayState":
        awaiting = [GroupSpan(g["time"], g["first"], g["last"], g["records"], [tuple(s) for s in g["splits"]])
                    for g in data.get("awaiting") or []]
        return cls(
            listed=int(data["listed"]),
            page_size=int(data["page_size"]),
            exact=bool(data["exact"]),
            verified=bool(data["verified"]),
            awaiting=awaiting,
            passes=int(data.get("passes") or 1),
        )


def after_pass(previous: DayState | None, ledger: PassLedger, page_size: int) -> DayState:
    """The day's state once a complete pass (its ledger finished) has written what it admitted."""
    passes = (previous.passes if previous else 0) + 1
    if ledger.clean:
        return DayState(ledger.listed, page_size, exact=True, verified=True, passes=passes)
    quiet = previous is not None and previous.listed == ledger.listed and not ledger.moved and not ledger.unsorted
    if quiet:
        # Nothing arrived since the previous pass ended: a group is still open only if this pass
        # could not prove it either (and the previous one, if it proved anything, did not).
        before = {g.time for g in previous.awaiting} if previous.verified else None
        awaiting = [g for g in ledger.unconfirmed if before is None or g.time in before]
        exact = not awaiting and not ledger.odd_on_two_pages
        return DayState(ledger.listed, page_size, exact=exact, verified=True, awaiting=awaiting, passes=passes)
    return DayState(ledger.listed, page_size, exact=False, verified=False, awaiting=list(ledger.unconfirmed),
                    passes=passes)


def proven_by(previous: DayState | None, ledger: PassLedger):
    """`proven(time)`: whether this listing alone proves the content of that second's group, so that a
    stored copy it did not show is surplus rather than unproven."""
    if ledger.clean:
        return lambda t: True
    quiet = previous is not None and previous.listed == ledger.listed and not ledger.moved and not ledger.unsorted
    cut = {g.time for g in ledger.unconfirmed}
    return lambda t: quiet and t is not None and t not in cut


def next_page_size(state: DayState | None, largest: int) -> int:
    """The largest page size (down to SMALLEST_PAGE_SIZE) that cuts the fewest awaiting groups, then
    the fewest split records; `largest` when nothing awaits."""
    if state is None or state.exact or not state.awaiting:
        return largest
    smallest = min(SMALLEST_PAGE_SIZE, largest)

    def cuts(size: int) -> tuple[int, int, int]:
        groups = sum(1 for g in state.awaiting if g.first // size != g.last // size)
        splits = sum(1 for g in state.awaiting for a, b in g.splits if a // size != b // size)
        return groups, splits, -size

    return min(range(largest, smallest - 1, -1), key=cuts)
