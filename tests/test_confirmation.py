"""When a stored day is proven equal to Zoom's, and which page size proves it (confirmation.py), without servers.

Passes are run over a model of Zoom's listing (`tests.helpers.Day`: a list of stored lines, newest first,
paged by slicing, changed between calls to simulate late events and served in a fresh order within each
second when a test asks), and storage is a Counter updated with what each pass's ledger says to write.
"""

import random

import pytest

from tests.helpers import Day, busy_day, clock, day_of, line
from zoom_pipeline.automation import CONFIRM_MAX_PASSES, CONFIRM_QUIET_PASSES
from zoom_pipeline.confirmation import (
    SMALLEST_PAGE_SIZE,
    DayState,
    after_pass,
    next_page_size,
    plan_page_sizes,
    proof_spans,
    proven_by,
)
from zoom_pipeline.ledger import GroupSpan, encode_record, line_digests, line_time


def twins_at(listing: list[bytes], *positions: int) -> list[bytes]:
    """The listing with the record at each p + 1 replaced by a byte-identical twin of the one at p."""
    for p in positions:
        listing[p + 1] = listing[p]
    return listing


def late(listing: list[bytes], position: int, count: int, tag: str) -> None:
    t = line_time(listing[min(position, len(listing) - 1)])
    sec = int(t[11:13]) * 3600 + int(t[14:16]) * 60 + int(t[17:19])
    listing[position:position] = [line(sec, f"late-{tag}-{i}") for i in range(count)]


# ---- after_pass: exact by counting ---------------------------------------------------------------


def test_a_pass_that_stores_as_many_records_as_zoom_lists_makes_the_day_exact():
    day = Day(day_of(750))
    ledger = day.complete_pass()
    assert ledger.clean
    assert day.state == DayState(listed=750, stored=750, page_size=300, awaiting=[], passes=1)
    assert day.state.exact and day.state.awaiting_records == 0 and day.exact
    day.complete_pass()
    assert day.state.exact and day.state.passes == 2 and day.sizes == [300, 300]


def test_twins_cut_by_a_boundary_leave_one_copy_awaiting():
    day = Day(twins_at(day_of(900), 299))
    ledger = day.complete_pass()
    assert day.state == DayState(900, 899, 300, awaiting=ledger.unconfirmed, passes=1)
    assert not day.state.exact and day.state.awaiting_records == 1
    assert [(g.first, g.last, g.records) for g in day.state.awaiting] == [(299, 300, 2)]
    assert day.never_more_than_zoom() and not day.exact


def test_the_next_pass_keeps_the_awaiting_pair_whole_and_is_exact():
    day = Day(twins_at(day_of(900), 299))
    day.complete_pass()
    ledger = day.complete_pass()
    assert day.sizes == [300, 299] and ledger.clean
    assert day.state.exact and day.state.awaiting == [] and day.exact


def test_a_pass_that_cut_a_group_is_still_exact_when_storage_holds_all_zoom_counts():
    # Pass 1 (300) cuts the pair at 299/300; pass 2 (299) cuts the pair at 597/598 that pass 1 had whole.
    day = Day(twins_at(day_of(900), 299, 597))
    day.complete_pass()
    assert [g.first for g in day.state.awaiting] == [299]
    ledger = day.complete_pass()
    assert day.sizes == [300, 299]
    assert [g.first for g in ledger.unconfirmed] == [597] and not ledger.clean
    assert day.state.exact and day.state.stored == day.state.listed == 900 and day.exact
    ledger = day.complete_pass()  # exact: back to 300, which cuts 299/300 again; still exact
    assert day.sizes[-1] == 300 and not ledger.clean and day.state.exact and day.exact


def test_late_events_the_pass_could_not_see_await_and_the_next_pass_lands_them():
    day = Day(day_of(900))

    def arrive(n, rows):
        if n == 1:
            late(rows, 298, 2, "x")  # behind the cursor: rows 298-299 are served again on page 2

    ledger = day.complete_pass(after_call=arrive)
    assert ledger.moved == 1 and ledger.listed == 902
    assert day.state == DayState(902, 900, 300, awaiting=ledger.unconfirmed, passes=1)
    assert day.state.awaiting_records == 2
    day.complete_pass()
    assert day.state.exact and day.exact


def test_late_events_below_the_cursor_are_seen_by_the_same_pass():
    day = Day(day_of(900))
    day.complete_pass(after_call=lambda n, rows: late(rows, 800, 5, "y") if n == 1 else None)
    assert day.state.exact and day.state.listed == 905 and day.exact


