"""Append-only stores: a key is created once; repeating the same write is harmless, a different one is refused."""

import pytest

from zoom_pipeline.storage import KeyTaken, LocalStore, S3Store, file_sha256


@pytest.fixture(params=["s3", "local"])
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
