"""Golden and property tests of zoom_pipeline.udm_activity (sign-in/sign-out records → UDM).

Every expected event below is written out by hand from the mapping rules (the module's docstring and the
issue text), never computed by the code under test. Lines are stored as the collector stores records
(`ledger.encode_record`), or given as raw bytes where the bytes are the point.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from datetime import UTC, datetime

import orjson
import pytest

# The envelope and id helpers of the operation-log tests: activity events carry the same envelope.
from tests.test_udm import RFC3339, _assert_no_empty_values, _fffd, _has, _id, _is_big, _meta
from zoom_pipeline.ledger import encode_record
from zoom_pipeline.udm import PROBLEMS, UDM_MAPPING, Rule, map_line, product_log_id
from zoom_pipeline.udm_activity import (
    ACTIVITY_PROBLEMS,
    ACTIVITY_TARGET_FIELDS,
    ACTIVITY_UDM_MAPPING,
    ActivityRule,
    activity_coverage,
    map_activity_line,
    to_activity_event,
)

FALLBACK = datetime(2026, 11, 28, tzinfo=UTC)
DAY_START = "2026-11-28T00:00:00Z"
TIME = "2026-11-28T13:04:05Z"  # the time of SIGN_IN
AUTH = {"auth": {"type": "AUTHTYPE_UNSPECIFIED"}}
V4 = "203.0.113.5"
V6 = "2001:db8:85a3::8a2e:370:7334"
SIGN_IN = {
    "email": "a@b.com",
    "time": TIME,
    "type": "Sign in",
    "ip_address": V4,
    "client_type": "Browser",
    "version": "-",
}


BROWSER_SIGN_IN = {"client_type": "Browser", "type": "Sign in"}
USER_AND_ADDRESS = ("target.user.emailAddresses", "principal.ip", "principal.asset.ip")  # covered fields


def _principal(ip: str) -> dict:
    return {"ip": [ip], "asset": {"ip": [ip]}}


def _user(email: str) -> dict:
    return {"user": {"emailAddresses": [email]}}


def _event(
    timestamp: str,
    event_type: str,
    *,
    version: str | None = None,
    ip: str | None = None,
    target: dict | None = None,
    auth: bool = False,
    additional: dict | None = None,
) -> dict:
    """One whole expected event, in the order of Chronicle's JSON: the metadata (its id that of b"", which
    test_golden replaces by the line's own), `ip` as the principal, the target, `auth` the extensions."""
    event: dict = {"metadata": _meta(b"", timestamp, event_type, **({"productVersion": version} if version else {}))}
    if ip is not None:
        event["principal"] = _principal(ip)
    if target is not None:
        event["target"] = target
    if auth:
        event["extensions"] = AUTH
    if additional is not None:
        event["additional"] = additional
    return event


SIGN_OUT = {
    "email": "jane.doe@example.com",
    "time": "2026-11-28T18:30:00Z",
    "type": "Sign out",
    "ip_address": V6,
    "client_type": "Windows",
    "version": "6.2.5.43211",
}
WITH_VERSION = (*USER_AND_ADDRESS, "metadata.productVersion")  # covered fields
NOT_UTF8_LINE = (
    b'{"email":"j\xffrg@example.com","time":"2026-11-28T13:04:05Z","type":"Sign in",'
    b'"ip_address":"203.0.113.5","client_type":"Mac\xc3","version":"6.2.5.43211"}'
)

