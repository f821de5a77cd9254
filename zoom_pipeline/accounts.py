"""The Zoom accounts one deployment collects: the accounts file (ZOOM_ACCOUNTS_FILE) and what an account is.

An `Account` names everything that is per account: its asset keys (the name as key prefix), resource
keys, pool, group, run tag, credential variables, bucket, prefixes, pace, budget, first day and URLs.
Without an accounts file the deployment has one account with no name, whose names are exactly those of
a single-account deployment (`zoom_operation_logs`, `ZOOM_ACCOUNT_ID`, the pool `zoom_api` ...).

    accounts:
      acme: {}                       # every setting is optional
      beta:
        s3_bucket: other-bucket      # default S3_BUCKET
        s3_prefix: zoom/beta/operationlogs/          # default zoom/<name>/operationlogs/
        activity_s3_prefix: zoom/beta/activitylogs/  # default zoom/<name>/activitylogs/
        max_requests_per_second: 20  # default ZOOM_MAX_REQUESTS_PER_SECOND
        daily_request_budget: 40000  # default ZOOM_DAILY_REQUEST_BUDGET
        logs_start_date: "2026-07-01"
        api_base_url: https://api.zoom.us/v2
        oauth_token_url: https://zoom.us/oauth/token

Credentials come only from the environment: ZOOM_<NAME>_ACCOUNT_ID, ZOOM_<NAME>_CLIENT_ID and
ZOOM_<NAME>_CLIENT_SECRET, resolved at launch. Reading the file is the only I/O here, and it happens
when the definitions load, never at import.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from zoom_pipeline.constants import DEFAULT_API_BASE_URL, DEFAULT_OAUTH_TOKEN_URL, ZOOM_API_POOL
from zoom_pipeline.partitions import check_start_date
from zoom_pipeline.settings import check_positive, check_url
from zoom_pipeline.sources import SOURCES, Source

NAME = re.compile(r"[a-z0-9_]+")
ACCOUNT_TAG = "zoom/account"
# One tag a run of automation carries to name its account and day: the instance limits runs per value
# (dagster_home/dagster.yaml), so two runs of one account's day never overlap while accounts stay apart.
ACCOUNT_DAY_TAG = "zoom/account_day"


def prefix_settings() -> list[str]:
    """Every source's prefix settings (S3_PREFIX, UDM_S3_PREFIX, ..., ACTIVITY_S3_PREFIX, ...)."""
    return [setting for source in SOURCES for setting, _ in (source.prefix, source.udm_prefix, source.manifest_prefix)]


FILE_KEYS = (
    "s3_bucket", *(setting.lower() for setting in prefix_settings()), "max_requests_per_second",
    "daily_request_budget", "logs_start_date", "api_base_url", "oauth_token_url",
)


@dataclass(frozen=True)
class Account:
    """One Zoom account of the deployment; `name` "" is the one account of a deployment without a file.

    Unset settings (None) take the deployment's (the environment's) value.
    """

    name: str = ""
    s3_bucket: str | None = None
    prefixes: Mapping[str, str] = field(default_factory=dict)  # by setting name; see `prefix`
    max_requests_per_second: float | None = None
    daily_request_budget: int | None = None
    logs_start_date: str | None = None
    api_base_url: str | None = None
    oauth_token_url: str | None = None

    # ---- names -------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """How messages name the account."""
        return f"account {self.name}" if self.name else "the Zoom account"

    @property
    def key_prefix(self) -> list[str]:
        return [self.name] if self.name else []

    def asset_key(self, asset_name: str) -> dg.AssetKey:
        return dg.AssetKey([*self.key_prefix, asset_name])

    @property
    def group(self) -> str:
        return f"zoom_{self.name}" if self.name else "zoom"

    @property
    def pool(self) -> str:
        """The account's own `zoom_api` pool, so its runs never wait on another account's."""
        return f"{ZOOM_API_POOL}_{self.name}" if self.name else ZOOM_API_POOL

    def resource_key(self, base: str) -> str:
        """`base` (zoom, zoom_store, zoom_logs_io_manager) for this account: `<base>__<name>`. The double
        underscore keeps every name from turning one base's key into another's: account `store_acme`'s
        client is `zoom__store_acme`, account `acme`'s store `zoom_store__acme`."""
        return f"{base}__{self.name}" if self.name else base

    def env_var(self, what: str) -> str:
        """The credential variable `what` (ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET) of this account."""
        return f"ZOOM_{self.name.upper()}_{what}" if self.name else f"ZOOM_{what}"

    @property
    def run_tags(self) -> dict[str, str]:
        return {ACCOUNT_TAG: self.name} if self.name else {}

    def day_tag(self, day: str) -> dict[str, str]:
        """The tag that keeps two automated runs of one account's day apart (and accounts apart)."""
        return {ACCOUNT_DAY_TAG: f"{self.name}/{day}" if self.name else day}

    # ---- where its days go -------------------------------------------------------------------
    def prefix(self, setting: str, env: Mapping[str, str]) -> str | None:
        """The prefix of `setting` (S3_PREFIX, UDM_S3_PREFIX ...): the file's, else for a named account
        beside its raw prefix (`zoom/<name>/operationlogs/`, `...-udm/`, `...-manifests/`), else the
        environment's; None for the source's default."""
        if setting in self.prefixes:
            return self.prefixes[setting]
        if not self.name:
            return env.get(setting) or None
        source, kind = _setting_source(setting)
        raw = self.prefixes.get(source.prefix[0]) or source.prefix[1].replace("zoom/", f"zoom/{self.name}/", 1)
        return raw if kind == "raw" else raw.rstrip("/") + ("-udm/" if kind == "udm" else "-manifests/")

    def all_prefixes(self, env: Mapping[str, str]) -> dict[str, str]:
        return {s: self.prefix(s, env) or _setting_default(s) for s in prefix_settings()}

    def bucket(self, env: Mapping[str, str]) -> str:
        return self.s3_bucket if self.s3_bucket is not None else env.get("S3_BUCKET", "")


