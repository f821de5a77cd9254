"""Zoom operation-log records → Google SecOps UDM events (Chronicle API JSON form).

Pure functions, no I/O. `UDM_MAPPING` is Google's published ZOOM_OPERATION_LOGS mapping table: same rows,
same order, the UDM column as Google publishes it (snake_case).
The output uses the proto3 JSON names of those fields (camelCase); RFC 3339 strings for timestamps.

Choices where Google's table leaves the mapping open:
- `from A to B` maps B (split at the first " to "); `set to X` maps X; an empty new value maps nothing.
- `email` is the first e-mail anywhere in the head; `email2` the first e-mail after the head, in a pair's
  key, a bare value or a pair's new value (never an old value, never json_data); `role` is the new value
  of the first pair keyed by an e-mail under a `Change Role` head.
- The additional key is `category_type`; label keys are the table's source keys (`Room Name`, `Type`,
  `User Type`) and `assistant` / `options` for json_data.
- A scalar key given twice keeps the last value; repeated fields keep every value in order. Keys inside
  `target` follow the order in which the table first names their field.
- Target e-mails are email, email2, then `Email Address` values, de-duplicated case-insensitively.
  An e-mail's local part may hold U+FFFD, the mark of a character lost before the record reached us.
- Google's rule "use the `event_type` field when not empty" is not applied: Zoom records have no such field.
- A time without an offset is read as UTC; one that does not parse falls back to `fallback_time`.
- A json_data that is not a JSON array is invalid; a non-object element maps nothing but keeps its place.
- Non-string values become strings (JSON text for dict, list and bool; `str()` otherwise); lone
  surrogates become "?" so that the event always serialises.

`map_line` reads one stored NDJSON line (the exact bytes Zoom's record was stored as) and maps it:
- orjson reads almost every line. Valid JSON that orjson refuses or reads inexactly is read by the
  standard library instead: a lone UTF-16 surrogate escape becomes U+FFFD (`lone_surrogate`); an integer
  beyond 64 bits keeps its exact value, a number too large for Python its literal text (`big_number`);
  bytes that are not UTF-8 become U+FFFD (`invalid_utf8`). U+FFFD already in the line is ordinary text.
- A line that is not JSON (NaN and Infinity included) is one event flagged `not_an_object`, as is JSON
  that is not an object; the product log id is always that of the exact stored bytes.

What is not particular to operation logs serves every mapping of a Zoom source (`udm_activity` maps the
sign-in/sign-out records with it): reading a stored line (`map_stored_line`); the envelope every event
carries (`ENVELOPE_ROWS`, `Envelope`, `envelope`, `event_metadata`, `not_an_object`); values and times
(`record_text`, `event_timestamp`, `is_email`, `json_name`); `additional` members (`put_additional`);
coverage (`field_paths`, `populated_fields`); the id (`product_log_id`); `SHARED_PROBLEMS`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

__all__ = [
    "PROBLEMS",
    "TARGET_FIELDS",
    "UDM_MAPPING",
    "MappingRow",
    "ParsedDetail",
    "Rule",
    "coverage",
    "map_line",
    "parse_operation_detail",
    "product_log_id",
    "to_udm_event",
    # Shared by every mapping
    "ENVELOPE_ROWS",
    "SHARED_PROBLEMS",
    "Envelope",
    "envelope",
    "event_metadata",
    "event_timestamp",
    "field_paths",
    "is_email",
    "json_name",
    "map_stored_line",
    "not_an_object",
    "populated_fields",
    "put_additional",
    "record_text",
]


class Rule(StrEnum):
    """How a row of a mapping table fills its UDM field; the text is the row's "logic" column."""

    CONSTANT = "the value in the log-field column is assigned"
    COPY = "the raw field, as a string; omitted when empty"
    FIELD_NAME = "the log field's own name"
    TIME = "RFC 3339; missing or unparseable -> fallback_time (the partition day's start), counted"
    IF_EMAIL = "when the whole value is an e-mail address"
    IF_NOT_EMAIL = "when the value is not an e-mail address"
    EVENT_TYPE = "USER_UNCATEGORIZED if operator, email or email2 is present, else GENERIC_EVENT"
    DETAIL = "new value of the pair 'Key: value' in operation_detail (key case-insensitive)"
    JSON_FIRST = "json_data[0]: userId -> userid; assistant, options -> labels"
    JSON_REST = "json_data[1:]: userId -> userid; assistant, options -> labels; one about entry each"
    EXTRACTED = "extracted from operation_detail by parse_operation_detail"


