"""One day of one report endpoint's records: a lazy synthetic sequence merged with explicit records.

``_Day`` serves a day newest first by position without materialising it, so a day of millions of
records costs nothing until pages of it are asked for. Pure: no locks, no I/O.
"""

from __future__ import annotations

import datetime as dt
import random
from bisect import bisect_left

from zoom_pipeline.simulator.records import _LOGS, _M64, _U_BITS, _U_MASK, _clock, _Log, _mix


def _key(record: dict) -> str:
    """A record's `time` as the sort key: explicit records may lack it or carry raw bytes."""
    value = record.get("time") or ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _has_raw(records: list[dict]) -> bool:
    return any(isinstance(v, bytes) for r in records for v in r.values())


class _Day:
    """Records of one UTC day of one log, served newest first.

    The synthetic part is a pure function of (log, day, seed, index): the log's vocabulary and record
    shape, the same placement of times and twins for every log. ``twins`` of its base events are
    followed by a byte-identical copy, spread evenly; base ``b`` sits at position ``b + c(b)`` where
    ``c(b)`` counts twin bases before it. Explicit records live in a list sorted newest first; each
    remembers how many synthetic records precede it, which fixes its merged position: normally those
    strictly newer, but ``insert_at`` may place one inside a group of synthetic records of equal time.
    The merged listing is therefore always sorted by `time`, newest first, and each group of equal
    `time` is one contiguous run.
    """

    __slots__ = ("day", "log", "n", "bases", "twins", "spacing", "mix", "pool_off", "keys", "recs", "newer",
                 "_pos", "raw")

    def __init__(self, day: str, count: int = 0, seed: int = 0, twins: int = 0,
                 log: _Log = _LOGS["operationlogs"]) -> None:
        if count < 0 or twins < 0 or 2 * twins > count:
            raise ValueError("need 0 <= 2 * twins <= count")
        self.day = day
        self.log = log
        self.n = count
        self.twins = twins
        self.bases = count - twins
        self.mix = _mix((seed & _M64) * 0x100000001B3 ^ dt.date.fromisoformat(day).toordinal() ^ log.salt)
        self.pool_off = _mix(self.mix) % len(log.vocab().pool) if count else 0
        # Each twin base is jittered back by less than half the gap between twins: evenly spaced twins
        # fell on page boundaries (multiples of 300), where every pass read them as shifted pages.
        self.spacing = self.bases // (2 * twins) if twins else 0
        self.keys: list[str] = []  # explicit records' `time`, non-increasing
        self.recs: list[dict] = []
        self.newer: list[int] = []  # per explicit record: synthetic records before it (non-decreasing)
        self._pos: list[int] | None = None
        self.raw = False  # some explicit record holds bytes: pages need _dumps_with_raw

    @property
    def total(self) -> int:
        return self.n + len(self.recs)

    # -- synthetic sequence ------------------------------------------------------------------------
    def _twin_base(self, k: int) -> int:
        """Base index of the k-th twin: (2k+1)*B // (2*twins), minus a jitter smaller than `spacing`."""
        jitter = _mix(self.mix ^ (k + 0x7F4A7C15)) % self.spacing if self.spacing else 0
        return (2 * k + 1) * self.bases // (2 * self.twins) - jitter

    def _evenly_before(self, b: int) -> int:
        # Unjittered twin bases (2k+1)*B // (2*twins) below b, in O(1).
        x = 2 * self.twins * b - self.bases
        return 0 if x <= 0 else min(self.twins, -(-x // (2 * self.bases)))

    def _twins_before(self, b: int) -> int:
        # Twin bases t_k < b, in O(1): the jitter moves each below its even spot by less than the
        # spacing, so only the last candidate needs a look.
        if not self.twins:
            return 0
        count = self._evenly_before(b + self.spacing)
        return count - 1 if count and self._twin_base(count - 1) >= b else count

    def _sec(self, b: int, h: int) -> int:
        # Base b owns the slot [b, b+1) of B equal slots over the day; jitter inside the slot keeps
        # times non-increasing with b while looking irregular.
        return 86399 - (((b << _U_BITS) + (h & _U_MASK)) * 86400) // (self.bases << _U_BITS)

    def _time(self, b: int) -> str:
        return _clock(self.day, self._sec(b, _mix(self.mix + b)))

    def _base(self, b: int, pool: list, stride: int, picks: list) -> dict[str, str]:
        h = _mix(self.mix + b)
        return self.log.record(pool[(b * stride + self.pool_off) % len(pool)], picks[(h >> _U_BITS) % len(picks)],
                               _clock(self.day, self._sec(b, h)))

    def synthetic(self, start: int, count: int) -> list[dict]:
        """Synthetic records at positions [start, start+count)."""
        count = min(count, self.n - start)
        if count <= 0:
            return []
        pool, stride, picks = self.log.vocab()
        lo, hi = 0, self.bases - 1  # largest base b with position(b) <= start
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid + self._twins_before(mid) <= start:
                lo = mid
            else:
                hi = mid - 1
        b = lo
        out: list[dict] = []
        if b + self._twins_before(b) != start:  # start is the copy of twin base b
            out.append(self._base(b, pool, stride, picks))
            b += 1
        # Hot path (benchmark: 3,334 pages of 300): hashing and formatting inlined, the next twin
        # base tracked incrementally, and the clock string reused while the second is unchanged.
        day, mix, bases, twins, make = self.day, self.mix, self.bases, self.twins, self.log.record
        scale, n_pool, n_picks, off = bases << _U_BITS, len(pool), len(picks), self.pool_off
        done = self._twins_before(b)
        next_twin = self._twin_base(done) if done < twins else -1
        last_sec, clock = -1, ""
        append = out.append
        while len(out) < count:
            h = (mix + b + 0x9E3779B97F4A7C15) & _M64
            h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
            h ^= h >> 31
            sec = 86399 - (((b << _U_BITS) + (h & _U_MASK)) * 86400) // scale
            if sec != last_sec:
                last_sec, clock = sec, f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"
            rec = make(pool[(b * stride + off) % n_pool], picks[(h >> _U_BITS) % n_picks], clock)
            append(rec)
            if b == next_twin:
                if len(out) < count:
                    append(rec)
                done += 1
                next_twin = self._twin_base(done) if done < twins else -1
            b += 1
        return out

    def newer_than(self, when: str, inclusive: bool = False) -> int:
        """Number of synthetic records whose `time` is > ``when`` (>= with ``inclusive``)."""
        lo, hi = 0, self.bases  # first base with time <= when (< when if inclusive); times non-increasing
        while lo < hi:
            mid = (lo + hi) // 2
            t = self._time(mid)
            if t > when or (inclusive and t == when):
                lo = mid + 1
            else:
                hi = mid
        return lo + self._twins_before(lo)

    def count_newer(self, when: str, inclusive: bool = False) -> int:
        """Merged records whose `time` is > ``when`` (>= with ``inclusive``): where its group starts (ends)."""
        lo, hi = 0, len(self.keys)  # keys are non-increasing
        while lo < hi:
            mid = (lo + hi) // 2
            k = self.keys[mid]
            if k > when or (inclusive and k == when):
                lo = mid + 1
            else:
                hi = mid
        return lo + (self.newer_than(when, inclusive) if self.n else 0)

    # -- explicit records --------------------------------------------------------------------------
    def set_explicit(self, records: list[dict]) -> None:
        # sort(reverse=True) is stable: equal times keep the order given.
        rows = sorted(((_key(r), dict(r)) for r in records), key=lambda x: x[0], reverse=True)
        self.keys = [k for k, _ in rows]
        self.recs = [r for _, r in rows]
        self.newer = [self.newer_than(k) if self.n else 0 for k in self.keys]
        self._pos = None
        self.raw = _has_raw(self.recs)

    def add(self, records: list[dict]) -> None:
        """Merge arrivals; on equal time the new ones go first, keeping their given order."""
        rows = sorted(((_key(r), dict(r)) for r in records), key=lambda x: x[0], reverse=True)
        self.raw = self.raw or _has_raw([r for _, r in rows])
        for key, rec in reversed(rows):
            lo, hi = 0, len(self.keys)  # first index whose key <= key (list is descending)
            while lo < hi:
                mid = (lo + hi) // 2
                if self.keys[mid] > key:
                    lo = mid + 1
                else:
                    hi = mid
            self.keys.insert(lo, key)
            self.recs.insert(lo, rec)
            self.newer.insert(lo, self.newer_than(key) if self.n else 0)
        self._pos = None

    def insert_at(self, position: int, records: list[dict]) -> None:
        """Put ``records`` at merged positions [position, position+len(records)) exactly, even inside a
        group of equal `time`. Their `time` must equal that of the record now at ``position`` (or of
        the last record when ``position == total``) so the listing stays sorted."""
        position = min(max(0, position), self.total)
        if self._pos is None:
            self._pos = [j + s for j, s in enumerate(self.newer)]
        j = bisect_left(self._pos, position)  # explicit records before the position
        syn = position - j  # synthetic records before it; keeps `newer` non-decreasing
        k = len(records)
        self.keys[j:j] = [_key(r) for r in records]
        self.recs[j:j] = [dict(r) for r in records]
        self.newer[j:j] = [syn] * k
        self._pos = None
        self.raw = self.raw or _has_raw(records)

    def slice(self, offset: int, limit: int) -> list[dict]:
        """Merged records at positions [offset, offset+limit), newest first."""
        end = min(offset + limit, self.total)
        if offset >= end:
            return []
        if not self.recs:
            return self.synthetic(offset, end - offset)
        if self._pos is None:
            self._pos = [j + s for j, s in enumerate(self.newer)]
        pos = self._pos
        j = bisect_left(pos, offset)
        j_end = bisect_left(pos, end)
        syn = self.synthetic(offset - j, (end - offset) - (j_end - j)) if self.n else []
        out: list[dict] = []
        si = 0
        for p in range(offset, end):
            if j < j_end and pos[j] == p:
                out.append(self.recs[j])
                j += 1
            else:
                out.append(syn[si])
                si += 1
        return out

    def shuffled_slice(self, offset: int, limit: int, rng: random.Random) -> list[dict]:
        """Like slice(), but each group of equal `time` in a fresh order drawn from ``rng``.

        Groups cut by the slice's ends are fetched whole, permuted, then cut, so the slice is positions
        [offset, offset+limit) of one permuted listing. Only the groups touching the slice are expanded.
        """
        end = min(offset + limit, self.total)
        if offset >= end:
            return []
        # One padded slice usually holds both cut groups whole (a 1M-record day has ~12 a second);
        # a longer group is found by binary search on its time.
        pad = 32
        lo, hi = max(0, offset - pad), min(self.total, end + pad)
        window = self.slice(lo, hi - lo)
        times = self._times(window)
        if lo > 0 and times[0] == times[offset - lo]:
            start = self.count_newer(times[0])
            window[:0] = self.slice(start, lo - start)
            lo = start
            times = self._times(window)
        if hi < self.total and times[-1] == times[end - 1 - lo]:
            stop = self.count_newer(times[-1], inclusive=True)
            window.extend(self.slice(hi, stop - hi))
            times = self._times(window)
        a, b = offset - lo, end - lo  # trim to the cut groups
        while a > 0 and times[a - 1] == times[offset - lo]:
            a -= 1
        while b < len(window) and times[b] == times[end - 1 - lo]:
            b += 1
        out = window[a:b]
        times = times[a:b]
        rand = rng.random
        i = 0
        while i < len(out):
            j = i + 1
            while j < len(out) and times[j] == times[i]:
                j += 1
            if j - i > 1:
                group = out[i:j]
                order = [rand() for _ in group]  # sorting indices by random keys beats random.shuffle
                out[i:j] = [group[k] for k in sorted(range(j - i), key=order.__getitem__)]
            i = j
        return out[offset - lo - a:end - lo - a]

    def _times(self, records: list[dict]) -> list[str]:
        # The same keys the sort used; _key itself only where an explicit `time` is not a str (hot path).
        times = [r.get("time") or "" for r in records]
        if self.recs and any(t.__class__ is not str for t in times):
            return [_key(r) for r in records]
        return times