# (record, or the stored line itself where the bytes are the point; the whole expected event; problems; covered)
GOLDEN = [
    pytest.param(SIGN_IN,
                 _event(TIME, "USER_LOGIN", ip=V4, target=_user("a@b.com"), auth=True, additional=BROWSER_SIGN_IN),
                 (), USER_AND_ADDRESS, id="sign-in-ipv4-browser-no-version"),
    pytest.param(SIGN_OUT,
                 _event("2026-11-28T18:30:00Z", "USER_LOGOUT", version="6.2.5.43211", ip=V6,
                        target=_user("jane.doe@example.com"), auth=True,
                        additional={"client_type": "Windows", "type": "Sign out"}),
                 (), WITH_VERSION, id="sign-out-ipv6-windows-with-version"),
    pytest.param({**SIGN_IN, "type": "Switch account"},
                 _event(TIME, "USER_UNCATEGORIZED", ip=V4, target=_user("a@b.com"),
                        additional={"client_type": "Browser", "type": "Switch account"}),
                 ("type_unknown",), USER_AND_ADDRESS, id="unknown-type"),
    pytest.param({k: v for k, v in SIGN_IN.items() if k != "type"},
                 _event(TIME, "USER_UNCATEGORIZED", ip=V4, target=_user("a@b.com"),
                        additional={"client_type": "Browser"}),
                 ("type_unknown",), USER_AND_ADDRESS, id="no-type"),
    pytest.param({**SIGN_IN, "type": " SIGN OUT "},
                 _event(TIME, "USER_LOGOUT", ip=V4, target=_user("a@b.com"), auth=True,
                        additional={"client_type": "Browser", "type": " SIGN OUT "}),
                 (), USER_AND_ADDRESS, id="type-case-and-spaces-aside-kept-as-written"),
    pytest.param({k: v for k, v in SIGN_IN.items() if k != "email"},
                 _event(TIME, "GENERIC_EVENT", ip=V4, additional=BROWSER_SIGN_IN),
                 ("email_missing",), ("principal.ip", "principal.asset.ip"), id="missing-email"),
    pytest.param({**SIGN_IN, "email": "  "},
                 _event(TIME, "GENERIC_EVENT", ip=V4, additional=BROWSER_SIGN_IN),
                 ("email_missing",), ("principal.ip", "principal.asset.ip"), id="blank-email"),
    pytest.param({**SIGN_IN, "email": " jdoe "},
                 _event(TIME, "USER_LOGIN", ip=V4, target={"user": {"userid": "jdoe"}}, auth=True,
                        additional=BROWSER_SIGN_IN),
                 ("email_invalid",), ("target.user.userid", "principal.ip", "principal.asset.ip"),
                 id="email-not-an-address-is-the-userid"),
    pytest.param({**SIGN_IN, "ip_address": "203.0.113.256"},
                 _event(TIME, "USER_LOGIN", target=_user("a@b.com"), auth=True,
                        additional={"client_type": "Browser", "ip_address": "203.0.113.256", "type": "Sign in"}),
                 ("ip_invalid",), ("target.user.emailAddresses",), id="invalid-ip-kept-in-additional"),
    pytest.param({**SIGN_IN, "ip_address": ""},
                 _event(TIME, "USER_LOGIN", target=_user("a@b.com"), auth=True, additional=BROWSER_SIGN_IN),
                 (), ("target.user.emailAddresses",), id="no-ip-no-principal-no-problem"),
    pytest.param({k: v for k, v in SIGN_IN.items() if k != "time"},
                 _event(DAY_START, "USER_LOGIN", ip=V4, target=_user("a@b.com"), auth=True,
                        additional=BROWSER_SIGN_IN),
                 ("time_missing",), USER_AND_ADDRESS, id="missing-time"),
    pytest.param({**SIGN_IN, "time": "yesterday"},
                 _event(DAY_START, "USER_LOGIN", ip=V4, target=_user("a@b.com"), auth=True,
                        additional=BROWSER_SIGN_IN),
                 ("time_unparseable",), USER_AND_ADDRESS, id="unparseable-time"),
    pytest.param({**SIGN_IN, "time": "2026-11-28T14:04:05+01:00"},
                 _event(TIME, "USER_LOGIN", ip=V4, target=_user("a@b.com"), auth=True,
                        additional=BROWSER_SIGN_IN),
                 (), USER_AND_ADDRESS, id="time-with-offset-in-utc"),
    pytest.param({"email": "x@example.com", "time": TIME, "type": "Sign in", "ip_address": 3405803781,
                  "client_type": "Mac", "version": 6.2},
                 _event(TIME, "USER_LOGIN", version="6.2", target=_user("x@example.com"), auth=True,
                        additional={"client_type": "Mac", "ip_address": "3405803781", "type": "Sign in"}),
                 ("non_string_value", "ip_invalid"), ("target.user.emailAddresses", "metadata.productVersion"),
                 id="non-string-values-as-text"),
    pytest.param({"email": "ops\ud800@example.com", "time": TIME, "type": "Sign in", "ip_address": V4,
                  "client_type": "iOS", "version": 123456789012345678901234567890},
                 _event(TIME, "USER_LOGIN", version="123456789012345678901234567890", ip=V4,
                        target=_user("ops\ufffd@example.com"), auth=True,
                        additional={"client_type": "iOS", "type": "Sign in"}),
                 ("lone_surrogate", "big_number", "non_string_value"), WITH_VERSION,
                 id="lone-surrogate-and-big-number-as-for-operation-logs"),
    pytest.param(NOT_UTF8_LINE,
                 _event(TIME, "USER_LOGIN", version="6.2.5.43211", ip=V4, target=_user("j\ufffdrg@example.com"),
                        auth=True, additional={"client_type": "Mac\ufffd", "type": "Sign in"}),
                 ("invalid_utf8",), WITH_VERSION, id="bytes-not-utf8-replaced-and-flagged"),
    pytest.param({}, _event(DAY_START, "GENERIC_EVENT"), ("time_missing", "type_unknown", "email_missing"), (),
                 id="empty-object"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "expected", "problems", "covered"), GOLDEN)
