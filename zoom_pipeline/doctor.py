"""`zoom-pipeline doctor` (also `python -m zoom_pipeline.doctor`): is this deployment ready to collect?

It reads the configuration exactly as the definitions do (`config.load_accounts`, `config.build_resources`:
the resources runs use, their EnvVars resolved from the environment) and checks, per account:

- **Zoom credentials**: the Server-to-Server OAuth app mints a token (one token call);
- **each source's scope and plan**: the smallest report call, `page_size=1` for yesterday (UTC), one per
  source, with ZoomClient's own error sentences (missing scope, "No permission", daily limit);
- **S3**: the bucket answers a listing of the feed prefix with the pipeline's credentials (boto3's
  standard chain, `AWS_ENDPOINT_URL` honoured), and **create-only writes are honoured**: a probe object
  `<MANIFEST_S3_PREFIX>zoom-pipeline-doctor/probe-<uuid4>.txt` (beside the manifests, outside every feed
  prefix, where the writer's IAM policy may write) is written twice with `If-None-Match: *`; the second
  write must be refused. The probe is then deleted if the credentials may delete (the shipped writer
  policy may not: it is left in place and is safe to delete);
- **the feed prefixes hold only the pipeline's parts**: anything else would reach SecOps; Google's
  Lambda (its `state.json` and its `zoom-operationlogs-<uuid4>.json.gz` objects) is recognised, and the
  start date that follows from its cursor is printed;
- **the Dagster instance** (DAGSTER_HOME): storage, the account's pool limit, a running daemon, the
  start date against Zoom's six-month window, and what a backfill from it costs.

Each finding is one line beginning `ok`, `warn` or `FAIL`; the exit status is 1 when any FAIL was
printed. It spends one token call and one report call per source and account, writes nothing under a
feed prefix, never prints a secret (every line passes through `Report.redact`, and no traceback is
printed), and gives up on an unreachable host within seconds (5 s timeouts, at most two attempts).

`main(argv, env, out)` reads the settings from `env` (default: the process environment); boto3's
credential chain and the `{env: ...}` values of the instance's dagster.yaml always come from the process
environment, as they do for the runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

if TYPE_CHECKING:
    from zoom_pipeline.accounts import Account
    from zoom_pipeline.sources import Source

TIMEOUT_SECONDS = 5.0  # per HTTP request of the doctor (Zoom and S3)
ZOOM_ATTEMPTS = 2  # per Zoom call: one retry for a blip, never a retry storm
MAX_BACKOFF_SECONDS = 1.0  # the doctor never waits out a long Retry-After
DAEMON_FRESH_SECONDS = 300  # a daemon heartbeat younger than this counts as running
EXAMPLES = 5  # keys shown of a prefix's unexpected objects
PROBE_FOLDER = "zoom-pipeline-doctor/"
LAMBDA_CHAPTER = "the README's \"Replacing Google's Lambda\""
_UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
LAMBDA_OBJECT = re.compile(r"(\d{4})/(\d{2})/(\d{2})/zoom-operationlogs-" + _UUID4 + r"\.json\.gz")
_KEY_TAKEN = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


# ---- the report ------------------------------------------------------------------------------------


class Report:
    """Findings, one line each, written as they are found; every line is scrubbed of known secrets."""

    LEVELS = ("ok", "warn", "FAIL")

    def __init__(self, out: IO[str], *, several_accounts: bool = False):
        self.out = out
        self.several = several_accounts
        self.secrets: set[str] = set()
        self.counts = dict.fromkeys(self.LEVELS, 0)

    def secret(self, value: str | None) -> None:
        """Never print `value` (short values are left alone: they would mangle ordinary words)."""
        if value and len(value) >= 8:
            self.secrets.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def add(self, level: str, subject: str, text: str, account: Account | None = None) -> None:
        assert level in self.LEVELS
        self.counts[level] += 1
        who = f"{account.name or 'default'}: " if self.several and account is not None else ""
        line = f"{level:<4} " + " ".join(f"{who}{subject}: {text}".split())  # one line, whatever a message held
        self.out.write(self.redact(line) + "\n")
        self.out.flush()

    @property
    def failed(self) -> bool:
        return self.counts["FAIL"] > 0


# ---- why a host cannot be reached ---------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it wraps (causes, contexts, urllib3 reasons, botocore's `error`)."""
    seen: set[int] = set()
    out: list[BaseException] = []
    stack: list[Any] = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        kwargs = getattr(e, "kwargs", None)
        if isinstance(kwargs, dict):
            stack.append(kwargs.get("error"))
    return out


def why_unreachable(exc: BaseException, timeout: float) -> str:
    """What kept a connection from working, in a few words (DNS, refused, timeout, TLS, proxy ...)."""
    chain = _chain(exc)
    names = " ".join(type(e).__name__ for e in chain)
    for e in chain:
        if isinstance(e, socket.gaierror):
            return f"its name does not resolve ({e.strerror or e})"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused: nothing listens on that port"
    if "ProxyError" in names:
        return "the proxy (HTTPS_PROXY / HTTP_PROXY) could not be reached or refused the connection"
    if "ReadTimeout" in names:
        return f"it took the connection but sent no answer within {timeout:g} s"
    if any(isinstance(e, TimeoutError) for e in chain) or "Timeout" in names:
        return f"no connection within {timeout:g} s (a firewall, a wrong address, or a proxy that is needed)"
    for e in chain:
        if isinstance(e, ssl.SSLError):
            return f"the TLS handshake failed ({e.reason or e})"
    if any(isinstance(e, ConnectionResetError) for e in chain):
        return "the connection was reset"
    for e in chain:
        if isinstance(e, OSError) and e.strerror:
            return e.strerror[:1].lower() + e.strerror[1:]
    return type(exc).__name__


