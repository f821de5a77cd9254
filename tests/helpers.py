"""Shared test helpers: run a partition, and read back exactly what a day holds."""

import gzip
import http.client
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import orjson
import requests
from dagster_aws.s3 import S3Resource

from zoom_pipeline.assets import SOURCE_ASSETS
from zoom_pipeline.day_store import ZoomStore
from zoom_pipeline.io_manager import ZoomLogsIOManager
from zoom_pipeline.ledger import encode_record, line_time
from zoom_pipeline.sources import OPERATION_LOGS, Source
from zoom_pipeline.zoom_client import ZoomClient

REPO = Path(__file__).resolve().parent.parent
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing-access-key",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SIM_SECRET = "sim-client-secret-DO-NOT-LEAK-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


def zoom_client(env: dict, **overrides) -> ZoomClient:
    """A client for the simulator with fast backoff, so fault tests take milliseconds."""
    return ZoomClient(
        account_id=env["ZOOM_ACCOUNT_ID"],
        client_id=env["ZOOM_CLIENT_ID"],
        client_secret=env["ZOOM_CLIENT_SECRET"],
        api_base_url=env["ZOOM_API_BASE_URL"],
        oauth_token_url=env["ZOOM_OAUTH_TOKEN_URL"],
        **({"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05} | overrides),
    )


def resources(env: dict, *, bucket: str = "", local_dir: str = "", **zoom_overrides) -> dict:
    store = ZoomStore(s3=S3Resource(), s3_bucket=bucket, local_dir=local_dir or ".")
    return {
        "zoom": zoom_client(env, **zoom_overrides),
        "zoom_store": store,
        "zoom_logs_io_manager": ZoomLogsIOManager(store=store),
    }


def materialize(day: str, res: dict, *, udm: bool = False, instance=None,
                source: Source = OPERATION_LOGS) -> dg.ExecuteInProcessResult:
    raw, udm_asset = SOURCE_ASSETS[source]
    assets = [raw, udm_asset] if udm else [raw]
    return dg.materialize(assets, partition_key=day, resources=res, instance=instance, raise_on_error=False)


def output_metadata(result: dg.ExecuteInProcessResult, asset: str = OPERATION_LOGS.name) -> dict:
    [mat] = [m for m in result.asset_materializations_for_node(asset)]
    return {k: v.value for k, v in mat.metadata.items()}


def s3_day(s3, bucket: str, day: str, prefix: str = "zoom/operationlogs/") -> dict[str, list[bytes]]:
    """{key: lines} of every object under the day's prefix."""
    folder = prefix + day.replace("-", "/") + "/"
    out = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        out[obj["Key"]] = gzip.decompress(body).split(b"\n")
    return out


def records_of(objects: dict[str, list[bytes]]) -> Counter:
    """Multiset of stored records; asserts every object is newline-terminated NDJSON."""
    found: Counter = Counter()
    for key, lines in objects.items():
        assert lines[-1] == b"", f"{key} does not end with a newline"
        for line in lines[:-1]:
            found[orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)] += 1
    return found


def canonical(records) -> Counter:
    return Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)


def api_listing(sim, env: dict, day: str, source: Source = OPERATION_LOGS) -> list[dict]:
    """Everything the simulator lists for a day, paged independently of the code under test."""
    tok = requests.post(
        env["ZOOM_OAUTH_TOKEN_URL"],
        params={"grant_type": "account_credentials", "account_id": env["ZOOM_ACCOUNT_ID"]},
        auth=(env["ZOOM_CLIENT_ID"], env["ZOOM_CLIENT_SECRET"]),
        timeout=10,
    ).json()["access_token"]
    out, token = [], None
    while True:
        params = {"from": day, "to": day, "page_size": 300}
        if token:
            params["next_page_token"] = token
        page = requests.get(
            f"{env['ZOOM_API_BASE_URL']}/{source.path}",
            params=params,
            headers={"Authorization": f"Bearer {tok}"},
            timeout=10,
        ).json()
        out.extend(page.get(source.records_key) or [])
        token = page.get("next_page_token")
        if not token:
            return out


def shuffle_seconds(listing: list[bytes], rng: random.Random) -> list[bytes]:
    """The listing with each same-second group in a fresh order (Zoom documents none within a second)."""
    times = [line_time(x) for x in listing]
    out: list[bytes] = []
    i = 0
    while i < len(listing):
        j = i + 1
        while j < len(listing) and times[j] == times[i]:
            j += 1
        group = listing[i:j]
        rng.shuffle(group)
        out += group
        i = j
    return out


# ---- synthetic stored lines for the pure tests of the page rule -----------------------------------

DAY = "2026-11-20"


def clock(sec: int) -> str:
    return f"{DAY}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"


def line(sec: int, n: int | str) -> bytes:
    return encode_record({"action": "Update", "category_type": "User",
                          "operation_detail": f"Update User user{n}@example.com  - Job Title: set to Contractor",
                          "operator": "admin@example.com", "time": clock(sec)})


