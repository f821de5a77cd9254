"""When a stored day is proven to equal Zoom's, and which page size the next complete pass uses.

Pure logic, no I/O. The page rule (ledger.py) keeps every stored record at most as often as one page
of Zoom's listing showed it, so storage never holds more of a record than Zoom does. A complete pass
also learns how many records Zoom lists for the day: the positions it was served, which is the
listing's length when its last page was read. Together these prove a day exact by counting alone:

    stored ≤ Zoom's, record by record, and stored records in all = Zoom's count  ⇒  stored = Zoom's.

So a day is **exact** when, after a complete pass has written its part, the day holds as many records
as that pass was served. Otherwise `awaiting` = Zoom's count − stored copies: copies no page has shown
yet. They sit in same-second groups a page boundary cut with a record on both sides (`GroupSpan`: a
twin's second copy on the other side, or a record a reorder within the second moved across), or were
added while the pass paged. The next complete pass reads the day with a page size whose boundaries cut
none of those groups (when one exists), so each lands whole on one page, where one page's count is the
truth; when none exists, the sizes of the next two passes are chosen together, so that each group lands
whole in at least one of them (`plan_page_sizes`; how many passes that takes: README, "How many
passes", measured by bench/convergence.py). Each complete pass leaves a `DayState`, stored as the day's
pass record.
"""

from dataclasses import asdict, dataclass, field

from zoom_pipeline.constants import ZOOM_MAX_PAGE_SIZE
from zoom_pipeline.ledger import GroupSpan, PassLedger

SMALLEST_PAGE_SIZE = 150  # at most twice the calls of a full-size pass


@dataclass
class DayState:
    """What the latest complete pass proves about a stored day."""

    listed: int  # records Zoom listed at the end of the pass
    stored: int  # records the day holds once the pass's part is stored
    page_size: int
    awaiting: list[GroupSpan] = field(default_factory=list)  # where the next pass should not cut
    passes: int = 1
    extra: int = 0  # stored copies the pass proved Zoom has fewer of (changed outside the pipeline)
    # The longest listing of the day any complete pass saw: Zoom never deletes, so it lists at least this.
    longest_listed: int = 0

    def __post_init__(self) -> None:
        self.longest_listed = max(self.longest_listed, self.listed)

    @property
    def short_by(self) -> int:
        """How many records this pass's listing lacks against an earlier, longer one (0: none)."""
        return max(0, self.longest_listed - self.listed)

    @property
    def exact(self) -> bool:
        # A listing shorter than an earlier one ended early somewhere: it proves nothing.
        return self.stored == self.listed and not self.extra and not self.short_by

    @property
    def awaiting_records(self) -> int:
        """Copies Zoom counts that no page has shown yet (negative: more stored than Zoom lists)."""
        return self.listed - self.stored

    def to_json(self) -> dict:
        return {**asdict(self), "exact": self.exact}

    @classmethod
    def from_json(cls, data: dict) -> "DayState":
        awaiting = [GroupSpan(g["time"], g["first"], g["last"], g["records"], [tuple(s) for s in g["splits"]])
                    for g in data.get("awaiting") or []]
        listed = int(data["listed"])
        return cls(listed=listed, stored=int(data["stored"]), page_size=int(data["page_size"]),
                   awaiting=awaiting, passes=int(data.get("passes") or 1), extra=int(data.get("extra") or 0),
                   longest_listed=int(data.get("longest_listed") or 0))


def after_pass(previous: DayState | None, ledger: PassLedger, page_size: int, *, extra: int = 0) -> DayState:
    """The day's state once a complete pass (its ledger finished) has stored what it admitted.

    `extra`: stored copies the pass proves Zoom has fewer of. The counting proof assumes there are none
    (storage is only ever written by the page rule); copies added outside the pipeline void it."""
    passes = (previous.passes if previous else 0) + 1
    stored = len(ledger.stored) + ledger.new
    longest = max(ledger.listed, previous.longest_listed if previous else 0)
    if stored == ledger.listed and not extra and longest == ledger.listed:
        return DayState(ledger.listed, stored, page_size, passes=passes, longest_listed=longest)
    awaiting = list(ledger.unconfirmed)
    if previous is not None and previous.listed == ledger.listed and previous.awaiting:
        # Nothing arrived since (Zoom never deletes): a group the previous pass had whole on one page is
        # complete in storage, so only groups both passes cut can still lack a copy.
        before = {g.time for g in previous.awaiting}
        awaiting = [g for g in awaiting if g.time in before] or awaiting
    return DayState(ledger.listed, stored, page_size, awaiting=awaiting, passes=passes, extra=extra,
                    longest_listed=longest)


