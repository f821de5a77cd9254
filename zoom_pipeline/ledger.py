"""Exactly-once arithmetic for one pass over a day: what is stored, and what a page proves.

Pure logic, no I/O. A record is identified by a 64-bit BLAKE2b digest of its NDJSON line (the exact
bytes stored). What a day already holds is a *multiset* of digests, kept as one sorted `array('Q')`
(8 bytes a record), so a million-record day costs ~9 MB rather than a million Python objects.

The rule (README, "Exactly once"). Zoom lists a day newest first with offset paging and never
deletes, so each page is one consistent snapshot: the number of copies of a record that a *single
page* shows never exceeds Zoom's count. Copies added up across pages can (a listing that moves
while we page serves a record twice). So a record is stored as many times as the most copies any
one page has shown, minus the copies already stored, and never more. Which groups of the pass this
proves complete is tracked per second (`GroupSpan`), for `confirmation.py`.
"""

import json
import re
import secrets
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from hashlib import blake2b

import orjson

_TIME = re.compile(rb'"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"')
_ZOOM_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

# Digests are compared only within one process and never stored, so they are keyed with a random
# per-process key: nobody who can shape records' text can craft two lines that collide.
_DIGEST_KEY = secrets.token_bytes(16)


def line_digest(line: bytes) -> int:
    return int.from_bytes(blake2b(line, digest_size=8, key=_DIGEST_KEY).digest(), "big")


def line_digests(lines: Iterable[bytes]) -> list[int]:
    """`line_digest` of each line (the same values, without a Python call per line)."""
    from_bytes, key = int.from_bytes, _DIGEST_KEY
    return [from_bytes(blake2b(line, digest_size=8, key=key).digest(), "big") for line in lines]


def encode_record(record: object) -> bytes:
    """The stored form of a record: compact JSON, keys and values as Zoom returned them.

    A value orjson cannot encode (a lone UTF-16 surrogate escape, an integer beyond 64 bits) falls
    back to the standard library with ASCII escapes, which keeps it exactly as Zoom sent it.
    """
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode()


def record_time(record: object) -> str | None:
    """The record's `time` if it is a well-formed Zoom timestamp (`YYYY-MM-DDTHH:MM:SSZ`), else None.

    The same answer as `line_time` of the record's stored line, read from the record Zoom sent."""
    t = record.get("time") if isinstance(record, dict) else None
    return t if type(t) is str and _ZOOM_TIME.fullmatch(t) else None


def line_time(line: bytes) -> str | None:
    """`record_time` of a stored line, read without a full parse."""
    m = _TIME.search(line)
    return m.group(1).decode() if m else None


def sorted_digests(digests: Iterable[int]) -> array:
    """The digests in one sorted `array('Q')`, sorted bucket by bucket so no list of the whole day
    is ever held (digests are uniform over 64 bits, so their top byte spreads them evenly)."""
    buckets = [array("Q") for _ in range(256)]
    appends = [b.append for b in buckets]
    for digest in digests:
        appends[digest >> 56](digest)
    ordered = array("Q")
    for i, bucket in enumerate(buckets):
        ordered.extend(sorted(bucket))
        buckets[i] = None  # free as we go: peak stays near two copies of 8 bytes a record
    return ordered


class StoredMultiset:
    """The digests of every record a day holds, with how many of them a pass has accounted for."""

    # A table of where each top-16-bit bucket starts narrows every lookup to a handful of entries.
    _INDEX_BITS = 16

    def __init__(self, digests: Iterable[int] = ()):
        ordered = sorted_digests(digests)
        self._digests = ordered
        self._accounted = bytearray(len(ordered))
        self.accounted = 0
        self._starts: array | None = None
        if len(ordered) >= 1 << 12:
            shift = 64 - self._INDEX_BITS
            self._starts = array("Q", [bisect_left(ordered, b << shift) for b in range((1 << self._INDEX_BITS) + 1)])

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def digests(self) -> array:
        """Every stored digest, sorted."""
        return self._digests

    def _run(self, digest: int) -> tuple[int, int]:
        digests, starts = self._digests, self._starts
        if starts is None:
            lo, hi = 0, len(digests)
        else:
            b = digest >> (64 - self._INDEX_BITS)
            lo, hi = starts[b], starts[b + 1]
        i = bisect_left(digests, digest, lo, hi)
        if i == hi or digests[i] != digest:
            return i, i
        return i, bisect_right(digests, digest, i, hi)

    def count(self, digest: int) -> int:
        i, j = self._run(digest)
        return j - i

    def account(self, digest: int, copies: int) -> int:
        """Mark up to `copies` stored copies of `digest` as listed by this pass; return how many are stored."""
        i, j = self._run(digest)
        flags = self._accounted
        for k in range(i, min(j, i + copies)):
            if not flags[k]:
                flags[k] = 1
                self.accounted += 1
        return j - i

    def unaccounted(self) -> Iterable[int]:
        """Stored copies no page of this pass has shown (each digest once per copy)."""
        flags = self._accounted
        return (d for d, seen in zip(self._digests, flags, strict=True) if not seen)

    def reset(self) -> None:
        self._accounted = bytearray(len(self._digests))
        self.accounted = 0


