#!/usr/bin/env python3
"""Backfill benchmark: a multi-day asset backfill launched as from the Dagster UI, run by the daemon,
under a simulated Zoom per-second limit (a script, not a test; issue 8, item 6).

Everything runs on 127.0.0.1 in processes this script starts and stops (also on Ctrl-C or a failure):
the Zoom simulator (`python -m zoom_pipeline.simulator`, per-second limit R, and by default every
token mint invalidating the earlier tokens, as Zoom does for one Server-to-Server app), a moto S3
server, and `dagster dev -w workspace.yaml` on a fresh temporary DAGSTER_HOME holding a copy of
`dagster_home/dagster.yaml` (run queue and `zoom_api` pool as shipped, or `--pool N`). The runs get
the simulator's credentials and URLs, `ZOOM_MAX_REQUESTS_PER_SECOND=R`, a daily budget far above what
they use and, with `--days-per-run N`, `ZOOM_BACKFILL_DAYS_PER_RUN=N` (else the project's default).

Phases, all in that one instance:

  1. fixed latency: a one-day backfill of a 10-record day (one page), launched through GraphQL's
     `launchPartitionBackfill`, timed from the launch to its runs being terminal with the day
     materialized, and to the backfill being terminal. This is Dagster's own latency: the backfill
     daemon's tick (every ~30 s), the run queue (every ~5 s), the run's process start-up, and the
     daemon's next tick noticing the backfill is done.
  2. plain: the measured backfill, `launchPartitionBackfill` with `assetSelection:
     [{path: ["zoom_operation_logs"]}]` and the N days as `partitionNames` (what the asset page sends),
     polled (`partitionBackfillOrError`, and `runsOrError` by the `dagster/backfill` tag) until
     terminal. The simulator's counters are reset at its launch.
  3. sensor: the same on N fresh days, while a run of today's partition (a few thousand records) is
     launched through GraphQL's `launchRun` of `zoom_operation_logs_job` with the tags the today
     sensor gives it (`dagster/partition=<today>`, `dagster/priority=5`), a few seconds after the
     backfill's first run has started: the sensor's refresh competing with the backfill for pool
     slots and for the account's per-second limit.
  4. accounts (`--scenarios accounts --accounts N`, on its own; issue 14, item 7): one deployment with
     N Zoom accounts. The simulator holds N accounts (`POST /_sim/account`), each with its own
     credentials and per-second limit R (429 when that account exceeds it) and invalidate-on-mint;
     `ZOOM_ACCOUNTS_FILE` (written into the temporary directory: each account's URLs and
     `max_requests_per_second: R`) and `ZOOM_<NAME>_ACCOUNT_ID` / `_CLIENT_ID` / `_CLIENT_SECRET` go
     to `dagster dev`. Phase 1 backfills the first account's `<name>/zoom_operation_logs`; then one
     backfill per account of the same N days is launched, one right after the other, each
     `assetSelection: [{path: ["<name>", "zoom_operation_logs"]}]` (that account's asset page), and
     all are polled until terminal. Per account and overall: pages, floor, wall, raw and net ratio,
     runs' span, 429 share, token mints, runs, days landed exactly (zoom/<name>/operationlogs/ against
     the simulator's records of that account). The accounts run side by side, so the overall floor is
     one account's (the largest), not their sum.

How to read the output, per scenario:

  pages       report calls the simulator answered 200 for the measured days (the backfill's pages)
  floor       pages / R: the least time R calls a second can fetch them in
  wall        backfill launch -> backfill terminal (Dagster's own endTimestamp when it gives one)
  raw         wall / floor
  net         (wall - fixed) / floor, fixed = phase 1's launch -> backfill terminal: the backfill's cost
              net of what any backfill pays (the same ratio with "runs terminal" as the end of both
              is shown beside it). Both ends wait for a daemon tick at a random phase of its ~30 s
              period, so wall and fixed each vary by up to ~30 s between runs: against a 60 s floor
              the net ratio moves by several tenths from one run to the next (it can come out < 1)
  runs' span  the backfill's first run start -> its last run end, / floor: no daemon tick inside it,
              so it is the steady figure for the pipeline's own overhead over the floor (in the
              sensor scenario it includes the today run's pages, which share the rate)
  429 share   report calls answered 429 / all report calls of the phase (the today run's included)
  runs        runs carrying the backfill's tag; tokens = token endpoint calls / tokens minted
  landed      every day's stored records (S3, all parts) equal the simulator's records, as a multiset
  timeline    when the first run was created / started, the last run ended, the backfill ended
              (seconds after launch), run queue time, run start-up (run start -> step start) and
              step time: where the wall time beyond the floor goes

The aims (issue 8) are printed beside the figures for 30 days x 6,000 records at 10 requests/s:
net <= 1.15 x floor and < 1 % of report calls answered 429; for the accounts scenario (issue 14):
overall net <= 1.15 x one account's floor, < 1 % 429s, one token mint per account. Nothing here
asserts them.

    .venv/bin/python bench/backfill_benchmark.py                       # 30 x 6,000 at 10/s, both scenarios
    .venv/bin/python bench/backfill_benchmark.py --days 3 --records 600 --scenarios plain   # smoke run
    .venv/bin/python bench/backfill_benchmark.py --days-per-run 1 --pool 2   # one run a day, 2 slots
    .venv/bin/python bench/backfill_benchmark.py --scenarios accounts --accounts 5   # 5 accounts side by side

Results: printed, and written to bench/out/backfill.json (bench/out is gitignored); logs of the
servers and of `dagster dev` in bench/out/backfill-logs/. Exit status 1 when a backfill did not
complete, a run failed or a day did not land exactly.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import orjson
import requests
import yaml
from ports import free_port, wait_for_port  # bench/ is on sys.path: the scripts run as files

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
LOG_DIR = OUT_DIR / "backfill-logs"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
RAW_ASSET = "zoom_operation_logs"
JOB = "zoom_operation_logs_job"  # the job zoom_today_sensor launches
RAW_PREFIX = "zoom/operationlogs/"
BUCKET = "bench-backfill"
TODAY_RUN_TAGS = {"dagster/priority": "5"}  # automation.AUTOMATION_RUN_TAGS, as the today sensor sets them
FIXED_DAY_RECORDS = 10
RETENTION_DAYS = 179  # zoom_pipeline.constants.RETENTION_DAYS: the oldest day Zoom still serves
POLL_SECONDS = 1.0
AIM_NET = 1.15
AIM_429_SHARE = 0.01
AIM_TOKENS_PER_ACCOUNT = 1  # the accounts scenario: one mint per account over the whole benchmark
# The accounts scenario's account names (then acct11, acct12, ...): lowercase, as the accounts file wants.
ACCOUNT_NAMES = ("acme", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")
AIM_SHAPE = (30, 6000, 10.0)  # days, records a day, requests/s: what the aims are stated for
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "bench-access-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SIM_CREDS = {  # the simulator's defaults
    "ZOOM_ACCOUNT_ID": "sim-account",
    "ZOOM_CLIENT_ID": "sim-client-id",
    "ZOOM_CLIENT_SECRET": "sim-client-secret",
}
# Project settings a caller's shell might carry (and every ZOOM_*, AWS_* and DAGSTER_* variable): the
# children get exactly what the benchmark sets.
PROJECT_VARS = ("S3_BUCKET", "S3_PREFIX", "UDM_S3_PREFIX", "MANIFEST_S3_PREFIX", "LOCAL_STORE_DIR",
                "S3_SSE_KMS_KEY_ID", "PAGE_SIZE", "TIMEOUT")
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# Dagster's CLIs copy SIGINT's disposition onto SIGTERM; a parent that ignores SIGINT (a background
# job of a shell) would make `dagster dev` ignore SIGTERM too. Reset both, then exec (tests/conftest.py).
DEFAULT_SIGNALS_THEN_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
)

BACKFILL_MUTATION = """
mutation($days: [String!], $assets: [AssetKeyInput!]) { launchPartitionBackfill(backfillParams: {
    assetSelection: $assets, partitionNames: $days, fromFailure: false}) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on UnauthorizedError { message } ... on InvalidStepError { invalidStepKey }
  ... on InvalidOutputError { stepKey invalidOutputName } } }"""
LAUNCH_RUN_MUTATION = """
mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message }
  ... on PipelineNotFoundError { message } ... on UnauthorizedError { message } } }"""
BACKFILL_QUERY = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status timestamp endTimestamp numPartitions error { message } }
  ... on PythonError { message } } }"""