def host_of(url: str) -> str:
    """`host:port` of `url` (the port only when the URL gives one), never a user:pass@ part."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


# ---- configuration ------------------------------------------------------------------------------------


def _resolve(value: Any, env: Mapping[str, str]) -> Any:
    """A resource field as a run sees it: an EnvVar is the variable's value in `env`."""
    import dagster as dg

    if isinstance(value, dg.EnvVar):
        return env.get(value.env_var_name) or ""
    return value


def _var_of(value: Any) -> str | None:
    import dagster as dg

    return value.env_var_name if isinstance(value, dg.EnvVar) else None


@dataclass
class AccountSetup:
    """One account's resources, resolved."""

    account: Account
    zoom: Any  # the ZoomClient resource of the definitions (EnvVar fields)
    store: Any  # the ZoomStore resource of the definitions
    bucket: str = ""
    prefixes: dict[str, str] = field(default_factory=dict)  # every prefix setting -> its prefix
    lambda_cursor: date | None = None  # the earliest cursor of Google's Lambda found in its feed prefixes


def _setting_name(account: Account, env_name: str, file_key: str) -> str:
    """How a message names a setting: the accounts file's key when the account's entry sets it."""
    return f"{file_key} of account {account.name}" if getattr(account, file_key, None) else env_name


# ---- the checks ----------------------------------------------------------------------------------------


class _RecordingSession(requests.Session):
    """requests' Session keeping the last connection error, so the doctor can say why a host was out of
    reach (ZoomClient only names the exception's class)."""

    last_error: BaseException | None = None

    def send(self, request, **kwargs):
        try:
            return super().send(request, **kwargs)
        except requests.RequestException as exc:
            self.last_error = exc
            raise


@functools.cache
def _doctor_client_class():
    from zoom_pipeline.zoom_client import ZoomClient

    class DoctorZoomClient(ZoomClient):
        """ZoomClient with the doctor's patience: a Retry-After or backoff never waits more than a second."""

        def _sleep_backoff(self, attempt, retry_after=None, cancelled=None):
            time.sleep(min(MAX_BACKOFF_SECONDS, self.backoff_base_seconds * (2**attempt)))

    return DoctorZoomClient


