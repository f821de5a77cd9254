"""Append-only object stores: S3 (the product) and a local directory (the embedded default).

Both give the same three operations, and neither can overwrite: `put_new` creates an object only if
its key is free (S3 `If-None-Match: *`, a hard link locally), which is what makes part names safe
against a racing run and a retried write whose success response was lost.
"""

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Protocol

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

SHA256_META = "sha256"


class KeyTaken(Exception):
    """The key already holds a different object: another writer got there first."""


class ObjectStore(Protocol):
    def uri(self, key: str) -> str: ...

    def list(self, prefix: str) -> list[str]: ...

    def open(self, key: str) -> IO[bytes]: ...

    def put_new(self, key: str, path: str, *, content_type: str, sha256: str) -> None: ...


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MAX_CLIENTS = 16
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def s3_client(resource) -> Any:
    """`resource.get_client()` (a dagster-aws S3Resource), built once per configuration in this process.

    dagster-aws builds a new boto3 session at every call and with it parses botocore's S3 model again
    (a tenth of a second of CPU each time), and a run asks at every step, the IO manager at every output.
    boto3 clients are thread-safe, and one built from the standard chain refreshes expiring credentials
    itself. The key is the resource's settings, the AWS_* environment the chain reads (endpoint, profile,
    keys) and when the shared config and credentials files last changed, so a changed setting or rotated
    keys get a client of their own (a long-lived code server's sensors included); it stays in memory only.
    """
    aws_env = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    files = [os.environ.get("AWS_CONFIG_FILE", "~/.aws/config"),
             os.environ.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials")]
    changed = [_mtime(os.path.expanduser(path)) for path in files]
    # The pid too: a forked child must not share its parent's connection pool. Hashed: the settings and
    # the environment hold secrets, which a dump of this module's state must not show.
    settings = (os.getpid(), type(resource).__name__, sorted(resource.model_dump().items()), aws_env, changed)
    key = hashlib.sha256(repr(settings).encode()).hexdigest()
    with _clients_lock:
        if key not in _clients:
            if len(_clients) >= MAX_CLIENTS:  # the oldest goes: keys rotated many times over a long life
                del _clients[next(iter(_clients))]
            _clients[key] = resource.get_client()
        return _clients[key]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class S3Store:
    """An S3 bucket through a boto3 client (standard credential chain, AWS_ENDPOINT_URL honoured)."""

    def __init__(self, client, bucket: str, *, sse_kms_key_id: str | None = None):
        self.client = client
        self.bucket = bucket
        self.sse_kms_key_id = sse_kms_key_id
        # boto3's managed transfer has no IfNoneMatch argument; add the condition to the two calls
        # that create objects (single PUT, and the completion of a multipart upload).
        # (unique ids: a shared client (`s3_client`) gets each handler once, however many stores wrap it)
        events = client.meta.events
        for operation in ("PutObject", "CompleteMultipartUpload"):
            events.register(f"before-parameter-build.s3.{operation}", _if_none_match,
                            unique_id=f"zoom_pipeline.if_none_match.{operation}")
        # Parts above 16 MiB go multipart, 8 MiB chunks, two in flight: at most ~16 MiB buffered.
        self.transfer_config = TransferConfig(
            multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=2
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out

    def open(self, key: str) -> IO[bytes]:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def put_new(self, key: str, path: str, *, content_type: str, sha256: str) -> None:
        extra = {"ContentType": content_type, "Metadata": {SHA256_META: sha256}}
        if self.sse_kms_key_id:
            extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.sse_kms_key_id}
        try:
            self.client.upload_file(path, self.bucket, key, ExtraArgs=extra, Config=self.transfer_config)
        except S3UploadFailedError as exc:  # the managed transfer wraps the ClientError of its workers
            cause = exc.__cause__ or exc.__context__
            if not (isinstance(cause, ClientError) and _error_code(cause) in _KEY_TAKEN_CODES):
                raise
            # The key exists (or a racing write of it is in flight: 409). If it holds our bytes, an
            # earlier attempt of this very write succeeded and only its response was lost: that is
            # success, not a second copy.
            try:
                head = self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as missing:
                if _error_code(missing) not in {"404", "NoSuchKey", "NotFound"}:
                    raise
                raise KeyTaken(key) from None  # the racing write has not completed yet
            if head.get("Metadata", {}).get(SHA256_META) != sha256:
                raise KeyTaken(key) from None


# 412: the key exists; 409: a concurrent conditional write to the same key is in flight.
_KEY_TAKEN_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


def _if_none_match(params, **_):
    params.setdefault("IfNoneMatch", "*")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class LocalStore:
    """A directory laid out exactly like the bucket: `<root>/<key>`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()

    def uri(self, key: str) -> str:
        return (self.root / key).as_uri()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        out = []
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.startswith(".tmp-"):
                    continue  # an interrupted write: never an object
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    def open(self, key: str) -> IO[bytes]:
        return open(self.root / key, "rb")

    def put_new(self, key: str, path: str, *, content_type: str, sha256: str) -> None:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then hard-link: the object appears whole or not at all, and a
        # link cannot replace an existing file.
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, final)
            except FileExistsError:
                if file_sha256(str(final)) != sha256:
                    raise KeyTaken(key) from None
        finally:
            os.unlink(tmp)