RUN_FIELDS = "runId status creationTime startTime endTime"
RUNS_BY_BACKFILL = """
query($id: String!) { runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
  ... on Runs { results { FIELDS } } } }"""
RUNS_QUERY = RUNS_BY_BACKFILL.replace("FIELDS", RUN_FIELDS)
RUN_DETAIL_FIELDS = """runId status creationTime startTime endTime tags { key value }
  stepStats { stepKey startTime endTime }
  assetMaterializations { partition assetKey { path } metadataEntries { label __typename
    ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
    ... on BoolMetadataEntry { boolValue } } }"""
RUNS_DETAIL_QUERY = RUNS_BY_BACKFILL.replace("FIELDS", RUN_DETAIL_FIELDS)
RUN_QUERY = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { FIELDS } } }""".replace("FIELDS", RUN_DETAIL_FIELDS)
RUN_ERRORS_QUERY = """
query($id: ID!) { runOrError(runId: $id) { ... on Run { eventConnection(limit: 1000) { events {
  __typename ... on ErrorEvent { error { message } } } } } } }"""
REPOS_QUERY = """
{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name } } }
  ... on PythonError { message } } }"""
ASSET_QUERY = """
query($assets: [AssetKeyInput!]) { assetNodes(assetKeys: $assets) {
    backfillPolicy { policyType maxPartitionsPerRun description } } }"""
DAEMONS_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


def log(msg: str) -> None:
    print(f"[backfill-bench {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Child processes: each in its own process group, always stopped
# --------------------------------------------------------------------------------------------------

_CHILDREN: list[subprocess.Popen] = []


def spawn(cmd: list[str], *, log_name: str, env: dict | None = None, stdout=None) -> subprocess.Popen:
    """Start `cmd` in its own session (a Ctrl-C reaches only the benchmark, which stops each child)."""
    with open(LOG_DIR / log_name, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-c", DEFAULT_SIGNALS_THEN_EXEC, *cmd], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=stdout or fh, stderr=fh, start_new_session=True)
    proc.log_path = LOG_DIR / log_name
    _CHILDREN.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM, then SIGKILL for whatever of its process group is left."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} ignored SIGTERM for {timeout:.0f} s: killing its process group")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # children (code servers, run workers) may outlive it briefly
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def cleanup() -> None:
    while _CHILDREN:
        stop(_CHILDREN.pop())


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items()
            if k not in PROJECT_VARS and not k.startswith(("ZOOM_", "AWS_", "DAGSTER_"))}


def start_moto() -> str:
    port = free_port()
    spawn([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], log_name="moto.log",
          env={**clean_env(), **FAKE_AWS})
    wait_for_port(port)
    return f"http://{HOST}:{port}"


class Sim:
    """The simulator in its own process, driven through its /_sim/ control endpoints."""

    def __init__(self) -> None:
        proc = spawn([sys.executable, "-m", "zoom_pipeline.simulator", "--host", HOST, "--port", "0"],
                     log_name="simulator.log", env=clean_env(), stdout=subprocess.PIPE)
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        if not line or not line[0].strip():
            raise RuntimeError(f"the simulator did not print its URLs; see {proc.log_path}")
        self.urls = json.loads(line[0])
        self.control = self.urls["control_url"]
        self.http = requests.Session()

    def post(self, name: str, body: dict | None = None) -> dict:
        resp = self.http.post(f"{self.control}/{name}", json=body or {}, timeout=60)
        resp.raise_for_status()
        return resp.json()

    def stats(self, account: str | None = None) -> dict:
        params = {} if account is None else {"account": account}
        resp = self.http.get(f"{self.control}/stats", params=params, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def records(self, day: str, account: str | None = None) -> list[dict]:
        params = {"day": day, "offset": 0, **({} if account is None else {"account": account})}
        resp = self.http.get(f"{self.control}/records", params=params, timeout=120)
        resp.raise_for_status()
        return resp.json()["records"]


# --------------------------------------------------------------------------------------------------
# dagster dev and its GraphQL API
# --------------------------------------------------------------------------------------------------


class Dev:
    def __init__(self, env: dict, port: int):
        self.url = f"http://{HOST}:{port}"
        self.http = requests.Session()
        cmd = [str(BIN / "dagster"), "dev", "-h", HOST, "-p", str(port), "-w", "workspace.yaml"]
        self.proc = spawn(cmd, log_name="dagster-dev.log", env=env)

    def gql(self, query: str, variables: dict | None = None) -> dict:
        resp = self.http.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        resp.raise_for_status()
        body = resp.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited ({self.proc.returncode}); see {self.proc.log_path}")

    def wait_ready(self, timeout: float) -> tuple[str, str]:
        """Until the webserver answers, the code location has loaded and the daemons are healthy;
        returns (location, repository) names."""
        deadline = time.monotonic() + timeout
        repo = None
        while time.monotonic() < deadline:
            self.alive()
            try:
                if repo is None:
                    found = self.gql(REPOS_QUERY)["repositoriesOrError"]
                    nodes = found.get("nodes") or []
                    if nodes:
                        repo = (nodes[0]["location"]["name"], nodes[0]["name"])
                if repo is not None:
                    statuses = self.gql(DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
                    needed = {s["daemonType"]: s["healthy"] for s in statuses if s["required"]}
                    if all(needed.get(d) for d in ("BACKFILL", "QUEUED_RUN_COORDINATOR")):
                        return repo
            except (requests.ConnectionError, requests.Timeout, RuntimeError, requests.HTTPError):
                pass
            time.sleep(1)
        raise RuntimeError(f"dagster dev not ready within {timeout:.0f} s; see {self.proc.log_path}")

    def launch_backfill(self, days: list[str], asset: tuple[str, ...] = (RAW_ASSET,)) -> str:
        """What the asset page of `asset` (its key path) sends for a backfill of `days`."""
        variables = {"days": days, "assets": [{"path": list(asset)}]}
        launched = self.gql(BACKFILL_MUTATION, variables)["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"launchPartitionBackfill: {launched}")
        return launched["backfillId"]

    def launch_today_run(self, location: str, repository: str, today: str) -> str:
        tags = {"dagster/partition": today, **TODAY_RUN_TAGS}
        params = {"selector": {"repositoryLocationName": location, "repositoryName": repository, "jobName": JOB},
                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                  "runConfigData": {}}
        launched = self.gql(LAUNCH_RUN_MUTATION, {"params": params})["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise RuntimeError(f"launchRun: {launched}")
        return launched["run"]["runId"]

    def backfill(self, backfill_id: str) -> dict:
        found = self.gql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if found["__typename"] != "PartitionBackfill":
            raise RuntimeError(f"partitionBackfillOrError: {found}")
        return found

    def runs(self, backfill_id: str, detail: bool = False) -> list[dict]:
        query = RUNS_DETAIL_QUERY if detail else RUNS_QUERY
        return self.gql(query, {"id": backfill_id})["runsOrError"]["results"]

    def run(self, run_id: str) -> dict:
        return self.gql(RUN_QUERY, {"id": run_id})["runOrError"]

    def run_error(self, run_id: str) -> str:
        """The first error a run's event log holds, first line (what made it fail)."""
        found = self.gql(RUN_ERRORS_QUERY, {"id": run_id})["runOrError"]
        for event in (found.get("eventConnection") or {}).get("events") or []:
            message = ((event.get("error") or {}).get("message") or "").strip()
            if message:
                return f"{event['__typename']}: {message.splitlines()[0][:300]}"
        return "(no error event)"

    def failure_reasons(self, runs: list[dict]) -> dict[str, int]:
        return dict(Counter(self.run_error(r["runId"]) for r in runs if r["status"] == "FAILURE"))


# --------------------------------------------------------------------------------------------------
# One backfill, measured
# --------------------------------------------------------------------------------------------------


def materialized_days(runs: list[dict], asset: tuple[str, ...] = (RAW_ASSET,)) -> set[str]:
    return {m["partition"] for r in runs for m in r.get("assetMaterializations") or []
            if m["assetKey"]["path"] == list(asset) and m["partition"]}


def metadata(mat: dict) -> dict:
    out = {}
    for e in mat.get("metadataEntries") or []:
        for field in ("intValue", "floatValue", "boolValue"):
            if field in e:
                out[e["label"]] = e[field]
    return out