DEFAULT_ACCOUNT = Account()


def _setting_source(setting: str) -> tuple[Source, str]:
    for source in SOURCES:
        for kind, (name, _) in zip(("raw", "udm", "manifest"), (source.prefix, source.udm_prefix,
                                                                 source.manifest_prefix), strict=True):
            if name == setting:
                return source, kind
    raise KeyError(setting)


def _setting_default(setting: str) -> str:
    source, kind = _setting_source(setting)
    return {"raw": source.prefix, "udm": source.udm_prefix, "manifest": source.manifest_prefix}[kind][1]


# ---- the file --------------------------------------------------------------------------------------


class AccountsFileError(ValueError):
    """The accounts file cannot be used; the message is one sentence naming the file and the entry."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged below, may be overridden
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise AccountsFileError(f"{key!r} is given twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    loader.flatten_mapping(node)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)
# A date stays text (`logs_start_date: 2026-02-30` is then checked like any other value, not a YAML error).
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def load_accounts_file(path: str, env: Mapping[str, str]) -> list[Account]:
    """The accounts of `path`, checked: AccountsFileError with one sentence otherwise."""
    where = f"The accounts file {path} (ZOOM_ACCOUNTS_FILE)"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AccountsFileError(f"{where} cannot be read: {exc.strerror or exc}.") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except AccountsFileError as exc:
        raise AccountsFileError(f"{where} is not valid: {exc}.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise AccountsFileError(f"{where} is not valid YAML{at}: {getattr(exc, 'problem', None) or exc}.") from None
    if not isinstance(data, dict) or set(data) != {"accounts"} or not isinstance(data["accounts"], dict):
        raise AccountsFileError(f"{where} must hold one mapping, `accounts:`, of account names to their settings.")
    if not data["accounts"]:
        raise AccountsFileError(f"{where} names no account.")
    accounts = [account_entry(where, name, entry) for name, entry in data["accounts"].items()]
    check_apart(accounts, env, where)
    return accounts


def account_entry(where: str, name, entry) -> Account:
    """One entry of the file (or a `ZoomAccount` component's attributes), checked; `where` starts its errors."""
    if not isinstance(name, str):  # YAML reads `no`, `on`, `123` unquoted as a boolean or a number
        raise AccountsFileError(f"{where}: an account name YAML reads as {type(name).__name__} {name!r} must be "
                                "quoted (e.g. 'no', '123'), or use lowercase letters, digits and _ otherwise.")
    if not NAME.fullmatch(name):
        raise AccountsFileError(f"{where}: the account name {name!r} must be lowercase letters, digits and _.")
    at = f"{where}, account {name}"
    if entry is None:
        entry = {}
    if not isinstance(entry, dict):
        raise AccountsFileError(f"{at}: its settings must be a mapping (use {{}} for none).")
    unknown = sorted(str(k) for k in entry if k not in FILE_KEYS)
    if unknown:
        raise AccountsFileError(f"{at}: unknown setting(s) {', '.join(unknown)}; known ones: {', '.join(FILE_KEYS)}.")
    try:
        values = {key: _value(key, value) for key, value in entry.items()}
    except ValueError as exc:
        raise AccountsFileError(f"{at}: {exc}") from None
    prefixes = {setting: values.pop(setting.lower()) for setting in prefix_settings() if setting.lower() in values}
    return Account(name=name, prefixes=prefixes, **values)


def _value(key: str, value):
    if key == "max_requests_per_second":
        return float(check_positive(key, value, whole=False, what="report calls per second"))
    if key == "daily_request_budget":
        return int(check_positive(key, value, whole=True, what="report calls per UTC day"))
    if key == "logs_start_date":
        return check_start_date(str(value), name=key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} must be a non-empty string, got {value!r}.")
    if key in ("api_base_url", "oauth_token_url"):
        return check_url(key, value, DEFAULT_API_BASE_URL if key == "api_base_url" else DEFAULT_OAUTH_TOKEN_URL)
    if key != "s3_bucket" and (value.startswith("/") or not value.endswith("/")):
        raise ValueError(f"{key} must be a key prefix ending in '/' and not starting with one, got {value!r}.")
    return value


def check_apart(accounts: list[Account], env: Mapping[str, str], where: str) -> None:
    """No two accounts share a name, and no prefix of one lies at or inside another's in the same bucket
    (their days would mix)."""
    names: set[str] = set()
    for account in accounts:
        if account.name in names:
            raise AccountsFileError(f"{where}: two accounts are named {account.name}.")
        names.add(account.name)
    placed = [(a, setting, a.bucket(env), prefix) for a in accounts for setting, prefix in a.all_prefixes(env).items()]
    for i, (a, sa, bucket_a, pa) in enumerate(placed):
        for b, sb, bucket_b, pb in placed[i + 1:]:
            if a is b or bucket_a != bucket_b:
                continue
            if pa == pb or pa.startswith(pb) or pb.startswith(pa):
                how = "the same prefix" if pa == pb else "prefixes inside one another"
                raise AccountsFileError(
                    f"{where}: accounts {a.name} and {b.name} have {how} ({sa.lower()} {pa!r}, {sb.lower()} "
                    f"{pb!r}) in one bucket, so their days would mix; give each account prefixes of its own."
                )