class MappingRow(NamedTuple):
    source: str
    udm: str
    rule: StrEnum  # a `Rule`, or one of a mapping's own rules


_R = MappingRow
# The rows of the seed's table, in its order; its "–" rows carry their constant in the first column.
UDM_MAPPING: tuple[MappingRow, ...] = (
    # Log field                    UDM field (as Google publishes it)          Rule
    _R("action",                   "metadata.product_event_type",              Rule.COPY),
    _R("category_type",            "additional.fields.key",                    Rule.FIELD_NAME),
    _R("category_type",            "additional.fields.value.string_value",     Rule.COPY),
    _R("Department",               "target.user.department",                   Rule.DETAIL),
    _R("Description",              "target.user.role_description",             Rule.DETAIL),
    _R("Display Name",             "target.user.user_display_name",            Rule.DETAIL),
    _R("Email Address",            "target.user.email_addresses",              Rule.DETAIL),
    _R("First Name",               "target.user.first_name",                   Rule.DETAIL),
    _R("Job Title",                "target.user.title",                        Rule.DETAIL),
    _R("Last Name",                "target.user.last_name",                    Rule.DETAIL),
    _R("Location",                 "target.location.name",                     Rule.DETAIL),
    _R("operation_detail",         "metadata.description",                     Rule.COPY),
    _R("operator",                 "principal.user.email_addresses",           Rule.IF_EMAIL),
    _R("operator",                 "principal.user.userid",                    Rule.IF_NOT_EMAIL),
    _R("Room Name",                "target.user.attribute.labels.value",       Rule.DETAIL),
    _R("Role Name",                "target.user.attribute.roles.name",         Rule.DETAIL),
    _R("time",                     "metadata.event_timestamp.seconds",         Rule.TIME),
    _R("Type",                     "target.user.attribute.labels.value",       Rule.DETAIL),
    _R("User Role",                "target.user.attribute.roles.name",         Rule.DETAIL),
    _R("User Type",                "target.user.attribute.labels.value",       Rule.DETAIL),
    _R("ZOOM_OPERATION_LOGS",      "metadata.log_type",                        Rule.CONSTANT),
    _R("ZOOM",                     "metadata.vendor_name",                     Rule.CONSTANT),
    _R("ZOOM_OPERATION_LOGS",      "metadata.product_name",                    Rule.CONSTANT),
    _R("operator, email, email2",  "metadata.event_type",                      Rule.EVENT_TYPE),
    _R("json_data",                "about.user.attribute.labels.value",        Rule.JSON_REST),
    _R("json_data",                "about.user.userid",                        Rule.JSON_REST),
    _R("json_data",                "target.user.attribute.labels.value",       Rule.JSON_FIRST),
    _R("json_data",                "target.user.userid",                       Rule.JSON_FIRST),
    _R("email",                    "target.user.email_addresses",              Rule.EXTRACTED),
    _R("email2",                   "target.user.email_addresses",              Rule.EXTRACTED),
    _R("role",                     "target.user.attribute.roles.name",         Rule.EXTRACTED),
)  # fmt: skip
del _R
# The rows of the envelope (log type, vendor, product): the sign-in/sign-out mapping has them too.
ENVELOPE_ROWS: tuple[MappingRow, ...] = tuple(r for r in UDM_MAPPING if r.rule is Rule.CONSTANT)

