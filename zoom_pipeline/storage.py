"""Append-only object stores: S3 (the product) and a local directory (the embedded default).

Both give the same three operations, and neither can overwrite: `put_new` creates an object only if
its key is free (S3 `If-None-Match: *`, a hard link locally), which is what makes part names safe
against a racing run and a retried write whose success response was lost.
"""

import functools
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Protocol

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.exceptions import ClientError
from botocore.handlers import disable_signing
from botocore.loaders import JSONFileLoader, Loader

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


@functools.cache
def _parsed(file_path: str):
    return JSONFileLoader().load_file(file_path)


@functools.cache
def _exists(file_path: str) -> bool:
    return JSONFileLoader().exists(file_path)


class _ParsedOnce(JSONFileLoader):
    """botocore's model files, each looked up and parsed once per process for every session's loader."""

    def exists(self, file_path):
        return _exists(file_path)

    def load_file(self, file_path):
        return _parsed(file_path)


_PARSED_ONCE = _ParsedOnce()
_services: dict[tuple, list[str]] = {}


class _SharedModels(Loader):
    """botocore's Loader on the files above; the list of services (a walk of every service's folder that
    each new loader makes before it loads a model) is also made once per set of search paths."""

    def list_available_services(self, type_name):
        key = (tuple(self.search_paths), type_name)
        if key not in _services:
            _services[key] = super().list_available_services(type_name)
        return list(_services[key])


def s3_client(*, profile_name: str | None = None, unsigned: bool = False, **settings) -> Any:
    """A boto3 S3 client in a boto3 session of its own, as dagster-aws builds one: credentials (the standard
    chain, a credential process, a role), endpoint, region and proxies are resolved afresh for each client.

    Only botocore's model files are shared: every new session looks them up and parses the S3 model again
    (a tenth of a second of CPU), and the store asks for a client at every step and output, a sensor at
    every tick.
    `settings` are `boto3.client`'s (region_name, endpoint_url, aws_access_key_id, config, ...).
    """
    core = botocore.session.get_session()
    data_path = core.get_config_variable("data_path")  # AWS_DATA_PATH, read as botocore's create_loader reads it
    extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else []
    core.register_component("data_loader", _SharedModels(extra_search_paths=extra, file_loader=_PARSED_ONCE))
    client = boto3.session.Session(botocore_session=core, profile_name=profile_name).client("s3", **settings)
    if unsigned:
        client.meta.events.register("choose-signer.s3.*", disable_signing)
    return client


class S3Store:
    """An S3 bucket through a boto3 client (standard credential chain, AWS_ENDPOINT_URL honoured)."""

    def __init__(self, client, bucket: str, *, sse_kms_key_id: str | None = None):
        self.client = client
        self.bucket = bucket
        self.sse_kms_key_id = sse_kms_key_id
        # boto3's managed transfer has no IfNoneMatch argument; add the condition to the two calls
        # that create objects (single PUT, and the completion of a multipart upload).
        events = client.meta.events
        events.register("before-parameter-build.s3.PutObject", _if_none_match)
        events.register("before-parameter-build.s3.CompleteMultipartUpload", _if_none_match)
        # Parts above 16 MiB go multipart, 8 MiB chunks, two in flight: at most ~16 MiB buffered.
        # "classic": the CRT client (picked when awscrt is installed) builds a client of its own, without the
        # handlers above.
        self.transfer_config = TransferConfig(
            multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=2,
            preferred_transfer_client="classic",
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
        for wait in (*_IN_FLIGHT_WAITS, None):
            try:
                self._upload(path, key, extra)
                return
            except ClientError as exc:
                code = _error_code(exc)
                if code in _IN_FLIGHT_CODES and wait is not None:
                    # Another conditional write of this key is in flight (perhaps our own attempt that timed
                    # out): S3 asks for a retry, and the retry's answer says which write won.
                    time.sleep(wait)
                    continue
                # NoSuchUpload: a multipart completion retried after its first answer was lost finds its
                # upload already completed (or aborted: then the key is not ours and the error stands).
                if code not in _KEY_TAKEN_CODES | _IN_FLIGHT_CODES and code != "NoSuchUpload":
                    raise
                if self._holds(key, sha256):
                    return  # an earlier attempt of this very write succeeded and only its answer was lost
                if code == "NoSuchUpload":
                    raise
                raise KeyTaken(key) from None  # the key holds other bytes, or a write of it is still in flight

    def _upload(self, path: str, key: str, extra: dict) -> None:
        # boto3's managed transfer, driven directly: `client.upload_file` would wrap the ClientError in an
        # S3UploadFailedError, leaving its code to be dug out of the exception chain.
        with create_transfer_manager(self.client, self.transfer_config) as transfer:
            transfer.upload(path, self.bucket, key, extra_args=extra).result()

    def _holds(self, key: str, sha256: str) -> bool:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as missing:
            if _error_code(missing) not in {"404", "NoSuchKey", "NotFound"}:
                raise
            return False
        return head.get("Metadata", {}).get(SHA256_META) == sha256


# 412: the key exists. 409: a concurrent conditional write to the same key is in flight; retried after
# these waits (7.75 s in all), then taken as the key's.
_KEY_TAKEN_CODES = {"PreconditionFailed", "412"}
_IN_FLIGHT_CODES = {"ConditionalRequestConflict", "409"}
_IN_FLIGHT_WAITS = (0.25, 0.5, 1.0, 2.0, 4.0)


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