def test_golden(record: dict | bytes, expected: dict, problems: tuple[str, ...], covered: tuple[str, ...]) -> None:
    line = record if isinstance(record, bytes) else encode_record(record)
    expected = {**expected, "metadata": {**expected["metadata"], "productLogId": _id(line)}}
    out, got, got_covered = map_activity_line(line, 0, FALLBACK)
    assert orjson.loads(out) == expected
    assert out == orjson.dumps(expected), "same content, but the key order differs"
    assert got == problems
    assert got_covered == covered


def test_sign_in_serialises_to_the_exact_line() -> None:
    line = encode_record(SIGN_IN)
    out, problems, _ = map_activity_line(line, 0, FALLBACK)
    assert out == (
        b'{"metadata":{"productLogId":"' + _id(line).encode() + b'","eventTimestamp":"2026-11-28T13:04:05Z",'
        b'"eventType":"USER_LOGIN","vendorName":"ZOOM","productName":"ZOOM_OPERATION_LOGS",'
        b'"logType":"ZOOM_OPERATION_LOGS"},'
        b'"principal":{"ip":["203.0.113.5"],"asset":{"ip":["203.0.113.5"]}},'
        b'"target":{"user":{"emailAddresses":["a@b.com"]}},'
        b'"extensions":{"auth":{"type":"AUTHTYPE_UNSPECIFIED"}},'
        b'"additional":{"client_type":"Browser","type":"Sign in"}}'
    )
    assert problems == ()


@pytest.mark.parametrize(
    ("written", "mapped"),
    [
        pytest.param("2001:DB8::1", "2001:DB8::1", id="upper-case-kept"),
        pytest.param("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:0db8:0000:0000:0000:0000:0000:0001",
                     id="exploded-kept"),
        pytest.param("::ffff:203.0.113.5", "::ffff:203.0.113.5", id="v4-mapped"),
        pytest.param("::1", "::1", id="loopback"),
        pytest.param(" 203.0.113.5 ", "203.0.113.5", id="trimmed"),
    ],
)  # fmt: skip
def test_addresses_map_as_written(written: str, mapped: str) -> None:
    event, problems = to_activity_event({**SIGN_IN, "ip_address": written}, log_id="x", fallback_time=FALLBACK)
    assert event["principal"] == _principal(mapped)
    assert problems == ()


