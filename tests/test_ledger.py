"""The exactly-once arithmetic of one pass (ledger.py), without servers.

A day is a list of stored lines, newest first; a pass pages through it by slicing, one snapshot per
call, and a test changes the list between calls the way Zoom's listing moves (late events inserted
above the cursor, a same-second group served in a fresh order each call). What `admit` says to write
is what the pass would store.
"""

import random
from collections import Counter

import pytest

from tests.helpers import clock, day_of, line, shuffle_seconds
from zoom_pipeline.ledger import (
    MAX_SPLITS_KEPT,
    GroupSpan,
    PassLedger,
    StoredMultiset,
    encode_record,
    line_digest,
    line_digests,
    line_time,
)


def late(listing: list[bytes], position: int, count: int, tag: str) -> None:
    """Zoom's late events: `count` new records with the time of the row at `position`, inserted above it."""
    t = line_time(listing[position])
    sec = int(t[11:13]) * 3600 + int(t[14:16]) * 60 + int(t[17:19])
    listing[position:position] = [line(sec, f"late-{tag}-{i}") for i in range(count)]


def run_pass(listing: list[bytes], size: int, stored=(), *, after_call=None, order=None):
    """Page through `listing` as Zoom serves it (offset paging; call n sees the listing as it is then).

    `after_call(n, listing)` runs right after call n is served and may change the listing in place;
    `order(n, listing)` gives the order call n serves (a shuffle). Returns the finished ledger and the
    lines it said to write, in order.
    """
    ledger = PassLedger(StoredMultiset(line_digests(list(stored))))
    written: list[bytes] = []
    offset = call = 0
    while True:
        call += 1
        view = order(call, listing) if order else listing
        page = view[offset:offset + size]
        last = offset + len(page) >= len(listing)
        flags = ledger.admit(line_digests(page), [line_time(x) for x in page])
        assert len(flags) == len(page)
        written += [x for x, f in zip(page, flags, strict=True) if f]
        offset += len(page)
        if after_call:
            after_call(call, listing)
        if last:
            break
    ledger.finish()
    return ledger, written


def at_most(written, truth) -> bool:
    have, want = Counter(written), Counter(truth)
    return all(have[r] <= want[r] for r in have)


# ---- a pass over a day that does not move ---------------------------------------------------------


def test_first_pass_writes_every_record_once():
    listing = day_of(750)
    ledger, written = run_pass(listing, 300)
    assert written == listing
    assert (ledger.listed, ledger.pages, ledger.new, ledger.already_stored) == (750, 3, 750, 0)
    assert ledger.clean and ledger.unconfirmed == [] and ledger.moved == 0


def test_a_second_pass_over_a_stored_day_writes_nothing():
    listing = day_of(750)
    ledger, written = run_pass(listing, 300, stored=listing)
    assert written == []
    assert ledger.new == 0 and ledger.already_stored == ledger.stored.accounted == 750
    assert list(ledger.stored.unaccounted()) == []
    assert ledger.clean


def test_twins_on_one_page_are_both_written():
    listing = day_of(500)
    listing[100] = listing[101]  # two identical events in one second, both on page 1
    ledger, written = run_pass(listing, 300)
    assert Counter(written) == Counter(listing) and Counter(written)[listing[100]] == 2
    assert ledger.clean


def test_twins_in_one_page_with_one_copy_stored_add_only_the_other():
    listing = day_of(10)
    listing[4] = listing[5]
    ledger, written = run_pass(listing, 300, stored=[listing[4]])
    assert Counter(written) == Counter(listing) - Counter([listing[4]])
    assert ledger.already_stored == 1


def test_twins_split_by_a_boundary_write_one_and_await_confirmation():
    listing = day_of(600)
    listing[300] = listing[299]  # last row of page 1, first row of page 2
    ledger, written = run_pass(listing, 300)
    assert Counter(written)[listing[299]] == 1  # no page showed two copies
    assert Counter(written) == Counter(listing) - Counter([listing[299]])
    assert not ledger.clean and ledger.moved == 0
    assert ledger.unconfirmed == [GroupSpan(line_time(listing[299]), 299, 300, 2, [(299, 300)])]


def test_a_group_cut_without_a_record_on_both_sides_is_proven():
    listing = day_of(600)
    t = line_time(listing[295])
    listing[295:305] = [line(int(80_000 - 295), f"g{i}") for i in range(10)]  # ten distinct events in one second
    assert {line_time(x) for x in listing[295:305]} == {t}
    ledger, written = run_pass(listing, 300)
    assert written == listing and ledger.clean and ledger.unconfirmed == []