def twins_in_a_big_second(listing: list[bytes], first: int, last: int) -> list[bytes]:
    """The listing with rows first..last made one second whose first and last rows are twins: no page
    of 150-300 records can hold both."""
    sec = 80_000 - first
    listing[first:last + 1] = [line(sec, f"big{i}") for i in range(last - first + 1)]
    listing[last] = listing[first]
    return listing


def test_awaiting_keeps_the_groups_both_passes_cut_when_nothing_arrived():
    day = Day(twins_at(twins_in_a_big_second(day_of(1200), 200, 600), 899))
    day.complete_pass()  # 300: cuts the big second and the pair at 899/900
    assert sorted(g.first for g in day.state.awaiting) == [200, 899] and day.state.awaiting_records == 2
    ledger = day.complete_pass()  # keeps 899/900 whole; any size cuts the big second
    assert day.sizes[1] != 300 and day.state.awaiting_records == 1
    assert [g.first for g in day.state.awaiting] == [200]
    assert {g.time for g in ledger.unconfirmed} >= {g.time for g in day.state.awaiting}


def test_awaiting_falls_back_to_what_this_pass_cut_when_the_previous_groups_were_not_cut():
    day = Day(twins_in_a_big_second(day_of(900), 200, 600))
    ledger = day.complete_pass()
    unrelated = DayState(900, 899, 300, awaiting=[GroupSpan(clock(1), 5, 6, 2, [(5, 6)])])
    assert after_pass(unrelated, ledger, 300).awaiting == ledger.unconfirmed
    moved_on = DayState(850, 850, 300, awaiting=[GroupSpan(clock(1), 5, 6, 2, [(5, 6)])])  # fewer listed then
    assert after_pass(moved_on, ledger, 300).awaiting == ledger.unconfirmed
    assert after_pass(moved_on, ledger, 300).passes == 2


def test_twins_far_apart_in_a_second_larger_than_a_page_are_never_over_stored():
    # A limitation, not a promise: every page size in 150..300 puts the two copies on different pages,
    # so no page ever shows both. The day keeps awaiting one copy and never stores more than Zoom lists.
    day = Day(twins_in_a_big_second(day_of(900), 200, 600))
    for _ in range(4):
        day.complete_pass()
        assert day.never_more_than_zoom() and not day.state.exact and day.state.awaiting_records == 1


def test_an_untimed_record_on_two_pages_awaits_like_a_cut_group():
    odd = encode_record({"action": "Update", "operator": "no-time"})
    listing = day_of(600)
    listing[299] = listing[300] = odd
    day = Day(listing)
    ledger = day.complete_pass()
    assert ledger.odd_on_two_pages == 1 and day.state.awaiting_records == 1
    assert [(g.time, g.first, g.last) for g in day.state.awaiting] == [("", 299, 300)]
    day.complete_pass()
    assert day.sizes == [300, 299] and day.state.exact and day.exact


def test_damage_is_not_proven_exact_by_a_late_event_the_pass_missed():
    day = Day(day_of(900))
    day.complete_pass()
    assert day.state.exact
    day.stored[day.listing[5]] += 1  # an extra copy written into the day outside the pipeline
    day.complete_pass(after_call=lambda n, rows: late(rows, 298, 1, "d") if n == 1 else None)
    assert not day.exact_when_the_pass_ended
    assert not day.state.exact


def test_day_state_round_trips_through_json():
    state = DayState(902, 899, 299, passes=4,
                     awaiting=[GroupSpan(clock(5), 10, 12, 3, [(10, 12)]), GroupSpan(clock(4), 20, 20, 1)])
    data = state.to_json()
    assert data["exact"] is False and DayState.from_json(data) == state
    assert state.awaiting_records == 3
    assert DayState(5, 5, 300).to_json()["exact"] is True
    assert DayState(5, 6, 300).awaiting_records == -1 and not DayState(5, 6, 300).exact  # more than Zoom


# ---- which page size the next complete pass uses ----------------------------------------------------


def state_awaiting(*spans: tuple[int, int], splits=None) -> DayState:
    groups = [GroupSpan(clock(1000 - i), a, b, b - a + 1, list(splits[i]) if splits else [(a, b)])
              for i, (a, b) in enumerate(spans)]
    return DayState(10_000, 9_990, 300, awaiting=groups)


def cuts(size: int, a: int, b: int) -> bool:
    return a // size != b // size


def test_nothing_awaiting_reads_with_the_largest_page_size():
    assert next_page_size(None, 300) == 300
    assert next_page_size(DayState(900, 900, 299), 300) == 300
    assert next_page_size(DayState(902, 900, 300), 300) == 300  # missed late events: no group to keep whole
    exact_with_leftovers = DayState(900, 900, 300, awaiting=[GroupSpan(clock(1), 299, 300, 2)])
    assert next_page_size(exact_with_leftovers, 300) == 300