def check_zoom(report: Report, setup: AccountSetup, env: Mapping[str, str], day: str) -> None:
    """The credentials mint a token; each source answers its smallest report call."""
    from zoom_pipeline.constants import DEFAULT_API_BASE_URL
    from zoom_pipeline.sources import SOURCES
    from zoom_pipeline.zoom_client import PassStats, ZoomDailyLimitError, ZoomError, ZoomRetryableError

    account, zoom = setup.account, setup.zoom
    creds = {}
    missing = []
    for what, attr in (("ACCOUNT_ID", "account_id"), ("CLIENT_ID", "client_id"), ("CLIENT_SECRET", "client_secret")):
        raw = getattr(zoom, attr)
        value = _resolve(raw, env)
        creds[attr] = value
        if not value:
            missing.append(_var_of(raw) or account.env_var(what))
    report.secret(creds["client_secret"])
    if missing:
        report.add("FAIL", "zoom credentials", f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                   f"not set, so every run of {account.label} fails before calling Zoom; set "
                   f"{'it' if len(missing) == 1 else 'them'} from the Server-to-Server OAuth app's credentials.",
                   account)
        for source in SOURCES:
            report.add("warn", f"zoom {source.title}", "not checked: the credentials are incomplete.", account)
        return
    api_base_url = _resolve(zoom.api_base_url, env)
    token_url = _resolve(zoom.oauth_token_url, env)
    api_path = urlsplit(api_base_url).path.rstrip("/")
    client = _doctor_client_class()(
        **creds,
        api_base_url=api_base_url,
        oauth_token_url=token_url,
        page_size=1,
        timeout=min(TIMEOUT_SECONDS, float(zoom.timeout)),
        max_attempts=ZOOM_ATTEMPTS,
        backoff_base_seconds=0.2,
        backoff_max_seconds=MAX_BACKOFF_SECONDS,
        account_store="memory",  # the doctor's calls neither take the runs' pace nor their token
        account_name=zoom.account_name,
    )
    session = _RecordingSession()
    session.headers["Accept"] = "application/json"
    client._state.session = session
    timeout = client.timeout
    try:
        started = time.monotonic()
        minted = False
        try:
            session.last_error = None
            client.authenticate()
            minted = True
        except ZoomRetryableError as exc:
            if session.last_error is not None:
                name = _setting_name(account, "ZOOM_OAUTH_TOKEN_URL", "oauth_token_url")
                text = (f"cannot reach {host_of(token_url)} ({name} {_shown(token_url)}): "
                        f"{why_unreachable(session.last_error, timeout)}; {ZOOM_ATTEMPTS} attempts in "
                        f"{time.monotonic() - started:.1f} s. Check the URL, DNS, the firewall or the proxy.")
            else:
                text = str(exc)
            report.add("FAIL", "zoom credentials", text, account)
        except ZoomError as exc:  # one sentence naming the account's variables (ZoomClient._credential_error)
            report.add("FAIL", "zoom credentials", str(exc), account)
        else:
            report.secret(client._state.token)
            vars_ = ", ".join(account.env_var(w) for w in ("ACCOUNT_ID", "CLIENT_ID", "CLIENT_SECRET"))
            report.add("ok", "zoom credentials", f"{vars_} mint an access token at {host_of(token_url)}.", account)
        if not minted:
            for source in SOURCES:
                report.add("warn", f"zoom {source.title}", "not checked: no access token.", account)
            return
        daily_limit: datetime | None = None
        unreachable = False
        for source in SOURCES:
            subject = f"zoom {source.title}"
            if daily_limit is not None:
                report.add("FAIL", subject, "not checked: Zoom's daily API limit for the account is spent until "
                           f"{daily_limit:%Y-%m-%dT%H:%M:%SZ}.", account)
                continue
            if unreachable:
                report.add("FAIL", subject, f"not checked: {host_of(api_base_url)} cannot be reached (above).", account)
                continue
            call = f"GET {api_path}/{source.path}?from={day}&to={day}&page_size=1"
            started = time.monotonic()
            session.last_error = None
            try:
                page, _ = client._get_page(source, day, None, PassStats(), 1, None, 1)
            except ZoomDailyLimitError as exc:
                daily_limit = exc.reset_at
                report.add("FAIL", subject, f"{call}: Zoom's daily API limit for the account is spent (every app on "
                           "the account shares it), so no run can call Zoom before it resets at "
                           f"{exc.reset_at:%Y-%m-%dT%H:%M:%SZ}; run the doctor again after that.", account)
            except ZoomRetryableError as exc:
                if session.last_error is not None:
                    unreachable = True
                    name = _setting_name(account, "ZOOM_API_BASE_URL", "api_base_url")
                    text = (f"{call}: cannot reach {host_of(api_base_url)} ({name} {_shown(api_base_url)}): "
                            f"{why_unreachable(session.last_error, timeout)}; {ZOOM_ATTEMPTS} attempts in "
                            f"{time.monotonic() - started:.1f} s. Check the URL, DNS, the firewall or the proxy.")
                else:
                    text = f"{call}: {str(exc).removesuffix(' Nothing of the day was written by this pass.')}"
                report.add("FAIL", subject, text, account)
            except ZoomError as exc:  # scope (4711), "No permission" (200), retention: ZoomClient._request_error
                hint = ""
                if "HTTP 404," in str(exc):  # something answers there, but not Zoom's API
                    name = _setting_name(account, "ZOOM_API_BASE_URL", "api_base_url")
                    hint = (f" {host_of(api_base_url)} does not serve this report: check {name} "
                            f"({_shown(api_base_url)}; Zoom's is {DEFAULT_API_BASE_URL}).")
                report.add("FAIL", subject, f"{call}: {exc}{hint}", account)
            else:
                records = page[source.records_key]
                more = bool(page.get("next_page_token"))
                held = (f"{len(records)} record{'s' if len(records) != 1 else ''}" +
                        (" and more pages to follow" if more else ""))
                report.add("ok", subject, f"{call} answered page 1 with {held}: the scope {source.scope} "
                           "and the plan allow it.", account)
    finally:
        client.close()
        session.close()


def _shown(url: str) -> str:
    from zoom_pipeline.settings import shown_url

    return shown_url(url)


# ---- S3 ----------------------------------------------------------------------------------------------