# Problem tags, stable for counting. Those of any mapping: a record that is no object, its time, its values.
NOT_AN_OBJECT = "not_an_object"
TIME_MISSING = "time_missing"
TIME_UNPARSEABLE = "time_unparseable"
NON_STRING_VALUE = "non_string_value"
INVALID_UNICODE = "invalid_unicode"
# Those added by reading the stored line: how a line orjson could not read exactly was read.
LONE_SURROGATE = "lone_surrogate"
BIG_NUMBER = "big_number"
INVALID_UTF8 = "invalid_utf8"
SHARED_PROBLEMS = (
    NOT_AN_OBJECT,
    TIME_MISSING,
    TIME_UNPARSEABLE,
    NON_STRING_VALUE,
    INVALID_UNICODE,
    LONE_SURROGATE,
    BIG_NUMBER,
    INVALID_UTF8,
)
# The operation logs' own, from to_udm_event.
JSON_DATA_INVALID = "json_data_invalid"
PROBLEMS = (*SHARED_PROBLEMS, JSON_DATA_INVALID)

_JSON_LABEL_KEYS = ("assistant", "options")
# Proto knowledge the table leaves implicit: which UDM fields are repeated.
_REPEATED_SCALARS = frozenset({"emailAddresses", "department"})
_REPEATED_MESSAGES = frozenset({"labels", "roles"})


# ---- Table-derived lookups (built once at import) ------------------------------------------------------


