"""Shared test helpers: run a partition, and read back exactly what a day holds."""

import gzip
import random
import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