def day_of(n: int, *, newest: int = 80_000, tag: str = "") -> list[bytes]:
    """`n` distinct records, one a second, newest first."""
    return [line(newest - i, f"{tag}{i}") for i in range(n)]


def sim_log(source: Source) -> str:
    """The simulator's name for a source's report (its `log=` keyword)."""
    return source.path.rsplit("/", 1)[-1]


# ---- a model of Zoom's listing, paged by complete passes with the real ledger (no servers) -----------


class Day:
    """A day as Zoom lists it (a list of stored lines, newest first, paged by slicing), and what storage
    holds of it (a Counter). `complete_pass` runs one complete pass with the real `PassLedger`,
    `after_pass` and `next_page_size`. Shared by tests/test_confirmation.py and bench/convergence.py.

    Each line's digest and time are computed once (a million-record day is paged again and again);
    `listing` may still be changed between calls (`after_call`), as late events change Zoom's.
    With `rng`, each call serves the listing in a fresh order within each second, as `shuffle_seconds`
    does; only the seconds that the page touches are shuffled, which is the same for that page."""

    def __init__(self, listing: list[bytes], *, largest: int = 300):
        self.listing = listing
        self.largest = largest
        self.stored: Counter = Counter()
        self.state = self.previous = None
        self.sizes: list[int] = []
        self.calls: list[int] = []  # report calls of each pass
        self._digest: dict[bytes, int] = {}
        self._time: dict[bytes, str | None] = {}

    def _learn(self, lines) -> None:
        from zoom_pipeline.ledger import line_digests

        new = [x for x in dict.fromkeys(lines) if x not in self._digest]
        if new:
            self._digest.update(zip(new, line_digests(new), strict=True))
            self._time.update((x, line_time(x)) for x in new)

    def digests(self, lines) -> list[int]:
        try:
            return [self._digest[x] for x in lines]
        except KeyError:
            self._learn(lines)
            return [self._digest[x] for x in lines]

    def times(self, lines) -> list[str | None]:
        try:
            return [self._time[x] for x in lines]
        except KeyError:
            self._learn(lines)
            return [self._time[x] for x in lines]

    def _served(self, offset: int, size: int, rng: random.Random | None) -> list[bytes]:
        """The page at `offset` as one report call serves it: with `rng`, each second the page touches
        in a fresh order (a second that straddles the page's edges is shuffled whole)."""
        rows = self.listing
        if rng is None:
            return rows[offset:offset + size]
        end = min(len(rows), offset + size)
        if offset >= end:
            return []
        time_of = self._time
        self._learn(rows[offset:end])
        lo, hi = offset, end
        first_time = time_of[rows[lo]]
        while lo > 0 and self.times(rows[lo - 1:lo])[0] == first_time:
            lo -= 1
        last_time = time_of[rows[hi - 1]]
        while hi < len(rows) and self.times(rows[hi:hi + 1])[0] == last_time:
            hi += 1
        return shuffle_seconds(rows[lo:hi], rng)[offset - lo:end - lo]

    def complete_pass(self, *, size: int | None = None, after_call=None, rng: random.Random | None = None):
        """One complete pass with the page size the day's state asks for; stores what it admits and
        returns its ledger (its state is then `self.state`)."""
        from zoom_pipeline.confirmation import after_pass, next_page_size, proven_by
        from zoom_pipeline.ledger import PassLedger, StoredMultiset

        size = size or next_page_size(self.state, self.largest)
        self.sizes.append(size)
        ledger = PassLedger(StoredMultiset(self.digests(list(self.stored.elements()))))
        offset = call = 0
        written: list[bytes] = []
        while True:
            call += 1
            page = self._served(offset, size, rng)
            last = offset + len(page) >= len(self.listing)
            flags = ledger.admit(self.digests(page), self.times(page))
            written += [x for x, f in zip(page, flags, strict=True) if f] if not all(flags) else page
            offset += len(page)
            if last:
                self.listed_at_end = Counter(self.listing)  # Zoom's day as the pass's last call saw it
            if after_call:
                after_call(call, self.listing)
            if last:
                break
        ledger.finish()
        self.calls.append(call)
        # As the collector does: stored copies no page showed, in a second's group the pass proves.
        line_of = dict(zip(self.digests(list(self.stored)), self.stored, strict=True))
        proven = proven_by(ledger)
        extra = sum(1 for d in ledger.stored.unaccounted() if proven(self._time[line_of[d]]))
        self.stored.update(written)  # the part is stored whole once the pass has read the day
        self.previous, self.state = self.state, after_pass(self.state, ledger, size, extra=extra)
        return ledger

    @property
    def exact(self) -> bool:
        return self.stored == Counter(self.listing)

    @property
    def exact_when_the_pass_ended(self) -> bool:
        """What a pass can prove: events that arrive after its last call are for the next pass."""
        return self.stored == self.listed_at_end

    def never_more_than_zoom(self) -> bool:
        truth = Counter(self.listing)
        return all(c <= truth[r] for r, c in self.stored.items())