def json_name(path: str) -> str:
    """A dotted UDM field as Google publishes it (snake_case) → its proto3 JSON name (camelCase)."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _target_slot(udm: str) -> tuple[tuple[str, ...], str | None]:
    """`target.user.attribute.roles.name` → ((user, attribute, roles), "name"): where a value goes."""
    parts = json_name(udm).split(".")[1:]
    for i, part in enumerate(parts):
        if part in _REPEATED_MESSAGES:
            return tuple(parts[: i + 1]), parts[i + 1]
    return tuple(parts), None


_ADDITIONAL_KEY = next(r.source for r in UDM_MAPPING if r.rule is Rule.FIELD_NAME)

_SCALAR, _LIST, _OBJECTS = 0, 1, 2


def _detail_rules() -> dict[str, tuple[int, tuple[str, ...], str | None, str]]:
    """lower-cased detail key → (kind, target slot, element key, label key), from the DETAIL rows."""
    rules = {}
    for row in UDM_MAPPING:
        if row.rule is Rule.DETAIL:
            slot, element_key = _target_slot(row.udm)
            kind = _OBJECTS if element_key else _LIST if slot[-1] in _REPEATED_SCALARS else _SCALAR
            rules[row.source.lower()] = (kind, slot, element_key, row.source)
    return rules


_DETAIL_RULES = _detail_rules()

_EMAILS_SLOT = ("user", "emailAddresses")
_ROLES_SLOT = ("user", "attribute", "roles")
_LABELS_SLOT = ("user", "attribute", "labels")
_USERID_SLOT = ("user", "userid")


def _ordered_target_slots() -> tuple[tuple[str, ...], ...]:
    """Every target slot, grouped by parent, each group in the order the table first names it."""
    first_seen: dict[tuple[str, ...], int] = {}
    for row in UDM_MAPPING:
        if row.udm.startswith("target."):
            slot = _target_slot(row.udm)[0]
            for depth in range(1, len(slot) + 1):
                first_seen.setdefault(slot[:depth], len(first_seen))
    slots = [s for s in first_seen if not any(o[: len(s)] == s and o != s for o in first_seen)]
    return tuple(sorted(slots, key=lambda s: tuple(first_seen[s[: d + 1]] for d in range(len(s)))))


_TARGET_SLOTS = _ordered_target_slots()
assert {_EMAILS_SLOT, _ROLES_SLOT, _LABELS_SLOT, _USERID_SLOT} <= set(_TARGET_SLOTS)

TARGET_FIELDS: tuple[str, ...] = tuple("target." + ".".join(s) for s in _TARGET_SLOTS) + ("about",)


# ---- operation_detail parsing --------------------------------------------------------------------------

# U+FFFD may stand in the local part for a character lost on the way (a lone surrogate, a bad byte).
_EMAIL_PATTERN = r"[\w.!#$%&'*+/=?^{|}~\ufffd-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,63}"
_EMAIL = re.compile(_EMAIL_PATTERN)
_WHOLE_EMAIL = re.compile(_EMAIL_PATTERN + r"\Z")
_HEAD_SEPARATOR = "  - "
# " - " separates pairs only when a "Key: " follows, and a key holds no " - " and no ":".
_KEY = r"(?:(?! - )[^:]){1,120}"
_PAIR_SEPARATOR = re.compile(r" - (?=" + _KEY + r":(?:\s|\Z))")
_PAIR = re.compile(r"(" + _KEY + r"):(?:\s|\Z)(.*)", re.DOTALL)
_JSON_DATA = re.compile(r"(?:\A| - )json_data:\s*", re.IGNORECASE)
_JSON_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class ParsedDetail:
    """`operation_detail` split into its head and its `Key: value` pairs (values reduced to the new one)."""

    head: str
    email: str | None = None
    email2: str | None = None
    role: str | None = None
    pairs: list[tuple[str, str]] = field(default_factory=list)
    bare: list[str] = field(default_factory=list)
    json_data: list[Any] | None = None
    problems: tuple[str, ...] = ()


def _new_value(value: str) -> str:
    if value.startswith("set to") and (len(value) == 6 or value[6].isspace()):
        return value[6:].strip()
    if value.startswith("from "):
        to = value.find(" to ", 4)
        if to >= 0:
            return value[to + 4 :].strip()
        if value.endswith(" to"):
            return ""
    return value.strip()


def _first_email(text: str) -> str | None:
    if "@" not in text:
        return None
    m = _EMAIL.search(text)
    return m.group() if m else None


def _segments(rest: str) -> tuple[list[str], list[Any] | None, tuple[str, ...]]:
    """Split what follows the head into segments; a json_data value is cut out whole."""
    m = _JSON_DATA.search(rest) if "json_data" in rest.lower() else None
    if m is None:
        return _PAIR_SEPARATOR.split(rest), None, ()
    try:
        data, end = _JSON_DECODER.raw_decode(rest, m.end())
    except (ValueError, RecursionError):
        return _PAIR_SEPARATOR.split(rest), None, (JSON_DATA_INVALID,)
    if not isinstance(data, list):
        return _PAIR_SEPARATOR.split(rest), None, (JSON_DATA_INVALID,)
    before, after = rest[: m.start()], rest[end:].lstrip()
    segments = _PAIR_SEPARATOR.split(before) if before else []
    if after:
        segments.extend(_PAIR_SEPARATOR.split(after[2:] if after.startswith("- ") else after))
    return segments, data, ()


def parse_operation_detail(detail: str) -> ParsedDetail:
    """Parse `<head>  - <Key>: <value> - <Key>: <value>…` ; never raises."""
    cut = detail.find(_HEAD_SEPARATOR)
    if cut < 0:
        head = detail.strip()
        return ParsedDetail(head=head, email=_first_email(head))
    head = detail[:cut].strip()
    segments, json_data, problems = _segments(detail[cut + len(_HEAD_SEPARATOR) :])
    changes_role = head.lower().startswith("change role")
    email2 = role = None
    pairs: list[tuple[str, str]] = []
    bare: list[str] = []
    for segment in segments:
        m = _PAIR.match(segment)
        key = m.group(1).strip() if m else ""
        if not key:
            text = segment.strip()
            if text:
                bare.append(text)
                if email2 is None:
                    email2 = _first_email(text)
            continue
        if key.lower() == "json_data":  # only an invalid one reaches here; it maps nothing
            continue
        new = _new_value(m.group(2))
        pairs.append((key, new))
        if email2 is None:
            key_email = _first_email(key)
            email2 = key_email or _first_email(new)
            if key_email and changes_role and new:
                role = new
    return ParsedDetail(head, _first_email(head), email2, role, pairs, bare, json_data, problems)


# ---- Values (shared) -----------------------------------------------------------------------------------


def _valid_unicode(text: str, problems: list[str]) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        problems.append(INVALID_UNICODE)
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _json_text(value: object) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return str(value)
    except Exception:  # a hostile __str__ or a recursion limit must not lose the record
        return f"<{type(value).__name__}>"


def _as_text(value: object, problems: list[str]) -> str:
    """A value as a string ("" for null); JSON text for dict, list and bool, `str()` for other scalars."""
    if type(value) is not str:
        if value is None:
            return ""
        value = _json_text(value) if isinstance(value, dict | list | tuple | bool) else _str(value)
    return value if value.isascii() else _valid_unicode(value, problems)


def _str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


def record_text(record: dict[Any, Any], key: str, problems: list[str]) -> str:
    """The record's value under `key` as text ("" when absent or null); a value that is not a string is
    flagged `non_string_value`, text that cannot be UTF-8 `invalid_unicode`."""
    value = record.get(key)
    if type(value) is str:
        return value if value.isascii() else _valid_unicode(value, problems)
    if value is not None:
        problems.append(NON_STRING_VALUE)
    return _as_text(value, problems)


def is_email(text: str) -> bool:
    """Whether the whole of `text` is one e-mail address (its local part may hold U+FFFD)."""
    return "@" in text and _WHOLE_EMAIL.match(text) is not None


# ---- Time (shared) -------------------------------------------------------------------------------------

_ZOOM_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
_ISO_TIME = re.compile(r"\s*\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def event_timestamp(record: dict[Any, Any], fallback_time: datetime, problems: list[str]) -> str:
    """The record's `time` in RFC 3339; missing (`time_missing`) or unparseable (`time_unparseable`), the
    fallback time."""
    raw = record.get("time")
    if type(raw) is str and _ZOOM_TIME.fullmatch(raw):
        try:
            datetime.fromisoformat(raw)
            return raw
        except ValueError:
            pass
    text = record_text(record, "time", problems).strip()
    if not text:
        problems.append(TIME_MISSING)
        return _rfc3339(fallback_time)
    if _ISO_TIME.match(text):
        try:
            return _rfc3339(datetime.fromisoformat(text.upper()))
        except (ValueError, OverflowError):
            pass
    problems.append(TIME_UNPARSEABLE)
    return _rfc3339(fallback_time)


# ---- The envelope (shared) -----------------------------------------------------------------------------


class Envelope(NamedTuple):
    """The metadata every event of one mapping carries whatever its record says: its table's constants."""

    vendor: str
    product: str
    log_type: str