class _Written:
    """The digests a pass has written so far, appended in order, with counts for the rare record that
    can only be matched against all of them (see `PassLedger`): a sorted index built lazily, plus the
    few appended since."""

    _REINDEX = 1 << 16

    def __init__(self) -> None:
        self.all = array("Q")
        self._index = array("Q")
        self._tail: Counter | None = None

    def counter(self):
        """A `count(digest)` over everything written so far; cheap to ask for again page after page."""
        indexed = len(self._index)
        if len(self.all) - indexed > self._REINDEX:
            self._index = sorted_digests(self.all)
            indexed = len(self._index)
        tail = Counter(self.all[indexed:])
        index = self._index

        def count(digest: int) -> int:
            return bisect_right(index, digest) - bisect_left(index, digest) + tail[digest]

        return count


MAX_SPLITS_KEPT = 20


@dataclass
class GroupSpan:
    """A second's group of records that a page boundary cut, with a record listed on both sides.

    `first`..`last` are its positions in the pass's listing; `splits` the position spans of the
    records seen on more than one page. Such a group may hide a copy (twins split by the boundary)
    or hold a repeat (the listing moved): no page proved its content, so it awaits confirmation.
    """

    time: str
    first: int
    last: int
    records: int
    splits: list[tuple[int, int]] = field(default_factory=list)


