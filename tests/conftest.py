"""Real local servers for the tests: an S3 server process (moto) and the Zoom simulator, on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest

from zoom_pipeline.simulator import ZoomSimulator

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

    from zoom_pipeline.assets import zoom_operation_logs, zoom_operation_logs_udm

    for asset in (zoom_operation_logs, zoom_operation_logs_udm):
        monkeypatch.setattr(asset.op, "_retry_policy", dg.RetryPolicy(max_retries=2, delay=0.01))
