"""Append-only stores: a key is created once; repeating the same write is harmless, a different one is refused."""

import time
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError
from botocore.loaders import JSONFileLoader
from dagster_aws.s3 import S3Resource

from tests.helpers import CONFLICT, NO_SUCH_UPLOAD, HttpForwarder, days_ago, materialize, resources, s3_day
from zoom_pipeline import storage
from zoom_pipeline.day_store import store_client
from zoom_pipeline.storage import KeyTaken, LocalStore, S3Store, file_sha256


@pytest.fixture(params=[pytest.param("s3", marks=pytest.mark.io), pytest.param("s3, lagging", marks=pytest.mark.io),
                        "local"])  # s3: a server, so `io`
def store(request, tmp_path, monkeypatch):
    if request.param == "s3, lagging":
        # CI's failure under load, held open for every write: s3transfer wakes the caller before it stops
        # tracking a failed transfer, and its shutdown then re-raises the ClientError inside boto3's wrapping
        # S3UploadFailedError, which loses its cause; a taken key must still read as taken.
        from s3transfer.manager import TransferCoordinatorController

        untrack = TransferCoordinatorController.remove_transfer_coordinator
        monkeypatch.setattr(TransferCoordinatorController, "remove_transfer_coordinator",
                            lambda self, coordinator: time.sleep(0.3) or untrack(self, coordinator))
    if request.param.startswith("s3"):
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


@pytest.mark.io
def test_a_multipart_write_whose_completion_answer_was_lost_is_success_and_an_aborted_one_fails(
    s3_endpoint, aws_env, bucket, s3, tmp_path
):
    """The first CompleteMultipartUpload reaches S3 and its answer is lost; botocore retries it with the upload
    id that completion used up, and S3 answers 404 NoSuchUpload (moto would replay its 200: a proxy gives S3's
    answer). The key holds our bytes: success. An upload really gone, the key never written, still fails."""
    completed: set[str] = set()

    def lose_the_first_completion(command, target, forward):
        if command != "POST" or "uploadId=" not in target:
            return forward()
        if target in completed or "gone" in target:
            return NO_SUCH_UPLOAD
        given = forward()
        completed.add(target)
        return None if given[0] == 200 else given

    upstream = urlsplit(s3_endpoint)
    proxy = HttpForwarder(upstream=(upstream.hostname, upstream.port), answer=lose_the_first_completion)
    try:
        store = S3Store(boto3.client("s3", endpoint_url=proxy.url), bucket)
        store.transfer_config.multipart_threshold = 5 << 20
        store.transfer_config.multipart_chunksize = 5 << 20
        big, sha = write(tmp_path, "big", b"x" * (11 << 20))
        store.put_new("k/big.json.gz", big, content_type="application/gzip", sha256=sha)
        assert completed, "no completion went through the proxy"
        assert s3.head_object(Bucket=bucket, Key="k/big.json.gz")["Metadata"]["sha256"] == sha
        with pytest.raises(ClientError, match="NoSuchUpload"):
            store.put_new("k/gone.json.gz", big, content_type="application/gzip", sha256=sha)
    finally:
        proxy.close()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k/big.json.gz"]


@pytest.mark.io
def test_a_409_is_retried_until_the_write_in_flight_settles_and_then_taken_for_the_keys(
    s3_endpoint, aws_env, bucket, s3, tmp_path, monkeypatch
):
    """409: another conditional write of the key is in flight. put_new asks again after each wait; a key whose
    conflict never clears is KeyTaken after the last wait, having tried once more than there are waits."""
    monkeypatch.setattr(storage, "_IN_FLIGHT_WAITS", (0.01, 0.02, 0.04))
    puts: list[str] = []

    def conflicted(command, target, forward):
        if command == "PUT" and "stuck" in target:
            puts.append(target)
            return CONFLICT
        return forward()

    upstream = urlsplit(s3_endpoint)
    proxy = HttpForwarder(upstream=(upstream.hostname, upstream.port), answer=conflicted)
    try:
        store = S3Store(boto3.client("s3", endpoint_url=proxy.url), bucket)
        path, sha = write(tmp_path, "a", b"first")
        with pytest.raises(KeyTaken):
            store.put_new("k/stuck.json.gz", path, content_type="application/gzip", sha256=sha)
    finally:
        proxy.close()
    assert len(puts) == 4
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_local_store_hides_interrupted_writes(tmp_path):
    store = LocalStore(tmp_path)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / ".tmp-abc").write_bytes(b"partial")
    assert store.list("p/") == []


@pytest.mark.parametrize("settings", [{}, {"region_name": "eu-west-1", "max_attempts": 7},
                                      {"endpoint_url": "http://127.0.0.1:9", "use_unsigned_session": True}])
def test_the_store_client_is_what_dagster_aws_builds_and_parses_botocores_models_once(aws_env, monkeypatch,
                                                                                      settings):
    resource = S3Resource(**settings)
    ours, theirs = store_client(resource), resource.get_client()
    assert (ours.meta.region_name, ours.meta.endpoint_url) == (theirs.meta.region_name, theirs.meta.endpoint_url)
    assert ours.meta.config.retries == theirs.meta.config.retries
    signer = {"signing_name": "s3", "region_name": "us-east-1", "signature_version": "s3v4", "context": {}}
    assert [c.meta.events.emit_until_response("choose-signer.s3.ListObjectsV2", **signer)[1]
            for c in (ours, theirs)] in ([None, None], [UNSIGNED, UNSIGNED])  # signed as usual, or unsigned

    parsed, looked_up = [], []
    real_load, real_exists = JSONFileLoader._load_file, JSONFileLoader.exists
    monkeypatch.setattr(JSONFileLoader, "_load_file", lambda self, *a: parsed.append(a) or real_load(self, *a))
    monkeypatch.setattr(JSONFileLoader, "exists", lambda self, p: looked_up.append(p) or real_exists(self, p))
    again = store_client(resource)
    # A client of its own (credentials resolved afresh), with no model file parsed or looked up again.
    assert parsed == [] and looked_up == [] and again is not ours


def test_a_run_builds_no_s3_client_of_its_own_and_its_writes_stay_create_only(
    sim, zoom_env, bucket, s3, tmp_path, monkeypatch
):
    """dagster-aws parses botocore's S3 model at every get_client(); the store builds its clients on models
    parsed once per process."""
    day = days_ago(2)
    sim.generate_day(day, 350, seed=4)
    built = []
    real = S3Resource.get_client
    monkeypatch.setattr(S3Resource, "get_client", lambda self: built.append(1) or real(self))
    for _ in range(2):  # the second run lists again and finds the day stored
        assert materialize(day, resources(zoom_env, bucket=bucket), udm=True).success
    assert built == []
    assert sum(len(lines) - 1 for lines in s3_day(s3, bucket, day).values()) == 350

    # A store on such a client still refuses to replace an object.
    path, sha = write(tmp_path, "a", b"first")
    other, other_sha = write(tmp_path, "b", b"second")
    S3Store(store_client(S3Resource()), bucket).put_new("k/x", path, content_type="application/gzip", sha256=sha)
    with pytest.raises(KeyTaken):
        S3Store(store_client(S3Resource()), bucket).put_new("k/x", other, content_type="application/gzip",
                                                            sha256=other_sha)