def envelope(table: tuple[MappingRow, ...]) -> Envelope:
    """The `Envelope` named by the CONSTANT rows of `table`."""

    def constant(udm: str) -> str:
        return next(r.source for r in table if r.udm == udm and r.rule is Rule.CONSTANT)

    return Envelope(constant("metadata.vendor_name"), constant("metadata.product_name"), constant("metadata.log_type"))


def event_metadata(envelope: Envelope, log_id: str, timestamp: str, event_type: str) -> dict[str, Any]:
    """The metadata every event starts with; a mapping adds its own fields after these."""
    return {
        "productLogId": log_id,
        "eventTimestamp": timestamp,
        "eventType": event_type,
        "vendorName": envelope.vendor,
        "productName": envelope.product,
        "logType": envelope.log_type,
    }


def not_an_object(
    record: object, log_id: str, fallback_time: datetime, envelope: Envelope
) -> tuple[dict, tuple[str, ...]]:
    """The one event for a stored line that holds no JSON object: its text as the description."""
    problems = [NOT_AN_OBJECT, TIME_MISSING]
    metadata = event_metadata(envelope, log_id, _rfc3339(fallback_time), "GENERIC_EVENT")
    description = _as_text(_json_text(record), problems)
    if description:
        metadata["description"] = description
    return {"metadata": metadata}, tuple(dict.fromkeys(problems))


def put_additional(event: dict[str, Any], key: str, value: str) -> None:
    """One `additional.fields` entry (key, value.string_value): in Chronicle API JSON `additional` is a
    protobuf Struct, so the entry is its member `key: value`. An empty value adds nothing."""
    if value:
        additional = event.get("additional")
        if additional is None:
            event["additional"] = {key: value}
        else:
            additional[key] = value