def raw_metadata(runs: list[dict], asset: tuple[str, ...] = (RAW_ASSET,)) -> dict[str, dict]:
    """Per day: the raw asset's materialization metadata (the last one, if a day has several)."""
    out: dict[str, dict] = {}
    for r in runs:
        for m in r.get("assetMaterializations") or []:
            if m["assetKey"]["path"] == list(asset) and m["partition"]:
                out[m["partition"]] = metadata(m)
    return out


def run_backfill(dev: Dev, days: list[str], timeout: float, *, during=None,
                 asset: tuple[str, ...] = (RAW_ASSET,)) -> dict:
    """Launch a backfill of `days` of `asset` and poll it until terminal. `during(runs)` is called at
    every poll (the sensor scenario launches its run from there). Times are seconds after the launch."""
    t0 = time.time()
    backfill_id = dev.launch_backfill(days, asset)
    log(f"backfill {backfill_id}: {len(days)} day(s) launched")
    deadline = time.monotonic() + timeout
    status = "?"
    last_report = 0.0
    while True:
        dev.alive()
        bf = dev.backfill(backfill_id)
        status = bf["status"]
        now = time.time()
        runs = dev.runs(backfill_id)
        if during is not None:
            during(runs)
        if status in TERMINAL_BACKFILL:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"backfill {backfill_id} not terminal within {timeout:.0f} s (status {status}, "
                               f"{dict(Counter(r['status'] for r in runs))}); see {dev.proc.log_path}")
        if now - last_report >= 15:
            last_report = now
            log(f"  +{now - t0:5.0f} s: backfill {status}, runs {dict(Counter(r['status'] for r in runs))}")
        time.sleep(POLL_SECONDS)
    seen_terminal = time.time() - t0
    runs = dev.runs(backfill_id, detail=True)
    end = bf.get("endTimestamp")
    wall = end - t0 if end and end >= t0 else seen_terminal
    # Launch -> the last of its runs ended (Dagster's timestamps), with every day materialized.
    last_end = max((r["endTime"] for r in runs if r.get("endTime")), default=None)
    out = {
        "backfill_id": backfill_id, "status": status, "days": days,
        "wall_s": round(wall, 2), "wall_seen_s": round(seen_terminal, 2),
        "runs_done_s": None if last_end is None else round(last_end - t0, 2),
        "all_materialized": materialized_days(runs, asset) >= set(days),
        "runs": runs, "launched_at": t0,
    }
    log(f"backfill {backfill_id}: {status} after {wall:.1f} s ({len(runs)} run(s), "
        f"{dict(Counter(r['status'] for r in runs))})")
    return out


def timeline(bf: dict) -> dict:
    """Where the wall time went: seconds after launch, and per-run averages."""
    t0, runs = bf["launched_at"], bf["runs"]

    def rel(x):
        return None if x is None else round(x - t0, 1)

    created = [r["creationTime"] for r in runs]
    started = [r["startTime"] for r in runs if r.get("startTime")]
    ended = [r["endTime"] for r in runs if r.get("endTime")]
    queue = [r["startTime"] - r["creationTime"] for r in runs if r.get("startTime")]
    spans = []  # (run start, first step start, last step end, run end)
    for r in runs:
        steps = [s for s in r.get("stepStats") or [] if s.get("startTime")]
        if r.get("startTime") and r.get("endTime") and steps:
            spans.append((r["startTime"], min(s["startTime"] for s in steps),
                          max(s["endTime"] or r["endTime"] for s in steps), r["endTime"]))

    def mean(xs):
        return round(sum(xs) / len(xs), 2) if xs else None

    # Most runs in progress at once.
    events = sorted([(s, 1) for s, *_ in spans] + [(e, -1) for *_, e in spans], key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return {
        "first_run_created_s": rel(min(created, default=None)),
        "last_run_created_s": rel(max(created, default=None)),
        "first_run_started_s": rel(min(started, default=None)),
        "last_run_ended_s": rel(max(ended, default=None)),
        "backfill_terminal_s": bf["wall_s"],
        "mean_queue_s": mean(queue),
        "mean_startup_s": mean([s1 - s0 for s0, s1, _, _ in spans]),
        "mean_step_s": mean([e1 - s1 for _, s1, e1, _ in spans]),
        "mean_teardown_s": mean([e - e1 for _, _, e1, e in spans]),
        "mean_run_s": mean([e - s0 for s0, _, _, e in spans]),
        "peak_runs_in_progress": peak,
    }


def stored_multiset(s3, day: str, prefix: str = RAW_PREFIX) -> Counter:
    """The day's stored records (every part under its folder) as canonical JSON, counted."""
    found: Counter = Counter()
    keys = []
    folder = prefix + day.replace("-", "/") + "/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=folder):
        keys += [o["Key"] for o in page.get("Contents", [])]
    for key in keys:
        body = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        lines = body.split(b"\n")
        if lines[-1] != b"":
            found[b"<object not newline-terminated: " + key.encode() + b">"] += 1
        for line in lines[:-1]:
            found[orjson.dumps(orjson.loads(line), option=orjson.OPT_SORT_KEYS)] += 1
    return found


def landed(sim: Sim, s3, days: list[str], account: str | None = None) -> dict:
    """Per day: whether the stored records equal the simulator's, copy for copy (`account`: a named
    account's days, under its own prefix zoom/<name>/operationlogs/)."""
    bad = {}
    prefix = RAW_PREFIX if account is None else account_prefix(account)
    for day in days:
        want = Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in sim.records(day, account))
        got = stored_multiset(s3, day, prefix)
        if got != want:
            bad[day] = {"stored": sum(got.values()), "expected": sum(want.values()),
                        "missing": sum((want - got).values()), "extra": sum((got - want).values())}
    return {"days": len(days), "exact": len(days) - len(bad), "mismatched": bad}


# --------------------------------------------------------------------------------------------------
# The scenarios
# --------------------------------------------------------------------------------------------------


def measure_fixed(dev: Dev, sim: Sim, day: str, timeout: float, asset: tuple[str, ...] = (RAW_ASSET,)) -> dict:
    log(f"fixed latency: one-day backfill of {'/'.join(asset)} {day} ({FIXED_DAY_RECORDS} records, one page)")
    bf = run_backfill(dev, [day], timeout, asset=asset)
    ok = bf["status"] == "COMPLETED_SUCCESS" and all(r["status"] == "SUCCESS" for r in bf["runs"])
    return {"day": day, "asset": "/".join(asset), "status": bf["status"], "ok": ok, "wall_s": bf["wall_s"],
            "runs_done_s": bf["runs_done_s"],
            "runs": len(bf["runs"]), "timeline": timeline(bf), "failure_reasons": dev.failure_reasons(bf["runs"])}


