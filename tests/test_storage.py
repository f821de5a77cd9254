"""Append-only stores: a key is created once; repeating the same write is harmless, a different one is refused."""

import os

import pytest
from dagster_aws.s3 import S3Resource

from tests.helpers import days_ago, materialize, resources, s3_day
from zoom_pipeline import storage
from zoom_pipeline.storage import KeyTaken, LocalStore, S3Store, file_sha256, s3_client


@pytest.fixture(params=[pytest.param("s3", marks=pytest.mark.io), "local"])  # s3: a server, so `io`
def store(request, tmp_path):
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        return S3Store(s3, request.getfixturevalue("bucket"))
    return LocalStore(tmp_path / "store")


def write(tmp_path, name: str, data: bytes) -> tuple[str, str]:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path), file_sha256(str(path))


def test_put_new_creates_once_and_repeats_are_idempotent(store, tmp_path):
    path, sha = write(tmp_path, "a", b"first")
    store.put_new("p/2026/11/20/x.json.gz", path, content_type="application/gzip", sha256=sha)
    # The same bytes again: what a retry after a lost success response does. Not a second copy.
    store.put_new("p/2026/11/20/x.json.gz", path, content_type="application/gzip", sha256=sha)
    other, other_sha = write(tmp_path, "b", b"second")
    with pytest.raises(KeyTaken):
        store.put_new("p/2026/11/20/x.json.gz", other, content_type="application/gzip", sha256=other_sha)
    assert store.list("p/2026/11/20/") == ["p/2026/11/20/x.json.gz"]
    with store.open("p/2026/11/20/x.json.gz") as body:
        assert body.read() == b"first"


def test_s3_conditional_write_holds_for_multipart_uploads(s3, bucket, tmp_path):
    store = S3Store(s3, bucket)
    store.transfer_config.multipart_threshold = 5 << 20
    store.transfer_config.multipart_chunksize = 5 << 20
    big, sha = write(tmp_path, "big", b"x" * (11 << 20))
    store.put_new("k/big.json.gz", big, content_type="application/gzip", sha256=sha)
    assert s3.head_object(Bucket=bucket, Key="k/big.json.gz")["ContentLength"] == 11 << 20
    other, other_sha = write(tmp_path, "big2", b"y" * (11 << 20))
    with pytest.raises(KeyTaken):
        store.put_new("k/big.json.gz", other, content_type="application/gzip", sha256=other_sha)
    assert s3.get_object(Bucket=bucket, Key="k/big.json.gz")["Body"].read(1) == b"x"


def test_local_store_hides_interrupted_writes(tmp_path):
    store = LocalStore(tmp_path)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".tmp-abc").write_bytes(b"partial")
    assert store.list("p/") == []


def test_the_store_client_is_built_once_per_configuration_and_environment(aws_env, monkeypatch, tmp_path):
    first = s3_client(S3Resource())
    assert s3_client(S3Resource()) is first
    assert s3_client(S3Resource(region_name="eu-west-1")) is not first  # another setting, another client
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-key")  # another identity from the standard chain
    second = s3_client(S3Resource())
    assert second is not first
    # Keys rotated in the credentials file while a code server runs: its sensors get the new ones.
    credentials = tmp_path / "credentials"
    credentials.write_text("[default]\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    third = s3_client(S3Resource())
    assert s3_client(S3Resource()) is third is not second
    os.utime(credentials, ns=(0, 1))
    assert s3_client(S3Resource()) is not third


def test_the_client_cache_holds_no_secret_and_stays_small(aws_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cache-must-not-hold-this-secret")
    s3_client(S3Resource(aws_session_token="nor-this-token"))
    for n in range(storage.MAX_CLIENTS + 1):
        s3_client(S3Resource(region_name=f"eu-test-{n}"))
    assert "secret" not in repr(storage._clients) and "token" not in repr(storage._clients)
    assert len(storage._clients) == storage.MAX_CLIENTS


def test_a_run_builds_no_s3_client_of_its_own_and_its_writes_stay_create_only(
    sim, zoom_env, bucket, s3, tmp_path, monkeypatch
):
    """dagster-aws parses botocore's S3 model at every get_client(); the store's steps and outputs share one."""
    day = days_ago(2)
    sim.generate_day(day, 350, seed=4)
    s3_client(S3Resource())  # the process's client for this configuration, as an earlier run leaves it
    built = []
    real = S3Resource.get_client
    monkeypatch.setattr(S3Resource, "get_client", lambda self: built.append(1) or real(self))
    for _ in range(2):  # the second run lists again and finds the day stored
        assert materialize(day, resources(zoom_env, bucket=bucket), udm=True).success
    assert built == []
    assert sum(len(lines) - 1 for lines in s3_day(s3, bucket, day).values()) == 350

    # Two stores wrapping one shared client still refuse to replace an object (the condition is sent once).
    path, sha = write(tmp_path, "a", b"first")
    other, other_sha = write(tmp_path, "b", b"second")
    client = s3_client(S3Resource())
    S3Store(client, bucket).put_new("k/x", path, content_type="application/gzip", sha256=sha)
    with pytest.raises(KeyTaken):
        S3Store(client, bucket).put_new("k/x", other, content_type="application/gzip", sha256=other_sha)