@pytest.mark.parametrize(
    "written",
    ["unknown", "-", "203.0.113", "203.0.113.5.6", "203.0.113.05", "203.0.113.0/24", "203.0.113.5:443",
     "fe80::1%eth0", "2001:db8::g", "203.0.113.5, 10.0.0.1", "[2001:db8::1]", "localhost"],
)  # fmt: skip
def test_what_is_not_an_address_is_kept_in_additional(written: str) -> None:
    event, problems = to_activity_event({**SIGN_IN, "ip_address": written}, log_id="x", fallback_time=FALLBACK)
    assert "principal" not in event
    assert event["additional"] == {"client_type": "Browser", "ip_address": written, "type": "Sign in"}
    assert problems == ("ip_invalid",)


def test_an_address_is_what_ipaddress_reads_without_a_zone() -> None:
    rng = random.Random(3)
    alphabet = "0123456789abcdefABCDEF.:%x /٣"
    candidates = ["١٢.٣.٤.٥", "٣.٣.٣.٣", "1.2.3.4\n", "0.0.0.0", "255.255.255.255", "256.0.0.1"]
    candidates += ["::", "1::2::3", "::ffff:1.2.3.4", "::ffff:٣.٣.٣.٣"]
    candidates += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(20_000)]
    candidates += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(500)]
    candidates += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(500)]
    for text in candidates:
        trimmed = text.strip()
        try:
            ipaddress.ip_address(trimmed)
            expected = "%" not in trimmed
        except ValueError:
            expected = False
        event, problems = to_activity_event({**SIGN_IN, "ip_address": text}, log_id="x", fallback_time=FALLBACK)
        assert (event.get("principal") == _principal(trimmed)) == expected, repr(text)
        assert ("principal" in event) == expected, repr(text)
        assert ("ip_invalid" in problems) == (bool(trimmed) and not expected), repr(text)


@pytest.mark.parametrize(
    ("line", "description"),
    [
        pytest.param(b"not json at all", '"not json at all"', id="text"),
        pytest.param(b'{"email":"a@b.com","type":"Sign', '"{\\"email\\":\\"a@b.com\\",\\"type\\":\\"Sign"',
                     id="truncated"),
        pytest.param(b"", '""', id="empty"),
        pytest.param(b"bad \xff bytes", '"bad \ufffd bytes"', id="text-not-utf8"),
        pytest.param(b'["Sign in","a@b.com"]', '["Sign in","a@b.com"]', id="list"),
        pytest.param(b"null", "null", id="null"),
        pytest.param(b"42", "42", id="number"),
    ],
)  # fmt: skip
def test_a_line_without_an_object_is_one_event(line: bytes, description: str) -> None:
    out, problems, covered = map_activity_line(line, 0, FALLBACK)
    assert orjson.loads(out) == {"metadata": _meta(line, DAY_START, "GENERIC_EVENT", description=description)}
    assert problems == ("not_an_object", "time_missing")
    assert covered == ()
    assert (out, problems) == map_line(line, 0, FALLBACK)[:2]  # the envelope the operation logs have


# ---- ids -----------------------------------------------------------------------------------------------


def test_identical_records_get_stable_distinct_ids() -> None:
    line = encode_record(SIGN_IN)
    outs = [map_activity_line(line, n, FALLBACK) for n in range(3)]
    ids = [orjson.loads(out)["metadata"]["productLogId"] for out, _, _ in outs]
    assert ids == [_id(line, 0), _id(line, 1), _id(line, 2)]
    assert len(set(ids)) == 3
    assert ids == [product_log_id(line, n) for n in range(3)]  # the operation logs' id scheme
    assert len({out.replace(i.encode(), b"") for (out, _, _), i in zip(outs, ids, strict=True)}) == 1
    assert len({(problems, covered) for _, problems, covered in outs}) == 1
    assert map_activity_line(line, 1, FALLBACK) == outs[1]  # the same line and occurrence, the same event