def measure_scenario(name: str, dev: Dev, sim: Sim, s3, days: list[str], args, fixed: dict,
                     repo: tuple[str, str], today: str | None) -> dict:
    """The measured backfill; with `today`, a run of today's partition launched while it runs."""
    before = sim.stats()
    sim.post("reset_stats")
    today_run: dict = {}

    def during(runs: list[dict]) -> None:
        if today is None or "run_id" in today_run:
            return
        started = [r["startTime"] for r in runs if r.get("startTime")]
        if not started:
            return
        if "first_started" not in today_run:
            today_run["first_started"] = time.time()
        if time.time() - today_run["first_started"] >= args.sensor_delay:
            today_run["launched_at"] = time.time()
            today_run["run_id"] = dev.launch_today_run(*repo, today)
            log(f"today's run {today_run['run_id']} launched ({today}, tags dagster/partition, dagster/priority=5)")

    log(f"{name}: backfill of {len(days)} day(s) x {args.records:,} records, {days[-1]} .. {days[0]}")
    bf = run_backfill(dev, days, args.timeout, during=during)
    today_detail = None
    if today is not None:
        if "run_id" not in today_run:
            raise RuntimeError("the backfill ended before today's run could be launched (no run ever started)")
        deadline = time.monotonic() + args.timeout
        while True:
            today_detail = dev.run(today_run["run_id"])
            if today_detail["status"] in TERMINAL_RUN:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"today's run not terminal within {args.timeout:.0f} s")
            time.sleep(POLL_SECONDS)
    after = sim.stats()

    by_day = after["report_calls_by_day"]  # operation-log calls
    report_calls = after["report_calls"]  # every report endpoint: they share the account's limit
    pages_all = after["pages_served"]  # report calls answered 200, every endpoint
    # A simulator with several report endpoints also counts each on its own (by_log).
    by_log = after.get("by_log") or {}
    op_pages = (by_log.get("operationlogs") or after)["pages_served"]
    other_endpoints = {name: c["report_calls"] for name, c in by_log.items()
                       if name != "operationlogs" and c.get("report_calls")}
    today_pages = 0
    today_meta: dict = {}
    if today_detail is not None:
        today_meta = raw_metadata([today_detail]).get(today, {})
        today_pages = int(today_meta.get("pages") or 0)
    pages = op_pages - today_pages
    meta = raw_metadata(bf["runs"])
    meta_pages = sum(int(m.get("pages") or 0) for d, m in meta.items() if d in days)
    other_keys = sorted(k for k in by_day if k not in days and k != today)
    floor = pages / args.rate
    wall = bf["wall_s"]
    net = (wall - fixed["wall_s"]) / floor if floor else None
    runs_net = None
    if floor and bf["runs_done_s"] is not None and fixed["runs_done_s"] is not None:
        runs_net = (bf["runs_done_s"] - fixed["runs_done_s"]) / floor
    http_429 = after["status_counts"].get("429", 0)
    landing = landed(sim, s3, days)
    tl = timeline(bf)
    # The part the daemon's tick phase cannot move: the backfill's first run start to its last run end.
    span = None
    if tl["first_run_started_s"] is not None and tl["last_run_ended_s"] is not None:
        span = tl["last_run_ended_s"] - tl["first_run_started_s"]
    out = {
        "scenario": name,
        "days": len(days), "first_day": days[-1], "last_day": days[0], "records_per_day": args.records,
        "rate": args.rate, "status": bf["status"], "backfill_id": bf["backfill_id"],
        "pages": pages, "pages_from_metadata": meta_pages, "pages_all": pages_all,
        "floor_s": round(floor, 2), "wall_s": wall, "wall_seen_s": bf["wall_seen_s"], "runs_done_s": bf["runs_done_s"],
        "raw_ratio": round(wall / floor, 3) if floor else None,
        "net_ratio": None if net is None else round(net, 3),
        "net_ratio_runs_done": None if runs_net is None else round(runs_net, 3),
        "runs_span_s": None if span is None else round(span, 2),
        "span_ratio": None if span is None or not floor else round(span / floor, 3),
        "report_calls": report_calls, "http_429": http_429, "qps_rejections": after["qps_rejections"],
        "share_429": round(http_429 / report_calls, 4) if report_calls else None,
        "runs_launched": len(bf["runs"]), "run_statuses": dict(Counter(r["status"] for r in bf["runs"])),
        "failure_reasons": dev.failure_reasons(bf["runs"]),
        "days_per_run": sorted(Counter(len([m for m in r.get("assetMaterializations") or []
                                            if m["assetKey"]["path"] == [RAW_ASSET]]) for r in bf["runs"]).items()),
        "token_calls": after["token_calls"], "tokens_issued": after["tokens_issued"],
        "token_mints_metadata": sum(int(m.get("token_mints") or 0) for m in meta.values()),
        "tokens_adopted_metadata": sum(int(m.get("tokens_adopted") or 0) for m in meta.values()),
        "api_retries_metadata": sum(int(m.get("api_retries") or 0) for m in meta.values()),
        "days_not_exact_metadata": sorted(d for d, m in meta.items() if m.get("day_exact") is False),
        "landed": landing,
        "timeline": tl,
        "status_counts": after["status_counts"], "max_in_flight": after["max_in_flight"],
        "report_calls_other_days": {k: by_day[k] for k in other_keys},
        "report_calls_other_endpoints": other_endpoints,
        "sim_stats_before": before, "sim_stats_after": after,
    }
    if today_detail is not None:
        t0 = bf["launched_at"]
        today_landed = landed(sim, s3, [today])
        out["today_run"] = {
            "run_id": today_run["run_id"], "day": today, "status": today_detail["status"],
            "launched_s": round(today_run["launched_at"] - t0, 1),
            "started_s": None if not today_detail.get("startTime") else round(today_detail["startTime"] - t0, 1),
            "ended_s": None if not today_detail.get("endTime") else round(today_detail["endTime"] - t0, 1),
            "queued_s": None if not today_detail.get("startTime")
            else round(today_detail["startTime"] - today_detail["creationTime"], 1),
            "pages": today_pages, "report_calls": by_day.get(today, 0), "api_retries": today_meta.get("api_retries"),
            "records_written": today_meta.get("records_written"), "exact": not today_landed["mismatched"],
            "failure_reason": dev.run_error(today_run["run_id"]) if today_detail["status"] == "FAILURE" else None,
        }
        # Did it run while backfill runs were in progress (else it competed with nothing)?
        spans = [(r["startTime"], r["endTime"]) for r in bf["runs"] if r.get("startTime") and r.get("endTime")]
        ts, te = today_detail.get("startTime"), today_detail.get("endTime")
        out["today_run"]["overlapped_backfill_runs"] = bool(ts and te and any(s < te and ts < e for s, e in spans))
    return out


# --------------------------------------------------------------------------------------------------
# The accounts scenario: N Zoom accounts of one deployment, one backfill each, side by side
# --------------------------------------------------------------------------------------------------


def account_names(n: int) -> list[str]:
    return [ACCOUNT_NAMES[i] if i < len(ACCOUNT_NAMES) else f"acct{i + 1}" for i in range(n)]


def account_prefix(name: str) -> str:
    """Where a named account's raw days go by default (zoom_pipeline/accounts.py)."""
    return f"zoom/{name}/operationlogs/"


def account_asset(name: str) -> tuple[str, ...]:
    return (name, RAW_ASSET)


def account_counters(stats: dict) -> dict:
    """The counters of one account's simulator stats the scenario takes differences of."""
    op = (stats.get("by_log") or {}).get("operationlogs") or stats
    return {
        "report_calls": stats["report_calls"], "pages": op["pages_served"], "pages_all": stats["pages_served"],
        "http_429": stats["status_counts"].get("429", 0), "qps_rejections": stats["qps_rejections"],
        "token_calls": stats["token_calls"], "tokens_issued": stats["tokens_issued"],
    }


def setup_accounts(sim: Sim, names: list[str], args) -> dict[str, dict]:
    """Each account in the simulator with its own client secret and per-second limit R (and, unless
    --no-invalidate-on-mint, every mint invalidating that account's earlier tokens); returns each
    account's credentials as the simulator answers them."""
    creds = {}
    for name in names:
        creds[name] = sim.post("account", {"name": name, "client_secret": f"bench-secret-{name}",
                                           "max_requests_per_second": args.rate})
        sim.post("config", {"account": name, "invalidate_on_mint": not args.no_invalidate_on_mint})
    return creds


def write_accounts_file(path: Path, names: list[str], sim: Sim, rate: float) -> None:
    """The deployment's ZOOM_ACCOUNTS_FILE: each account's pace R and the simulator's URLs."""
    entries = {name: {"api_base_url": sim.urls["base_url"], "oauth_token_url": sim.urls["token_url"],
                      "max_requests_per_second": rate} for name in names}
    path.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=False))


def account_env(creds: dict[str, dict]) -> dict[str, str]:
    """ZOOM_<NAME>_ACCOUNT_ID / _CLIENT_ID / _CLIENT_SECRET of every account."""
    env = {}
    for name, c in creds.items():
        stem = f"ZOOM_{name.upper()}_"
        env.update({stem + "ACCOUNT_ID": c["account_id"], stem + "CLIENT_ID": c["client_id"],
                    stem + "CLIENT_SECRET": c["client_secret"]})
    return env