def s3_client(store: Any, env: Mapping[str, str]):
    """The client `ZoomStore` builds from its S3Resource (same profile, region, endpoint and credentials:
    boto3's standard chain, AWS_ENDPOINT_URL honoured), with the doctor's short timeouts and a single retry."""
    from botocore.config import Config

    from zoom_pipeline.day_store import store_client

    return store_client(
        store.s3,
        resolve=lambda value: _resolve(value, env) or None,
        config=Config(connect_timeout=TIMEOUT_SECONDS, read_timeout=TIMEOUT_SECONDS, retries={"max_attempts": 1}),
    )


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _endpoint(client, env: Mapping[str, str]) -> str:
    url = client.meta.endpoint_url
    given = next((name for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL") if env.get(name)), None)
    return f"{host_of(url)} ({given})" if given else host_of(url)


def _s3_problem(exc: BaseException, bucket: str, what: str, endpoint: str, client) -> str:
    """One sentence for an S3 failure: unreachable, no credentials, no bucket, denied ..."""
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectTimeoutError as BotoConnectTimeout

    if isinstance(exc, (EndpointConnectionError, BotoConnectTimeout, ReadTimeoutError, ConnectionClosedError)):
        return (f"cannot reach {endpoint}: {why_unreachable(exc, TIMEOUT_SECONDS)}. Check AWS_ENDPOINT_URL / the "
                "region, DNS, the firewall or the proxy.")
    if isinstance(exc, NoCredentialsError):
        return ("boto3 found no AWS credentials in its standard chain (AWS_PROFILE, AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a web identity, the instance or task role); give the runs the same ones.")
    code = _error_code(exc)
    region = client.meta.region_name
    hints = {
        "NoSuchBucket": f"the bucket {bucket} does not exist at {endpoint}; check S3_BUCKET",
        "AccessDenied": (f"the pipeline's credentials may not {what} (AccessDenied); give them "
                         "deploy/iam/zoom-pipeline-writer.json with this bucket and these prefixes"),
        "InvalidAccessKeyId": "S3 does not know the access key id of the pipeline's credentials (InvalidAccessKeyId)",
        "SignatureDoesNotMatch": ("S3 refused the secret access key of the pipeline's credentials "
                                  "(SignatureDoesNotMatch)"),
        "ExpiredToken": "the pipeline's AWS session token has expired (ExpiredToken)",
        "PermanentRedirect": f"the bucket {bucket} is in another region than {region} (PermanentRedirect); set "
                             "AWS_REGION / AWS_DEFAULT_REGION to its region",
        "AuthorizationHeaderMalformed": f"the bucket {bucket} is in another region than {region}; set AWS_REGION "
                                        "to its region",
    }
    if code in hints:
        return hints[code] + "."
    return f"S3 at {endpoint} refused to {what}: {code or type(exc).__name__}: {exc}."


def _list(client, bucket: str, prefix: str) -> Iterator[dict]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def check_s3(report: Report, setup: AccountSetup, setups: list[AccountSetup], env: Mapping[str, str]) -> None:
    """The bucket answers, create-only writes are refused the second time, and the feed prefixes hold
    only the pipeline's parts."""
    from zoom_pipeline.sources import SOURCES

    account, store = setup.account, setup.store
    if not setup.bucket:
        local = os.path.abspath(_resolve(store.local_dir, env))
        report.add("warn", "s3", f"S3_BUCKET is not set, so days go to the local directory {local} (LOCAL_STORE_DIR), "
                   "not to a bucket a SecOps feed can read; S3 was not checked.", account)
        return
    client = s3_client(store, env)
    creds = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if creds is not None:
        for attr in ("access_key", "secret_key", "token"):
            report.secret(getattr(creds, attr, None))
    endpoint = _endpoint(client, env)
    bucket = setup.bucket
    first = SOURCES[0]
    feed = setup.prefixes[first.prefix[0]]
    try:
        client.list_objects_v2(Bucket=bucket, Prefix=feed, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one finding
        report.add("FAIL", "s3 bucket", _s3_problem(exc, bucket, f"list s3://{bucket}/{feed}", endpoint, client),
                   account)
        report.add("warn", "s3 conditional writes", "not checked: the bucket cannot be listed.", account)
        for source in SOURCES:
            report.add("warn", f"feed prefix {setup.prefixes[source.prefix[0]]}", "not checked: the bucket cannot be "
                       "listed.", account)
        return
    report.add("ok", "s3 bucket", f"s3://{bucket} answers at {endpoint} with the pipeline's credentials (listed "
               f"{feed}).", account)
    _probe_conditional_writes(report, setup, setups, client, endpoint, env)
    for source in SOURCES:
        _check_feed_prefix(report, setup, source, client, env)


def probe_key(manifest_prefix: str) -> str:
    """Where the conditional-write probe goes: beside the manifests, never under a feed prefix."""
    return f"{manifest_prefix}{PROBE_FOLDER}probe-{uuid.uuid4()}.txt"


def _probe_conditional_writes(report: Report, setup: AccountSetup, setups: list[AccountSetup], client,
                              endpoint: str, env: Mapping[str, str]) -> None:
    from zoom_pipeline.sources import SOURCES

    account, bucket = setup.account, setup.bucket
    subject = "s3 conditional writes"
    key = probe_key(setup.prefixes[SOURCES[0].manifest_prefix[0]])
    feeds = [s.prefixes[source.prefix[0]] for s in setups if s.bucket == bucket for source in SOURCES]
    inside = next((feed for feed in feeds if key.startswith(feed)), None)
    if inside is not None:
        report.add("FAIL", subject, f"not checked: the probe {key} would lie inside the feed prefix {inside}, so "
                   f"the manifest prefix does too; keep {SOURCES[0].manifest_prefix[0]} outside every feed prefix.",
                   account)
        return
    extra: dict[str, str] = {"ContentType": "text/plain"}
    kms = _resolve(setup.store.sse_kms_key_id, env)
    if kms:
        extra |= {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms}
    where = f"s3://{bucket}/{key}"
    body = b"zoom-pipeline doctor: a probe of create-only writes (If-None-Match: *); safe to delete.\n"
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body + b"first write\n", IfNoneMatch="*", **extra)
    except Exception as exc:  # noqa: BLE001
        code = _error_code(exc)
        if code in ("NotImplemented", "501"):
            text = (f"{endpoint} refuses writes with If-None-Match: * ({code}), so every part the pipeline writes "
                    "would fail; use a store that supports create-only writes (Amazon S3 does).")
        else:
            text = _s3_problem(exc, bucket, f"write {where}", endpoint, client)
        report.add("FAIL", subject, f"the probe could not be written: {text}", account)
        return
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body + b"second write\n", IfNoneMatch="*", **extra)
    except Exception as exc:  # noqa: BLE001
        code = _error_code(exc)
        if code in _KEY_TAKEN:
            level, text = "ok", (f"a second create-only write of the probe {where} was refused ({code}), so a part "
                                 "is never replaced: two racing runs cannot overwrite each other's part.")
        else:
            level, text = "FAIL", ("the second write of the probe failed otherwise than with 412 PreconditionFailed "
                                   f"or 409: {_s3_problem(exc, bucket, f'write {where}', endpoint, client)}")
    else:
        level, text = "FAIL", (
            f"{endpoint} accepted a second write of the probe {where} despite If-None-Match: *, so it ignores "
            "create-only writes and exactly-once cannot hold there: two racing runs of a day could replace each "
            "other's part under the same name, and a SecOps feed ingests a replaced object again, whole. Use Amazon "
            "S3 or a store that honours If-None-Match."
        )
    try:
        client.delete_object(Bucket=bucket, Key=key)
        gone = "The probe was deleted."
    except Exception:  # noqa: BLE001 - the writer's policy may not delete: that is expected
        gone = "The probe is left in place (these credentials may not delete); it is safe to delete."
    report.add(level, subject, f"{text} {gone}", account)


@dataclass
class PrefixContents:
    parts: dict[str, int] = field(default_factory=dict)  # day -> parts
    lambda_state: str | None = None  # the key of the Lambda's state.json
    lambda_days: dict[str, int] = field(default_factory=dict)  # write day -> objects
    lambda_newest: datetime | None = None
    other: list[str] = field(default_factory=list)
    other_count: int = 0


def classify(keys: Iterator[dict], prefix: str, source: Source) -> PrefixContents:
    """Sort a feed prefix's objects: the pipeline's parts (`<prefix>YYYY/MM/DD/<part_prefix>YYYYMMDD-NNNNNN.json.gz`,
    the day folder and the name agreeing), Google's Lambda (`<prefix>state.json`,
    `<prefix>YYYY/MM/DD/zoom-operationlogs-<uuid4>.json.gz`), and anything else."""
    from zoom_pipeline.constants import PART_SUFFIX

    ours = re.compile(r"(\d{4})/(\d{2})/(\d{2})/" + re.escape(source.part_prefix) + r"(\d{8})-\d{6}"
                      + re.escape(PART_SUFFIX))
    found = PrefixContents()
    for obj in keys:
        key = obj["Key"]
        rest = key[len(prefix):]
        m = ours.fullmatch(rest)
        if m and m.group(4) == "".join(m.group(1, 2, 3)) and _is_day(*m.group(1, 2, 3)):
            day = f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
            found.parts[day] = found.parts.get(day, 0) + 1
            continue
        if rest == "state.json":
            found.lambda_state = key
            continue
        m = LAMBDA_OBJECT.fullmatch(rest)
        if m and _is_day(*m.group(1, 2, 3)):
            day = "-".join(m.group(1, 2, 3))
            found.lambda_days[day] = found.lambda_days.get(day, 0) + 1
            modified = obj.get("LastModified")
            if isinstance(modified, datetime) and (found.lambda_newest is None or modified > found.lambda_newest):
                found.lambda_newest = modified
            continue
        found.other_count += 1
        if len(found.other) < EXAMPLES:
            found.other.append(key)
    return found


def _is_day(y: str, m: str, d: str) -> bool:
    try:
        date(int(y), int(m), int(d))
        return True
    except ValueError:
        return False


def _read_cursor(client, bucket: str, key: str) -> tuple[date | None, str]:
    """The Lambda's cursor_date from its state.json, or None with what was wrong."""
    try:
        state = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        cursor = date.fromisoformat(str(state["cursor_date"]))
        return cursor, ""
    except Exception as exc:  # noqa: BLE001
        return None, f"its cursor could not be read ({_error_code(exc) or type(exc).__name__})"


def _check_feed_prefix(report: Report, setup: AccountSetup, source: Source, client, env: Mapping[str, str]) -> None:
    account, bucket = setup.account, setup.bucket
    prefix = setup.prefixes[source.prefix[0]]
    subject = f"feed prefix {prefix}"
    where = f"s3://{bucket}/{prefix}"
    try:
        found = classify(_list(client, bucket, prefix), prefix, source)
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", subject, _s3_problem(exc, bucket, f"list {where}", _endpoint(client, env), client), account)
        return
    clean = True
    if found.lambda_state:
        clean = False
        cursor, problem = _read_cursor(client, bucket, found.lambda_state)
        if cursor is not None:
            setup.lambda_cursor = cursor if setup.lambda_cursor is None else min(cursor, setup.lambda_cursor)
            told = (f"cursor_date {cursor.isoformat()}: the days before it that the Lambda ran on reached SecOps "
                    f"in full, {cursor.isoformat()} only in part")
        else:
            told = problem
        report.add("FAIL", subject, f"Google's Lambda keeps its state s3://{bucket}/{found.lambda_state} inside "
                   f"the feed prefix ({told}), and the feed ingests it as a log; follow {LAMBDA_CHAPTER}: stop its "
                   f"EventBridge schedule, then move state.json out of {prefix}.", account)
    if found.lambda_days:
        clean = False
        days = sorted(found.lambda_days)
        count = sum(found.lambda_days.values())
        span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
        fresh = found.lambda_newest is not None and datetime.now(UTC) - found.lambda_newest < timedelta(days=1)
        if fresh or found.lambda_state:
            newest = (f", the newest written {found.lambda_newest:%Y-%m-%dT%H:%M:%SZ}" if found.lambda_newest else "")
            on_days = f"{len(days)} day{'s' if len(days) != 1 else ''}"
            report.add("FAIL", subject, f"{count} object{'s' if count != 1 else ''} of Google's Lambda "
                       f"(zoom-operationlogs-<uuid4>.json.gz, written on {on_days}: {span}{newest}): while it runs, "
                       "every 15 minutes it writes all of today again under new names, so SecOps gets duplicates; "
                       f"follow {LAMBDA_CHAPTER} (the objects it wrote may stay: the feed ingested them once and the "
                       "pipeline ignores them).", account)
        else:
            report.add("warn", subject, f"{count} old object{'s' if count != 1 else ''} of Google's Lambda "
                       f"(zoom-operationlogs-<uuid4>.json.gz, written {span}, none in the last day) remain; the feed "
                       "ingested them once and will not again, and the pipeline ignores them: leave them or move them "
                       "out of the prefix.", account)
    if found.other_count:
        clean = False
        shown = ", ".join(found.other)
        more = f" and {found.other_count - len(found.other)} more" if found.other_count > len(found.other) else ""
        report.add("FAIL", subject, f"{found.other_count} object{'s' if found.other_count != 1 else ''} in {where} "
                   f"{'is' if found.other_count == 1 else 'are'} not the pipeline's parts ({shown}{more}); the "
                   "SecOps feed reads everything under the prefix and would ingest them: move them out.", account)
    if clean:
        if found.parts:
            days = sorted(found.parts)
            report.add("ok", subject, f"{where} holds only the pipeline's parts ({sum(found.parts.values())} parts "
                       f"of {len(days)} days, {days[0]} to {days[-1]}).", account)
        else:
            report.add("ok", subject, f"{where} is empty: nothing is collected yet, and nothing else is there.",
                       account)


# ---- the Dagster instance, the start date and a backfill's cost -----------------------------------------


@contextmanager
def _pg_connect_timeout() -> Iterator[None]:
    """libpq gives up connecting after TIMEOUT_SECONDS (PGCONNECT_TIMEOUT), unless the environment says otherwise."""
    if "PGCONNECT_TIMEOUT" in os.environ:
        yield
        return
    os.environ["PGCONNECT_TIMEOUT"] = str(int(TIMEOUT_SECONDS))
    try:
        yield
    finally:
        os.environ.pop("PGCONNECT_TIMEOUT", None)


def open_instance(report: Report, env: Mapping[str, str]):
    """The instance of DAGSTER_HOME as `DagsterInstance.get()` opens it, or None (with a finding)."""
    import dagster as dg

    home = env.get("DAGSTER_HOME")
    if not home:
        report.add("warn", "dagster instance", "DAGSTER_HOME is not set, so the instance (partition status is the "
                   "collection cursor, the pools, the daemon) was not checked; set it as the webserver and the daemon "
                   "have it.")
        return None
    path = os.path.expanduser(home)
    if not os.path.isabs(path) or not os.path.isdir(path):
        report.add("FAIL", "dagster instance", f"DAGSTER_HOME={home} is not an absolute path to a directory, so "
                   "Dagster cannot open the instance.")
        return None
    try:
        with _pg_connect_timeout():
            instance = dg.DagsterInstance.from_config(path)  # what DagsterInstance.get() does with DAGSTER_HOME
            kind = type(instance.run_storage).__name__
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", "dagster instance", f"the instance of DAGSTER_HOME={home} cannot be opened: "
                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return None
    if "Postgres" in kind:
        report.add("ok", "dagster instance", f"{home}: runs, event logs and schedules in PostgreSQL ({kind}).")
    elif "Sqlite" in kind:
        report.add("ok", "dagster instance", f"{home}: SQLite storage ({kind}) under DAGSTER_HOME: keep this directory "
                   "(partition status is the collection cursor); production uses PostgreSQL (deploy/dagster.yaml).")
    else:
        report.add("warn", "dagster instance", f"{home}: storage {kind}, neither SQLite nor PostgreSQL: partition "
                   "status (the cursor) may not persist.")
    return instance


def check_daemon(report: Report, instance) -> None:
    wanted = ("SCHEDULER", "SENSOR", "BACKFILL")
    try:
        beats = instance.get_daemon_heartbeats()
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", "dagster daemon", f"heartbeats cannot be read: {type(exc).__name__}.")
        return
    now = time.time()
    ages = {kind: now - beats[kind].timestamp for kind in wanted if kind in beats}
    fresh = [kind for kind, age in ages.items() if age < DAEMON_FRESH_SECONDS]
    if len(fresh) == len(wanted):
        report.add("ok", "dagster daemon", f"{', '.join(wanted)} sent heartbeats in the last "
                   f"{DAEMON_FRESH_SECONDS // 60} minutes (newest {min(ages.values()):.0f} s ago).")
        return
    stale = [kind for kind in wanted if kind not in fresh]
    last = (f" (last heartbeat {max(now - beats[k].timestamp for k in stale if k in beats) / 60:.0f} minutes ago)"
            if any(k in beats for k in stale) else "")
    report.add("warn", "dagster daemon", f"no recent heartbeat from {', '.join(stale)}{last}: without a running "
               "dagster-daemon, schedules and sensors never fire and backfills never launch; run `dagster-daemon run` "
               "with this DAGSTER_HOME (`dagster dev` runs one).")


def check_pool(report: Report, account: Account, instance) -> None:
    pool = account.pool
    subject = f"pool {pool}"
    try:
        storage = instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            report.add("warn", subject, "this instance's event log storage keeps no pool limits, so nothing bounds "
                       "the runs calling Zoom at once.", account)
            return
        info = storage.get_concurrency_info(pool)
    except Exception as exc:  # noqa: BLE001
        report.add("FAIL", subject, f"cannot be read: {type(exc).__name__}.", account)
        return
    command = f"dagster instance concurrency set {pool} 2"
    if info.limit is None:
        report.add("warn", subject, f"has no limit (and the instance sets no concurrency.pools.default_limit), so "
                   f"nothing bounds the runs calling Zoom for {account.label}; run `{command}` before the first "
                   "backfill.", account)
    elif info.limit <= 0:
        report.add("FAIL", subject, f"has limit {info.limit}: runs that call Zoom for {account.label} queue forever; "
                   f"run `{command}`.", account)
    else:
        whence = "the instance's default_limit" if info.using_default_limit else "set for this pool"
        report.add("ok", subject, f"limit {info.limit} ({whence}): at most {info.limit} runs call Zoom for "
                   f"{account.label} at once.", account)


def check_start_and_cost(report: Report, setup: AccountSetup, env: Mapping[str, str]) -> None:
    """The first day (configured, default, or the Lambda's cursor), Zoom's window, and a backfill's cost."""
    from zoom_pipeline.partitions import check_start_date, default_start_date, oldest_served_day
    from zoom_pipeline.sources import SOURCES

    account = setup.account
    today = datetime.now(UTC).date()
    oldest = oldest_served_day(today)
    name = _setting_name(account, "ZOOM_LOGS_START_DATE", "logs_start_date")  # where the configured date comes from
    # What to set: a named account's own first day, else the deployment's.
    advice = (f"logs_start_date of account {account.name} (ZOOM_ACCOUNTS_FILE)" if account.name
              else "ZOOM_LOGS_START_DATE")
    raw = account.logs_start_date or env.get("ZOOM_LOGS_START_DATE") or ""
    try:
        configured = date.fromisoformat(check_start_date(raw, today, name=name)) if raw else None
    except ValueError as exc:
        report.add("FAIL", "start date", str(exc), account)
        return
    cursor = setup.lambda_cursor
    if cursor is not None:
        start = cursor
        c, after = cursor.isoformat(), (cursor + timedelta(days=1)).isoformat()
        lead = (f"{c}, the cursor day of Google's Lambda: the days before it that the Lambda ran on reached SecOps "
                f"in full, {c} only up to when the Lambda stopped. Starting at {c} re-delivers the part of {c} "
                f"the Lambda delivered (duplicates for that one day); starting at {after} instead leaves the rest of "
                f"{c} uncollected.")
        if configured == cursor:
            report.add("ok", "start date", f"{lead} {name}={c} chooses completeness (the doctor's choice).",
                       account)
        elif configured == cursor + timedelta(days=1):
            start = configured
            report.add("ok", "start date", f"{after}, the day after {lead} {name}={after} chooses no duplicates.",
                       account)
        else:
            now = (f"{name}={configured.isoformat()}" if configured
                   else f"{name} is unset (the first partition: {default_start_date(today)})")
            effect = ("would re-deliver the days before the cursor that the Lambda already delivered"
                      if configured is None or configured < cursor else
                      f"would leave the days from {after} to the day before it uncollected")
            report.add("warn", "start date", f"the doctor would start at {lead} {now}, which {effect}; set "
                       f"{advice}={c} before the first backfill (or {after} to avoid the one day of duplicates).",
                       account)
    elif configured is not None:
        start = configured
        if configured < oldest:
            report.add("warn", "start date", f"{name}={configured.isoformat()} is older than Zoom's six-month window, "
                       f"which starts at {oldest.isoformat()}: the days before it fail at once with one sentence; "
                       f"backfill from {oldest.isoformat()}.", account)
        else:
            report.add("ok", "start date", f"{name}={configured.isoformat()}, inside Zoom's six-month window (from "
                       f"{oldest.isoformat()}).", account)
    else:
        start = date.fromisoformat(default_start_date(today))
        report.add("ok", "start date", f"{name} is unset: the first partition is {start.isoformat()}, the first of the "
                   f"month holding the oldest day Zoom serves ({oldest.isoformat()}); the days before "
                   f"{oldest.isoformat()} fail at once with one sentence.", account)
    first = max(start, oldest)
    days = (today - first).days + 1
    calls = len(SOURCES) * days
    zoom = setup.zoom
    budget = int(zoom.daily_request_budget or 0)
    pace = float(zoom.max_requests_per_second or 0)
    budget_name = (f"daily_request_budget of account {account.name}" if account.daily_request_budget
                   else "ZOOM_DAILY_REQUEST_BUDGET")
    page = int(zoom.page_size)
    digits = 1 if budget and calls / budget >= 0.001 else 2
    share = (f", {calls / budget:.{digits}%} of the daily budget of {budget} ({budget_name})"
             + (f", so at least {math.ceil(calls / budget)} UTC days of budget" if calls > budget else "")
             if budget else "")
    seconds = f", and at least {calls / pace:.0f} s at {pace:g} calls a second" if pace else ""
    report.add("ok", "backfill", f"{first.isoformat()} to today ({today.isoformat()}) is {days} days: at least "
               f"{calls} report calls ({len(SOURCES)} sources x {days} days, one page of up to {page} records each; "
               f"every further {page} records of a day cost one more){share}{seconds}.", account)


# ---- the command -----------------------------------------------------------------------------------------


def doctor(env: Mapping[str, str], out: IO[str], *, day: str | None = None) -> int:
    """Run every check; 0 when nothing failed, else 1."""
    try:
        from zoom_pipeline.config import build_resources, load_accounts
    except ValueError as exc:  # a setting read at import (ZOOM_LOGS_START_DATE)
        Report(out).add("FAIL", "configuration", str(exc))
        return 1
    from zoom_pipeline.accounts import prefix_settings

    probe_day = day or (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    try:
        accounts = load_accounts(env)
    except ValueError as exc:
        Report(out).add("FAIL", "configuration", str(exc))
        return 1
    report = Report(out, several_accounts=bool(env.get("ZOOM_ACCOUNTS_FILE")))
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "DAGSTER_PG_PASSWORD"):
        report.secret(env.get(name))
    for account in accounts:
        report.secret(env.get(account.env_var("CLIENT_SECRET")))
    where = (f"{len(accounts)} account{'s' if len(accounts) != 1 else ''} ({', '.join(a.name for a in accounts)}) "
             f"from {env['ZOOM_ACCOUNTS_FILE']} (ZOOM_ACCOUNTS_FILE)" if env.get("ZOOM_ACCOUNTS_FILE")
             else "one Zoom account (ZOOM_ACCOUNT_ID; no ZOOM_ACCOUNTS_FILE)")
    setups: list[AccountSetup] = []
    for account in accounts:
        try:
            resources = build_resources(env, account)
        except ValueError as exc:
            report.add("FAIL", "configuration", str(exc), account)
            continue
        store = resources[account.resource_key("zoom_store")]
        setup = AccountSetup(account, resources[account.resource_key("zoom")], store)
        setup.bucket = _resolve(store.s3_bucket, env)
        setup.prefixes = {s: store.prefixes.get(s) or account.all_prefixes(env)[s] for s in prefix_settings()}
        setups.append(setup)
    if len(setups) == len(accounts):
        report.add("ok", "configuration", f"{where}; the definitions' resources build.")
    if not setups:
        return 1
    instance = _guard(report, "dagster instance", lambda: open_instance(report, env))
    if instance is not None:
        _guard(report, "dagster daemon", lambda: check_daemon(report, instance))
    try:
        for setup in setups:
            _guard(report, "zoom", lambda s=setup: check_zoom(report, s, env, probe_day), setup.account)
            _guard(report, "s3", lambda s=setup: check_s3(report, s, setups, env), setup.account)
            _guard(report, "start date", lambda s=setup: check_start_and_cost(report, s, env), setup.account)
            if instance is not None:
                _guard(report, f"pool {setup.account.pool}", lambda s=setup: check_pool(report, s.account, instance),
                       setup.account)
    finally:
        if instance is not None:
            instance.dispose()
    return 1 if report.failed else 0


def _guard(report: Report, subject: str, check: Callable[[], Any], account: Account | None = None) -> Any:
    """Run one check; an unexpected error becomes one FAIL line (redacted, no traceback) and the others run."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001
        text = str(exc).splitlines()[0] if str(exc) else ""
        report.add("FAIL", subject, f"the check itself failed: {type(exc).__name__}: {text}", account)
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoom-pipeline", description="Tools for the zoom_pipeline deployment.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub = commands.add_parser(
        "doctor",
        help="check the configuration, Zoom, S3 and the Dagster instance before the first run",
        description="Checks what the runs will use, per account: the Zoom credentials and each source's scope (one "
                    "smallest report call per source), the bucket and its create-only writes (a probe object beside "
                    "the manifests), that the feed prefixes hold only the pipeline's parts (Google's Lambda is "
                    "recognised), and the Dagster instance (pools, daemon, start date, backfill cost). One line per "
                    "finding: ok, warn or FAIL; exit status 1 when anything failed.",
    )
    sub.add_argument("--day", help="the day of the report probes, YYYY-MM-DD (default: yesterday, UTC)")
    return parser


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None, out: IO[str] | None = None) -> int:
    """`zoom-pipeline doctor [--day D]`: the exit status (0: nothing failed)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.day:
        try:
            date.fromisoformat(args.day)
        except ValueError:
            build_parser().error(f"--day must be a date YYYY-MM-DD, got {args.day!r}")
    return doctor(os.environ if env is None else env, out or sys.stdout, day=args.day)


def cli() -> None:
    """The `zoom-pipeline` console script."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main(["doctor", *sys.argv[1:]] if sys.argv[1:2] != ["doctor"] else sys.argv[1:]))
