"""The layout of stored days (a tested contract), shared by the assets, the landing, the IO manager and
the checks. Each source (sources.py) has its own three prefixes and part names:

    {prefix}YYYY/MM/DD/{part_prefix}YYYYMMDD-000001.json.gz            raw records, one per line
    {udm_prefix}YYYY/MM/DD/<same name as the raw part>                  one UDM event per raw line
    {manifest_prefix}YYYY/MM/DD/<raw part name>.manifest.json         counts, times, sha256, run id
    {manifest_prefix}YYYY/MM/DD/{part_prefix}YYYYMMDD-pass-000001.json  what a complete pass proved

Parts are numbered in write order and created with a conditional write, never overwritten or
deleted, so a SIEM feed never sees a changed object. A part is built as a gzip temp file first
(`PartWriter`), then put whole.
"""

import gzip
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from queue import Queue

import dagster as dg
import orjson
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import construct_boto_client_retry_config

from zoom_pipeline.confirmation import DayState
from zoom_pipeline.constants import DEFAULT_LOCAL_STORE_DIR, PART_SUFFIX
from zoom_pipeline.ledger import StoredMultiset, line_digests, line_time
from zoom_pipeline.sources import OPERATION_LOGS, Source
from zoom_pipeline.storage import KeyTaken, LocalStore, ObjectStore, S3Store, file_sha256, s3_client

MANIFEST_SUFFIX = ".manifest.json"
GZIP_LEVEL = 6
READ_CHUNK = 1 << 20


def day_path(day: str) -> str:
    """`2026-11-20` -> `2026/11/20/`."""
    return date.fromisoformat(day).strftime("%Y/%m/%d/")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TempPart:
    """A finished gzip NDJSON part on local disk, not yet stored: what an asset hands the IO manager."""

    path: str
    records: int
    bytes: int
    sha256: str
    oldest_event_time: str | None  # of this part's own records
    newest_event_time: str | None

    def lines(self) -> Iterator[bytes]:
        with open(self.path, "rb") as fh:
            yield from read_lines(fh)

    def discard(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class PartWriter:
    """Writes lines into a gzip temp file; `finish()` gives the `TempPart`.

    Compression runs in a helper thread (zlib releases the GIL), so encoding and digesting the next
    page overlaps with deflating this one; the queue is short, so memory stays flat.
    """

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="zoom-part-", suffix=PART_SUFFIX)
        os.close(fd)
        self.records = 0
        self.oldest: str | None = None
        self.newest: str | None = None
        self._chunks: Queue = Queue(maxsize=8)
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._compress, name="zoom-gzip", daemon=True)
        self._thread.start()

    def _compress(self) -> None:
        try:
            with open(self.path, "wb") as raw:
                gz = _gzip_writer(raw)
                while (chunk := self._chunks.get()) is not None:
                    if chunk is _RESTART:  # the day is read again: start the file over
                        gz.close()
                        raw.seek(0)
                        raw.truncate()
                        gz = _gzip_writer(raw)
                    else:
                        gz.write(chunk)
                gz.close()
        except BaseException as exc:  # surfaced to the producer
            self._failure.append(exc)
            while self._chunks.get() is not None:
                pass  # drain, so the producer never blocks on a dead writer

    def _put(self, chunk) -> None:
        if self._failure:
            raise self._failure[0]
        self._chunks.put(chunk)

    def write(self, lines: list[bytes], times: Iterable[str | None]) -> None:
        """Append lines (without their newline) and widen the part's time bounds by their times."""
        if not lines:
            return
        self.records += len(lines)
        known = [t for t in times if t is not None]
        if known:
            low, high = min(known), max(known)
            self.oldest = low if self.oldest is None or low < self.oldest else self.oldest
            self.newest = high if self.newest is None or high > self.newest else self.newest
        self._put(b"\n".join(lines) + b"\n")

    def restart(self) -> None:
        """Drop everything written so far (the day is read again from page 1)."""
        self.records, self.oldest, self.newest = 0, None, None
        self._put(_RESTART)

    def _close(self) -> None:
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()

    def finish(self) -> TempPart | None:
        """The finished part, or None (and no file) if nothing was written."""
        self._close()
        if self._failure:
            self.abort()
            raise self._failure[0]
        if not self.records:
            self.abort()
            return None
        return TempPart(self.path, self.records, os.path.getsize(self.path), file_sha256(self.path),
                        self.oldest, self.newest)

    def abort(self) -> None:
        self._close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


_RESTART = object()


def _gzip_writer(raw) -> gzip.GzipFile:
    """No file name or time in the header: two runs that build the same part build the same bytes
    (and sha256), so a racing or repeated write of it is recognised as the same object."""
    return gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)