def run_account_backfills(dev: Dev, days: list[str], names: list[str], timeout: float) -> dict:
    """One backfill per account of the same `days`, launched one right after the other (each what that
    account's asset page sends), then all polled until terminal. Per account, times are seconds after
    its own launch; `launched_at` of the whole is the first launch."""
    launched: dict[str, dict] = {}
    for name in names:
        t = time.time()
        launched[name] = {"backfill_id": dev.launch_backfill(days, account_asset(name)), "launched_at": t}
    t0 = launched[names[0]]["launched_at"]
    log(f"{len(names)} backfills of {len(days)} day(s) each launched within "
        f"{time.time() - t0:.1f} s: " + ", ".join(f"{n} {b['backfill_id']}" for n, b in launched.items()))
    pending = list(names)
    found: dict[str, dict] = {}
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while pending:
        dev.alive()
        for name in list(pending):
            bf = dev.backfill(launched[name]["backfill_id"])
            if bf["status"] in TERMINAL_BACKFILL:
                found[name], seen[name] = bf, time.time()
                pending.remove(name)
        now = time.time()
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"backfills of {pending} not terminal within {timeout:.0f} s; see {dev.proc.log_path}")
        if pending and now - last_report >= 15:
            last_report = now
            runs = Counter(r["status"] for n in names for r in dev.runs(launched[n]["backfill_id"]))
            log(f"  +{now - t0:5.0f} s: {len(names) - len(pending)} of {len(names)} backfills terminal, "
                f"runs {dict(runs)}")
        if pending:
            time.sleep(POLL_SECONDS)
    out: dict[str, dict] = {}
    for name in names:
        bf, launch = found[name], launched[name]["launched_at"]
        runs = dev.runs(launched[name]["backfill_id"], detail=True)
        end = bf.get("endTimestamp")
        end = end if end and end >= launch else seen[name]
        last_end = max((r["endTime"] for r in runs if r.get("endTime")), default=None)
        out[name] = {
            "backfill_id": launched[name]["backfill_id"], "status": bf["status"], "days": days,
            "launched_at": launch, "launched_s": round(launch - t0, 2), "ended_at": end,
            "wall_s": round(end - launch, 2), "wall_seen_s": round(seen[name] - launch, 2),
            "runs_done_s": None if last_end is None else round(last_end - launch, 2),
            "all_materialized": materialized_days(runs, account_asset(name)) >= set(days),
            "runs": runs,
        }
        log(f"backfill {name} {out[name]['backfill_id']}: {bf['status']} after {out[name]['wall_s']:.1f} s "
            f"({len(runs)} run(s), {dict(Counter(r['status'] for r in runs))})")
    return {"launched_at": t0, "accounts": out}


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def measure_accounts(dev: Dev, sim: Sim, s3, days: list[str], names: list[str], args, fixed: dict) -> dict:
    """N accounts' backfills of the same days side by side: per account and overall."""
    before = {name: account_counters(sim.stats(name)) for name in names}
    before_days = {name: sim.stats(name)["report_calls_by_day"] for name in names}
    log(f"accounts: {len(names)} backfills of {len(days)} day(s) x {args.records:,} records, "
        f"{days[-1]} .. {days[0]}, {args.rate:g} report calls/s per account")
    both = run_account_backfills(dev, days, names, args.timeout)
    t0 = both["launched_at"]
    per: list[dict] = []
    all_runs: list[dict] = []
    for name in names:
        bf = both["accounts"][name]
        stats = sim.stats(name)
        after = account_counters(stats)
        d = {k: after[k] - before[name][k] for k in after}
        by_day = stats["report_calls_by_day"]
        other_days = {k: v - before_days[name].get(k, 0) for k, v in by_day.items()
                      if k not in days and v - before_days[name].get(k, 0)}
        meta = raw_metadata(bf["runs"], account_asset(name))
        floor = d["pages"] / args.rate
        tl = timeline(bf)
        span = None
        if tl["first_run_started_s"] is not None and tl["last_run_ended_s"] is not None:
            span = tl["last_run_ended_s"] - tl["first_run_started_s"]
        started = [r["startTime"] for r in bf["runs"] if r.get("startTime")]
        ended = [r["endTime"] for r in bf["runs"] if r.get("endTime")]
        all_runs += bf["runs"]
        per.append({
            "account": name, "backfill_id": bf["backfill_id"], "status": bf["status"],
            "launched_s": bf["launched_s"],
            "pages": d["pages"], "pages_from_metadata": sum(int(m.get("pages") or 0) for k, m in meta.items()
                                                            if k in days),
            "floor_s": round(floor, 2), "wall_s": bf["wall_s"], "wall_seen_s": bf["wall_seen_s"],
            "runs_done_s": bf["runs_done_s"],
            "raw_ratio": round(bf["wall_s"] / floor, 3) if floor else None,
            "net_ratio": round((bf["wall_s"] - fixed["wall_s"]) / floor, 3) if floor else None,
            "runs_span_s": None if span is None else round(span, 2),
            "span_ratio": None if span is None or not floor else round(span / floor, 3),
            "first_run_started_s": None if not started else round(min(started) - t0, 1),
            "last_run_ended_s": None if not ended else round(max(ended) - t0, 1),
            "report_calls": d["report_calls"], "http_429": d["http_429"], "qps_rejections": d["qps_rejections"],
            "share_429": share(d["http_429"], d["report_calls"]),
            "token_calls": d["token_calls"], "tokens_issued": d["tokens_issued"],
            "token_calls_total": after["token_calls"], "tokens_issued_total": after["tokens_issued"],
            "token_mints_metadata": sum(int(m.get("token_mints") or 0) for m in meta.values()),
            "tokens_adopted_metadata": sum(int(m.get("tokens_adopted") or 0) for m in meta.values()),
            "api_retries_metadata": sum(int(m.get("api_retries") or 0) for m in meta.values()),
            "days_not_exact_metadata": sorted(k for k, m in meta.items() if m.get("day_exact") is False),
            "runs_launched": len(bf["runs"]), "run_statuses": dict(Counter(r["status"] for r in bf["runs"])),
            "days_per_run": sorted(Counter(len([m for m in r.get("assetMaterializations") or []
                                                if m["assetKey"]["path"] == list(account_asset(name))])
                                           for r in bf["runs"]).items()),
            "failure_reasons": dev.failure_reasons(bf["runs"]),
            "landed": landed(sim, s3, days, name),
            "timeline": tl,
            "report_calls_other_days": other_days,
            "max_in_flight": stats["max_in_flight"], "max_concurrent_tokens": stats["max_concurrent_tokens"],
        })
    # The accounts run side by side: the bound is one account's floor (the largest), not their sum.
    floor = max((a["floor_s"] for a in per), default=0.0)
    ends = [both["accounts"][n]["ended_at"] for n in names]
    wall = max(ends) - t0
    run_ends = [r["endTime"] for r in all_runs if r.get("endTime")]
    runs_done = None if not run_ends else max(run_ends) - t0
    tl = timeline({"launched_at": t0, "runs": all_runs, "wall_s": round(wall, 2)})
    span = None
    if tl["first_run_started_s"] is not None and tl["last_run_ended_s"] is not None:
        span = tl["last_run_ended_s"] - tl["first_run_started_s"]
    calls = sum(a["report_calls"] for a in per)
    http_429 = sum(a["http_429"] for a in per)
    runs_net = None
    if floor and runs_done is not None and fixed["runs_done_s"] is not None:
        runs_net = (runs_done - fixed["runs_done_s"]) / floor
    overall = {
        "accounts": len(per), "pages": sum(a["pages"] for a in per), "floor_s": round(floor, 2),
        "sum_of_floors_s": round(sum(a["floor_s"] for a in per), 2),
        "wall_s": round(wall, 2), "runs_done_s": None if runs_done is None else round(runs_done, 2),
        "launch_spread_s": round(max(a["launched_s"] for a in per), 2),
        "raw_ratio": round(wall / floor, 3) if floor else None,
        "net_ratio": round((wall - fixed["wall_s"]) / floor, 3) if floor else None,
        "net_ratio_runs_done": None if runs_net is None else round(runs_net, 3),
        "runs_span_s": None if span is None else round(span, 2),
        "span_ratio": None if span is None or not floor else round(span / floor, 3),
        "report_calls": calls, "http_429": http_429, "share_429": share(http_429, calls),
        "tokens_issued": sum(a["tokens_issued"] for a in per),
        "tokens_issued_total": sum(a["tokens_issued_total"] for a in per),
        "token_calls_total": sum(a["token_calls_total"] for a in per),
        "runs_launched": len(all_runs), "run_statuses": dict(Counter(r["status"] for r in all_runs)),
        "landed_exact": sum(a["landed"]["exact"] for a in per), "landed_days": sum(a["landed"]["days"] for a in per),
        "timeline": tl,
    }
    status = Counter(a["status"] for a in per)
    return {
        "scenario": "accounts", "days": len(days), "first_day": days[-1], "last_day": days[0],
        "records_per_day": args.records, "rate": args.rate, "account_names": names,
        "status": "COMPLETED_SUCCESS" if set(status) == {"COMPLETED_SUCCESS"} else dict(status),
        "per_account": per, "overall": overall,
    }


