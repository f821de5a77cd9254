"""Zoom sign-in/sign-out activity records (`/report/activities`) → Google SecOps UDM events.

Pure functions, no I/O: the second mapping next to `udm`'s, reading lines, building the envelope and the
ids with `udm`'s machinery. `ACTIVITY_UDM_MAPPING` is its table. Google's ZOOM_OPERATION_LOGS parser takes
these records too (its change log, 2025-01-20): `ip_address` → `principal.ip` and `principal.asset.ip`,
`client_type` and `type` → `additional.fields`, `version` → `metadata.product_version`. Vendor, product
and log type are therefore those of the operation logs.

Where the user goes: `email`, the account that signs in or out, is `target.user`; the client's address is
`principal`. Google's sources, all public:
- the UDM Authentication extension (cloud.google.com/chronicle/docs/reference/rest/Shared.Types/
  Authentication): the source of the authentication, "for example, client IP or hostname", is the
  principal, which "may be empty if we have no details about the source of the login"; what is logged
  into or out of is the target;
- the UDM overview (cloud.google.com/chronicle/docs/event-processing/udm-overview): its search for a
  user's successful logins (`metadata.event_type = "USER_LOGIN"`) looks in the target section,
  `target.user.userid`;
- Google's own sign-in parser AZURE_AD_SIGNIN (cloud.google.com/chronicle/docs/ingestion/default-parsers/
  azure-ad-signin): the signing-in account → `target.user.email_addresses` "only if it matches the email
  address pattern", the client IP → `principal.ip` and `principal.asset.ip`, `extensions.auth.type`
  AUTHTYPE_UNSPECIFIED.

Choices where that leaves the mapping open:
- `type` "Sign in" → USER_LOGIN, "Sign out" → USER_LOGOUT (case and surrounding spaces aside); any other
  type, or none, → USER_UNCATEGORIZED, flagged `type_unknown`. A record without `email` names no user:
  GENERIC_EVENT, as the operation-log mapping does then (AZURE_AD_SIGNIN too makes a sign-in USER_LOGIN
  only with its user), flagged `email_missing`.
- USER_LOGIN and USER_LOGOUT events carry `extensions.auth` with `type` AUTHTYPE_UNSPECIFIED, as Google's
  parsers write it for logins and logouts whose log does not say how the user signed in (AZURE_AD_SIGNIN,
  NETAPP_ONTAP, KEMP_LOADBALANCER): Zoom's record does not say whether by password, SSO or another way.
  No mechanism and no `security_result`: the record says nothing of them either.
- `email` (trimmed) maps to `target.user.email_addresses` when it is one whole e-mail address, else to
  `target.user.userid`, flagged `email_invalid`.
- `ip_address` (trimmed) maps to `principal.ip` and `principal.asset.ip` as Zoom wrote it when it is an
  IPv4 or IPv6 address without a zone index: an IPv6 address is not rewritten to its compressed form.
  Anything else is kept whole as the additional `ip_address`, flagged `ip_invalid`. No address, no
  principal, and no problem.
- `version` "-", Zoom's "no client version" (browsers), maps no product version.
- The additional keys are the source field names; `client_type` and `type` keep Zoom's text.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from zoom_pipeline.udm import (
    ENVELOPE_ROWS,
    SHARED_PROBLEMS,
    MappingRow,
    Rule,
    envelope,
    event_metadata,
    event_timestamp,
    field_paths,
    is_email,
    json_name,
    map_stored_line,
    not_an_object,
    populated_fields,
    put_additional,
    record_text,
)

__all__ = [
    "ACTIVITY_PROBLEMS",
    "ACTIVITY_TARGET_FIELDS",
    "ACTIVITY_UDM_MAPPING",
    "ActivityRule",
    "activity_coverage",
    "map_activity_line",
    "to_activity_event",
]


class ActivityRule(StrEnum):
    """The rules of `ACTIVITY_UDM_MAPPING` that `udm.Rule` has no word for; the text is the logic column."""

    IF_IP = "when the trimmed value is an IPv4 or IPv6 address, as written"
    IF_NOT_IP = "when the value is not an address: kept under its field name, flagged ip_invalid"
    VERSION = "the raw field; omitted when empty or '-'"
    EVENT_TYPE = "Sign in -> USER_LOGIN, Sign out -> USER_LOGOUT, else USER_UNCATEGORIZED; no email -> GENERIC_EVENT"
    IF_LOGIN = "the value in the log-field column, on USER_LOGIN and USER_LOGOUT events"


_R = MappingRow
ACTIVITY_UDM_MAPPING: tuple[MappingRow, ...] = (
    # Log field                    UDM field                                   Rule
    _R("client_type",              "additional.fields.key",                    Rule.FIELD_NAME),
    _R("client_type",              "additional.fields.value.string_value",     Rule.COPY),
    _R("email",                    "target.user.email_addresses",              Rule.IF_EMAIL),
    _R("email",                    "target.user.userid",                       Rule.IF_NOT_EMAIL),
    _R("ip_address",               "principal.ip",                             ActivityRule.IF_IP),
    _R("ip_address",               "principal.asset.ip",                       ActivityRule.IF_IP),
    _R("ip_address",               "additional.fields.key",                    ActivityRule.IF_NOT_IP),
    _R("ip_address",               "additional.fields.value.string_value",     ActivityRule.IF_NOT_IP),
    _R("time",                     "metadata.event_timestamp.seconds",         Rule.TIME),
    _R("type",                     "additional.fields.key",                    Rule.FIELD_NAME),
    _R("type",                     "additional.fields.value.string_value",     Rule.COPY),
    _R("version",                  "metadata.product_version",                 ActivityRule.VERSION),
    *ENVELOPE_ROWS,  # metadata.log_type, vendor_name, product_name: those of the operation logs
    _R("type, email",              "metadata.event_type",                      ActivityRule.EVENT_TYPE),
    _R("AUTHTYPE_UNSPECIFIED",     "extensions.auth.type",                     ActivityRule.IF_LOGIN),
)  # fmt: skip
del _R

# Problem tags of this mapping, stable for counting; with those every mapping has, `ACTIVITY_PROBLEMS`.
TYPE_UNKNOWN = "type_unknown"
EMAIL_MISSING = "email_missing"
EMAIL_INVALID = "email_invalid"
IP_INVALID = "ip_invalid"
ACTIVITY_PROBLEMS = (*SHARED_PROBLEMS, TYPE_UNKNOWN, EMAIL_MISSING, EMAIL_INVALID, IP_INVALID)

_VALUE_RULES = frozenset({Rule.IF_EMAIL, Rule.IF_NOT_EMAIL, ActivityRule.IF_IP, ActivityRule.VERSION})
# The UDM fields a record's own values fill (camelCase, as in the events), in table order: its coverage.
ACTIVITY_TARGET_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(json_name(r.udm) for r in ACTIVITY_UDM_MAPPING if r.rule in _VALUE_RULES)
)
_COVERAGE_PATHS = field_paths(ACTIVITY_TARGET_FIELDS)

_ENVELOPE = envelope(ACTIVITY_UDM_MAPPING)
_AUTH_TYPE = next(r.source for r in ACTIVITY_UDM_MAPPING if r.rule is ActivityRule.IF_LOGIN)
_CLIENT_KEY, _TYPE_KEY = (r.source for r in ACTIVITY_UDM_MAPPING if r.rule is Rule.FIELD_NAME)
_IP_KEY = next(r.source for r in ACTIVITY_UDM_MAPPING if r.rule is ActivityRule.IF_NOT_IP)
_EVENT_TYPES = {"sign in": "USER_LOGIN", "sign out": "USER_LOGOUT"}  # keyed by the casefolded type
_LOGIN_EVENT_TYPES = frozenset(_EVENT_TYPES.values())
_NO_VERSION = "-"
_FIELDS = ("email", "type", "ip_address", "client_type", "version")  # read in this order


# What `ipaddress.IPv4Address` accepts (four decimal octets, no leading zero), without its cost.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


def _is_ip(text: str) -> bool:
    """An IPv4 or IPv6 address; a zone index (`fe80::1%eth0`) names an interface of Zoom's, not ours."""
    if _IPV4.fullmatch(text):
        return True
    if ":" not in text or "%" in text:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def to_activity_event(record: object, *, log_id: str, fallback_time: datetime) -> tuple[dict, tuple[str, ...]]:
    """One raw sign-in/sign-out record → (one UDM event, problem tags). Never raises, never drops."""
    if not isinstance(record, dict):
        return not_an_object(record, log_id, fallback_time, _ENVELOPE)
    problems: list[str] = []
    timestamp = event_timestamp(record, fallback_time, problems)
    email, kind, address, client, version = [record_text(record, key, problems) for key in _FIELDS]
    email, ip, version = email.strip(), address.strip(), version.strip()

    event_type = _EVENT_TYPES.get(kind.strip().casefold())
    if event_type is None:
        problems.append(TYPE_UNKNOWN)
        event_type = "USER_UNCATEGORIZED"
    if not email:
        problems.append(EMAIL_MISSING)
        event_type = "GENERIC_EVENT"
    metadata = event_metadata(_ENVELOPE, log_id, timestamp, event_type)
    if version and version != _NO_VERSION:
        metadata["productVersion"] = version
    event: dict[str, Any] = {"metadata": metadata}
    ip_invalid = bool(ip) and not _is_ip(ip)
    if ip_invalid:
        problems.append(IP_INVALID)
    elif ip:
        event["principal"] = {"ip": [ip], "asset": {"ip": [ip]}}
    if email:
        if is_email(email):
            event["target"] = {"user": {"emailAddresses": [email]}}
        else:
            problems.append(EMAIL_INVALID)
            event["target"] = {"user": {"userid": email}}
    if event_type in _LOGIN_EVENT_TYPES:
        event["extensions"] = {"auth": {"type": _AUTH_TYPE}}
    put_additional(event, _CLIENT_KEY, client)
    if ip_invalid:
        put_additional(event, _IP_KEY, address)
    put_additional(event, _TYPE_KEY, kind)
    return event, tuple(dict.fromkeys(problems)) if problems else ()


def activity_coverage(event: dict) -> tuple[str, ...]:
    """The `ACTIVITY_TARGET_FIELDS` that `event` populates."""
    return populated_fields(event, _COVERAGE_PATHS)


def map_activity_line(
    line: bytes, occurrence: int, fallback_time: datetime
) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """One stored sign-in/sign-out NDJSON line, the `occurrence`-th (0-based) copy of it in its day → one
    UDM event, as `udm.map_line` does for operation logs: (the event as one line of compact UTF-8 JSON;
    the problem tags; the covered `ACTIVITY_TARGET_FIELDS`). The id is `udm.product_log_id` of the exact
    stored bytes. Never raises.
    """
    return map_stored_line(line, occurrence, fallback_time, to_activity_event, activity_coverage)