def test_a_group_over_three_pages_keeps_every_twin_copy_it_proves():
    listing = day_of(100, newest=80_000) + [line(70_000, f"bulk{i}") for i in range(650)] + day_of(100, newest=60_000)
    listing[400] = listing[401]  # twins inside page 2, itself wholly inside the group
    listing[599] = listing[600]  # twins across the boundary between pages 2 and 3
    ledger, written = run_pass(listing, 300)
    assert at_most(written, listing)
    assert Counter(written) == Counter(listing) - Counter([listing[599]])
    [span] = ledger.unconfirmed
    assert (span.time, span.first, span.last, span.records, span.splits) == (clock(70_000), 100, 749, 650,
                                                                            [(599, 600)])


def test_records_without_a_time_listed_on_two_pages_are_not_clean():
    odd = encode_record({"action": "Update", "operator": "no-time"})
    listing = day_of(400)
    listing[299] = listing[300] = odd  # twins? or one record served twice? No page can tell.
    ledger, written = run_pass(listing, 300)
    assert Counter(written)[odd] == 1 and at_most(written, listing)
    assert ledger.odd_on_two_pages == 1 and not ledger.clean
    both = day_of(400)
    both[10] = both[11] = odd  # on one page: that page proves two copies
    ledger, written = run_pass(both, 300)
    assert Counter(written)[odd] == 2 and ledger.clean


def test_a_page_out_of_order_is_never_clean_and_never_over_writes():
    listing = day_of(600)
    listing[300], listing[350] = listing[350], listing[300]  # page 2 not newest first
    listing[400] = listing[100]  # a record of page 1 served again, out of place
    ledger, written = run_pass(listing, 300)
    assert ledger.unsorted and not ledger.clean
    assert Counter(written) == Counter(set(listing))  # each distinct record once: no page showed two


def test_splits_kept_per_group_are_bounded():
    group = [line(70_000, f"bulk{i}") for i in range(300)]
    listing = day_of(150) + group + day_of(200, newest=60_000)
    rng = random.Random(3)
    ledger, written = run_pass(listing, 300, order=lambda n, rows: rows if n == 1 else shuffle_seconds(rows, rng))
    assert at_most(written, listing)
    [span] = ledger.unconfirmed  # page 1 showed 150 of the 300; page 2 shows 150 drawn afresh: ~75 repeats
    assert len(span.splits) == MAX_SPLITS_KEPT
    assert (span.first, span.last, span.records) == (150, 449, 300)


# ---- a listing that moves while the pass pages ----------------------------------------------------


def test_two_late_events_just_above_the_last_row_served_are_not_a_reason_to_write_twice():
    listing = day_of(900)
    before = list(listing)

    def arrive(n, rows):
        if n == 1:
            late(rows, 298, 2, "a")  # rows 298-299 of page 1 are served again at the top of page 2

    ledger, written = run_pass(listing, 300, after_call=arrive)
    assert written == before  # every record once; the two late ones were behind the cursor
    assert ledger.listed == 902 and ledger.moved == 1 and not ledger.clean
    [span] = ledger.unconfirmed
    assert span.time == line_time(before[299]) and span.splits == [(299, 301)]


def test_more_than_a_page_of_late_events_among_rows_already_served():
    listing = day_of(900)
    before = list(listing)

    def arrive(n, rows):
        if n == 1:
            late(rows, 100, 400, "b")

    ledger, written = run_pass(listing, 300, after_call=arrive)
    assert max(Counter(written).values()) == 1 and at_most(written, listing)
    assert set(before) <= set(written)  # everything listed before the events is stored
    assert sum(1 for x in written if b"late-b" in x) == 200  # the 200 late events page 2 showed
    assert ledger.moved > 0 and not ledger.clean


def test_a_thousand_late_events_then_a_quiet_pass_lands_the_rest_once():
    listing = day_of(1500)
    rng = random.Random(11)

    def arrive(n, rows):
        if n == 2:  # 1,000 events at random rows of pages 1-2, all already served
            for i in range(1000):
                late(rows, rng.randrange(0, 600), 1, f"c{i}")

    ledger, written = run_pass(listing, 300, after_call=arrive)
    assert max(Counter(written).values()) == 1 and at_most(written, listing)
    assert ledger.moved > 0 and not ledger.clean
    again, more = run_pass(listing, 300, stored=written)
    assert again.clean and Counter(written) + Counter(more) == Counter(listing)
    assert again.already_stored == len(written)