def render_accounts(sc: dict, fixed: dict, big: bool) -> list[str]:
    o, per = sc["overall"], sc["per_account"]
    t = o["timeline"]
    out = ["", f"Scenario accounts: {o['accounts']} accounts, one backfill each of {sc['days']} days "
           f"({sc['first_day']} .. {sc['last_day']}) x {sc['records_per_day']:,} records, at {sc['rate']:g} "
           f"report calls/s per account (its own limit); launched within {o['launch_spread_s']:.1f} s, "
           f"{sc['status'] if isinstance(sc['status'], str) else sc['status']}"]
    head = ("account", "pages", "floor s", "wall s", "raw", "net", "span/floor", "429 %", "tokens",
            "runs", "started s", "ended s", "landed")
    rows = []
    for a in per:
        rows.append((a["account"], f"{a['pages']:,}", f"{a['floor_s']:.1f}", f"{a['wall_s']:.1f}",
                     f"{fmt(a['raw_ratio'], '.2f')}x", f"{fmt(a['net_ratio'], '.2f')}x",
                     f"{fmt(a['span_ratio'], '.2f')}x",
                     fmt(None if a["share_429"] is None else 100 * a["share_429"], ".2f"),
                     f"{a['tokens_issued_total']} ({a['tokens_issued']})",
                     f"{a['runs_launched']}", f"+{fmt(a['first_run_started_s'])}", f"+{fmt(a['last_run_ended_s'])}",
                     f"{a['landed']['exact']}/{a['landed']['days']}"))
    rows.append(("overall", f"{o['pages']:,}", f"{o['floor_s']:.1f}", f"{o['wall_s']:.1f}",
                 f"{fmt(o['raw_ratio'], '.2f')}x", f"{fmt(o['net_ratio'], '.2f')}x", f"{fmt(o['span_ratio'], '.2f')}x",
                 fmt(None if o["share_429"] is None else 100 * o["share_429"], ".2f"),
                 f"{o['tokens_issued_total']} ({o['tokens_issued']})", f"{o['runs_launched']}",
                 f"+{fmt(t['first_run_started_s'])}", f"+{fmt(t['last_run_ended_s'])}",
                 f"{o['landed_exact']}/{o['landed_days']}"))
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "  " + "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                                enumerate(zip(r, widths, strict=True)))
    out.append(line(head))
    out += [line(r) for r in rows[:-1]]
    out.append("  " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
    out.append(line(rows[-1]))
    out += [
        "  pages: operation-log calls answered 200 for the measured days; floor = pages / R (overall: one "
        f"account's floor, the largest; the {o['accounts']} floors add up to {o['sum_of_floors_s']:.1f} s)",
        "  wall: an account's launch -> its backfill terminal (overall: first launch -> last backfill terminal); "
        f"net = (wall - {fixed['wall_s']:.1f} s fixed) / floor",
        "  span/floor: first run start -> last run end, / floor; tokens: minted over the whole benchmark "
        "(during these backfills); started/ended: first run start, last run end, s after the first launch",
        f"  overall: runs done at +{fmt(o['runs_done_s'])} s, runs-done basis net "
        f"{fmt(o['net_ratio_runs_done'], '.2f')}x; {o['http_429']:,} of {o['report_calls']:,} report calls "
        f"answered 429; {o['runs_launched']} runs {o['run_statuses']}, at most {t['peak_runs_in_progress']} in "
        f"progress at once; token endpoint calls {o['token_calls_total']}",
        f"  per run (mean): created -> started {fmt(t['mean_queue_s'])} s, run start -> step start "
        f"{fmt(t['mean_startup_s'])} s, step {fmt(t['mean_step_s'])} s, after the step {fmt(t['mean_teardown_s'])} s",
    ]
    for a in per:
        notes = []
        if a["pages_from_metadata"] != a["pages"]:
            notes.append(f"run metadata says {a['pages_from_metadata']:,} pages")
        if a["days_per_run"] != [(sc["days"], 1)]:
            notes.append("days per run " + ", ".join(f"{n} x {k}" for k, n in a["days_per_run"]))
        if set(a["run_statuses"]) != {"SUCCESS"}:
            notes.append(f"runs {a['run_statuses']}")
        for reason, n in a["failure_reasons"].items():
            notes.append(f"{n} run(s) failed with {reason}")
        if a["landed"]["mismatched"]:
            notes.append(f"MISMATCH {a['landed']['mismatched']}")
        if a["api_retries_metadata"]:
            notes.append(f"retried {a['api_retries_metadata']} report call(s)")
        if a["days_not_exact_metadata"]:
            notes.append(f"days awaiting confirmation {a['days_not_exact_metadata']}")
        if a["report_calls_other_days"]:
            notes.append(f"calls for other days {a['report_calls_other_days']}")
        if a["token_calls_total"] != a["tokens_issued_total"]:
            notes.append(f"{a['token_calls_total']} token endpoint calls")
        if notes:
            out.append(f"  {a['account']}: " + "; ".join(notes))
    shape = "" if big else " (stated for 30 days x 6,000 records at 10/s; this run differs)"
    worst = max((a["share_429"] or 0 for a in per), default=None)
    mints = {a["account"]: a["tokens_issued_total"] for a in per}
    net = o["net_ratio"]
    out.append(f"  aims{shape}:")
    out.append(f"    [{aim(None if net is None else net <= AIM_NET)}] overall net <= {AIM_NET:.2f}x one account's "
               f"floor: measured {fmt(net, '.2f')}x")
    share_ok = None if o["share_429"] is None else o["share_429"] < AIM_429_SHARE and worst < AIM_429_SHARE
    out.append(f"    [{aim(share_ok)}] < {100 * AIM_429_SHARE:.0f} % of report calls answered 429, overall and per "
               "account: measured "
               f"{fmt(None if o['share_429'] is None else 100 * o['share_429'], '.2f')} % overall, "
               f"{fmt(None if worst is None else 100 * worst, '.2f')} % for the worst account")
    out.append(f"    [{aim(all(v == AIM_TOKENS_PER_ACCOUNT for v in mints.values()))}] one token mint per account "
               f"(whole benchmark): measured {', '.join(f'{k} {v}' for k, v in mints.items())}")
    return out


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def aim(ok: bool | None) -> str:
    return "n/a " if ok is None else "MET " if ok else "MISS"


def render(results: dict) -> str:
    out = [""]
    m, s = results["machine"], results["setup"]
    out.append(f"zoom_pipeline backfill benchmark (dagster dev + simulator + moto S3 on 127.0.0.1, {m['cpus']} CPUs, "
               f"load average {m['load_before']:.2f} before / {m['load_after']:.2f} after)")
    out.append(f"  simulator: {s['rate']:g} report calls/s per account (429 above), invalidate_on_mint "
               f"{s['invalidate_on_mint']}; runs: ZOOM_MAX_REQUESTS_PER_SECOND={s['rate']:g}, "
               f"ZOOM_BACKFILL_DAYS_PER_RUN={s['days_per_run_env'] or '(unset: the project default)'}")
    out.append(f"  instance: zoom_api pool limit {s['pool_limit']}, max_concurrent_runs {s['max_concurrent_runs']}; "
               f"raw asset's backfill policy as Dagster sees it: {s['backfill_policy']}")
    if s.get("accounts"):
        out.append(f"  accounts: {len(s['accounts'])} in ZOOM_ACCOUNTS_FILE ({', '.join(s['accounts'])}), each with "
                   f"max_requests_per_second {s['rate']:g}, its own credentials, token and pool zoom_api_<name>")
        if s["max_concurrent_runs"] is not None and len(s["accounts"]) > s["max_concurrent_runs"]:
            out.append(f"  note: {len(s['accounts'])} accounts' runs but max_concurrent_runs "
                       f"{s['max_concurrent_runs']}: the run queue holds the rest until a run ends")
    f = results["fixed"]
    ft = f["timeline"]
    out += ["", f"Fixed latency (one-day backfill of {f.get('asset', RAW_ASSET)} {f['day']}, "
            f"{FIXED_DAY_RECORDS} records, {f['status']}): "
            f"{f['wall_s']:.1f} s to backfill terminal, {fmt(f['runs_done_s'])} s to its run done",
            f"  run created +{fmt(ft['first_run_created_s'])} s, started +{fmt(ft['first_run_started_s'])} s, "
            f"ended +{fmt(ft['last_run_ended_s'])} s; run start-up {fmt(ft['mean_startup_s'])} s, "
            f"step {fmt(ft['mean_step_s'])} s"]
    big = (s["days"], s["records"], s["rate"]) == AIM_SHAPE
    for sc in results["scenarios"]:
        if sc["scenario"] == "accounts":
            out += render_accounts(sc, f, big)
            continue
        t = sc["timeline"]
        share = sc["share_429"]
        out += ["", f"Scenario {sc['scenario']}: backfill {sc['backfill_id']} of {sc['days']} days "
                f"({sc['first_day']} .. {sc['last_day']}) x {sc['records_per_day']:,} records, {sc['status']}"]
        rows = [
            ("days", f"{sc['days']}"),
            ("records/day", f"{sc['records_per_day']:,}"),
            ("rate R", f"{sc['rate']:g} report calls/s"),
            ("report pages", f"{sc['pages']:,} (answered 200 for the measured days; run metadata says "
                             f"{sc['pages_from_metadata']:,})"),
            ("floor = pages / R", f"{sc['floor_s']:.1f} s"),
            ("wall", f"{sc['wall_s']:.1f} s (launch -> backfill terminal; runs done at {fmt(sc['runs_done_s'])} s)"),
            ("wall / floor, raw", f"{fmt(sc['raw_ratio'], '.2f')}x"),
            ("wall / floor, net", f"{fmt(sc['net_ratio'], '.2f')}x = (wall - {f['wall_s']:.1f} s fixed) / floor; "
                                  f"runs-done basis {fmt(sc['net_ratio_runs_done'], '.2f')}x"),
            ("runs' span / floor", f"{fmt(sc['span_ratio'], '.2f')}x (first run start -> last run end, "
                                   f"{fmt(sc['runs_span_s'])} s: the part no daemon tick is in)"),
            ("429 share", f"{fmt(None if share is None else 100 * share, '.2f')} % ({sc['http_429']:,} of "
                          f"{sc['report_calls']:,} report calls)"),
            ("runs launched", f"{sc['runs_launched']} ({', '.join(f'{n} x {k} day(s)' for k, n in sc['days_per_run'])};"
                              f" {sc['run_statuses']})"),
            ("tokens", f"{sc['token_calls']} token endpoint call(s) / {sc['tokens_issued']} minted (runs' metadata: "
                       f"{sc['token_mints_metadata']} minted, {sc['tokens_adopted_metadata']} adopted)"),
            ("landed exactly", f"{sc['landed']['exact']} of {sc['landed']['days']} days"
             + ("" if not sc["landed"]["mismatched"] else f"; MISMATCH {sc['landed']['mismatched']}")),
        ]
        if "today_run" in sc:
            tr = sc["today_run"]
            rows.append(("concurrent today run", f"{tr['status']} ({tr['day']}): launched +{tr['launched_s']} s, "
                         f"started +{fmt(tr['started_s'])} s (queued {fmt(tr['queued_s'])} s), ended "
                         f"+{fmt(tr['ended_s'])} s; {tr['pages']} pages, {tr['report_calls']} report calls, "
                         f"{tr['records_written']} records written, day {'exact' if tr['exact'] else 'MISMATCH'}; "
                         + ("ran while backfill runs were in progress" if tr["overlapped_backfill_runs"]
                            else "did NOT overlap any backfill run")))
            rows.append(("floor incl. today", f"{sc['pages_all'] / sc['rate']:.1f} s ({sc['pages_all']:,} pages)"))
        width = max(len(k) for k, _ in rows)
        out += [f"  {k:<{width}}  {v}" for k, v in rows]
        out.append(f"  timeline (s after launch): first run created +{fmt(t['first_run_created_s'])}, started "
                   f"+{fmt(t['first_run_started_s'])}; last run created +{fmt(t['last_run_created_s'])}, ended "
                   f"+{fmt(t['last_run_ended_s'])}; backfill terminal +{t['backfill_terminal_s']:.1f}")
        out.append(f"  per run (mean): created -> started (queue, worker launch) {fmt(t['mean_queue_s'])} s, "
                   f"run start -> step start {fmt(t['mean_startup_s'])} s, step {fmt(t['mean_step_s'])} s, "
                   f"after the step {fmt(t['mean_teardown_s'])} s; at most {t['peak_runs_in_progress']} run(s) "
                   "in progress at once")
        for reason, n in sc["failure_reasons"].items():
            out.append(f"  {n} run(s) failed with {reason}")
        if sc.get("today_run", {}).get("failure_reason"):
            out.append(f"  today's run failed with {sc['today_run']['failure_reason']}")
        if sc["api_retries_metadata"]:
            out.append(f"  the runs retried {sc['api_retries_metadata']} report call(s) (their metadata)")
        if sc["days_not_exact_metadata"]:
            out.append("  days awaiting confirmation after their pass (day_exact false): "
                       f"{sc['days_not_exact_metadata']}")
        if sc["report_calls_other_days"]:
            out.append(f"  operation-log calls for other days: {sc['report_calls_other_days']}")
        if sc.get("report_calls_other_endpoints"):
            out.append(f"  report calls to other endpoints (counted in the 429 share and 'floor incl. today'): "
                       f"{sc['report_calls_other_endpoints']}")
        shape = "" if big else " (aims are stated for 30 days x 6,000 records at 10/s; this run differs)"
        net = sc["net_ratio"]
        out.append(f"  aims{shape}:")
        out.append(f"    [{aim(None if net is None else net <= AIM_NET)}] net <= {AIM_NET:.2f}x floor: measured "
                   f"{fmt(net, '.2f')}x")
        out.append(f"    [{aim(None if share is None else share < AIM_429_SHARE)}] < {100 * AIM_429_SHARE:.0f} % "
                   f"of report calls answered 429: measured {fmt(None if share is None else 100 * share, '.2f')} %")
    return "\n".join(out)


def fmt(x, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30, help="days in the measured backfill (default 30)")
    ap.add_argument("--records", type=int, default=6000, help="records per day (default 6000)")
    ap.add_argument("--rate", type=float, default=10.0,
                    help="report calls per second: the simulator's limit and ZOOM_MAX_REQUESTS_PER_SECOND (default 10)")
    ap.add_argument("--days-per-run", type=int, default=None,
                    help="ZOOM_BACKFILL_DAYS_PER_RUN for the runs (default: unset, the project's default)")
    ap.add_argument("--pool", type=int, default=None,
                    help="the zoom_api pool limit (default: as dagster_home/dagster.yaml ships it)")
    ap.add_argument("--scenarios", choices=("plain", "sensor", "both", "accounts"), default="both",
                    help="plain backfill, backfill with a concurrent run of today, or both (default); accounts: "
                         "--accounts N accounts of one deployment, one backfill each, side by side (on its own)")
    ap.add_argument("--accounts", type=int, default=5,
                    help="accounts in the accounts scenario (default 5), each with its own credentials and limit R")
    ap.add_argument("--max-concurrent-runs", type=int, default=None,
                    help="the instance's max_concurrent_runs (default: as dagster_home/dagster.yaml ships it)")
    ap.add_argument("--with-sensor-run", action="store_true", help="same as --scenarios sensor")
    ap.add_argument("--today-records", type=int, default=3000, help="records of today in the sensor scenario")
    ap.add_argument("--sensor-delay", type=float, default=5.0,
                    help="seconds after the backfill's first run started when today's run is launched (default 5)")
    ap.add_argument("--no-invalidate-on-mint", action="store_true",
                    help="let earlier tokens stay valid when one is minted (Zoom invalidates them)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary DAGSTER_HOME")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per backfill (default 1800)")
    ap.add_argument("--out", default=str(OUT_DIR / "backfill.json"), help="where to write the JSON results")
    args = ap.parse_args(argv)
    if args.with_sensor_run:
        args.scenarios = "sensor"
    if args.days < 1 or args.records < 0 or args.rate <= 0:
        ap.error("--days must be >= 1, --records >= 0, --rate > 0")
    if args.days_per_run is not None and args.days_per_run < 1:
        ap.error("--days-per-run must be >= 1")
    if args.pool is not None and args.pool < 1:
        ap.error("--pool must be >= 1")
    if args.accounts < 1:
        ap.error("--accounts must be >= 1")
    if args.max_concurrent_runs is not None and args.max_concurrent_runs < 1:
        ap.error("--max-concurrent-runs must be >= 1")
    scenarios = ["plain", "sensor"] if args.scenarios == "both" else [args.scenarios]
    # Days ending two days ago, one block of fresh days per scenario, all inside Zoom's window.
    if 1 + len(scenarios) * args.days > RETENTION_DAYS - 1:
        ap.error(f"{len(scenarios)} scenario(s) x {args.days} days do not fit in Zoom's {RETENTION_DAYS}-day window")
    args.scenario_list = scenarios
    return args


def instance_yaml(pool: int | None, max_runs: int | None = None) -> tuple[str, dict]:
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    config.setdefault("telemetry", {})["enabled"] = False
    if pool is not None:
        config.setdefault("concurrency", {}).setdefault("pools", {})["default_limit"] = pool
    if max_runs is not None:
        config.setdefault("concurrency", {}).setdefault("runs", {})["max_concurrent_runs"] = max_runs
    return yaml.safe_dump(config, sort_keys=False), config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def interrupted(*_):
        raise KeyboardInterrupt

    # Explicit handlers: a shell starting the benchmark in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    LOG_DIR.mkdir(parents=True)
    tmp = Path(tempfile.mkdtemp(prefix="zoom-backfill-bench-"))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    today_date = datetime.now(UTC).date()
    today = today_date.isoformat()
    fixed_day = (today_date - timedelta(days=1)).isoformat()
    blocks = {name: [(today_date - timedelta(days=2 + i * args.days + k)).isoformat() for k in range(args.days)]
              for i, name in enumerate(args.scenario_list)}  # newest first
    midnight = datetime.combine(today_date + timedelta(days=1), datetime.min.time(), UTC)
    if midnight - datetime.now(UTC) < timedelta(hours=1):
        log("note: less than an hour to UTC midnight; today's partition may change during the run")
    failures: list[str] = []
    dev = None
    multi = args.scenario_list == ["accounts"]
    names = account_names(args.accounts) if multi else []
    try:
        log("starting moto S3 server and the Zoom simulator")
        s3_url = start_moto()
        sim = Sim()
        creds: dict[str, dict] = {}
        if multi:  # every account its own credentials, limit R and days; the default account stays unused
            creds = setup_accounts(sim, names, args)
            sim.post("day", {"day": fixed_day, "generate": FIXED_DAY_RECORDS, "seed": 999, "account": names[0]})
            for i, name in enumerate(names):
                for k, day in enumerate(blocks["accounts"]):
                    sim.post("day", {"day": day, "generate": args.records, "seed": 1 + i * 1000 + k,
                                     "account": name})
        else:
            sim.post("config", {"max_requests_per_second": args.rate,
                                "invalidate_on_mint": not args.no_invalidate_on_mint})
            sim.post("day", {"day": fixed_day, "generate": FIXED_DAY_RECORDS, "seed": 999})
            for i, days in enumerate(blocks.values()):
                for k, day in enumerate(days):
                    sim.post("day", {"day": day, "generate": args.records, "seed": 1 + i * 1000 + k})
        if "sensor" in blocks:
            sim.post("day", {"day": today, "generate": args.today_records, "seed": 4242})
        s3 = boto3.client("s3", endpoint_url=s3_url, **{k.lower(): v for k, v in FAKE_AWS.items()
                                                         if k != "AWS_DEFAULT_REGION"}, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)

        home = tmp / "dagster_home"
        home.mkdir()
        text, config = instance_yaml(args.pool, args.max_concurrent_runs)
        (home / "dagster.yaml").write_text(text)
        env = clean_env()
        env.update(FAKE_AWS)
        env.update(DAGSTER_HOME=str(home), PYTHONUNBUFFERED="1", S3_BUCKET=BUCKET, AWS_ENDPOINT_URL=s3_url,
                   ZOOM_DAILY_REQUEST_BUDGET="100000000")
        if multi:  # the URLs and each account's pace come from the accounts file, credentials per account
            accounts_file = tmp / "zoom_accounts.yaml"
            write_accounts_file(accounts_file, names, sim, args.rate)
            env.update(account_env(creds), ZOOM_ACCOUNTS_FILE=str(accounts_file))
        else:
            env.update(SIM_CREDS)
            env.update(ZOOM_API_BASE_URL=sim.urls["base_url"], ZOOM_OAUTH_TOKEN_URL=sim.urls["token_url"],
                       ZOOM_MAX_REQUESTS_PER_SECOND=f"{args.rate:g}")
        if args.days_per_run is not None:
            env["ZOOM_BACKFILL_DAYS_PER_RUN"] = str(args.days_per_run)
        port = free_port()
        log(f"starting dagster dev on {HOST}:{port} (DAGSTER_HOME={home})")
        dev = Dev(env, port)
        repo = dev.wait_ready(timeout=240)
        measured_asset = account_asset(names[0]) if multi else (RAW_ASSET,)
        nodes = dev.gql(ASSET_QUERY, {"assets": [{"path": list(measured_asset)}]})["assetNodes"]
        if len(nodes) != 1:
            raise RuntimeError(f"the code location has no asset {'/'.join(measured_asset)} (asset nodes: {nodes})")
        policy = nodes[0]["backfillPolicy"]
        setup = {
            "days": args.days, "records": args.records, "rate": args.rate,
            "invalidate_on_mint": not args.no_invalidate_on_mint,
            "days_per_run_env": env.get("ZOOM_BACKFILL_DAYS_PER_RUN"),
            "pool_limit": ((config.get("concurrency") or {}).get("pools") or {}).get("default_limit"),
            "max_concurrent_runs": ((config.get("concurrency") or {}).get("runs") or {}).get("max_concurrent_runs"),
            "backfill_policy": policy["description"] if policy else "none",
            "location": repo[0], "repository": repo[1], "accounts": names,
        }
        log(f"ready: location {repo[0]}, backfill policy {setup['backfill_policy']}, pool {setup['pool_limit']}")

        fixed = measure_fixed(dev, sim, fixed_day, args.timeout, measured_asset)
        if not fixed["ok"]:  # nothing else can work
            raise RuntimeError(f"the fixed-latency backfill ended {fixed['status']}: {fixed['failure_reasons']}")
        scenarios = []
        if multi:
            sc = measure_accounts(dev, sim, s3, blocks["accounts"], names, args, fixed)
            scenarios.append(sc)
            for a in sc["per_account"]:
                if a["status"] != "COMPLETED_SUCCESS" or set(a["run_statuses"]) != {"SUCCESS"}:
                    failures.append(f"accounts/{a['account']}: backfill {a['status']}, runs {a['run_statuses']}")
                if a["landed"]["mismatched"]:
                    failures.append(f"accounts/{a['account']}: days not landed exactly: {a['landed']['mismatched']}")
            blocks = {}
        for name, days in blocks.items():
            sc = measure_scenario(name, dev, sim, s3, days, args, fixed, repo, today if name == "sensor" else None)
            scenarios.append(sc)
            if sc["status"] != "COMPLETED_SUCCESS" or set(sc["run_statuses"]) != {"SUCCESS"}:
                failures.append(f"{name}: backfill {sc['status']}, runs {sc['run_statuses']}")
            if sc["landed"]["mismatched"]:
                failures.append(f"{name}: days not landed exactly: {sc['landed']['mismatched']}")
            if sc.get("today_run") and (sc["today_run"]["status"] != "SUCCESS" or not sc["today_run"]["exact"]):
                failures.append(f"{name}: today's run {sc['today_run']['status']}, exact {sc['today_run']['exact']}")
        results = {
            "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "load_before": load_before, "load_after": os.getloadavg()[0]},
            "setup": setup, "fixed": fixed, "scenarios": scenarios, "failures": failures,
            "aims": {"net_ratio_max": AIM_NET, "share_429_max": AIM_429_SHARE,
                     "stated_for": dict(zip(("days", "records", "rate"), AIM_SHAPE, strict=True))},
            "bench_seconds": round(time.perf_counter() - started, 1),
        }
        print(render(results))
        print(f"\n(total {results['bench_seconds']:.0f} s; JSON: {args.out}; logs: {LOG_DIR})")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        for f in failures:
            print(f"FAILED: {f}", file=sys.stderr)
        return 1 if failures else 0
    except KeyboardInterrupt:
        log("interrupted: stopping child processes")
        return 130
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        if dev is not None:
            tail = Path(dev.proc.log_path).read_text(errors="replace").splitlines()[-30:]
            log("last lines of the dagster dev log:\n  " + "\n  ".join(tail))
        return 1
    finally:
        cleanup()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