def busy_day(records: int, groups: int, copies: tuple[int, int], rng: random.Random, *,
             per_second: float, adjacent: bool = False) -> list[bytes]:
    """A listing for `Day`: `records` lines, newest first, over the last records / per_second seconds of
    the day, holding `groups` groups of k genuinely identical copies (k uniform in `copies`: 2 for twins,
    10-50 for a bulk admin operation), each inside the second of a record drawn at random, at random
    places in it (`adjacent`: next to each other, as the simulator's twins). records - sum(k - 1) are
    distinct."""
    sizes = [rng.randint(*copies) for _ in range(groups)]
    distinct = records - sum(k - 1 for k in sizes)
    if distinct < max(1, groups):
        raise ValueError(f"{groups:,} groups of {copies[0]}-{copies[1]} copies do not fit in {records:,} records")
    seconds = max(1, min(86_400, round(records / per_second)))
    first = 86_400 - seconds
    secs = sorted((first + rng.randrange(seconds) for _ in range(distinct)), reverse=True)
    runs: dict[int, list[bytes]] = {}
    for i, sec in enumerate(secs):
        runs.setdefault(sec, []).append(encode_record({"action": "Update", "operator": "admin@example.com",
                                                       "n": i, "time": clock(sec)}))
    for k in sizes:
        run = runs[secs[rng.randrange(distinct)]]
        p = rng.randrange(len(run))
        record = run[p]
        for _ in range(k - 1):
            run.insert(p + 1 if adjacent else rng.randint(0, len(run)), record)
    return [line for sec in sorted(runs, reverse=True) for line in runs[sec]]


def error_text(error) -> str:
    """A step failure's message with its causes (after its retries the step reports "Exceeded max_retries")."""
    parts = []
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(parts)


def user_project(tmp_path, monkeypatch, components: dict[str, str]) -> dg.Definitions:
    """A Dagster project of a user's: a package whose defs folder holds a defs.yaml per component folder (or files
    named by their path under defs), loaded the way `dg` and `dagster dev` load a project's defs folder; returns
    its definitions."""
    import importlib
    import sys
    import textwrap

    package = f"userproj_{abs(hash(str(tmp_path))) % 10**8}"
    root = tmp_path / package
    (root / "defs").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "defs" / "__init__.py").write_text("")
    for where, text in components.items():  # a folder (its defs.yaml), or a file such as `zoom/component.py`
        file = root / "defs" / (where if Path(where).suffix else f"{where}/defs.yaml")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        return dg.load_defs(importlib.import_module(f"{package}.defs"), project_root=tmp_path)
    finally:
        for name in [m for m in sys.modules if m.startswith(package)]:
            del sys.modules[name]



def s3_error(status: int, code: str, message: str) -> "Answer":
    """An S3 error answer, as an HttpForwarder's `answer` gives it in place of the server's."""
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return status, [("Content-Type", "application/xml")], body.encode()


CONFLICT = s3_error(409, "ConditionalRequestConflict",
                    "A conflicting conditional operation is currently in progress against this resource.")
NO_SUCH_UPLOAD = s3_error(404, "NoSuchUpload", "The specified multipart upload does not exist. The upload ID might "
                          "be invalid, or the multipart upload might have been aborted or completed.")


Answer = tuple[int, list[tuple[str, str]], bytes]  # status, headers, body


class HttpForwarder:
    """An HTTP server on 127.0.0.1 that passes each request on and its answer back, noting the host it went to.

    With `upstream` (host, port) it stands in front of one server (AWS_ENDPOINT_URL points at it); without, it is
    a forward proxy (HTTP_PROXY points at it) and sends each absolute-form request to the host it names.
    `drop` names request headers it leaves out (If-None-Match: a store that ignores create-only writes).
    `answer(command, target, forward)` may stand between: it calls `forward()` or not, and returns the answer
    to give, or None to close the connection unanswered (a response lost on the way back).
    """

    def __init__(self, upstream: tuple[str, int] | None = None, drop: tuple[str, ...] = (),
                 answer: Callable[[str, str, Callable[[], Answer]], Answer | None] | None = None):
        seen: list[str] = []
        skip = {"connection", "proxy-connection", *(h.lower() for h in drop)}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                url = urlsplit(self.path)  # absolute-form when it comes as a forward proxy
                host = f"{upstream[0]}:{upstream[1]}" if upstream else url.netloc
                target = self.path if upstream else url.path + (f"?{url.query}" if url.query else "")
                seen.append(host)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                command = self.command  # `forward` may be called later (a write still in flight)

                def forward() -> Answer:
                    conn = http.client.HTTPConnection(host, timeout=30)
                    try:
                        conn.request(command, target, body=body, headers=headers)
                        got = conn.getresponse()
                        return got.status, got.getheaders(), got.read()
                    finally:
                        conn.close()

                given = answer(self.command, target, forward) if answer else forward()
                if given is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, got_headers, data = given
                self.send_response(status)
                for k, v in got_headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.seen = seen
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