def test_the_largest_page_size_that_keeps_an_awaiting_pair_whole():
    assert next_page_size(state_awaiting((299, 300)), 300) == 299
    assert next_page_size(state_awaiting((597, 598)), 300) == 300
    assert next_page_size(state_awaiting((597, 600)), 300) == 298  # 300 cuts it at 600, 299 at 598


def test_page_sizes_that_avoid_several_awaiting_groups():
    spans = [(299, 300), (597, 599), (1190, 1205), (2400, 2402)]
    size = next_page_size(state_awaiting(*spans), 300)
    assert SMALLEST_PAGE_SIZE <= size <= 300
    assert not any(cuts(size, a, b) for a, b in spans)
    assert all(any(cuts(s, a, b) for a, b in spans) for s in range(size + 1, 301))  # the largest such


def test_an_unavoidable_group_is_cut_at_no_split_when_possible():
    # 451 records in one second cannot land on one page; its one split (twins at 599/600) can.
    state = state_awaiting((200, 650), splits=[[(599, 600)]])
    assert all(cuts(s, 200, 650) for s in range(SMALLEST_PAGE_SIZE, 301))
    assert next_page_size(state, 300) == 299


def test_one_size_at_a_time_minimises_cut_groups_then_cut_splits_then_prefers_larger():
    rng = random.Random(5)
    for _ in range(200):
        spans, splits = [], []
        for _ in range(rng.randint(1, 6)):
            a = rng.randrange(0, 5000)
            b = a + rng.choice([1, 2, 5, 40, 200, 450])
            spans.append((a, b))
            splits.append([(x, x + 1) for x in sorted(rng.sample(range(a, b), min(3, b - a)))])
        state = state_awaiting(*spans, splits=splits)
        size = next_page_size(state, 300, plan=False)

        def score(s, spans=spans, splits=splits):
            return (sum(cuts(s, a, b) for a, b in spans),
                    sum(cuts(s, x, y) for group in splits for x, y in group), -s)

        assert score(size) == min(score(s) for s in range(SMALLEST_PAGE_SIZE, 301))
        if not all(any(cuts(s, a, b) for a, b in proof_spans(state, range(300, 149, -1))) for s in range(150, 301)):
            assert next_page_size(state, 300) == size  # one size proves every group: the plan is that size


def test_a_smaller_largest_size_is_respected():
    assert next_page_size(state_awaiting((199, 200)), 200) == 199
    assert next_page_size(state_awaiting((0, 500)), 200) == 200  # every size cuts it: the largest
    assert next_page_size(state_awaiting((99, 100)), 100) == 99  # a small PAGE_SIZE still has sizes to try
    assert next_page_size(state_awaiting((49, 50)), 100) == 100  # 100 does not cut it


def test_page_sizes_stay_within_what_zoom_serves():
    # PAGE_SIZE beyond Zoom's 300, or 0, is refused at load; here the search still never leaves 1..300.
    assert next_page_size(None, 1000) == 300 and next_page_size(None, 0) == 1
    assert next_page_size(state_awaiting((299, 300)), 1000) == 299
    assert next_page_size(state_awaiting((597, 598)), 1000) == 300
    # With one record a page every pair is cut: a larger size Zoom serves keeps it whole.
    assert next_page_size(state_awaiting((10, 11)), 1) == 300
    for largest in (1, 7, 100, 150, 299, 300, 301, 10_000):
        for span in [(0, 1), (149, 150), (299, 300), (1190, 1205)]:
            assert 1 <= next_page_size(state_awaiting(span), largest) <= 300


# ---- a plan over passes: the sizes of the next two passes chosen together ----------------------------

# Sixteen groups a 300-record pass cut: every size from 150 to 300 cuts at least one of them.
SIXTEEN = [(4761, 4810), (6294, 6336), (19468, 19516), (21560, 21618), (26077, 26120), (27279, 27321),
           (31474, 31501), (33596, 33641), (37493, 37518), (39293, 39342), (42887, 42911), (58774, 58810),
           (67177, 67218), (68644, 68703), (87599, 87655), (99897, 99914)]