def test_ids_are_those_of_the_exact_stored_bytes() -> None:
    compact = encode_record(SIGN_IN)
    spaced = json.dumps(SIGN_IN).encode()  # the same record, other bytes
    first, second = map_activity_line(compact, 0, FALLBACK)[0], map_activity_line(spaced, 0, FALLBACK)[0]
    assert orjson.loads(first)["metadata"]["productLogId"] == _id(compact)
    assert orjson.loads(second)["metadata"]["productLogId"] == _id(spaced) != _id(compact)


# ---- the table -----------------------------------------------------------------------------------------


def test_mapping_table() -> None:
    assert [(row.source, row.udm) for row in ACTIVITY_UDM_MAPPING] == [
        ("client_type", "additional.fields.key"),
        ("client_type", "additional.fields.value.string_value"),
        ("email", "target.user.email_addresses"),
        ("email", "target.user.userid"),
        ("ip_address", "principal.ip"),
        ("ip_address", "principal.asset.ip"),
        ("ip_address", "additional.fields.key"),
        ("ip_address", "additional.fields.value.string_value"),
        ("time", "metadata.event_timestamp.seconds"),
        ("type", "additional.fields.key"),
        ("type", "additional.fields.value.string_value"),
        ("version", "metadata.product_version"),
        ("ZOOM_OPERATION_LOGS", "metadata.log_type"),
        ("ZOOM", "metadata.vendor_name"),
        ("ZOOM_OPERATION_LOGS", "metadata.product_name"),
        ("type, email", "metadata.event_type"),
        ("AUTHTYPE_UNSPECIFIED", "extensions.auth.type"),
    ]
    assert all(isinstance(row.rule, Rule | ActivityRule) for row in ACTIVITY_UDM_MAPPING)


def test_vendor_product_and_log_type_are_those_of_the_operation_logs() -> None:
    def constants(table):
        return {(r.source, r.udm) for r in table if r.rule is Rule.CONSTANT and r.udm.startswith("metadata.")}

    assert constants(ACTIVITY_UDM_MAPPING) == constants(UDM_MAPPING)


def test_target_fields_and_coverage() -> None:
    assert ACTIVITY_TARGET_FIELDS == (
        "target.user.emailAddresses",
        "target.user.userid",
        "principal.ip",
        "principal.asset.ip",
        "metadata.productVersion",
    )
    assert activity_coverage({"metadata": {}}) == ()


def test_problem_tags_are_listed() -> None:
    assert {"type_unknown", "email_missing", "email_invalid", "ip_invalid"} <= set(ACTIVITY_PROBLEMS)
    assert set(PROBLEMS) - set(ACTIVITY_PROBLEMS) == {"json_data_invalid"}  # the rest: reading a line
    assert len(set(ACTIVITY_PROBLEMS)) == len(ACTIVITY_PROBLEMS)


# ---- properties over random and garbage input ----------------------------------------------------------

VALUES = (
    None, "", " ", "-", "a@b.com", " a@b.com ", "jdoe", "ops\ud800@x.com", "j\ufffd@example.com", "@", "a@",
    "Sign in", "Sign out", "sign IN", "Sign up", "2026-11-28T13:04:05Z", "2026-11-28t13:04:05z", "2026-13-40",
    V4, V6, "::1", "fe80::1%eth0", "999.1.1.1", "1.2.3", "Browser", "Windows", "Zoom Rooms", "6.2.5.43211",
    "日本", "🚀", "\u202e", "\x00", "\n", "x" * 300, 0, 1, -1, 2**70, -(2**64), 1.5, 1e300, True, False,
    [], [V4], {}, {"ip": V4},
)  # fmt: skip
KEYS = ("email", "time", "type", "ip_address", "client_type", "version", "other")
EVENT_TYPES = {"USER_LOGIN", "USER_LOGOUT", "USER_UNCATEGORIZED", "GENERIC_EVENT"}


def _random_record(rng: random.Random) -> object:
    if rng.random() < 0.05:
        return rng.choice(VALUES)
    return {key: rng.choice(VALUES) for key in KEYS if rng.random() < 0.85}