def test_late_events_below_the_cursor_are_just_listed():
    listing = day_of(900)
    ledger, written = run_pass(listing, 300, after_call=lambda n, rows: late(rows, 700, 5, "d") if n == 1 else None)
    assert written == listing and ledger.clean and ledger.listed == 905


def test_a_late_twin_of_the_last_row_served_is_not_written_until_a_page_shows_both():
    listing = day_of(600)

    def arrive(n, rows):
        if n == 1:
            rows.insert(299, rows[299])  # a byte-identical late copy of the last row of page 1

    ledger, written = run_pass(listing, 300, after_call=arrive)
    assert Counter(written) == Counter(set(listing)) and not ledger.clean
    again, more = run_pass(listing, 299, stored=written)  # both copies on page 2
    assert more == [listing[299]] and again.clean
    assert Counter(written) + Counter(more) == Counter(listing)


def test_shifted_rows_are_matched_against_all_that_was_written_even_beyond_the_index_threshold():
    listing = day_of(70_000)  # more than 65,536 writes before the first lookup: the index is built then
    before = list(listing)

    def arrive(n, rows):
        if n == 230:
            late(rows, 10, 400, "e")  # page 231 serves again the last 400 rows of pages 229-230

    ledger, written = run_pass(listing, 300, after_call=arrive)
    assert written == before
    assert ledger.moved == 399 and len(ledger.unconfirmed) == 1  # the last row served is in the oldest second


def test_stored_copies_are_accounted_once_per_copy_shown():
    listing = day_of(600)
    a, b, gone = listing[5], listing[450], line(1, "stored-but-never-listed")
    ledger, written = run_pass(listing, 300, stored=[a, b, b, gone])
    assert Counter(written) == Counter(listing) - Counter([a, b])
    assert ledger.already_stored == ledger.stored.accounted == 2  # one copy of b shown: one accounted
    assert Counter(ledger.stored.unaccounted()) == Counter(line_digests([b, gone]))
    assert ledger.stored.count(line_digest(b)) == 2 and len(ledger.stored) == 4


def test_stored_twins_split_by_a_boundary_account_one_copy_and_write_nothing():
    listing = day_of(600)
    listing[300] = listing[299]
    twin = line_digest(listing[299])
    ledger, written = run_pass(listing, 300, stored=listing)
    assert written == []
    assert ledger.already_stored == 599  # each page showed one copy of the twin: the same one
    assert list(ledger.stored.unaccounted()) == [twin]


def test_stored_multiset_with_its_bucket_index():
    rng = random.Random(1)
    digests = [rng.getrandbits(64) for _ in range(5000)]
    digests += digests[:300]  # a few twins
    stored = StoredMultiset(digests)
    truth = Counter(digests)
    assert len(stored) == 5300 and list(stored.digests) == sorted(digests)
    assert all(stored.count(d) == c for d, c in list(truth.items())[:1000])
    assert stored.count(rng.getrandbits(64)) == 0
    assert stored.account(digests[0], 5) == 2 and stored.accounted == 2
    assert stored.account(digests[0], 5) == 2 and stored.accounted == 2  # never twice the same copy
    stored.reset()
    assert stored.accounted == 0 and sum(1 for _ in stored.unaccounted()) == 5300


# ---- a same-second group served in a fresh order on every call -------------------------------------


@pytest.mark.parametrize("size, before, group, twins", [(300, 297, 6, 1), (300, 280, 40, 3), (200, 150, 500, 5)])
def test_reorder_within_a_cut_second_never_writes_more_than_zoom_holds(size, before, group, twins):
    bulk = [line(70_000, f"bulk{i}") for i in range(group - twins)]
    bulk += bulk[:twins]  # genuine twins inside the second
    listing = day_of(before) + bulk + day_of(300, newest=60_000)
    proven = unproven = 0
    for seed in range(400):
        if seed >= 60 and unproven and (proven or group > 6):
            break
        rng = random.Random(seed)
        ledger, written = run_pass(listing, size, order=lambda n, rows, rng=rng: shuffle_seconds(rows, rng))
        assert at_most(written, listing), seed
        if ledger.clean:
            assert Counter(written) == Counter(listing), seed  # no record on two pages: nothing was missed
            proven += 1
        else:
            assert [s.time for s in ledger.unconfirmed] == [clock(70_000)], seed
            unproven += 1
        # A second pass that stores on top never exceeds the truth either.
        _, more = run_pass(listing, size, stored=written, order=lambda n, rows, rng=rng: shuffle_seconds(rows, rng))
        assert at_most(written + more, listing), seed
    assert unproven > 0  # the case under test happened
    if group == 6:
        assert proven > 0  # and a small group cut with no record on both sides proves itself