def read_batches(fileobj) -> Iterator[list[bytes]]:
    """The lines of a gzip NDJSON object, without their newline, a MiB's worth at a time.

    The one line reader: the same lines whether read for digests, for UDM or by a check."""
    with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz:
        tail = b""
        while chunk := gz.read(READ_CHUNK):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield lines
        if tail:
            yield [tail]


def read_lines(fileobj) -> Iterator[bytes]:
    """`read_batches`, line by line."""
    for batch in read_batches(fileobj):
        yield from batch


@dataclass(frozen=True)
class DayParts:
    """The parts a day holds under one prefix, in write order."""

    folder: str
    names: tuple[str, ...]

    def key(self, name: str) -> str:
        return self.folder + name


@dataclass
class StoredDigests:
    """A stored day read back: its multiset of digests, lines per part, newest well-formed time."""

    multiset: StoredMultiset
    lines_per_part: dict[str, int]
    newest_time: str | None


class DayStore:
    """One source's days in an object store: part names, reading, digesting, conditional puts, manifests."""

    def __init__(self, store: ObjectStore, source: Source, *, prefix: str, udm_prefix: str, manifest_prefix: str):
        self.store, self.source = store, source
        self.prefix, self.udm_prefix, self.manifest_prefix = prefix, udm_prefix, manifest_prefix
        self.part_prefix = part_prefix = source.part_prefix
        self._part_re = re.compile(re.escape(part_prefix) + r"(\d{8})-(\d{6})" + re.escape(PART_SUFFIX) + "$")
        self._pass_re = re.compile(re.escape(part_prefix) + r"(\d{8})-pass-(\d{6})\.json$")

    def uri(self, key: str) -> str:
        return self.store.uri(key)

    # ---- names -------------------------------------------------------------------------------
    def part_name(self, day: str, seq: int) -> str:
        return f"{self.part_prefix}{day.replace('-', '')}-{seq:06d}{PART_SUFFIX}"

    def parts(self, day: str, *, udm: bool = False) -> DayParts:
        folder = (self.udm_prefix if udm else self.prefix) + day_path(day)
        names = sorted(
            key[len(folder) :]
            for key in self.store.list(folder)
            if "/" not in key[len(folder) :] and self._part_re.search(key[len(folder) :])
        )
        return DayParts(folder, tuple(names))

    def next_seq(self, parts: DayParts) -> int:
        return int(self._part_re.search(parts.names[-1]).group(2)) + 1 if parts.names else 1

    # ---- reading -----------------------------------------------------------------------------
    def lines(self, parts: DayParts, name: str) -> Iterator[bytes]:
        with self.store.open(parts.key(name)) as body:
            yield from read_lines(body)

    def batches(self, parts: DayParts, name: str) -> Iterator[list[bytes]]:
        with self.store.open(parts.key(name)) as body:
            yield from read_batches(body)

    def digest(self, parts: DayParts, *, newest_time: str | None = None) -> StoredDigests:
        """The day's stored multiset, streamed part by part and batch by batch (no list of the day), and
        with `newest_time` (a bound) the newest well-formed time at or before it."""
        per_part: dict[str, int] = {}
        newest: str | None = None

        def digests() -> Iterator[int]:
            nonlocal newest
            for name in parts.names:
                count = 0
                with self.store.open(parts.key(name)) as body:
                    for batch in read_batches(body):
                        count += len(batch)
                        if newest_time:
                            for line in batch:
                                t = line_time(line)
                                if t is not None and t <= newest_time and (newest is None or t > newest):
                                    newest = t
                        yield from line_digests(batch)
                per_part[name] = count

        multiset = StoredMultiset(digests())
        return StoredDigests(multiset, per_part, newest)

    def describe(self, parts: DayParts, name: str) -> TempPart:
        """A stored part described as its manifest needs it (read once into a temp file)."""
        fd, path = tempfile.mkstemp(prefix="zoom-part-", suffix=PART_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as out, self.store.open(parts.key(name)) as body:
                while block := body.read(READ_CHUNK):
                    out.write(block)
            records, oldest, newest = 0, None, None
            with open(path, "rb") as fh:
                for line in read_lines(fh):
                    records += 1
                    t = line_time(line)
                    if t is not None:
                        oldest = t if oldest is None or t < oldest else oldest
                        newest = t if newest is None or t > newest else newest
            return TempPart(path, records, os.path.getsize(path), file_sha256(path), oldest, newest)
        except BaseException:
            os.unlink(path)
            raise

    # ---- writing -----------------------------------------------------------------------------
    def put_part(self, key: str, part: TempPart) -> None:
        """Create `key` from the temp part, only if the key is free (raises KeyTaken otherwise)."""
        self.store.put_new(key, part.path, content_type="application/gzip", sha256=part.sha256)

    # ---- manifests ---------------------------------------------------------------------------
    def manifest_folder(self, day: str) -> str:
        return self.manifest_prefix + day_path(day)

    def manifests(self, day: str) -> dict[str, dict]:
        """{raw part name: manifest} of the day."""
        folder = self.manifest_folder(day)
        out = {}
        for key in self.store.list(folder):
            name = key[len(folder) :]
            if "/" in name or not name.endswith(MANIFEST_SUFFIX):
                continue
            with self.store.open(key) as body:
                out[name.removesuffix(MANIFEST_SUFFIX) + PART_SUFFIX] = orjson.loads(body.read())
        return out

    def put_manifest(self, day: str, part_name: str, manifest: dict) -> None:
        key = self.manifest_folder(day) + part_name.removesuffix(PART_SUFFIX) + MANIFEST_SUFFIX
        try:
            self._put_json(key, manifest)
        except KeyTaken:
            pass  # a racing run wrote this part's manifest first; both describe the same part

    def _put_json(self, key: str, body: dict) -> None:
        fd, path = tempfile.mkstemp(suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(orjson.dumps(body, option=orjson.OPT_INDENT_2))
            self.store.put_new(key, path, content_type="application/json", sha256=file_sha256(path))
        finally:
            os.unlink(path)

    # ---- pass records (what each complete pass proved) ---------------------------------------
    def _passes(self, day: str) -> list[str]:
        folder = self.manifest_folder(day)
        return sorted(k for k in self.store.list(folder) if self._pass_re.search(k[len(folder) :]))

    def day_state(self, day: str) -> DayState | None:
        """What the latest complete pass recorded, or None if the day never had one."""
        passes = self._passes(day)
        if not passes:
            return None
        with self.store.open(passes[-1]) as body:
            try:
                return DayState.from_json(orjson.loads(body.read())["state"])
            except (KeyError, TypeError, ValueError):
                return None  # a record this version cannot read: the pass starts from no state, as a first one

    def put_day_state(self, day: str, state: DayState, record: dict) -> None:
        """Record a complete pass under the next free pass number (a racer's record is kept too)."""
        for _ in range(5):
            passes = self._passes(day)
            seq = int(self._pass_re.search(passes[-1]).group(2)) + 1 if passes else 1
            key = self.manifest_folder(day) + f"{self.part_prefix}{day.replace('-', '')}-pass-{seq:06d}.json"
            try:
                self._put_json(key, {**record, "state": state.to_json()})
                return
            except KeyTaken:
                continue


def manifest(store: DayStore, day: str, key: str, part: TempPart, *, run_id: str | None,
             pass_kind: str | None, recovered: bool = False) -> dict:
    """The one manifest shape: what a part holds, how it was made, and when."""
    return {
        "partition": day,
        "object": store.uri(key),
        "records": part.records,
        "bytes": part.bytes,
        "sha256": part.sha256,
        "oldest_event_time": part.oldest_event_time,
        "newest_event_time": part.newest_event_time,
        "pass": pass_kind,
        "recovered": recovered,
        "dagster_run_id": run_id,
        "written_at": utc_now(),
    }


def store_client(resource: S3Resource, *, resolve=lambda value: value, config=None):
    """What `resource.get_client()` returns (dagster-aws), built on the process's parsed models (storage.py).

    The doctor passes `resolve` (its environment's reading of EnvVar settings) and `config` (its timeouts).
    """
    return s3_client(
        profile_name=resolve(resource.profile_name),
        unsigned=resource.use_unsigned_session,
        region_name=resolve(resource.region_name),
        endpoint_url=resolve(resource.endpoint_url),
        use_ssl=resource.use_ssl,
        verify=resource.verify,
        aws_access_key_id=resolve(resource.aws_access_key_id),
        aws_secret_access_key=resolve(resource.aws_secret_access_key),
        aws_session_token=resolve(resource.aws_session_token),
        config=config or construct_boto_client_retry_config(resource.max_attempts),
    )


class ZoomStore(dg.ConfigurableResource):
    """Where days are stored: an S3 bucket, or with `s3_bucket` empty the same layout in `local_dir`."""

    s3: dg.ResourceDependency[S3Resource]
    s3_bucket: str = ""
    # Prefixes by setting name (S3_PREFIX, ACTIVITY_S3_PREFIX, ...: see sources.py); unset ones default.
    prefixes: dict[str, str] = {}
    local_dir: str = DEFAULT_LOCAL_STORE_DIR
    sse_kms_key_id: str = ""

    def days(self, source: Source = OPERATION_LOGS) -> DayStore:
        if self.s3_bucket:
            store = S3Store(store_client(self.s3), self.s3_bucket, sse_kms_key_id=self.sse_kms_key_id or None)
        else:
            store = LocalStore(self.local_dir)
        prefix, udm_prefix, manifest_prefix = (
            self.prefixes.get(setting) or default
            for setting, default in (source.prefix, source.udm_prefix, source.manifest_prefix)
        )
        return DayStore(store, source, prefix=prefix, udm_prefix=udm_prefix, manifest_prefix=manifest_prefix)

