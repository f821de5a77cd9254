"""Real local servers for the tests: an S3 server process (moto) and the Zoom simulator, on 127.0.0.1."""

import os
import subprocess
import sys
import time
import uuid
from itertools import zip_longest
from pathlib import Path

import boto3
import pytest

from tests.helpers import FAKE_AWS, REPO, SIM_SECRET, free_port, wait_for_port
from zoom_pipeline.simulator import ZoomSimulator
from zoom_pipeline.sources import SOURCES

# Fixtures that start or need a real local server or a Dagster instance: a test using any of them is marked
# `io` (as are the tests that start a process of their own), so that `make quick` (-m "not io") runs the
# pure core alone, in seconds.
IO_FIXTURES = {"s3_endpoint", "aws_env", "bucket", "s3", "sim", "zoom_env", "postgres", "services", "instance",
               "defs", "two_zooms"}


def pytest_collection_modifyitems(items):
    for item in items:
        if IO_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.io)
    # Tests that wait on a Dagster daemon's ticks (one to two minutes each, little CPU) start first, one per
    # worker, so their waits overlap the rest of the suite instead of ending it: `make test` deals tests out
    # one at a time after a first hand of two to each worker, so each daemon test is dealt with one other.
    daemon = [item for item in items if item.get_closest_marker("daemon")]
    rest = [item for item in items if not item.get_closest_marker("daemon")]
    first_hands = [item for pair in zip_longest(daemon, rest[:len(daemon)]) for item in pair if item]
    items[:] = first_hands + rest[len(daemon):]


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 server in its own process."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **FAKE_AWS},
    )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def aws_env(s3_endpoint, monkeypatch):
    """Point boto3's standard chain at the local S3 server, as a user would with AWS_ENDPOINT_URL."""
    for k, v in FAKE_AWS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


@pytest.fixture
def bucket(aws_env):
    name = f"zoom-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=aws_env).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(aws_env):
    return boto3.client("s3", endpoint_url=aws_env)


@pytest.fixture
def sim():
    with ZoomSimulator(client_secret=SIM_SECRET) as simulator:
        yield simulator


@pytest.fixture
def zoom_env(sim, monkeypatch):
    """The pipeline's Zoom settings, pointed at the simulator."""
    env = {
        "ZOOM_ACCOUNT_ID": sim.account_id,
        "ZOOM_CLIENT_ID": sim.client_id,
        "ZOOM_CLIENT_SECRET": SIM_SECRET,
        "ZOOM_API_BASE_URL": sim.base_url,
        "ZOOM_OAUTH_TOKEN_URL": sim.token_url,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture(autouse=True)
def fast_step_retries(monkeypatch):
    """Keep Dagster's step retries (the behaviour under test) but not their production back-off."""
    import dagster as dg

    from zoom_pipeline.assets import SOURCE_ASSETS

    for asset in (a for assets in SOURCE_ASSETS.values() for a in assets):
        monkeypatch.setattr(asset.op, "_retry_policy", dg.RetryPolicy(max_retries=2, delay=0.01))


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL 15 on 127.0.0.1 (Debian's binaries, run as the `postgres` user).

    Yields the DAGSTER_PG_* variables that deploy/dagster.yaml reads.
    """
    import shutil
    import tempfile

    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL 15 is not installed under {PG_BIN}")
    # pytest's tmp_path is private to its owner; the postgres user needs a directory of its own.
    root = Path(tempfile.mkdtemp(prefix="zoom-pg-"))
    as_postgres = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()
    pg_ctl = [*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data)]
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    try:
        initdb = [str(PG_BIN / "initdb"), "-D", str(data), "-U", "dagster", "-A", "trust", "--no-sync"]
        subprocess.run([*as_postgres, *initdb], check=True, capture_output=True)
        start = [*pg_ctl, "-l", str(root / "server.log"), "-w", "-o", options, "start"]
        subprocess.run(start, check=True, capture_output=True)
        createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dagster", "dagster"]
        subprocess.run(createdb, check=True, capture_output=True)
        yield {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(port),
            "DAGSTER_PG_USER": "dagster",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_DB": "dagster",
        }
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def services(tmp_path):
    """Start long-running commands (dagster-daemon, dagster dev) and never leak them.

    `services.start(cmd, env=..., name=...)` runs `cmd` in its own process group with SIGINT and SIGTERM
    at their defaults: Dagster's CLIs copy SIGINT's disposition onto SIGTERM, and a parent that ignores
    SIGINT (a background job of a shell) would otherwise make them ignore SIGTERM too.
    `services.stop(proc)` sends SIGTERM and returns the seconds until exit (None if it had to be killed);
    `services.group_alive(proc)` says whether children outlived it. Output goes to `<tmp_path>/<name>.log`;
    teardown kills whatever is left.
    """
    import signal

    # A tiny wrapper rather than preexec_fn, which is unsafe in a process with threads (the simulator's).
    default_signals_then_exec = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "signal.signal(signal.SIGTERM, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"
    )

    class Services:
        def __init__(self):
            self.procs: list[subprocess.Popen] = []

        def start(self, cmd: list[str], *, env: dict, name: str) -> subprocess.Popen:
            log = open(tmp_path / f"{name}.log", "wb")
            proc = subprocess.Popen(
                [sys.executable, "-c", default_signals_then_exec, *cmd],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown can kill what it leaves
            )
            log.close()
            proc.log_path = tmp_path / f"{name}.log"
            self.procs.append(proc)
            return proc

        def stop(self, proc: subprocess.Popen, timeout: float = 20.0) -> float | None:
            if proc.poll() is not None:
                return 0.0
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
                return time.monotonic() - started
            except subprocess.TimeoutExpired:
                self.kill(proc)
                return None

        @staticmethod
        def group_alive(proc: subprocess.Popen, grace: float = 5.0) -> bool:
            """Whether any process of `proc`'s group (its children) is still running after `grace` s."""
            deadline = time.monotonic() + grace
            while True:
                try:
                    os.killpg(proc.pid, 0)
                except ProcessLookupError:
                    return False
                if time.monotonic() > deadline:
                    return True
                time.sleep(0.2)

        @staticmethod
        def kill(proc: subprocess.Popen) -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    running = Services()
    try:
        yield running
    finally:
        for proc in running.procs:
            running.stop(proc)
            running.kill(proc)  # whatever the group still holds


@pytest.fixture(params=SOURCES, ids=lambda source: source.name)
def source(request):
    """Each Zoom source in turn, for tests that hold for every source."""
    return request.param