def _assert_valid_event(event: dict, problems: tuple[str, ...], covered: tuple[str, ...]) -> None:
    _assert_no_empty_values(event)
    metadata = event["metadata"]
    assert RFC3339.fullmatch(metadata["eventTimestamp"])
    assert (metadata["vendorName"], metadata["productName"], metadata["logType"]) == (
        "ZOOM",
        "ZOOM_OPERATION_LOGS",
        "ZOOM_OPERATION_LOGS",
    )
    assert metadata["eventType"] in EVENT_TYPES
    assert set(event) <= {"metadata", "principal", "target", "extensions", "additional"}
    assert ("extensions" in event) == (metadata["eventType"] in ("USER_LOGIN", "USER_LOGOUT"))
    if "principal" in event:
        ips = event["principal"]["ip"]
        assert ips == event["principal"]["asset"]["ip"] and len(ips) == 1
        ipaddress.ip_address(ips[0])
    assert ("ip_invalid" in problems) == ("ip_address" in event.get("additional", {}))
    assert (metadata["eventType"] == "GENERIC_EVENT") == ("email_missing" in problems or "not_an_object" in problems)
    assert set(problems) <= set(ACTIVITY_PROBLEMS) and len(set(problems)) == len(problems)
    assert covered == activity_coverage(event)


def test_fuzz_records_map_like_to_activity_event_and_never_raise() -> None:
    rng = random.Random(20261128)
    surrogates = bigs = 0
    event_types = set()
    for n in range(3000):
        record = _random_record(rng)
        line = encode_record(record)
        out, problems, covered = map_activity_line(line, n % 2, FALLBACK)
        event = orjson.loads(out)
        assert event["metadata"]["productLogId"] == _id(line, n % 2)
        _assert_valid_event(event, problems, covered)
        event_types.add(event["metadata"]["eventType"])
        lone = _has(record, lambda v: isinstance(v, str) and re.search("[\ud800-\udfff]", v) is not None)
        big = _has(record, _is_big)
        surrogates, bigs = surrogates + lone, bigs + big
        expected, expected_problems = to_activity_event(_fffd(record), log_id=_id(line, n % 2), fallback_time=FALLBACK)
        assert out == orjson.dumps(expected)
        assert [p for p in problems if p not in ("lone_surrogate", "big_number")] == list(expected_problems)
        assert ("lone_surrogate" in problems) == lone
        assert ("big_number" in problems) == big
        has_email = isinstance(record, dict) and record.get("email") is not None and str(record["email"]).strip()
        assert ("email_missing" in problems) == (isinstance(record, dict) and not has_email)
    assert surrogates > 100 and bigs > 100
    assert event_types == EVENT_TYPES


def test_fuzz_one_valid_event_per_line_and_never_raises() -> None:
    rng = random.Random(11)
    lines = [encode_record(SIGN_IN)]
    for _ in range(3000):
        base = bytearray(encode_record(_random_record(rng)))
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(base) + 1)
            kind = rng.randrange(3)
            if kind == 0:
                del base[at:]
            elif kind == 1:
                base[at:at] = rng.choice((b"\\ud800", b"\\", b'"', b"\xff", b"9" * 25, b"\r", b"{", b"]"))
            elif base:
                del base[min(at, len(base) - 1)]
        lines.append(bytes(base).replace(b"\n", b""))  # a stored line never holds a line feed
    lines += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))).replace(b"\n", b"") for _ in range(500)]
    for n, line in enumerate(lines):
        out, problems, covered = map_activity_line(line, n, FALLBACK)
        assert b"\n" not in out
        event = orjson.loads(out.decode("utf-8"))
        assert event["metadata"]["productLogId"] == _id(line, n)
        _assert_valid_event(event, problems, covered)
        try:
            is_object = isinstance(json.loads(line.decode("utf-8", "replace")), dict)
        except (ValueError, RecursionError):
            is_object = False
        assert ("not_an_object" in problems) == (not is_object), line
