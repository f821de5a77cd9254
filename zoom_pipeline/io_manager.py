"""IO manager: lands each day as append-only gzipped NDJSON parts in S3 (or a local directory).

Layout (a tested contract):
    {S3_PREFIX}YYYY/MM/DD/zoom-operationlogs-YYYYMMDD-000001.json.gz      raw records, one per line
    {UDM_S3_PREFIX}YYYY/MM/DD/<same name as the raw part>                  one UDM event per raw line
    {MANIFEST_PREFIX}YYYY/MM/DD/<raw part name>.manifest.json            counts, times, sha256, run id

A run reads what the day already holds, writes only the multiset difference as ONE new part whose
number follows the last one, created with a conditional write. Parts are never overwritten or
deleted, so a SIEM feed never sees a changed object; a racing run loses the conditional write and
retries against the new state.
"""

import gzip
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import compress as compress_by
from queue import Queue

import dagster as dg
import orjson
from dagster_aws.s3 import S3Resource

from zoom_pipeline.constants import (
    DEFAULT_LOCAL_STORE_DIR,
    DEFAULT_MANIFEST_PREFIX,
    DEFAULT_S3_PREFIX,
    DEFAULT_UDM_S3_PREFIX,
    PART_SUFFIX,
    RAW_PART_PREFIX,
)
from zoom_pipeline.ledger import (
    PassLedger,
    StoredMultiset,
    encode_record,
    line_digest,
    line_digests,
    line_time,
    zoom_time,
)
from zoom_pipeline.storage import KeyTaken, LocalStore, ObjectStore, S3Store, file_sha256, iter_lines
from zoom_pipeline.zoom_client import RESTART, DayPass, ZoomError

_PART_RE = re.compile(re.escape(RAW_PART_PREFIX) + r"(\d{8})-(\d{6})" + re.escape(PART_SUFFIX) + "$")
PROGRESS_EVERY_PAGES = 25
VERIFY_PASSES = 2  # extra full passes a complete pass may take to tell shifted repeats from twins
GZIP_LEVEL = 6


class ConcurrentWriteError(Exception):
    """Another run wrote this day's next part first; this run wrote nothing and can simply retry."""


def day_path(day: str) -> str:
    """`2026-11-20` -> `2026/11/20/`."""
    return date.fromisoformat(day).strftime("%Y/%m/%d/")


def part_name(day: str, seq: int) -> str:
    return f"{RAW_PART_PREFIX}{day.replace('-', '')}-{seq:06d}{PART_SUFFIX}"


@dataclass(frozen=True)
class DayParts:
    """The parts a day holds under one prefix, in write order."""

    prefix: str
    names: tuple[str, ...]

    @property
    def next_seq(self) -> int:
        return int(_PART_RE.search(self.names[-1]).group(2)) + 1 if self.names else 1

    def key(self, name: str) -> str:
        return self.prefix + name


class StoredDay:
    """A day's raw records as stored: what downstream assets receive. Lines are streamed."""

    def __init__(self, store: ObjectStore, day: str, parts: DayParts):
        self.store, self.day, self.parts = store, day, parts

    def lines(self, name: str) -> Iterator[bytes]:
        with self.store.open(self.parts.key(name)) as body:
            yield from iter_lines(body)


@dataclass
class UdmOutput:
    """What the UDM asset hands over: the raw day, and how to turn one raw line into one event line."""

    raw: StoredDay
    # (raw_line, occurrence) -> (udm_line, problems, covered_fields)
    transform: Callable[[bytes, int], tuple[bytes, tuple[str, ...], tuple[str, ...]]]