def proven_by(ledger: PassLedger):
    """`proven(time)`: whether this listing alone proves the content of that second's group (it was
    not cut with a record on both sides, and the listing did not move), so that a stored copy it did not
    show is surplus rather than unproven."""
    if ledger.moved or ledger.unsorted:
        return lambda t: False
    cut = {g.time for g in ledger.unconfirmed}
    return lambda t: t is not None and t not in cut


def next_page_size(state: DayState | None, largest: int, *, plan: bool = True) -> int:
    """The page size of the next complete pass; `largest` when nothing awaits.

    One size at a time (`plan=False`): the size that cuts the fewest awaiting groups, then the fewest
    split records, then stays within `largest` (PAGE_SIZE), then is the largest. That is also the
    answer whenever some size cuts no group that a page can hold whole (nor a split of one it cannot):
    the next pass can then prove every group.

    When none can, the sizes of the next two passes are chosen together (`plan_page_sizes`) and the
    first of them is returned: choosing one size at a time is the greedy way of covering the groups
    with page sizes, which can leave a remainder that no single size covers, or pay for a second pass
    of small pages (many calls) where a larger size and a partner would prove the day in as many passes.

    Sizes are searched from half of `largest` (at most twice the calls of a full-size pass; never below
    SMALLEST_PAGE_SIZE's half-of-300 for the default) up to ZOOM_MAX_PAGE_SIZE, what Zoom serves: a small
    PAGE_SIZE must not leave a single candidate that can never uncut a group, and a size Zoom would not
    serve has boundaries no pass sees."""
    largest = max(1, min(largest, ZOOM_MAX_PAGE_SIZE))
    if state is None or state.exact or not state.awaiting:
        return largest
    if plan:
        return plan_page_sizes(state, largest)[0]
    return min(_sizes(largest), key=_rank(state, largest))


def _sizes(largest: int) -> range:
    """The page sizes a confirming pass may use, largest first."""
    return range(ZOOM_MAX_PAGE_SIZE, min(SMALLEST_PAGE_SIZE, -(-largest // 2)) - 1, -1)


def _rank(state: DayState, largest: int):
    """One size's rank: the awaiting groups it cuts, then the split records, then whether it exceeds
    `largest`, then larger first."""

    def rank(size: int) -> tuple[int, int, bool, int]:
        groups = sum(1 for g in state.awaiting if g.first // size != g.last // size)
        splits = sum(1 for g in state.awaiting for a, b in g.splits if a // size != b // size)
        return groups, splits, size > largest, -size

    return rank


def _cut(size: int, span: tuple[int, int]) -> bool:
    return span[0] // size != span[1] // size


def proof_spans(state: DayState, sizes: range) -> list[tuple[int, int]]:
    """What must land whole on one page for the awaiting groups to be proven: each group that some
    size can hold whole; for a group no size can (wider than a page, or straddling every boundary the
    sizes offer), each of its split spans that some size can. What no size can hold is left out: no
    choice of page size changes it (README, "How many passes")."""
    spans = []
    for g in state.awaiting:
        if not all(_cut(s, (g.first, g.last)) for s in sizes):
            spans.append((g.first, g.last))
        else:
            spans += [split for split in g.splits if not all(_cut(s, split) for s in sizes)]
    return spans


def plan_page_sizes(state: DayState, largest: int) -> tuple[int, ...]:
    """The page sizes of the next complete passes: one size when one proves every awaiting group
    (`proof_spans`), else two, chosen together so that as few groups as possible are cut by both (every
    group lands whole in at least one of the two passes when any pair allows it), then within `largest`,
    then with the fewest report calls for the two passes over the day, then as `next_page_size` ranks one
    size. Only the first size is used: the pass after it plans again from what it proved."""
    largest = max(1, min(largest, ZOOM_MAX_PAGE_SIZE))
    sizes = _sizes(largest)
    spans = proof_spans(state, sizes)
    # Which spans each size cuts, as the bits of one int (span i is bit i): a pair of sizes is one `&`.
    masks = {s: int("".join("1" if _cut(s, span) else "0" for span in reversed(spans)) or "0", 2) for s in sizes}

    rank = _rank(state, largest)
    clear = [s for s in sizes if not masks[s]]
    if clear:
        return (min(clear, key=rank),)
    listed = max(1, state.listed)

    def partner(size: int) -> tuple[int, bool, int]:
        return min(((masks[size] & masks[t]).bit_count(), t > largest, -t) for t in sizes)

    best = {s: partner(s) for s in sizes}

    def joint(size: int) -> tuple:
        left, over, t = best[size]
        calls = -(-listed // size) + -(-listed // -t)
        return left, size > largest or over, calls, *rank(size)

    first = min(sizes, key=joint)
    return first, -best[first][2]