def calls(listed: int, *sizes: int) -> int:
    return sum(-(-listed // s) for s in sizes)


def test_when_no_size_proves_every_group_the_next_two_sizes_are_chosen_together():
    state = state_awaiting(*SIXTEEN)
    state.listed = 100_000
    sizes = range(300, SMALLEST_PAGE_SIZE - 1, -1)
    assert all(any(cuts(s, a, b) for a, b in SIXTEEN) for s in sizes)
    # One size at a time: the size cutting the fewest groups is a small one, then the largest size that
    # keeps its leftovers whole.
    greedy = next_page_size(state, 300, plan=False)
    left = [(a, b) for a, b in SIXTEEN if cuts(greedy, a, b)]
    then = max(s for s in sizes if not any(cuts(s, a, b) for a, b in left))
    # The plan: two larger sizes, every group whole in at least one of them: as many passes, fewer calls.
    first, second = plan_page_sizes(state, 300)
    assert next_page_size(state, 300) == first
    assert not [(a, b) for a, b in SIXTEEN if cuts(first, a, b) and cuts(second, a, b)]
    assert (greedy, then, first, second) == (274, 299, 299, 291)
    assert calls(100_000, first, second) < calls(100_000, greedy, then)


def test_the_plan_leaves_the_fewest_groups_two_passes_can_leave_then_costs_the_fewest_calls():
    rng = random.Random(17)
    sizes = range(300, SMALLEST_PAGE_SIZE - 1, -1)
    planned = 0
    for _ in range(12):
        spans = []
        for _ in range(rng.randint(20, 90)):
            boundary = 300 * rng.randint(1, 333)
            width = rng.randint(10, 60)
            first = boundary - rng.randint(1, width - 1)
            spans.append((first, first + width - 1))
        state = state_awaiting(*spans)
        state.listed = 100_000
        plan = plan_page_sizes(state, 300)
        assert all(SMALLEST_PAGE_SIZE <= s <= 300 for s in plan) and next_page_size(state, 300) == plan[0]
        cut = {s: {i for i, (a, b) in enumerate(spans) if cuts(s, a, b)} for s in sizes}
        if len(plan) == 1:
            assert not cut[plan[0]] and plan[0] == next_page_size(state, 300, plan=False)
            continue
        planned += 1
        assert all(cut[s] for s in sizes)  # a second size only when no single size proves every group
        fewest = min(len(cut[s] & cut[t]) for s in sizes for t in sizes)
        assert len(cut[plan[0]] & cut[plan[1]]) == fewest
        cheapest = min(calls(100_000, s, t) for s in sizes for t in sizes if len(cut[s] & cut[t]) == fewest)
        assert calls(100_000, *plan) == cheapest
    assert planned >= 4  # the draw holds both kinds of day


def test_a_group_no_page_can_hold_is_proven_by_its_splits_and_one_wider_than_any_page_not_at_all():
    sizes = range(300, SMALLEST_PAGE_SIZE - 1, -1)
    big = state_awaiting((200, 650), splits=[[(599, 600), (250, 610)]])  # 451 records in one second
    assert proof_spans(big, sizes) == [(599, 600)]  # its twins 361 apart no page can hold: left out
    assert next_page_size(big, 300) == 299
    hopeless = state_awaiting((200, 650), splits=[[(250, 610)]])
    assert proof_spans(hopeless, sizes) == [] and plan_page_sizes(hopeless, 300) == (300,)


def converge(day: Day, *, plan: bool, rng: random.Random | None = None, passes: int = 10) -> int:
    """Complete passes of a quiet listing until the day is exact; how many it took."""
    for n in range(1, passes + 1):
        day.complete_pass(size=next_page_size(day.state, 300, plan=plan), rng=rng)
        assert day.never_more_than_zoom()
        if day.state.exact:
            assert day.exact
            return n
    return passes + 1


BUSY = 1_000_001 / 86_400  # records a second of issue 17's day


def test_a_plan_proves_a_crowded_day_in_fewer_passes_and_calls_than_one_size_at_a_time():
    # 30,000 records, a thousand bulk operations of 10-50 identical copies each: the first pass leaves 98
    # groups; one size at a time needs four passes, the plan three.
    listing = busy_day(30_000, 1_000, (10, 50), random.Random(0), per_second=BUSY)
    planned, greedy = Day(listing), Day(listing)
    assert (converge(planned, plan=True), converge(greedy, plan=False)) == (3, 4)
    assert sum(planned.calls) < sum(greedy.calls)


@pytest.mark.parametrize("groups, copies, shuffled", [
    (300, (2, 2), False),  # twins anywhere in their second
    (300, (10, 50), False),  # bulk operations
    (800, (10, 50), False),
    (100, (10, 50), True),  # and a fresh order within each second on every call
])
def test_quiet_busy_days_are_exact_within_the_passes_the_sensor_allows(groups, copies, shuffled):
    for seed in range(2):
        day = Day(busy_day(30_000, groups, copies, random.Random(seed), per_second=BUSY))
        passes = converge(day, plan=True, rng=random.Random(seed) if shuffled else None)
        assert passes <= CONFIRM_QUIET_PASSES < CONFIRM_MAX_PASSES, (seed, day.sizes)


# ---- which stored copies a listing proves surplus ---------------------------------------------------


def test_proven_by_a_pass_is_every_timed_second_it_did_not_cut():
    day = Day(twins_at(day_of(900), 299))
    ledger = day.complete_pass()
    proven = proven_by(ledger)
    assert not proven(line_time(day.listing[299])) and proven(line_time(day.listing[0]))
    assert not proven(None)  # where Zoom sorts an untimed record is unknown


def test_proven_by_a_moved_or_unsorted_pass_is_nothing():
    day = Day(day_of(900))
    ledger = day.complete_pass(after_call=lambda n, rows: late(rows, 100, 3, "z") if n == 1 else None)
    assert ledger.moved and not proven_by(ledger)(line_time(day.listing[0]))
    unsorted = Day(day_of(600))
    unsorted.listing[300], unsorted.listing[350] = unsorted.listing[350], unsorted.listing[300]
    ledger = unsorted.complete_pass()
    assert ledger.unsorted and not proven_by(ledger)(line_time(unsorted.listing[0]))


# ---- property: a random day under late events and reordering ------------------------------------


def random_day(rng: random.Random, n: int) -> list[bytes]:
    """Newest first, with same-second groups (up to 40 records) and genuine twins."""
    out: list[bytes] = []
    sec, tag = 86_399, 0
    while len(out) < n:
        for _ in range(rng.choice([1, 1, 1, 1, 2, 3, 5, 8, rng.randint(1, 40)])):
            tag += 1
            out.append(line(sec, tag))
            if rng.random() < 0.05:
                out.append(out[-1])
        sec -= rng.randint(1, 20)
    return out


def chaos(rng: random.Random, inserts: float, counter: list[int], day: Day):
    """Between two calls: now and then a batch of late events (up to 50) at random rows, often among
    rows already served (the first ones just above the last row served), sometimes late twins."""

    def after_call(n, listing):
        if rng.random() >= inserts:
            return
        where = rng.choice(["served", "anywhere", "just above"])
        for i in range(rng.choice([1, 2, 3, rng.randint(1, 50)])):
            top = min(len(listing), n * day.sizes[-1])
            if where == "just above" and i < 3:
                p = max(0, top - rng.randint(1, 3))
            elif where == "anywhere":
                p = rng.randrange(len(listing))
            else:
                p = rng.randrange(top)
            p = min(p, len(listing) - 1)
            if rng.random() < 0.1:
                listing.insert(p, listing[p])  # a late identical twin
            else:
                counter[0] += 1
                late(listing, p, 1, str(counter[0]))

    return after_call


@pytest.mark.parametrize("seed", range(40))
def test_random_days_never_store_more_than_zoom_and_settle_within_two_quiet_passes(seed):
    rng = random.Random(seed)
    day = Day(random_day(rng, rng.randint(100, 2500)))
    counter = [0]
    for _ in range(rng.randint(1, 4)):  # late events and a fresh order within each second, pass after pass
        ledger = day.complete_pass(after_call=chaos(rng, rng.choice([0.3, 0.8, 1.0]), counter, day),
                                   rng=rng if rng.random() < 0.5 else None)
        assert day.never_more_than_zoom()
        # The counts the state is made of: what Zoom listed when the last page was read, and what is stored.
        assert (day.state.listed, day.state.stored) == (day.listed_at_end.total(), day.stored.total())
        assert day.state.exact == day.exact_when_the_pass_ended
        # A stored copy the pass did not show is called surplus only where the listing proves it.
        proven = proven_by(ledger)
        by_digest = dict(zip(line_digests(list(day.stored)), day.stored, strict=True))
        assert not [d for d in ledger.stored.unaccounted() if proven(line_time(by_digest[d]))]
    # The listing stops moving and keeps its order. A pass is quiet when Zoom lists as many records as at
    # the previous pass (the first one is not if events arrived after the last pass's last call).
    quiet = 0
    for _ in range(3):
        ledger = day.complete_pass()
        quiet += ledger.listed == day.previous.listed
        assert day.never_more_than_zoom()
        if day.state.exact:
            break
    assert day.state.exact and quiet <= 2, (seed, quiet, day.sizes, day.state.awaiting)
    assert day.exact and day.state.awaiting == []