def test_reorder_and_late_events_together_never_write_more_than_zoom_holds():
    base = day_of(200) + [line(70_000, f"bulk{i}") for i in range(120)] + day_of(500, newest=60_000)
    for seed in range(60):
        rng = random.Random(seed)
        listing = list(base)

        def arrive(n, rows, rng=rng, seed=seed):
            if n <= 2:
                late(rows, rng.randrange(0, 300 * n), rng.choice([1, 2, 50]), f"{seed}-{n}")

        def order(n, rows, rng=rng):
            return shuffle_seconds(rows, rng)

        ledger, written = run_pass(listing, 300, after_call=arrive, order=order)
        assert at_most(written, listing), seed
        assert not ledger.clean, seed


# ---- restarting a pass --------------------------------------------------------------------------


def test_reset_forgets_the_pass_but_not_the_store():
    listing = day_of(400)
    ledger = PassLedger(StoredMultiset(line_digests(listing[:1])))
    page = listing[:300]
    first = ledger.admit(line_digests(page), [line_time(x) for x in page])
    assert first == [False] + [True] * 299
    ledger.reset()  # the page token expired: the day is read again from page 1, the writer restarts
    assert (ledger.listed, ledger.pages, ledger.new, ledger.already_stored, ledger.moved) == (0, 0, 0, 0, 0)
    assert ledger.unconfirmed == [] and list(ledger.written.all) == []
    assert ledger.admit(line_digests(page), [line_time(x) for x in page]) == first  # nothing taken as written
    rest = listing[300:]
    assert all(ledger.admit(line_digests(rest), [line_time(x) for x in rest]))
    ledger.finish()
    assert ledger.clean and ledger.new == 399 and ledger.already_stored == 1


def test_reset_clears_a_cut_group_and_the_moved_count():
    listing = day_of(600)
    listing[300] = listing[299]
    ledger = PassLedger(StoredMultiset())
    for page in (listing[:300], listing[300:]):
        ledger.admit(line_digests(page), [line_time(x) for x in page])
    ledger.admit(line_digests(listing[:1]), [line_time(listing[0])])  # newer than the oldest: moved
    assert ledger.moved == 1
    ledger.reset()
    for page in (listing[:299], listing[299:]):  # read again with the twins on one page
        ledger.admit(line_digests(page), [line_time(x) for x in page])
    ledger.finish()
    assert ledger.clean and ledger.moved == 0 and ledger.new == 600


# ---- the stored form of a record --------------------------------------------------------------------


def test_encoding_keeps_keys_values_and_escapes_newlines():
    rec = {"time": "2026-11-20T10:00:00Z", "operation_detail": "a\nb – ünï", "operator": None, "x": 1}
    encoded = encode_record(rec)
    assert b"\n" not in encoded
    assert encoded == '{"time":"2026-11-20T10:00:00Z","operation_detail":"a\\nb – ünï","operator":null,"x":1}'.encode()
    assert line_time(encoded) == "2026-11-20T10:00:00Z"
    assert line_time(encode_record({"time": "yesterday"})) is None
    assert line_time(encode_record({"action": "no time at all"})) is None


def test_encoding_keeps_values_orjson_refuses():
    rec = {"operation_detail": "Edit Group \ud83d broken", "n": 2**70, "time": "2026-11-20T10:00:00Z"}
    encoded = encode_record(rec)
    assert b'"Edit Group \\ud83d broken"' in encoded and str(2**70).encode() in encoded
    assert line_time(encoded) == "2026-11-20T10:00:00Z"


def test_digests_are_stable_within_a_process_and_tell_lines_apart():
    a, b = line(10, 1), line(10, 2)
    assert line_digest(a) == line_digest(bytes(a)) != line_digest(b)
    assert line_digests([a, b, a]) == [line_digest(a), line_digest(b), line_digest(a)]