class ZoomLogsIOManager(dg.ConfigurableIOManager):
    """Writes Zoom operation logs and their UDM events as append-only, exactly-once gzipped NDJSON.

    With `s3_bucket` empty the same layout goes to `local_dir`, so everything runs without AWS.
    """

    s3: dg.ResourceDependency[S3Resource]
    s3_bucket: str = ""
    s3_prefix: str = DEFAULT_S3_PREFIX
    udm_s3_prefix: str = DEFAULT_UDM_S3_PREFIX
    manifest_prefix: str = DEFAULT_MANIFEST_PREFIX
    local_dir: str = DEFAULT_LOCAL_STORE_DIR
    sse_kms_key_id: str = ""

    # ---- plumbing ------------------------------------------------------------------------
    def store(self) -> ObjectStore:
        if self.s3_bucket:
            return S3Store(self.s3.get_client(), self.s3_bucket, sse_kms_key_id=self.sse_kms_key_id or None)
        return LocalStore(self.local_dir)

    def day_parts(self, store: ObjectStore, prefix: str, day: str) -> DayParts:
        folder = prefix + day_path(day)
        names = sorted(
            o.key[len(folder) :]
            for o in store.list(folder)
            if "/" not in o.key[len(folder) :] and _PART_RE.search(o.key[len(folder) :])
        )
        return DayParts(folder, tuple(names))

    @staticmethod
    def _partition(context: dg.OutputContext | dg.InputContext) -> str:
        keys = context.asset_partition_keys
        if len(keys) != 1:
            raise dg.Failure(
                f"zoom_operation_logs stores one day per run, got {len(keys)} partitions; launch backfills "
                "from the asset page so each day runs on its own (BackfillPolicy.multi_run(1)).",
                allow_retries=False,
            )
        return keys[0]

    # ---- Dagster hooks -------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if isinstance(obj, DayPass):
            self._land_raw(context, obj)
        elif isinstance(obj, UdmOutput):
            self._land_udm(context, obj)
        else:
            raise TypeError(f"ZoomLogsIOManager cannot store {type(obj).__name__}")

    def load_input(self, context: dg.InputContext) -> StoredDay:
        day = self._partition(context)
        store = self.store()
        return StoredDay(store, day, self.day_parts(store, self.s3_prefix, day))

    # ---- raw logs: multiset difference as one new part ------------------------------------
    def _land_raw(self, context: dg.OutputContext, day_pass: DayPass) -> None:
        day = self._partition(context)
        store = self.store()
        parts = self.day_parts(store, self.s3_prefix, day)
        stored, newest_stored = self._read_stored(store, parts, want_times=not day_pass.complete)
        ledger = PassLedger(stored, complete=day_pass.complete)
        # Records arrive newest first: a refresh of an open day can stop below the newest stored
        # second. Within that second order is unspecified, so only a strictly older record stops.
        stop_before = newest_stored if not day_pass.complete else None

        fd, tmp_path = tempfile.mkstemp(prefix="zoom-part-", suffix=PART_SUFFIX)
        os.close(fd)
        try:
            summary = self._collect(context, day_pass, ledger, tmp_path, stop_before)
            written: list[str] = []
            size = records_written = 0
            if ledger.new:
                name, records_written, sha = self._commit_part(context, store, day, parts, tmp_path, ledger.new)
                if name is not None:
                    size = os.path.getsize(tmp_path)
                    written.append(store.uri(self.s3_prefix + day_path(day) + name))
                    self._write_manifest(context, store, day, name, sha, size, records_written, ledger, summary)
            self._heal_manifests(context, store, day, parts)
        except ZoomError as exc:
            # Retrying cannot fix bad credentials, scopes, retention or a spent daily quota.
            raise dg.Failure(str(exc), allow_retries=False) from None
        finally:
            os.unlink(tmp_path)

        stats = day_pass.stats
        elapsed = max(time.monotonic() - stats.started_at, 1e-9)
        context.add_output_metadata(
            {
                "pass": "complete" if day_pass.complete else "refresh (day still open)",
                "records_from_api": ledger.listed,
                "records_written": records_written,
                "records_already_stored": ledger.already_stored,
                "shifted_repeats_skipped": ledger.repeats_skipped,
                "odd_records": summary["odd"],
                "pages": stats.pages,
                "api_calls": stats.api_calls,
                "api_retries": stats.retries,
                "day_restarts": stats.restarts,
                "stopped_early": stats.stopped_early,
                "bytes_written": size,
                "objects_written": dg.MetadataValue.json(written),
                "day_objects": len(parts.names) + len(written),
                "dagster/row_count": len(stored) + records_written,
                "oldest_event_time": summary["oldest"] or "",
                "newest_event_time": summary["newest"] or "",
                "records_per_second": round(ledger.listed / elapsed, 1),
                "prefix": store.uri(parts.prefix),
            }
        )

    def _collect(self, context, day_pass: DayPass, ledger: PassLedger, tmp_path: str, stop_before) -> dict:
        """Run the pass into `tmp_path`; for a complete pass, make sure its multiplicities can be trusted.

        A day that gains a late event while a complete pass pages through it shifts older records onto
        the next page: the record at a page boundary is listed twice, exactly like a genuine identical
        twin. So when a complete pass sees a repeat straddling a page boundary, the day is read again;
        the same straddles twice means genuine twins. If the day keeps moving, straddling repeats are
        kept once (never more often than listed), and the next complete pass adds any twin copy.
        """
        summary, straddles = self._write_pass(context, day_pass, ledger, tmp_path, stop_before)
        for _ in range(VERIFY_PASSES):
            if not day_pass.complete or not straddles:
                return summary
            context.log.warning(
                f"{day_pass.day}: {sum(len(s) for s in straddles)} record(s) repeat across page boundaries "
                "(genuine twins, or the day moved during the pass); reading the day again to tell which."
            )
            again = day_pass.client.day_pass(day_pass.day)
            ledger.reset()
            summary, latest = self._write_pass(context, again, ledger, tmp_path, None)
            day_pass.stats.absorb(again.stats)
            if latest == straddles:
                return summary  # the same boundaries twice: the listing is stable, the twins are real
            straddles = latest
        if straddles:
            suspect = {d for run in straddles for d in run}
            kept = _keep_once(tmp_path, suspect, ledger.stored)
            context.log.warning(
                f"{day_pass.day}: the day kept moving; {ledger.new - kept} repeated record(s) at page "
                "boundaries were stored once, the next complete pass adds any genuine twin copy."
            )
            ledger.new = kept
        return summary

    def _commit_part(
        self, context, store, day, parts: DayParts, tmp_path: str, count: int
    ) -> tuple[str | None, int, str]:
        """Create the day's next part from `tmp_path`. If a racing run took that number first, drop
        what its part already holds and try the following number. Returns (part name, records, sha256)."""
        for _ in range(20):
            name = part_name(day, parts.next_seq)
            sha = file_sha256(tmp_path)
            try:
                store.put_new(parts.key(name), tmp_path, content_type="application/gzip", sha256=sha)
                return name, count, sha
            except KeyTaken:
                pass
            latest = self.day_parts(store, self.s3_prefix, day)
            known = set(parts.names)
            fresh = DayParts(latest.prefix, tuple(n for n in latest.names if n not in known))
            context.log.warning(f"{day}: another run wrote {', '.join(fresh.names)} meanwhile; writing only the rest.")
            theirs, _ = self._read_stored(store, fresh, want_times=False)
            count = 0
            filtered = tmp_path + ".next"
            with open(tmp_path, "rb") as src, gzip.open(filtered, "wb", compresslevel=GZIP_LEVEL) as out:
                for line in iter_lines(src):
                    if not theirs.take(line_digest(line)):
                        out.write(line + b"\n")
                        count += 1
            os.replace(filtered, tmp_path)
            parts = latest
            if not count:
                return None, 0, ""
        raise ConcurrentWriteError(f"{day}: kept losing the race for the next part number; retry the run.")

    def _read_stored(
        self, store: ObjectStore, parts: DayParts, *, want_times: bool
    ) -> tuple[StoredMultiset, str | None]:
        """The day's stored multiset of digests (and its newest well-formed time, if asked for)."""
        newest: str | None = None

        def digests() -> Iterator[int]:
            # The same lines as StoredDay.lines (split at b"\n", without it), read a MiB at a time and
            # digested page-sized batch by batch, streamed into the multiset: no list of the day.
            nonlocal newest
            for name in parts.names:
                with store.open(parts.key(name)) as body, gzip.GzipFile(fileobj=body, mode="rb") as gz:
                    tail = b""
                    while chunk := gz.read(1 << 20):
                        lines = (tail + chunk).split(b"\n")
                        tail = lines.pop()
                        if want_times:
                            for line in lines:
                                t = line_time(line)
                                if t is not None and (newest is None or t > newest):
                                    newest = t
                        yield from line_digests(lines)
                    if tail:
                        if want_times:
                            t = line_time(tail)
                            if t is not None and (newest is None or t > newest):
                                newest = t
                        yield line_digest(tail)

        stored = StoredMultiset(digests())
        return stored, newest

    def _write_pass(
        self, context, day_pass: DayPass, ledger: PassLedger, tmp_path: str, stop_before
    ) -> tuple[dict, list[tuple[int, ...]]]:
        """Consume the pass, writing admitted records to a gzip temp file.

        Returns the time bounds and, for a complete pass, the runs of digests that end one page and
        start the next (see `_collect`).

        Compression runs in a helper thread (zlib releases the GIL), so encoding and digesting the
        next page overlaps with deflating this one; the queue is short, so memory stays flat.
        """
        summary = {"odd": 0, "oldest": None, "newest": None}
        chunks: Queue = Queue(maxsize=8)
        failure: list[BaseException] = []

        def compress() -> None:
            gz = None
            try:
                gz = gzip.open(tmp_path, "wb", compresslevel=GZIP_LEVEL)
            except BaseException as exc:  # surfaced by the producer
                failure.append(exc)
            while (chunk := chunks.get()) is not None:
                if failure:
                    continue  # drain, so the producer never blocks on a dead writer
                try:
                    if chunk is RESTART:  # the day is read again: start the file over
                        gz.close()
                        gz = gzip.open(tmp_path, "wb", compresslevel=GZIP_LEVEL)
                    else:
                        gz.write(chunk)
                except BaseException as exc:
                    failure.append(exc)
            try:
                if gz is not None:
                    gz.close()
            except BaseException as exc:
                failure.append(exc)

        def put(chunk) -> None:
            if failure:
                raise failure[0]
            chunks.put(chunk)

        writer = threading.Thread(target=compress, name="zoom-gzip", daemon=True)
        writer.start()
        last_progress = time.monotonic()
        straddles: list[tuple[int, ...]] = []
        previous: list[int] = []
        try:
            # closing(): a failure here also stops the fetch thread, so no call outlives the pass.
            with closing(day_pass.pages(stop_before_time=stop_before)) as pages:
                for page in pages:
                    if page is RESTART:
                        context.log.warning(f"{day_pass.day}: page token expired; reading the day again from page 1.")
                        put(RESTART)
                        ledger.reset()
                        summary = {"odd": 0, "oldest": None, "newest": None}
                        straddles, previous = [], []
                        continue
                    lines = [encode_record(rec) for rec in page]
                    # Well-formed times bound the pass; a record without one is counted as odd.
                    times = [t for rec in page if (t := zoom_time(rec)) is not None]
                    summary["odd"] += len(page) - len(times)
                    if times:
                        low, high = min(times), max(times)
                        if summary["oldest"] is None or low < summary["oldest"]:
                            summary["oldest"] = low
                        if summary["newest"] is None or high > summary["newest"]:
                            summary["newest"] = high
                    digests = line_digests(lines)
                    if ledger.complete:
                        run = _straddle(previous, digests)
                        if run:
                            straddles.append(run)
                        previous = digests
                    admitted = ledger.admit_all(digests)
                    out = lines if all(admitted) else list(compress_by(lines, admitted))
                    if out:
                        put(b"\n".join(out) + b"\n")
                    stats = day_pass.stats
                    # Every few pages, but at most about once a second: each line is an event-log write
                    # (~10 ms on SQLite), which at local speeds cost more than a tenth of the pass.
                    if stats.pages % PROGRESS_EVERY_PAGES == 0 and time.monotonic() - last_progress >= 1.0:
                        last_progress = time.monotonic()
                        rate = stats.records / max(last_progress - stats.started_at, 1e-9)
                        context.log.info(
                            f"{day_pass.day}: {stats.records} records over {stats.pages} pages "
                            f"({rate:,.0f} records/s), {ledger.new} new so far"
                        )
        finally:
            chunks.put(None)
            writer.join()
        if failure:
            raise failure[0]
        return summary, straddles

    def _write_manifest(self, context, store, day, name, sha, size, records, ledger: PassLedger, summary) -> None:
        self._put_manifest(
            store,
            day,
            name,
            {
                "partition": day,
                "object": store.uri(self.s3_prefix + day_path(day) + name),
                "records": records,
                "bytes": size,
                "sha256": sha,
                "oldest_event_time": summary["oldest"],
                "newest_event_time": summary["newest"],
                "pass": "complete" if ledger.complete else "refresh",
                "records_from_api": ledger.listed,
                "records_already_stored": ledger.already_stored,
                "dagster_run_id": _run_id(context),
                "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    def _heal_manifests(self, context, store: ObjectStore, day: str, parts: DayParts) -> None:
        """Give every part a manifest: a run that died between writing a part and its manifest leaves
        the part without one, and the retry (which finds nothing new to write) would never add it."""
        folder = self.manifest_prefix + day_path(day)
        have = {o.key[len(folder) :] for o in store.list(folder)}
        for name in parts.names:
            if _manifest_name(name) in have:
                continue
            count, oldest, newest = 0, None, None
            for line in StoredDay(store, day, parts).lines(name):
                count += 1
                t = line_time(line)
                if t is not None:
                    oldest = t if oldest is None or t < oldest else oldest
                    newest = t if newest is None or t > newest else newest
            context.log.warning(f"{day}: {name} had no manifest; writing one recomputed from the part.")
            self._put_manifest(
                store,
                day,
                name,
                {
                    "partition": day,
                    "object": store.uri(parts.key(name)),
                    "records": count,
                    "oldest_event_time": oldest,
                    "newest_event_time": newest,
                    "recovered": True,
                    "dagster_run_id": _run_id(context),
                    "written_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )

    def _put_manifest(self, store: ObjectStore, day: str, name: str, manifest: dict) -> None:
        key = self.manifest_prefix + day_path(day) + _manifest_name(name)
        fd, path = tempfile.mkstemp(suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
            store.put_new(key, path, content_type="application/json", sha256=file_sha256(path))
        except KeyTaken:
            pass  # a racing run wrote this part's manifest first; both describe the same part
        finally:
            os.unlink(path)

    # ---- UDM: one event part per raw part, same name ----------------------------------------
    def _land_udm(self, context: dg.OutputContext, out: UdmOutput) -> None:
        day = self._partition(context)
        store = self.store()
        raw = out.raw
        done = set(self.day_parts(store, self.udm_s3_prefix, day).names)
        folder = self.udm_s3_prefix + day_path(day)
        # Occurrence numbers count identical raw lines across the whole day in part order, so two
        # identical events get different ids and a re-run computes the same ids.
        occurrences: dict[int, int] = {}
        twins = _repeated_digests(raw)
        written, events, problems, coverage = [], 0, {}, {}
        for name in raw.parts.names:
            if name in done:
                if not twins:
                    continue  # nothing to number: no need to read a part that is already mapped
                for line in raw.lines(name):
                    d = line_digest(line)
                    if d in twins:
                        occurrences[d] = occurrences.get(d, -1) + 1
                continue
            fd, tmp = tempfile.mkstemp(suffix=PART_SUFFIX)
            os.close(fd)
            try:
                with gzip.open(tmp, "wb", compresslevel=GZIP_LEVEL) as gz:
                    buf = []
                    for line in raw.lines(name):
                        d = line_digest(line)
                        occ = 0
                        if d in twins:
                            occ = occurrences[d] = occurrences.get(d, -1) + 1
                        event, probs, covered = out.transform(line, occ)
                        buf.append(event)
                        for p in probs:
                            problems[p] = problems.get(p, 0) + 1
                        for f in covered:
                            coverage[f] = coverage.get(f, 0) + 1
                        if len(buf) >= 1000:
                            gz.write(b"\n".join(buf) + b"\n")
                            events += len(buf)
                            buf = []
                    if buf:
                        gz.write(b"\n".join(buf) + b"\n")
                        events += len(buf)
                key = folder + name
                try:
                    store.put_new(key, tmp, content_type="application/gzip", sha256=file_sha256(tmp))
                except KeyTaken:
                    raise ConcurrentWriteError(
                        f"Another run wrote {store.uri(key)} first; this run wrote nothing more for it."
                    ) from None
                written.append(store.uri(key))
            finally:
                os.unlink(tmp)
        context.add_output_metadata(
            {
                "events_written": events,
                "objects_written": dg.MetadataValue.json(written),
                "raw_parts": len(raw.parts.names),
                "parse_problems": dg.MetadataValue.json(dict(sorted(problems.items()))),
                "target_field_coverage": dg.MetadataValue.json(dict(sorted(coverage.items()))),
                "prefix": store.uri(folder),
            }
        )


def _manifest_name(part: str) -> str:
    return part.removesuffix(PART_SUFFIX) + ".manifest.json"


def _repeated_digests(raw: StoredDay) -> set[int]:
    """Digests that occur more than once in the day (usually none), from one sorted 8-byte array."""
    ordered = StoredMultiset(line_digest(line) for name in raw.parts.names for line in raw.lines(name)).digests
    return {a for a, b in zip(ordered, ordered[1:], strict=False) if a == b}


def _run_id(context: dg.OutputContext) -> str | None:
    try:
        return context.run_id
    except Exception:  # an OutputContext built outside a run has none
        return None


def _straddle(previous: list[int], page: list[int]) -> tuple[int, ...]:
    """The longest run that ends `previous` and starts `page` (what a shift by k records looks like)."""
    if not previous or not page:
        return ()
    longest = min(len(previous), len(page))
    for k in range(longest, 0, -1):
        if previous[-k] == page[0] and previous[-k:] == page[:k]:
            return tuple(page[:k])
    return ()


def _keep_once(tmp_path: str, suspect: set[int], stored: StoredMultiset) -> int:
    """Rewrite the gzip file keeping suspect records only if the day holds no copy yet, once. Returns lines kept."""
    kept = 0
    seen: set[int] = set()
    filtered = tmp_path + ".once"
    with open(tmp_path, "rb") as src, gzip.open(filtered, "wb", compresslevel=GZIP_LEVEL) as out:
        for line in iter_lines(src):
            digest = line_digest(line)
            if digest in suspect:
                if digest in seen or stored.contains(digest):
                    continue
                seen.add(digest)
            out.write(line + b"\n")
            kept += 1
    os.replace(filtered, tmp_path)
    return kept