class PassLedger:
    """Decides, page by page, which listed records a pass must write, and what the pass proves.

    Most records need no lookup beyond the stored day: in a newest-first listing a record older
    than everything listed so far cannot have been listed before. Records of the oldest second so
    far (a group the page boundary cut) are matched against that group's own table; anything newer
    (the listing moved: a late event pushed rows already served onto the next page) or without a
    time, against everything this pass wrote.
    """

    def __init__(self, stored: StoredMultiset):
        self.stored = stored
        self.reset()

    def reset(self) -> None:
        """Forget this pass (the day is being read again from page 1)."""
        self.stored.reset()
        self.written = _Written()
        self.listed = 0
        self.pages = 0
        self.new = 0
        self.moved = 0  # records newer than the oldest one listed before their page
        self.unsorted = False
        self.unconfirmed: list[GroupSpan] = []
        self._oldest: str | None = None
        # The group of the oldest second listed so far: digest -> [most copies one page showed,
        # page it was first listed on, position of that listing].
        self._group: dict[int, list[int]] = {}
        self._group_first = self._group_last = 0
        self._group_records = 0
        self._group_span: GroupSpan | None = None
        self._odd: dict[int, tuple[int, int]] = {}  # records without a time: digest -> (page, position)
        self.odd_on_two_pages = 0
        self.cut_digests: set[int] = set()  # records of the groups in `unconfirmed` (not persisted)

    @property
    def already_stored(self) -> int:
        return self.stored.accounted

    @property
    def clean(self) -> bool:
        """No record listed on two pages, none out of place: the pass listed exactly Zoom's day.

        (Call `finish` first.) A listing that grows above the cursor re-serves a record on the next
        page, and a cut group whose order changed between calls repeats one to miss another, so
        either shows as a record on two pages; no page of a clean pass hid anything."""
        return not (self.unconfirmed or self.moved or self.unsorted or self.odd_on_two_pages)

    def admit(self, digests: list[int], times: list[str | None]) -> list[bool]:
        """One page, in order: for each record, whether to write it now."""
        n = len(digests)
        page, start = self.pages, self.listed
        self.pages += 1
        self.listed += n
        oldest = self._oldest
        counts = Counter(digests) if len(set(digests)) < n else None
        stored = self.stored
        has_stored = len(stored) > 0
        if not all(a is None or b is None or a >= b for a, b in zip(times, times[1:], strict=False)):
            self.unsorted = True  # not newest first: only the slow, always-right lookup is safe now
        fast = not self.unsorted
        count_written = None
        flags = [False] * n
        to_write: dict[int, int] = {}  # twins on this page: copies still to write
        general = n
        if fast and counts is None and not has_stored and None not in times:
            # The usual first run: nothing stored, no twin on the page, so every record older than all
            # listed before (a suffix of the sorted page) is written as it is; only the head that shares
            # the oldest second so far (or is newer) needs a look.
            general = 0
            while general < n and oldest is not None and times[general] >= oldest:
                general += 1
            flags[general:] = [True] * (n - general)
        for i in range(general):
            d, t = digests[i], times[i]
            c = counts[d] if counts is not None else 1
            if c > 1 and d in to_write:
                if to_write[d]:
                    flags[i] = True
                    to_write[d] -= 1
                continue
            s = stored.account(d, c) if has_stored else 0
            if fast and t is not None and (oldest is None or t < oldest):
                have = s  # older than anything listed before: its first listing in this pass
            elif fast and t is not None and t == oldest:
                entry = self._group.get(d)
                if entry is None:
                    self._group[d] = [c, page, start + i]
                    have = s
                else:
                    have = max(s, entry[0])
                    entry[0] = max(entry[0], c)
                    self._split(entry[2], start + i)
            else:
                if t is None:
                    first_page, first_position = self._odd.setdefault(d, (page, start + i))
                    if first_page != page:
                        # Where Zoom sorts a record without a time is unknown: its copies on two pages
                        # are kept apart like a cut group's, so the next pass avoids cutting them.
                        self.odd_on_two_pages += 1
                        self.cut_digests.add(d)
                        self.unconfirmed.append(GroupSpan("", first_position, start + i, 2,
                                                          [(first_position, start + i)]))
                elif fast:
                    self.moved += 1
                if count_written is None:
                    count_written = self.written.counter()
                have = s + count_written(d)
            k = c - have if c > have else 0
            if k:
                flags[i] = True
                k -= 1
            if c > 1:
                to_write[d] = k
        if fast:
            self._advance(digests, times, page, start)
        written = digests if all(flags) else [d for d, f in zip(digests, flags, strict=True) if f]
        self.written.all.extend(written)
        self.new += len(written)
        return flags

    def finish(self) -> None:
        """The pass has read its last page: close the group the last boundary left open."""
        self._close_group()

    def _split(self, first_position: int, position: int) -> None:
        span = self._group_span
        if span is None:
            span = self._group_span = GroupSpan(self._oldest or "", self._group_first, position, 0)
        if len(span.splits) < MAX_SPLITS_KEPT:
            span.splits.append((first_position, position))

    def _advance(self, digests: list[int], times: list[str | None], page: int, start: int) -> None:
        """After a page: extend the oldest second's group, or open the page's tail run as the group
        the next boundary may cut."""
        oldest = self._oldest
        if oldest is not None:
            mine = [i for i, t in enumerate(times) if t == oldest]
            if mine:
                self._group_records += len(mine)
                self._group_last = start + mine[-1]
        last = next((t for t in reversed(times) if t is not None), None)
        if last is None or (oldest is not None and last >= oldest):
            return  # the page ends inside the group (or went no older: the listing moved)
        self._close_group()
        self._oldest = last
        self._group = {}
        tail = len(times)
        while tail and times[tail - 1] in (last, None):
            tail -= 1
        self._group_first = start + tail
        self._group_last = start + len(times) - 1
        self._group_records = 0
        for i in range(tail, len(times)):
            if times[i] == last:
                self._group_records += 1
                entry = self._group.get(digests[i])
                if entry is None:
                    self._group[digests[i]] = [1, page, start + i]
                else:
                    entry[0] += 1  # copies on this one page

    def _close_group(self) -> None:
        span = self._group_span
        if span is not None:
            span.last = self._group_last
            span.records = self._group_records
            self.unconfirmed.append(span)
            self.cut_digests.update(self._group)
            self._group_span = None
