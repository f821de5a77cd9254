"""Exactly-once bookkeeping for one day: what is stored, and what a pass adds.

Pure logic, no I/O. A record is identified by a 64-bit BLAKE2b digest of its NDJSON line (the
exact bytes stored). What a day already holds is a *multiset* of digests, kept as one sorted
`array('Q')` (8 bytes a record) plus a byte of "matched" flag each, so a million-record day costs
~9 MB rather than a million Python objects. It is built and searched without ever holding the day
as a list of Python ints (that alone was ~45 MB at a million records).

Rules (see README, "Exactly once"):
- a *complete* pass (started after the day ended) is trusted for multiplicities: it writes each
  record as many times as it lists it, minus the copies already stored;
- a *refresh* pass (the day was still open) keeps one copy of each distinct record, because with
  newest-first offset paging a shifted repeat looks exactly like a genuine identical twin.
"""

import json
import re
import secrets
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from hashlib import blake2b

import orjson

_TIME = re.compile(rb'"time":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"')
_ZOOM_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def zoom_time(record: object) -> str | None:
    """The record's `time` if it is a well-formed Zoom timestamp (`YYYY-MM-DDTHH:MM:SSZ`), else None."""
    t = record.get("time") if isinstance(record, dict) else None
    return t if isinstance(t, str) and _ZOOM_TIME.fullmatch(t) else None


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


def line_time(line: bytes) -> str | None:
    """The record's `time` if it is a well-formed Zoom timestamp, read without a full parse."""
    m = _TIME.search(line)
    return m.group(1).decode() if m else None


class StoredMultiset:
    """The digests of every record already stored for a day, each matchable once."""

    # Digests are uniform over 64 bits, so their top bits spread them evenly over buckets:
    # _SORT_BITS to sort bucket by bucket (each a short list), _INDEX_BITS for a table of where
    # each bucket starts, which narrows every lookup to a handful of entries.
    _SORT_BITS = 8
    _INDEX_BITS = 16

    def __init__(self, digests: Iterable[int] = ()):
        shift = 64 - self._SORT_BITS
        buckets = [array("Q") for _ in range(1 << self._SORT_BITS)]
        appends = [b.append for b in buckets]
        for digest in digests:
            appends[digest >> shift](digest)
        ordered = array("Q")
        for i, bucket in enumerate(buckets):
            ordered.extend(sorted(bucket))
            buckets[i] = None  # free as we go: peak stays near two copies of 8 bytes a record
        self._digests = ordered
        self._matched = bytearray(len(ordered))
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

    def contains(self, digest: int) -> bool:
        """Whether the day holds at least one copy of `digest` (matched or not)."""
        digests, starts = self._digests, self._starts
        lo, hi = (0, len(digests)) if starts is None else (starts[digest >> (64 - self._INDEX_BITS)],
                                                            starts[(digest >> (64 - self._INDEX_BITS)) + 1])
        i = bisect_left(digests, digest, lo, hi)
        return i < hi and digests[i] == digest

    def take(self, digest: int) -> bool:
        """Match one not-yet-matched stored copy of `digest`; False if none is left."""
        digests, matched, starts = self._digests, self._matched, self._starts
        if starts is None:
            lo, hi = 0, len(digests)
        else:
            b = digest >> (64 - self._INDEX_BITS)
            lo, hi = starts[b], starts[b + 1]
        i = bisect_left(digests, digest, lo, hi)
        while i < hi and digests[i] == digest:
            if not matched[i]:
                matched[i] = 1
                return True
            i += 1
        return False

    def reset(self) -> None:
        self._matched = bytearray(len(self._digests))


class PassLedger:
    """Decides, record by record, whether a pass must write it."""

    def __init__(self, stored: StoredMultiset, *, complete: bool):
        self.stored = stored
        self.complete = complete
        self.reset()

    def reset(self) -> None:
        """Forget this pass (the day is being read again from page 1)."""
        self.stored.reset()
        self._seen: set[int] = set()
        self.listed = 0
        self.already_stored = 0
        self.repeats_skipped = 0
        self.new = 0

    def admit_all(self, digests: list[int]) -> list[bool]:
        """`admit` for each digest of a page, in order (the same decisions and counters)."""
        stored = self.stored
        if self.complete:
            self.listed += len(digests)
            if not len(stored):  # nothing stored yet (a first run): every listed record is new
                self.new += len(digests)
                return [True] * len(digests)
            take = stored.take
            flags = [not take(d) for d in digests]
            new = sum(flags)
            self.new += new
            self.already_stored += len(digests) - new
            return flags
        admit = self.admit
        return [admit(d) for d in digests]

    def admit(self, digest: int) -> bool:
        """True if the record must be written now."""
        self.listed += 1
        if not self.complete:
            if digest in self._seen:
                self.repeats_skipped += 1
                return False
            self._seen.add(digest)
        if self.stored.take(digest):
            self.already_stored += 1
            return False
        self.new += 1
        return True