def field_paths(fields: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`fields` (dotted camelCase names) with their paths, for `populated_fields`."""
    return tuple((name, tuple(name.split("."))) for name in fields)


def populated_fields(event: dict, paths: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[str, ...]:
    """The fields of `paths` (from `field_paths`) that `event` holds a non-empty value in."""
    covered = []
    for name, path in paths:
        node: Any = event
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if node:
            covered.append(name)
    return tuple(covered)


def product_log_id(raw_line: bytes, occurrence: int) -> str:
    """Stable id of the `occurrence`-th (0-based) copy of an identical NDJSON line within a day.

    A trailing line break is not part of the line, so the id is the same with or without it.
    """
    line = raw_line.rstrip(b"\r\n")
    return hashlib.sha256(line + b"\x00" + str(occurrence).encode()).hexdigest()[:32]


# ---- Operation-log events ------------------------------------------------------------------------------

_ENVELOPE = envelope(UDM_MAPPING)
_COVERAGE_PATHS = field_paths(TARGET_FIELDS)


def _dedupe_emails(emails: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for email in emails:
        folded = email.casefold()
        if folded not in seen:
            seen.add(folded)
            kept.append(email)
    return kept


def _json_user(element: dict[Any, Any], problems: list[str]) -> tuple[str, list[dict[str, str]]]:
    userid = _as_text(element.get("userId"), problems)
    labels = []
    for key in _JSON_LABEL_KEYS:
        value = _as_text(element.get(key), problems)
        if value:
            labels.append({"key": key, "value": value})
    return userid, labels


def to_udm_event(record: object, *, log_id: str, fallback_time: datetime) -> tuple[dict, tuple[str, ...]]:
    """One raw operation-log record → (one UDM event, problem tags). Never raises, never drops."""
    if not isinstance(record, dict):
        return not_an_object(record, log_id, fallback_time, _ENVELOPE)
    problems: list[str] = []
    timestamp = event_timestamp(record, fallback_time, problems)
    operator = record_text(record, "operator", problems).strip()
    action = record_text(record, "action", problems)
    category = record_text(record, "category_type", problems)
    detail = record_text(record, "operation_detail", problems)

    slots: dict[tuple[str, ...], Any] = {}
    about: list[dict[str, Any]] = []
    email = email2 = None
    if detail:
        parsed = parse_operation_detail(detail)
        problems.extend(parsed.problems)
        email, email2 = parsed.email, parsed.email2
        emails = [e for e in (email, email2) if e]
        if parsed.role:
            slots[_ROLES_SLOT] = [{"name": parsed.role}]
        for key, new in parsed.pairs:
            rule = _DETAIL_RULES.get(key.lower())
            if rule is None or not new:
                continue
            kind, slot, element_key, source = rule
            if kind == _SCALAR:
                slots[slot] = new
            elif slot == _EMAILS_SLOT:
                emails.append(new)
            elif kind == _LIST:
                slots.setdefault(slot, []).append(new)
            elif slot == _LABELS_SLOT:
                slots.setdefault(slot, []).append({"key": source, element_key: new})
            else:
                slots.setdefault(slot, []).append({element_key: new})
        if emails:
            slots[_EMAILS_SLOT] = _dedupe_emails(emails) if len(emails) > 1 else emails
        if parsed.json_data:
            for index, element in enumerate(parsed.json_data):
                if not isinstance(element, dict):
                    problems.append(JSON_DATA_INVALID)
                    continue
                userid, labels = _json_user(element, problems)
                if index == 0:
                    if userid:
                        slots[_USERID_SLOT] = userid
                    if labels:
                        slots.setdefault(_LABELS_SLOT, []).extend(labels)
                    continue
                user: dict[str, Any] = {"userid": userid} if userid else {}
                if labels:
                    user["attribute"] = {"labels": labels}
                if user:
                    about.append({"user": user})

    event_type = "USER_UNCATEGORIZED" if operator or email or email2 else "GENERIC_EVENT"
    metadata = event_metadata(_ENVELOPE, log_id, timestamp, event_type)
    if action:
        metadata["productEventType"] = action
    if detail:
        metadata["description"] = detail
    event: dict[str, Any] = {"metadata": metadata}
    if operator:
        user = {"emailAddresses": [operator]} if is_email(operator) else {"userid": operator}
        event["principal"] = {"user": user}
    if slots:
        target: dict[str, Any] = {}
        for slot in _TARGET_SLOTS:
            value = slots.get(slot)
            if value is not None:
                node = target
                for part in slot[:-1]:
                    node = node.setdefault(part, {})
                node[slot[-1]] = value
        event["target"] = target
    if about:
        event["about"] = about
    put_additional(event, _ADDITIONAL_KEY, category)
    return event, tuple(dict.fromkeys(problems)) if problems else ()


def coverage(event: dict) -> tuple[str, ...]:
    """The `TARGET_FIELDS` that `event` populates."""
    return populated_fields(event, _COVERAGE_PATHS)


# ---- Stored lines (shared) -----------------------------------------------------------------------------

# orjson reads an integer outside [-2**63, 2**64) as a float: any run of 19 digits sends the line to the
# standard library as well (a run inside a string costs a second parse, nothing else).
_LONG_DIGITS = re.compile(rb"\d{19}")
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# One backslash escape of a JSON string, scanned left to right so that `\\` is consumed whole: a
# surrogate pair (kept), a lone surrogate (group 1, replaced), or any other escape (kept).
_ESCAPE = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)",
    re.DOTALL,
)
_NOT_READ = object()


class _NumberText(str):
    """A JSON number Python cannot hold (over 4300 digits, beyond double range), as its literal text.

    Not a `str` to `type() is str`, so a mapped field holding one is flagged `non_string_value` like
    any other number, and it maps to its text.
    """

    __slots__ = ()


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _read_exactly(text: str, problems: list[str]) -> object:
    """`text` read by the standard library: strict JSON, exact numbers; raises ValueError if not JSON."""

    def parse_int(literal: str) -> object:
        try:
            value = int(literal)
        except ValueError:  # beyond sys.get_int_max_str_digits()
            problems.append(BIG_NUMBER)
            return _NumberText(literal)
        if not _INT_MIN <= value <= _INT_MAX:
            problems.append(BIG_NUMBER)
        return value

    def parse_float(literal: str) -> object:
        value = float(literal)
        if math.isinf(value):
            problems.append(BIG_NUMBER)
            return _NumberText(literal)
        return value

    decoder = json.JSONDecoder(parse_int=parse_int, parse_float=parse_float, parse_constant=_refuse_constant)
    return decoder.decode(text)


def _replace_lone_surrogates(text: str, problems: list[str]) -> str:
    def replace(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group()
        problems.append(LONE_SURROGATE)
        return "\\ufffd"

    return _ESCAPE.sub(replace, text) if "\\" in text else text


def _read_line(line: bytes) -> tuple[object, list[str]]:
    """The record a stored line holds, and how it had to be read; a line that is not JSON as its text."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = _NOT_READ
    else:
        # Zoom's records hold strings only: then no number can have been read inexactly.
        if isinstance(record, dict) and all(type(v) is str for v in record.values()):
            return record, []
        if not _LONG_DIGITS.search(line):
            return record, []
    problems: list[str] = []
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
        problems.append(INVALID_UTF8)
    try:
        exact = _read_exactly(_replace_lone_surrogates(text, problems), problems)
    except (ValueError, RecursionError):
        if record is not _NOT_READ:
            return record, []  # nested deeper than the standard library goes: orjson's reading stands
        return line.decode("utf-8", "replace"), []  # still one event, flagged not_an_object
    return exact, problems


def map_stored_line(
    line: bytes,
    occurrence: int,
    fallback_time: datetime,
    to_event: Callable[..., tuple[dict, tuple[str, ...]]],
    covered: Callable[[dict], tuple[str, ...]],
) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """`line` read as above and mapped by `to_event(record, log_id=..., fallback_time=...)` (which maps
    anything, a non-object included) → (the event as compact UTF-8 JSON, the problem tags of the reading
    and of the mapping, `covered(event)`). The id is `product_log_id(line, occurrence)`."""
    record, read_problems = _read_line(line)
    event, problems = to_event(record, log_id=product_log_id(line, occurrence), fallback_time=fallback_time)
    if read_problems:
        problems = tuple(dict.fromkeys([*read_problems, *problems]))
    return orjson.dumps(event), problems, covered(event)


def map_line(line: bytes, occurrence: int, fallback_time: datetime) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """One stored raw NDJSON line, the `occurrence`-th (0-based) copy of it in its day → one UDM event.

    Returns (the event as one line of compact UTF-8 JSON, without line break; the problem tags; the
    covered `TARGET_FIELDS`). The id is `product_log_id` of the exact stored bytes. Never raises.
    """
    return map_stored_line(line, occurrence, fallback_time, to_udm_event, coverage)
