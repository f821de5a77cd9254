"""Zoom REST API simulator served over real HTTP on 127.0.0.1.

Simulates Server-to-Server OAuth (``POST /oauth/token``) and two report endpoints, the admin operation
logs (``GET /v2/report/operationlogs``) and the sign-in / sign-out activity report
(``GET /v2/report/activities``), closely enough to test a real client: Zoom's error bodies and status
codes, per-endpoint scopes, newest-first offset paging with expiring opaque page tokens, injectable
faults (429s, 5xx, truncated bodies, 200s without records, resets, ...), events that arrive while a client pages
(``on_report_call``, ``late_events`` at a chosen position), an unspecified order within one second
(``configure(shuffle_within_second=True)``), raw invalid UTF-8 inside a record (``bytes`` values), and
lazily generated days of up to millions of records.
Where Zoom is undocumented, the choice is noted inline.

Both endpoints run on the same machinery. Every method that addresses records, faults or report calls
takes ``log="operationlogs"`` (the default) or ``log="activities"`` (the values of ``LOGS``: the last
segment of the endpoint's path); each endpoint has its own days, page tokens, faults and call numbers.

Zoom keeps rate limits, tokens and data per account, and so does the simulator: besides account
``"default"`` (the constructor's credentials), ``add_account`` adds accounts with their own credentials,
scopes, per-second limit, days, access and page tokens, faults and counters. An access token serves its
own account's data only; every method that addresses days, faults, settings or counters takes
``account="default"``.

Use it in-process (``with ZoomSimulator().start() as sim: ...``), or from another process through the
JSON control endpoints under ``/_sim/`` (``python -m zoom_pipeline.simulator --port 8765``):
``GET stats|config|faults|accounts|records?day=&offset=&limit=&log=&account=`` and ``POST day|add|fault|
trigger|late_events|make_records|config|reset_stats|expire_page_tokens|expire_access_tokens|clear_faults|
reset|account``, each taking the Python method's arguments (``log`` and ``account`` included) as a JSON
object (``POST account`` those of add_account; it answers the new account's credentials). JSON cannot
carry bytes, so there a record value ``{"raw": "<latin-1 text>"}`` stands for the bytes of that text in
latin-1 (``"ops\\u00ffadmin"`` is ``b"ops\\xffadmin"``), the same convention as the ``raw_body`` fault;
GET records answers in that form too.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import functools
import ipaddress
import math
import random
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import orjson

__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_SCOPES", "FAULT_KINDS", "LOGS", "TOKEN_FAULT_KINDS", "SimAccount",
           "ZoomSimulator", "main"]

DEFAULT_ACCOUNT = "default"  # the account of the constructor's credentials
DEFAULT_SCOPES = "report:read:operation_logs:admin report:read:user_activities:admin"  # both report endpoints
FAULT_KINDS = frozenset(
    {
        "rate_limit_qps",
        "rate_limit_daily",
        "server_error",
        "truncated_body",
        "token_expired",
        "invalid_page_token",
        "connection_reset",
        "slow",
        "raw_body",
        "malformed_page",
    }
)
# What a `malformed_page` fault answers with HTTP 200 (as gateways and proxies in front of an API do):
# the page's envelope with its records list missing, null or an object, or a bare error message.
MALFORMED_SHAPES = ("missing", "null", "object", "empty", "message")
TOKEN_FAULT_KINDS = frozenset({"token_server_error", "token_connection_reset", "token_slow"})
LAST_TOKEN_STYLES = ("empty", "null", "missing")
DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 300

MSG_INVALID_TOKEN = "Invalid access token."
MSG_EXPIRED_TOKEN = "Access token is expired."
MSG_BAD_PAGE_TOKEN = "The next page token is invalid or expired."
MSG_RETENTION = "Only provide report in recent 6 months"
MSG_QPS = "You have reached the maximum per-second rate limit for this API. Try again later."
MSG_DAILY = (
    "You have reached the maximum daily rate limit for this API. "
    "Refer to the response header for details on when you can make another request."
)

_JSON = "application/json;charset=UTF-8"
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_M64 = (1 << 64) - 1
_U_BITS = 20  # sub-slot jitter resolution for synthetic times
_U_MASK = (1 << _U_BITS) - 1


# --------------------------------------------------------------------------------------------------
# Vocabulary: realistic records built from verbatim public samples of `operation_detail`.
# --------------------------------------------------------------------------------------------------

_FIRST = ["homer", "lisa", "bart", "marge", "alice", "bob", "carol", "dave", "erin", "frank", "grace",
          "heidi", "ivan", "judy", "oscar", "peggy", "trent", "victor", "walter", "priya", "wei", "fatima"]
_LAST = ["simpson", "flanders", "nguyen", "garcia", "smith", "kowalski", "mueller", "tanaka", "okafor",
         "johansson", "rossi", "dubois", "patel", "kim", "haddad"]
_DOMAINS = ["acme-corp.com", "acme-corp.com", "acme-corp.com", "example.io", "duff.co", "globex.co"]
# Display values, some non-ASCII, for the name-like keys of operation_detail.
_NAMES = ["José Núñez", "Zoë Müller", "Björn Østergaard", "Łukasz Kowalczyk", "Mélanie Lefèvre",
          "Nguyễn Văn An", "Ayşe Çelik", "田中 太郎", "Renée Dubois", "Homer Simpson", "Lisa Simpson",
          "Priya Patel", "Wei Zhang", "Fatima Haddad"]
_FIRST_NAMES = ["Jose", "José", "Zoe", "Zoë", "Bjorn", "Björn", "Renee", "Renée", "Homer", "Lisa", "Wei"]
_GROUPS = ["Engineers", "Recruiting", "Springfield", "Sales EMEA", "Support Tier 2", "Finance",
           "Contractors", "Équipe Montréal", "東京オフィス", "Marketing"]
_CHANNELS = ["TestGroupChannel1", "TestChannel3", "eng-announcements", "sales-emea", "incident-2317",
             "Café Chat", "プロジェクトX", "it-helpdesk"]
_TITLES = ["Contractor", "Senior Engineer", "Account Executive", "Director of IT", "Support Specialist",
           "Ingénieure logiciel"]
_DEPTS = ["Foo", "Engineering", "Sales", "Finance", "Legal", "Recherche & Développement"]
_CITIES = ["San Jose", "Zürich", "São Paulo", "Kraków", "Montréal", "Tokyo", "Austin"]
_ROLES = ["Auditors", "Help Desk", "Security Reviewers", "Room Managers", "Billing Viewers"]
_ROOMS = ["Boardroom 4F", "Huddle 2B", "Auditorium", "Salle Genève", "Room 12", "Focus Pod 7"]
_ROLE_CHANGES = [("User", "Co-Owner"), ("Admin", "Co-Owner"), ("Admin", "Billing Admin"),
                 ("Member", "Billing Admin"), ("Co-Owner", "User"), ("Co-Owner", "Admin")]
_ACCOUNT_DETAILS = [
    "Security  - Require that all meetings are secured with one security option: from On to Off",
    "Security  - Automatically sign users out after a specified time: from On to Off",
    "Security  - Require a passcode when scheduling new meetings: from On to Off",
    "Security  - Sign in with Two-Factor Authentication: from On to Off",
    "Security  - Sign in with Two-Factor Authentication: from Off to On",
    "Sign-in Methods  - Allow users to sign in with Google: from Off to On",
    "Sign-in Methods  - Allow users to sign in with Apple ID: from Off to On",
    "Sign-In Password Requirement  - Include at least 1 letter: from On to Off - Include at least 1 number: "
    "from On to Off - Include both uppercase and lowercase characters: from On to Off",
    "Sign-In Password Requirement  - Have at least specified length of characters: from 8 to 14 - Include at "
    "least 1 letter: from On to Off - Include at least 1 number: from On to Off - Include both uppercase and "
    "lowercase characters: from On to Off",
    "Quality Settings - Audio  - Receive Bitrate: from 20 to 200 - Send Bitrate: from 20 to 200",
    "Change account setting Cloud Recording from ON to OFF",
]


def _email(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)}.{rng.choice(_LAST)}@{rng.choice(_DOMAINS)}"


def _us_date(rng: random.Random) -> str:
    return f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(2023, 2026)}"


# (weight, category_type, action, detail factory). Weight = number of filled variants in the pool.
# Shapes marked "likely" are unconfirmed guesses at Zoom's format; the rest are verbatim shapes.
_TEMPLATES: list[tuple[int, str, str, Any]] = [
    (160, "User", "Add", lambda r: f"Add User {_email(r)}  - User Type: {r.choice(['Basic', 'Licensed'])}"
                                    f" - Department: {r.choice(_DEPTS)}"),
    (80, "User", "Add", lambda r: f"Add User {_email(r)}"),
    (160, "User", "Update", lambda r: f"Update User {_email(r)}  - Job Title: set to {r.choice(_TITLES)}"),
    (80, "User", "Update", lambda r: f"Update User {_email(r)}  - User Role: from "
                                     + r.choice(["Member to Admin", "Admin to Member"])),
    (120, "User", "Update", lambda r: f"Activate User {_email(r)} "),
    (120, "User", "Update", lambda r: f"Deactivate User {_email(r)} "),
    (100, "User", "SCIM API - Update", lambda r: f"Edit User {_email(r)}  - Change Type: from "
                                                 + r.choice(["Basic to Licensed", "Licensed to Basic"])),
    (120, "User", "Batch Update", lambda r: "Change Role  - {}: from {} to {}".format(
        _email(r), *r.choice(_ROLE_CHANGES))),
    (80, "User", "Delete", lambda r: f"Delete User {_email(r)}"),
    (60, "User", "REST API - Update", lambda r: f"Update User {_email(r)}  - First Name: from "
                                                f"{r.choice(_FIRST_NAMES)} to {r.choice(_FIRST_NAMES)}"),  # likely
    (60, "User", "REST API - Update", lambda r: f"Update User {_email(r)}  - Display Name: from "
                                                f"{r.choice(_NAMES)} to {r.choice(_NAMES)}"),  # likely
    (30, "User", "Update", lambda r: f"Update User {_email(r)}  - Location: set to {r.choice(_CITIES)}"),  # likely
    (20, "User Group", "Add", lambda r: f"Add Group {r.choice(_GROUPS)}"),
    (20, "User Group", "Update", lambda r: f"Edit Group {r.choice(_GROUPS)} "),
    (20, "User Group", "Update", lambda r: f"Edit Group {r.choice(_GROUPS)}  - Personal Meeting ID (PMI) "
                                           "Passcode: from " + r.choice(["On to Off", "Off to On"])),
    (len(_ACCOUNT_DETAILS), "Account", "Update", None),  # filled from _ACCOUNT_DETAILS
    (15, "Role", "Add", lambda r: "Add Role {0}  - Role Name: {0} - Description: {1}".format(  # likely
        r.choice(_ROLES), r.choice(["Read-only access", "Can view reports", "Manages rooms"]))),
    (20, "Zoom Rooms", "Update", lambda r: f"Update Room {r.choice(_ROOMS)}  - Room Name: from "  # likely
                                           f"{r.choice(_ROOMS)} to {r.choice(_ROOMS)}"),
    (60, "Recording", "Delete", lambda r: f"Delete cloud recording for meeting {r.randint(10**10, 10**11 - 1)}"),
    (60, "Channels", "Update", lambda r: f"Update a Channel {r.choice(_CHANNELS)}  - Cloud Storage Retention: "
                                         f"set to  - Name: from TestGroup1 to {r.choice(_CHANNELS)}"),
    (60, "Channels", "Update", lambda r: f"Assign admin for channel {r.choice(_CHANNELS)}  - {_email(r)}"),
    (80, "Team Chat", "Search", lambda r: f"Search Chat  - Search Date: {_us_date(r)} - {_us_date(r)}"),
]

# A few admins do most of the work; room accounts and apps are the non-person operators Zoom shows.
_OPERATORS = (
    ["it.admin@acme-corp.com"] * 8
    + ["jane.doe@acme-corp.com"] * 5
    + ["homer.simpson@duff.co"] * 3
    + ["secops@acme-corp.com"] * 2
    + ["lisa@example.io", "wei.zhang@acme-corp.com", "fatima.haddad@globex.co", "priya.patel@acme-corp.com",
       "room_12@acme-corp.com", "room_4f@acme-corp.com", "Okta SCIM", "HR Sync (Server-to-Server OAuth)"]
)


class _Vocab(NamedTuple):
    """What a log's records are made of: a pool entry (distinct, so records near each other differ),
    one pick drawn per record by hash, and the `time`."""

    pool: list[tuple[str, ...]]
    stride: int  # coprime with len(pool): nearby indices map to distinct pool entries
    picks: list[str]


def _shuffled_vocab(entries: dict[tuple[str, ...], None], picks: list[str], rng: random.Random) -> _Vocab:
    pool = list(entries)
    rng.shuffle(pool)
    stride = 7919
    while math.gcd(stride, len(pool)) != 1:
        stride += 2
    return _Vocab(pool, stride, picks)


@functools.cache
def _operation_vocab() -> _Vocab:
    """Operation logs: pool entries (category_type, action, operation_detail), picks the operators.
    Built once, on first use (never at import)."""
    rng = random.Random(20261120)
    seen: dict[tuple[str, ...], None] = {}
    for weight, category, action, make in _TEMPLATES:
        if make is None:
            for detail in _ACCOUNT_DETAILS:
                seen[(category, action, detail)] = None
            continue
        for _ in range(weight):
            seen[(category, action, make(rng))] = None
    return _shuffled_vocab(seen, list(_OPERATORS), rng)


def _operation_log(entry: tuple[str, ...], operator: str, when: str) -> dict[str, str]:
    category, action, detail = entry
    # Key order as in Zoom's reference example.
    return {"action": action, "category_type": category, "operation_detail": detail, "operator": operator,
            "time": when}


# --------------------------------------------------------------------------------------------------
# Vocabulary: sign-in / sign-out activity. A few hundred people with one to three clients each sign in
# and out from home or mobile addresses and from their office's shared egress addresses; room accounts
# sign in from Zoom Rooms. Addresses come from the documentation ranges (RFC 5737, RFC 3849).
# --------------------------------------------------------------------------------------------------

# client_type: (weight among people's clients, share of IPv6 addresses, versions). Browser sign-ins
# report version "-"; Zoom Rooms are room accounts only (weight 0). The versions are Zoom-shaped.
_CLIENTS: dict[str, tuple[int, float, list[str]]] = {
    "Windows": (34, 0.25, ["6.2.5.43211", "6.2.0.42418", "6.1.11.39163", "6.0.12.38038", "5.17.11.34827"]),
    "Mac": (24, 0.25, ["6.2.5.43117", "6.2.3.42546", "6.1.10.38818", "5.16.10.26186"]),
    "Browser": (16, 0.3, ["-"]),
    "iOS": (12, 0.6, ["6.2.5.24720", "6.2.0.23488", "6.1.5.21873"]),
    "Android": (10, 0.6, ["6.2.5.24739", "6.2.1.23652", "6.0.10.20385"]),
    "Linux": (4, 0.25, ["6.2.5.4843", "6.1.6.1013", "5.17.5.2543"]),
    "Zoom Rooms": (0, 0.2, ["6.2.1.4567", "6.1.5.4200", "5.17.6.3998"]),
}
_ROOM_ACCOUNTS = ["room_12", "room_4f", "room_2b", "room_auditorium", "room_geneve", "room_pod7", "room_3c",
                  "room_boardroom", "room_lobby", "room_training"]
_SIGN_TYPES = ["Sign in"] * 3 + ["Sign out"] * 2  # not every sign-in is followed by a sign-out


def _ip(rng: random.Random, v6_share: float) -> str:
    if rng.random() < v6_share:  # a /64 with a random interface id, printed compressed as Zoom would
        return str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96)))
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randint(1, 254)}"


@functools.cache
def _activity_vocab() -> _Vocab:
    """Activities: pool entries (email, ip_address, client_type, version), picks the `type`."""
    rng = random.Random(20261128)
    domains = list(dict.fromkeys(_DOMAINS))
    offices = {d: [_ip(rng, 0), _ip(rng, 0), f"2001:db8:{i + 1:x}0::{rng.randint(2, 250):x}"]
               for i, d in enumerate(domains)}
    people = [f"{first}.{last}" for first in _FIRST for last in _LAST]
    rng.shuffle(people)
    clients = [c for c, (weight, _, _) in _CLIENTS.items() if weight]
    weights = [_CLIENTS[c][0] for c in clients]
    seen: dict[tuple[str, ...], None] = {}
    for person in people[:300]:
        domain = rng.choice(_DOMAINS)
        for client in dict.fromkeys(rng.choices(clients, weights, k=rng.randint(1, 3))):
            _, v6_share, versions = _CLIENTS[client]
            version = rng.choice(versions)
            addresses = [_ip(rng, v6_share) for _ in range(rng.randint(1, 2))]
            if client not in ("iOS", "Android") or rng.random() < 0.3:
                addresses.append(rng.choice(offices[domain]))
            for address in addresses:
                seen[(f"{person}@{domain}", address, client, version)] = None
    for room in _ROOM_ACCOUNTS:
        seen[(f"{room}@acme-corp.com", rng.choice(offices["acme-corp.com"]), "Zoom Rooms",
              rng.choice(_CLIENTS["Zoom Rooms"][2]))] = None
    return _shuffled_vocab(seen, list(_SIGN_TYPES), rng)


def _activity(entry: tuple[str, ...], kind: str, when: str) -> dict[str, str]:
    email, address, client, version = entry
    # Key order as in Zoom's schema.
    return {"email": email, "time": when, "type": kind, "ip_address": address, "client_type": client,
            "version": version}


class _Log(NamedTuple):
    """One report endpoint, ``GET /v2/report/<name>``: everything that differs between the two."""

    name: str
    records_key: str  # the response's list of records
    scopes: tuple[str, ...]  # any one grants access; Zoom's missing-scope error names the first
    vocab: Callable[[], _Vocab]
    record: Callable[[tuple[str, ...], str, str], dict[str, str]]  # (pool entry, pick, time) -> a record
    bound: Callable[[str], str]  # a requested from/to date as the response echoes it
    salt: int  # days of different logs generated with the same seed get different times


_LOGS = {log.name: log for log in (
    _Log("operationlogs", "operation_logs", ("report:read:operation_logs:admin", "report:read:admin"),
         _operation_vocab, _operation_log, str, 0),
    # Zoom's example of this report echoes its bounds as UTC midnights: "from":"2019-09-01T00:00:00Z".
    _Log("activities", "activity_logs", ("report:read:user_activities:admin", "report:read:admin"),
         _activity_vocab, _activity, "{}T00:00:00Z".format, 0x5A6E3C1D),
)}
LOGS = tuple(_LOGS)


def _log(name: Any) -> _Log:
    if not isinstance(name, str) or name not in _LOGS:
        raise ValueError(f"log must be one of {list(LOGS)}, got {name!r}")
    return _LOGS[name]


def _mix(x: int) -> int:
    """splitmix64 finaliser: a cheap, deterministic hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _clock(day: str, sec: int) -> str:
    return f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"


def _key(record: dict) -> str:
    """A record's `time` as the sort key: explicit records may lack it or carry raw bytes."""
    value = record.get("time") or ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _has_raw(records: list[dict]) -> bool:
    return any(isinstance(v, bytes) for r in records for v in r.values())


def _dumps_with_raw(body: dict, key: str) -> bytes:
    """orjson.dumps of a page whose records may hold ``bytes``: those go out verbatim between quotes.

    Each bytes value is swapped for a unique placeholder string, the page is encoded as usual, and the
    placeholder (quotes included) is replaced by the raw bytes, so everything else stays valid JSON.
    """
    nonce = secrets.token_hex(8)
    raws: list[bytes] = []
    logs = []
    for rec in body[key]:
        if any(isinstance(v, bytes) for v in rec.values()):
            rec = dict(rec)
            for k, v in rec.items():
                if isinstance(v, bytes):
                    rec[k] = f"sim-raw-{nonce}-{len(raws)}"
                    raws.append(v)
        logs.append(rec)
    out = orjson.dumps({**body, key: logs})
    for i, raw in enumerate(raws):
        out = out.replace(f'"sim-raw-{nonce}-{i}"'.encode(), b'"' + raw + b'"', 1)
    return out


def _raw_in(records: Any) -> list[dict]:
    # Control-endpoint form of bytes: {"raw": "<latin-1 text>"} (JSON has no bytes).
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("records must be a list of JSON objects")
    return [{k: v["raw"].encode("latin-1") if isinstance(v, dict) and set(v) == {"raw"} else v
             for k, v in r.items()} for r in records]


def _raw_out(records: list[dict]) -> list[dict]:
    return [{k: {"raw": v.decode("latin-1")} if isinstance(v, bytes) else v for k, v in r.items()}
            for r in records]


def _parse_day(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DAY_RE.match(value):
        raise ValueError(f"day must be YYYY-MM-DD, got {value!r}")
    return dt.date.fromisoformat(value)


def _day_str(value: Any) -> str:
    return _parse_day(value).isoformat()


# --------------------------------------------------------------------------------------------------
# One day of records: a lazy synthetic sequence merged with explicit (set/added) records.
# --------------------------------------------------------------------------------------------------


class _Day:
    """Records of one UTC day of one log, served newest first.

    The synthetic part is a pure function of (log, day, seed, index): the log's vocabulary and record
    shape, the same placement of times and twins for every log. ``twins`` of its base events are
    followed by a byte-identical copy, spread evenly; base ``b`` sits at position ``b + c(b)`` where
    ``c(b)`` counts twin bases before it. Explicit records live in a list sorted newest first; each
    remembers how many synthetic records precede it, which fixes its merged position: normally those
    strictly newer, but ``insert_at`` may place one inside a group of synthetic records of equal time.
    The merged listing is therefore always sorted by `time`, newest first, and each group of equal
    `time` is one contiguous run.
    """

    __slots__ = ("day", "log", "n", "bases", "twins", "spacing", "mix", "pool_off", "keys", "recs", "newer",
                 "_pos", "raw")

    def __init__(self, day: str, count: int = 0, seed: int = 0, twins: int = 0,
                 log: _Log = _LOGS["operationlogs"]) -> None:
        if count < 0 or twins < 0 or 2 * twins > count:
            raise ValueError("need 0 <= 2 * twins <= count")
        self.day = day
        self.log = log
        self.n = count
        self.twins = twins
        self.bases = count - twins
        self.mix = _mix((seed & _M64) * 0x100000001B3 ^ dt.date.fromisoformat(day).toordinal() ^ log.salt)
        self.pool_off = _mix(self.mix) % len(log.vocab().pool) if count else 0
        # Each twin base is jittered back by less than half the gap between twins: evenly spaced twins
        # fell on page boundaries (multiples of 300), where every pass read them as shifted pages.
        self.spacing = self.bases // (2 * twins) if twins else 0
        self.keys: list[str] = []  # explicit records' `time`, non-increasing
        self.recs: list[dict] = []
        self.newer: list[int] = []  # per explicit record: synthetic records before it (non-decreasing)
        self._pos: list[int] | None = None
        self.raw = False  # some explicit record holds bytes: pages need _dumps_with_raw

    @property
    def total(self) -> int:
        return self.n + len(self.recs)

    # -- synthetic sequence ------------------------------------------------------------------------
    def _twin_base(self, k: int) -> int:
        """Base index of the k-th twin: (2k+1)*B // (2*twins), minus a jitter smaller than `spacing`."""
        jitter = _mix(self.mix ^ (k + 0x7F4A7C15)) % self.spacing if self.spacing else 0
        return (2 * k + 1) * self.bases // (2 * self.twins) - jitter

    def _evenly_before(self, b: int) -> int:
        # Unjittered twin bases (2k+1)*B // (2*twins) below b, in O(1).
        x = 2 * self.twins * b - self.bases
        return 0 if x <= 0 else min(self.twins, -(-x // (2 * self.bases)))

    def _twins_before(self, b: int) -> int:
        # Twin bases t_k < b, in O(1): the jitter moves each below its even spot by less than the
        # spacing, so only the last candidate needs a look.
        if not self.twins:
            return 0
        count = self._evenly_before(b + self.spacing)
        return count - 1 if count and self._twin_base(count - 1) >= b else count

    def _sec(self, b: int, h: int) -> int:
        # Base b owns the slot [b, b+1) of B equal slots over the day; jitter inside the slot keeps
        # times non-increasing with b while looking irregular.
        return 86399 - (((b << _U_BITS) + (h & _U_MASK)) * 86400) // (self.bases << _U_BITS)

    def _time(self, b: int) -> str:
        return _clock(self.day, self._sec(b, _mix(self.mix + b)))

    def _base(self, b: int, pool: list, stride: int, picks: list) -> dict[str, str]:
        h = _mix(self.mix + b)
        return self.log.record(pool[(b * stride + self.pool_off) % len(pool)], picks[(h >> _U_BITS) % len(picks)],
                               _clock(self.day, self._sec(b, h)))

    def synthetic(self, start: int, count: int) -> list[dict]:
        """Synthetic records at positions [start, start+count)."""
        count = min(count, self.n - start)
        if count <= 0:
            return []
        pool, stride, picks = self.log.vocab()
        lo, hi = 0, self.bases - 1  # largest base b with position(b) <= start
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if mid + self._twins_before(mid) <= start:
                lo = mid
            else:
                hi = mid - 1
        b = lo
        out: list[dict] = []
        if b + self._twins_before(b) != start:  # start is the copy of twin base b
            out.append(self._base(b, pool, stride, picks))
            b += 1
        # Hot path (benchmark: 3,334 pages of 300): hashing and formatting inlined, the next twin
        # base tracked incrementally, and the clock string reused while the second is unchanged.
        day, mix, bases, twins, make = self.day, self.mix, self.bases, self.twins, self.log.record
        scale, n_pool, n_picks, off = bases << _U_BITS, len(pool), len(picks), self.pool_off
        done = self._twins_before(b)
        next_twin = self._twin_base(done) if done < twins else -1
        last_sec, clock = -1, ""
        append = out.append
        while len(out) < count:
            h = (mix + b + 0x9E3779B97F4A7C15) & _M64
            h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
            h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
            h ^= h >> 31
            sec = 86399 - (((b << _U_BITS) + (h & _U_MASK)) * 86400) // scale
            if sec != last_sec:
                last_sec, clock = sec, f"{day}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}Z"
            rec = make(pool[(b * stride + off) % n_pool], picks[(h >> _U_BITS) % n_picks], clock)
            append(rec)
            if b == next_twin:
                if len(out) < count:
                    append(rec)
                done += 1
                next_twin = self._twin_base(done) if done < twins else -1
            b += 1
        return out

    def newer_than(self, when: str, inclusive: bool = False) -> int:
        """Number of synthetic records whose `time` is > ``when`` (>= with ``inclusive``)."""
        lo, hi = 0, self.bases  # first base with time <= when (< when if inclusive); times non-increasing
        while lo < hi:
            mid = (lo + hi) // 2
            t = self._time(mid)
            if t > when or (inclusive and t == when):
                lo = mid + 1
            else:
                hi = mid
        return lo + self._twins_before(lo)

    def count_newer(self, when: str, inclusive: bool = False) -> int:
        """Merged records whose `time` is > ``when`` (>= with ``inclusive``): where its group starts (ends)."""
        lo, hi = 0, len(self.keys)  # keys are non-increasing
        while lo < hi:
            mid = (lo + hi) // 2
            k = self.keys[mid]
            if k > when or (inclusive and k == when):
                lo = mid + 1
            else:
                hi = mid
        return lo + (self.newer_than(when, inclusive) if self.n else 0)

    # -- explicit records --------------------------------------------------------------------------
    def set_explicit(self, records: list[dict]) -> None:
        # sort(reverse=True) is stable: equal times keep the order given.
        rows = sorted(((_key(r), dict(r)) for r in records), key=lambda x: x[0], reverse=True)
        self.keys = [k for k, _ in rows]
        self.recs = [r for _, r in rows]
        self.newer = [self.newer_than(k) if self.n else 0 for k in self.keys]
        self._pos = None
        self.raw = _has_raw(self.recs)

    def add(self, records: list[dict]) -> None:
        """Merge arrivals; on equal time the new ones go first, keeping their given order."""
        rows = sorted(((_key(r), dict(r)) for r in records), key=lambda x: x[0], reverse=True)
        self.raw = self.raw or _has_raw([r for _, r in rows])
        for key, rec in reversed(rows):
            lo, hi = 0, len(self.keys)  # first index whose key <= key (list is descending)
            while lo < hi:
                mid = (lo + hi) // 2
                if self.keys[mid] > key:
                    lo = mid + 1
                else:
                    hi = mid
            self.keys.insert(lo, key)
            self.recs.insert(lo, rec)
            self.newer.insert(lo, self.newer_than(key) if self.n else 0)
        self._pos = None

    def insert_at(self, position: int, records: list[dict]) -> None:
        """Put ``records`` at merged positions [position, position+len(records)) exactly, even inside a
        group of equal `time`. Their `time` must equal that of the record now at ``position`` (or of
        the last record when ``position == total``) so the listing stays sorted."""
        position = min(max(0, position), self.total)
        if self._pos is None:
            self._pos = [j + s for j, s in enumerate(self.newer)]
        j = bisect_left(self._pos, position)  # explicit records before the position
        syn = position - j  # synthetic records before it; keeps `newer` non-decreasing
        k = len(records)
        self.keys[j:j] = [_key(r) for r in records]
        self.recs[j:j] = [dict(r) for r in records]
        self.newer[j:j] = [syn] * k
        self._pos = None
        self.raw = self.raw or _has_raw(records)

    def slice(self, offset: int, limit: int) -> list[dict]:
        """Merged records at positions [offset, offset+limit), newest first."""
        end = min(offset + limit, self.total)
        if offset >= end:
            return []
        if not self.recs:
            return self.synthetic(offset, end - offset)
        if self._pos is None:
            self._pos = [j + s for j, s in enumerate(self.newer)]
        pos = self._pos
        j = bisect_left(pos, offset)
        j_end = bisect_left(pos, end)
        syn = self.synthetic(offset - j, (end - offset) - (j_end - j)) if self.n else []
        out: list[dict] = []
        si = 0
        for p in range(offset, end):
            if j < j_end and pos[j] == p:
                out.append(self.recs[j])
                j += 1
            else:
                out.append(syn[si])
                si += 1
        return out

    def shuffled_slice(self, offset: int, limit: int, rng: random.Random) -> list[dict]:
        """Like slice(), but each group of equal `time` in a fresh order drawn from ``rng``.

        Groups cut by the slice's ends are fetched whole, permuted, then cut, so the slice is positions
        [offset, offset+limit) of one permuted listing. Only the groups touching the slice are expanded.
        """
        end = min(offset + limit, self.total)
        if offset >= end:
            return []
        # One padded slice usually holds both cut groups whole (a 1M-record day has ~12 a second);
        # a longer group is found by binary search on its time.
        pad = 32
        lo, hi = max(0, offset - pad), min(self.total, end + pad)
        window = self.slice(lo, hi - lo)
        times = self._times(window)
        if lo > 0 and times[0] == times[offset - lo]:
            start = self.count_newer(times[0])
            window[:0] = self.slice(start, lo - start)
            lo = start
            times = self._times(window)
        if hi < self.total and times[-1] == times[end - 1 - lo]:
            stop = self.count_newer(times[-1], inclusive=True)
            window.extend(self.slice(hi, stop - hi))
            times = self._times(window)
        a, b = offset - lo, end - lo  # trim to the cut groups
        while a > 0 and times[a - 1] == times[offset - lo]:
            a -= 1
        while b < len(window) and times[b] == times[end - 1 - lo]:
            b += 1
        out = window[a:b]
        times = times[a:b]
        rand = rng.random
        i = 0
        while i < len(out):
            j = i + 1
            while j < len(out) and times[j] == times[i]:
                j += 1
            if j - i > 1:
                group = out[i:j]
                order = [rand() for _ in group]  # sorting indices by random keys beats random.shuffle
                out[i:j] = [group[k] for k in sorted(range(j - i), key=order.__getitem__)]
            i = j
        return out[offset - lo - a:end - lo - a]

    def _times(self, records: list[dict]) -> list[str]:
        # The same keys the sort used; _key itself only where an explicit `time` is not a str (hot path).
        times = [r.get("time") or "" for r in records]
        if self.recs and any(t.__class__ is not str for t in times):
            return [_key(r) for r in records]
        return times


# --------------------------------------------------------------------------------------------------
# Simulator state and request logic (HTTP-agnostic; the handler below only moves bytes).
# --------------------------------------------------------------------------------------------------


class _Resp(NamedTuple):
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    ctype: str = _JSON
    reset: bool = False  # drop the connection without answering


def _json(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> _Resp:
    return _Resp(status, orjson.dumps(obj), headers)


def _api_error(status: int, code: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Resp:
    return _json(status, {"code": code, "message": message}, headers)


def _oauth_error(reason: str, error: str) -> _Resp:
    return _json(400, {"reason": reason, "error": error})


class _Fault:
    __slots__ = ("kind", "times", "after", "params", "log")

    def __init__(self, kind: str, times: int, after: int, params: dict, log: str | None) -> None:
        self.kind, self.times, self.after, self.params = kind, times, after, params
        self.log = log  # the report endpoint whose calls it fails; None for the token endpoint

    def as_dict(self) -> dict:
        where = {} if self.log is None else {"log": self.log}
        return {"kind": self.kind, "times": self.times, "after_calls": self.after, **where, **self.params}


class _PageToken(NamedTuple):
    log: str
    frm: str
    to: str
    offset: int
    size: int
    issued: float  # monotonic


class _Counts:
    """Counters of one endpoint (a report endpoint, or the token endpoint) since reset_stats."""

    __slots__ = ("calls", "by_day", "faults", "statuses", "pages", "records", "page_tokens", "qps")

    def __init__(self) -> None:
        self.calls = self.pages = self.records = self.page_tokens = self.qps = 0
        self.by_day: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.statuses: dict[str, int] = {}

    def as_dict(self) -> dict:
        return {"report_calls": self.calls, "report_calls_by_day": dict(self.by_day),
                "faults_by_kind": dict(self.faults), "status_counts": dict(self.statuses),
                "pages_served": self.pages, "records_served": self.records,
                "page_tokens_issued": self.page_tokens, "qps_rejections": self.qps}


def _summed(counters: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for counter in counters:
        for key, value in counter.items():
            out[key] = out.get(key, 0) + value
    return out


class _Token:
    __slots__ = ("issued", "revoked", "invalid")

    def __init__(self, issued: float) -> None:
        self.issued = issued
        self.revoked = False  # answers "Access token is expired."
        self.invalid = False  # answers "Invalid access token." (a later mint of its app invalidated it)


class SimAccount(NamedTuple):
    """One simulated Zoom account's credentials, as a client is configured with them."""

    name: str
    account_id: str
    client_id: str
    client_secret: str


class _AccountState:
    """Everything Zoom keeps per account: its Server-to-Server app's credentials and scopes, the days of
    both report endpoints, access and page tokens, faults, triggers, the per-second window and the
    counters since reset_stats. Callers hold the simulator's lock."""

    SETTINGS = ("account_id", "client_id", "client_secret", "scopes", "invalidate_on_mint",
                "max_requests_per_second")

    def __init__(self, name: str, account_id: str, client_id: str, client_secret: str, scopes: str) -> None:
        self.name = name
        self.account_id, self.client_id, self.client_secret, self.scopes = account_id, client_id, client_secret, scopes
        self.invalidate_on_mint = False
        self.max_requests_per_second: float | None = None
        self.days: dict[tuple[str, str], _Day] = {}  # (log, day) -> records
        self.tokens: dict[str, _Token] = {}
        self.page_tokens: dict[str, _PageToken] = {}
        self.faults: list[_Fault] = []
        self.token_faults: list[_Fault] = []
        self.triggers: dict[tuple[str, int], list[Callable[[], None]]] = {}  # (log, call n) -> run under the lock
        self.admitted: deque[float] = deque()  # monotonic times of report calls admitted in the last second
        self.reset_stats(0)

    def credentials(self) -> SimAccount:
        return SimAccount(self.name, self.account_id, self.client_id, self.client_secret)

    def day(self, log: _Log, day: str) -> _Day:
        """The (log, day) records, an empty day created on first touch."""
        target = self.days.get((log.name, day))
        if target is None:
            target = self.days[(log.name, day)] = _Day(day, log=log)
        return target

    def add(self, log: _Log, day: str, records: list[dict]) -> None:
        self.day(log, day).add(records)

    def reset_stats(self, connections: int) -> None:
        self.counts = {name: _Counts() for name in LOGS}  # per report endpoint
        self.token_counts = _Counts()  # the token endpoint's faults and statuses
        self.token_calls = 0
        self.tokens_issued = 0
        self.token_use: dict[str, list[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections_base = connections  # the server's connection count at reset_stats

    def reset(self, connections: int) -> None:
        self.days.clear()
        self.tokens.clear()
        self.page_tokens.clear()
        self.faults.clear()
        self.token_faults.clear()
        self.triggers.clear()
        self.reset_stats(connections)

    def over_qps(self) -> bool:
        """Whether this report call exceeds the per-second limit; admits it if not."""
        now = time.monotonic()
        window = self.admitted
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self.max_requests_per_second:
            return True
        window.append(now)
        return False

    def stats(self, connections: int) -> dict:
        events = sorted(
            [(first, 0) for first, _ in self.token_use.values()]
            + [(last, 1) for _, last in self.token_use.values()]
        )  # at equal times starts sort before ends: touching intervals overlap
        current = peak = 0
        for _, is_end in events:
            current += -1 if is_end else 1
            peak = max(peak, current)
        logs = list(self.counts.values())
        faults = _summed([c.faults for c in [*logs, self.token_counts]])
        return {
            "report_calls": sum(c.calls for c in logs),
            "token_calls": self.token_calls,
            "tokens_issued": self.tokens_issued,
            "report_calls_by_day": dict(self.counts["operationlogs"].by_day),
            "faults_served": sum(faults.values()),
            "faults_by_kind": faults,
            "status_counts": _summed([c.statuses for c in [*logs, self.token_counts]]),
            "pages_served": sum(c.pages for c in logs),
            "records_served": sum(c.records for c in logs),
            "page_tokens_issued": sum(c.page_tokens for c in logs),
            "tokens_used": len(self.token_use),
            "max_concurrent_tokens": peak,
            "max_in_flight": self.max_in_flight,
            "connections": connections - self.connections_base,
            "pending_faults": len(self.faults) + len(self.token_faults),
            "qps_rejections": sum(c.qps for c in logs),
            "by_log": {name: c.as_dict() for name, c in self.counts.items()},
        }


class _DefaultAccount:
    """A setting of the default account, read and written as an attribute of the simulator
    (``sim.client_id``, ``sim.scopes``, ...)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, sim: ZoomSimulator | None, owner: type | None = None) -> Any:
        return self if sim is None else getattr(sim._accounts[DEFAULT_ACCOUNT], self.name)

    def __set__(self, sim: ZoomSimulator, value: Any) -> None:
        setattr(sim._accounts[DEFAULT_ACCOUNT], self.name, value)


def _setting(key: str, value: Any) -> Any:
    """A configure() value, checked and normalised."""
    if key == "last_token_style" and value not in LAST_TOKEN_STYLES:
        raise ValueError(f"last_token_style must be one of {LAST_TOKEN_STYLES}")
    if key == "today":
        return None if value is None else _parse_day(value)
    if key == "scopes" and isinstance(value, list | tuple):
        return " ".join(value)
    if key in ("token_ttl", "page_token_ttl"):
        return float(value) if not isinstance(value, int) else value
    if key == "retention_days":
        return int(value)
    if key in ("shuffle_within_second", "invalidate_on_mint") and not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")  # "false" from a sloppy client must not mean on
    if key == "max_requests_per_second" and value is not None:
        value = float(value)
        if not value > 0:
            raise ValueError("max_requests_per_second must be a positive number or null")
    if key == "shuffle_seed":
        return None if value is None else int(value)
    if key in ("account_id", "client_id", "client_secret", "scopes"):
        return str(value)
    return value


class ZoomSimulator:
    """A Zoom S2S OAuth + report API (operation logs and sign-in / sign-out activities) on a local port.

    ``scopes`` (space-separated, as the token endpoint reports them) decides access per endpoint:
    operation logs need ``report:read:operation_logs:admin``, activities
    ``report:read:user_activities:admin``, and the classic ``report:read:admin`` grants both; a call
    without its endpoint's scope answers Zoom's 400, code 4711. The default grants both.

    ``today=None`` means the real UTC date at each call. ``token_ttl`` and ``page_token_ttl`` are in
    seconds and may be fractional so tests can expire tokens quickly.

    ``shuffle_within_second=True``: Zoom documents no order among records of the same second (a bulk
    admin operation writes hundreds in one), so every report call then serves each group of records
    sharing a `time` string in a fresh random order for that call; across seconds the listing stays
    newest first. A page is positions [offset, offset+page_size) of the listing as permuted for that
    call (a group cut by the page boundary is permuted whole, then cut), so consecutive pages of one
    pagination may repeat or skip records of a straddling group. ``shuffle_seed`` (an int) makes call
    n's permutation a function of (seed, n), n counted since reset_stats; None draws fresh randomness.
    day_records() always gives the unshuffled order.

    ``invalidate_on_mint=True``: like Zoom for one Server-to-Server app, every mint invalidates every
    token minted before it (they answer 401, code 124 "Invalid access token."), so runs that each mint
    their own token knock each other out. ``max_requests_per_second=N`` (None: unlimited): a report
    call that would be the (N+1)-th admitted within the last second answers Zoom's per-second 429
    (``X-RateLimit-Type: QPS``, no Retry-After) instead; ``stats()["qps_rejections"]`` counts them, and
    they count as ``status_counts["429"]`` and ``report_calls`` too (and take a call number). The limit
    is the account's, shared by both report endpoints (both are Heavy APIs).

    Each report endpoint numbers its own calls (1-based, since reset_stats): ``on_report_call``,
    ``late_events``, ``inject(after_calls=...)`` and ``shuffle_seed`` count the calls of their ``log``.

    Accounts: the constructor's credentials are account ``"default"``; ``add_account`` adds more. Each
    has its own credentials, scopes, ``invalidate_on_mint``, per-second limit, days, access and page
    tokens, faults, triggers, call numbers and counters; every method that addresses one of these takes
    ``account="default"``. A report call is the account's whose token it carries (a call with an unknown
    token is the default account's: its faults and counters); a token call is the account's whose
    client_id it carries (else the default's). ``sim.account_id``, ``sim.client_id``,
    ``sim.client_secret``, ``sim.scopes``, ``sim.invalidate_on_mint`` and ``sim.max_requests_per_second``
    are the default account's; TTLs, retention, ``today``, the last-token style and the shuffle are
    the server's, the same for every account.
    """

    _CONFIG_KEYS = ("account_id", "client_id", "client_secret", "token_ttl", "page_token_ttl",
                    "retention_days", "scopes", "last_token_style", "today", "shuffle_within_second",
                    "shuffle_seed", "invalidate_on_mint", "max_requests_per_second")
    account_id = _DefaultAccount()
    client_id = _DefaultAccount()
    client_secret = _DefaultAccount()
    scopes = _DefaultAccount()
    invalidate_on_mint = _DefaultAccount()
    max_requests_per_second = _DefaultAccount()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        account_id: str = "sim-account",
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",
        token_ttl: float = 3600,
        page_token_ttl: float = 900,
        retention_days: int = 180,
        scopes: str = DEFAULT_SCOPES,
        last_token_style: str = "empty",
        today: str | dt.date | None = None,
        shuffle_within_second: bool = False,
        shuffle_seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._bound_port = 0
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._connections = 0  # accepted since start; each account's stats count from its reset_stats
        self._accounts = {DEFAULT_ACCOUNT: _AccountState(DEFAULT_ACCOUNT, account_id, client_id, client_secret,
                                                         DEFAULT_SCOPES)}
        self.token_ttl = token_ttl
        self.page_token_ttl = page_token_ttl
        self.retention_days = retention_days
        self.last_token_style = last_token_style
        self.today: dt.date | None = None
        self.shuffle_within_second = False
        self.shuffle_seed: int | None = None
        self.configure(account_id=account_id, client_id=client_id, client_secret=client_secret,
                       last_token_style=last_token_style, today=today, scopes=scopes,
                       shuffle_within_second=shuffle_within_second, shuffle_seed=shuffle_seed)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ZoomSimulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.sim = self
        self._server = server
        self._bound_port = server.server_address[1]  # kept after stop() so URLs stay meaningful
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"zoom-sim-{server.server_address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open keep-alive connections so clients see the server go away."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ZoomSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        """``http://host:port``; also returned as ``api_url`` by the token endpoint."""
        port = self._bound_port or self.port
        if not port:
            raise RuntimeError("simulator not started (port 0 is chosen at start())")
        return f"http://{self.host}:{port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v2"

    @property
    def token_url(self) -> str:
        return self.root_url + "/oauth/token"

    @property
    def control_url(self) -> str:
        return self.root_url + "/_sim"

    # -- configuration -----------------------------------------------------------------------------
    def configure(self, *, account: str = DEFAULT_ACCOUNT, **settings: Any) -> dict:
        """Change credentials, scopes, TTLs, retention, last-token style, ``today`` or the within-second
        shuffle (``shuffle_within_second``, ``shuffle_seed``; see the class docstring); returns
        config(account=account). With another ``account`` than the default, only that account's settings
        (credentials, ``scopes``, ``invalidate_on_mint``, ``max_requests_per_second``) may be given.
        Nothing changes unless every setting is valid."""
        unknown = set(settings) - set(self._CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown setting(s): {sorted(unknown)}")
        values = {key: _setting(key, value) for key, value in settings.items()}
        with self._lock:
            target = self._account(account)
            shared = sorted(key for key in values if key not in _AccountState.SETTINGS)
            if shared and target.name != DEFAULT_ACCOUNT:
                raise ValueError(f"{shared} are the same for every account: configure them without an account")
            self._check_distinct(target, values.get("account_id", target.account_id),
                                 values.get("client_id", target.client_id))
            for key, value in values.items():
                setattr(target if key in _AccountState.SETTINGS else self, key, value)
            return self.config(account=account)

    def config(self, *, account: str = DEFAULT_ACCOUNT) -> dict:
        """Current settings as seen by ``account`` (``today`` as a string or None)."""
        with self._lock:
            target = self._account(account)
            out = {key: getattr(target if key in _AccountState.SETTINGS else self, key) for key in self._CONFIG_KEYS}
        out["today"] = out["today"].isoformat() if out["today"] else None
        return out

    def _today(self) -> dt.date:
        return self.today or dt.datetime.now(dt.UTC).date()

    # -- accounts ----------------------------------------------------------------------------------
    def add_account(self, name: str, *, client_secret: str, account_id: str | None = None,
                    client_id: str | None = None, scopes: str = DEFAULT_SCOPES,
                    max_requests_per_second: float | None = None) -> SimAccount:
        """Another Zoom account, with its own Server-to-Server app: ``account_id`` and ``client_id``
        default to generated ids (``sim-account-<name>``, ``sim-client-id-<name>``); both must differ
        from every other account's. Returns its credentials."""
        if not isinstance(name, str) or not name:
            raise ValueError("an account's name must be a non-empty string")
        if not isinstance(client_secret, str) or not client_secret:
            raise ValueError("client_secret must be a non-empty string")
        scopes, limit = _setting("scopes", scopes), _setting("max_requests_per_second", max_requests_per_second)
        with self._lock:
            if name in self._accounts:
                raise ValueError(f"account {name!r} already exists")
            ids = {}
            for key, given, stem in (("account_id", account_id, "sim-account"),
                                     ("client_id", client_id, "sim-client-id")):
                if given is None:
                    taken = {getattr(other, key) for other in self._accounts.values()}
                    given = f"{stem}-{name}"
                    while given in taken:
                        given = f"{stem}-{name}-{secrets.token_hex(3)}"
                ids[key] = _setting(key, given)
            state = _AccountState(name, ids["account_id"], ids["client_id"], client_secret, scopes)
            state.max_requests_per_second = limit
            self._check_distinct(state, state.account_id, state.client_id)
            self._accounts[name] = state
            return state.credentials()

    def account(self, name: str = DEFAULT_ACCOUNT) -> SimAccount:
        """The credentials of account ``name`` (as they are now)."""
        with self._lock:
            return self._account(name).credentials()

    def accounts(self) -> list[str]:
        """Names of every account, the default first, then in the order added."""
        with self._lock:
            return list(self._accounts)

    def _account(self, name: Any) -> _AccountState:
        state = self._accounts.get(name) if isinstance(name, str) else None
        if state is None:
            raise ValueError(f"unknown account {name!r}; accounts: {list(self._accounts)}")
        return state

    def _check_distinct(self, state: _AccountState, account_id: str, client_id: str) -> None:
        for other in self._accounts.values():
            if other is not state and account_id == other.account_id:
                raise ValueError(f"account_id {account_id!r} is account {other.name!r}'s")
            if other is not state and client_id == other.client_id:
                raise ValueError(f"client_id {client_id!r} is account {other.name!r}'s")

    # -- data --------------------------------------------------------------------------------------
    # Every method here takes ``log``: "operationlogs" (the default) or "activities" (see LOGS), and
    # ``account`` ("default" unless given).

    def set_day(self, day: str, records: list[dict], *, log: str = "operationlogs",
                account: str = DEFAULT_ACCOUNT) -> None:
        """Replace ``day`` with explicit records (served newest first, stable for equal times).

        A ``bytes`` value (here or in add_records) goes on the wire verbatim between quotes instead of
        JSON-encoded, e.g. ``{"operator": b"ops\\xffadmin@acme-corp.com", ...}`` puts an invalid UTF-8
        byte inside that string; the bytes must otherwise be valid JSON string content (no bare quote
        or backslash). The rest of the page stays valid JSON.
        """
        new = _Day(_day_str(day), log=_log(log))
        new.set_explicit(records)
        with self._lock:
            self._account(account).days[(new.log.name, new.day)] = new

    def generate_day(self, day: str, count: int, *, seed: int = 0, twins: int = 0, log: str = "operationlogs",
                     account: str = DEFAULT_ACCOUNT) -> None:
        """Replace ``day`` with ``count`` lazily generated records (``twins`` adjacent identical pairs)."""
        new = _Day(_day_str(day), int(count), int(seed), int(twins), _log(log))
        with self._lock:
            self._account(account).days[(new.log.name, new.day)] = new

    def add_records(self, day: str, records: list[dict], *, log: str = "operationlogs",
                    account: str = DEFAULT_ACCOUNT) -> None:
        """Events arriving now: merged by time; on equal time the newly added go first."""
        target = _log(log)
        with self._lock:
            self._account(account).add(target, _day_str(day), records)

    def day_count(self, day: str, *, log: str = "operationlogs", account: str = DEFAULT_ACCOUNT) -> int:
        """Records currently stored for ``day`` (ground truth for tests)."""
        key = (_log(log).name, _day_str(day))
        with self._lock:
            target = self._account(account).days.get(key)
            return target.total if target else 0

    def day_records(self, day: str, offset: int = 0, limit: int | None = None, *,
                    log: str = "operationlogs", account: str = DEFAULT_ACCOUNT) -> list[dict]:
        """The day's records as the API would serve them, newest first (ground truth for tests)."""
        key = (_log(log).name, _day_str(day))
        with self._lock:
            target = self._account(account).days.get(key)
            if target is None:
                return []
            return [dict(r) for r in target.slice(offset, target.total if limit is None else limit)]

    def make_records(self, day: str, count: int, *, seed: int, start_time: Any = None,
                     log: str = "operationlogs") -> list[dict]:
        """Realistic, distinct records for ``day``, newest first, deterministic per seed.

        Without ``start_time`` times are spread over the day. With it (``"HH:MM:SS"``, a full
        ``YYYY-MM-DDTHH:MM:SSZ`` or a ``datetime.time``), the first record has that time and each
        next one is 1-30 s older (never before 00:00:00).
        """
        kind = _log(log)
        day = _day_str(day)
        rng = random.Random(f"{day}/{seed}/records")
        pool, stride, picks = kind.vocab()
        if start_time is None:
            secs = sorted((rng.randrange(86400) for _ in range(count)), reverse=True)
        else:
            if isinstance(start_time, dt.time):
                first = start_time.hour * 3600 + start_time.minute * 60 + start_time.second
            else:
                hms = str(start_time).rstrip("Z").split("T")[-1]
                h, m, s = (int(x) for x in hms.split(":"))
                first = h * 3600 + m * 60 + s
            secs = [first]
            for _ in range(count - 1):
                secs.append(max(0, secs[-1] - rng.randint(1, 30)))
        base = rng.randrange(len(pool))
        return [kind.record(pool[(base + i * stride) % len(pool)], rng.choice(picks), _clock(day, sec))
                for i, sec in enumerate(secs[:count])]

    # -- faults and triggers -----------------------------------------------------------------------
    def inject(self, kind: str, *, times: int = 1, after_calls: int = 0, log: str = "operationlogs",
               account: str = DEFAULT_ACCOUNT, **params: Any) -> None:
        """Fail the next ``times`` report calls of ``log`` of ``account`` (its token calls for ``token_*``
        kinds, where ``log`` does not apply) once ``after_calls`` more such calls have been served with
        no fault. ``invalid_page_token`` only fires on a request that carries a ``next_page_token``.
        Faults fire before authentication, like a gateway would. Params: ``retry_after`` (rate limits;
        for daily it overrides the ISO timestamp), ``status`` and ``body`` ("json"/"html") for server
        errors, ``seconds`` for slow, ``limit`` for daily, ``shape`` for malformed_page (one of
        ``MALFORMED_SHAPES``: the records list ``missing`` (default), ``null`` or an ``object``, or the
        body ``{}`` (``empty``) or ``{"message": "upstream timeout"}`` (``message``)), ``body`` for raw_body."""
        if kind not in FAULT_KINDS and kind not in TOKEN_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of "
                             f"{sorted(FAULT_KINDS | TOKEN_FAULT_KINDS)}")
        if kind == "malformed_page" and params.get("shape", "missing") not in MALFORMED_SHAPES:
            raise ValueError(f"unknown malformed_page shape {params['shape']!r}; expected one of {MALFORMED_SHAPES}")
        if int(times) < 1 or int(after_calls) < 0:
            raise ValueError("need times >= 1 and after_calls >= 0")
        where = None if kind in TOKEN_FAULT_KINDS else _log(log).name
        fault = _Fault(kind, int(times), int(after_calls), dict(params), where)
        with self._lock:
            state = self._account(account)
            (state.faults if where else state.token_faults).append(fault)

    def clear_faults(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Drop every pending fault of ``account``."""
        with self._lock:
            state = self._account(account)
            state.faults.clear()
            state.token_faults.clear()

    def pending_faults(self, *, account: str = DEFAULT_ACCOUNT) -> list[dict]:
        """Faults of ``account`` not yet fully served, with their remaining ``times`` and ``after_calls``
        (and ``log``)."""
        with self._lock:
            state = self._account(account)
            return [f.as_dict() for f in state.faults + state.token_faults]

    def _after_call(self, state: _AccountState, log: _Log, n: int, action: Callable[[], None]) -> None:
        if int(n) < 1:
            raise ValueError("report calls are numbered from 1")
        with self._lock:
            state.triggers.setdefault((log.name, int(n)), []).append(action)

    def on_report_call(self, n: int, day: str, records: list[dict], *, log: str = "operationlogs",
                       account: str = DEFAULT_ACCOUNT) -> None:
        """Right after serving the n-th report call of ``log`` of ``account`` (1-based, since
        reset_stats), add_records(day, records, log=log, account=account)."""
        state, target = self._account(account), _log(log)
        self._after_call(state, target, n, functools.partial(state.add, target, _day_str(day),
                                                             [dict(r) for r in records]))

    def late_events(self, day: str, *, after_call: int, position: int, count: int, seed: int = 0,
                    twins: bool = False, log: str = "operationlogs", account: str = DEFAULT_ACCOUNT) -> None:
        """Right after serving report call ``after_call`` of ``log`` of ``account`` (1-based, since
        reset_stats), insert ``count`` records into ``day`` immediately above the record then at
        ``position`` (0 = newest, in day_records order), with its `time`: they take positions
        [position, position+count) and everything from there on moves down.

        The position may be among rows a client was already served (just above the last row of its
        previous page, or hundreds back), which reproduces a listing that moves while a client pages;
        unlike add_records it lands exactly there even inside a group of equal time. The new records
        are realistic, distinct from each other and from every record of that second, deterministic
        per ``seed``. ``twins=True`` inserts ``count`` byte-identical copies of the record at
        ``position`` instead (late identical twins). A position past the end appends at the end with
        the last record's time; an empty day gets distinct records at 00:00:00.
        """
        if int(position) < 0 or not 1 <= int(count) <= 10_000:
            raise ValueError("need position >= 0 and 1 <= count <= 10000")
        state, target = self._account(account), _log(log)
        self._after_call(state, target, after_call, functools.partial(
            self._late_locked, state, target, _day_str(day), int(position), int(count), int(seed), bool(twins)))

    @staticmethod
    def _late_locked(state: _AccountState, log: _Log, day: str, position: int, count: int, seed: int,
                     twins: bool) -> None:
        target = state.day(log, day)
        position = min(position, target.total)
        anchor = target.slice(min(position, target.total - 1), 1)
        if anchor and twins:
            target.insert_at(position, [dict(anchor[0]) for _ in range(count)])
            return
        when = anchor[0].get("time", "") if anchor else f"{day}T00:00:00Z"
        key = _key(anchor[0]) if anchor else when
        # Only records of the same second can be byte-identical to a new one.
        lo = target.count_newer(key)
        taken = {repr(r) for r in target.slice(lo, target.count_newer(key, inclusive=True) - lo)}
        rng = random.Random(f"{day}/{seed}/late")
        pool, stride, picks = log.vocab()
        base = rng.randrange(len(pool))
        out: list[dict] = []
        for i in range(20 * (count + len(taken)) + 100):  # bounded: pool x picks is ~17k (~3k) records
            rec = log.record(pool[(base + i * stride) % len(pool)], rng.choice(picks), when)
            if repr(rec) not in taken:
                taken.add(repr(rec))
                out.append(rec)
                if len(out) == count:
                    break
        target.insert_at(position, out)

    def expire_page_tokens(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Invalidate every outstanding next_page_token of ``account``."""
        with self._lock:
            self._account(account).page_tokens.clear()

    def expire_access_tokens(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Make every access token issued to ``account`` answer 401 "Access token is expired."."""
        with self._lock:
            for tok in self._account(account).tokens.values():
                tok.revoked = True

    def reset(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Forget the days, tokens, faults, triggers (on_report_call, late_events) and statistics of
        ``account`` (configuration and the other accounts are kept)."""
        with self._lock:
            self._account(account).reset(self._connections)

    # -- statistics --------------------------------------------------------------------------------
    def reset_stats(self, *, account: str = DEFAULT_ACCOUNT) -> None:
        """Zero the counters of ``account``; its report calls are numbered from 1 again for
        on_report_call, late_events and shuffle_seed."""
        with self._lock:
            self._account(account).reset_stats(self._connections)

    def stats(self, *, account: str = DEFAULT_ACCOUNT) -> dict:
        """Counters of ``account`` since its last reset_stats: without ``account``, the default
        account's (not totals over accounts), as every other method addresses the default account.

        Report counters are totals over both report endpoints (``faults_by_kind`` and
        ``status_counts`` include the token endpoint's), except ``report_calls_by_day``: operation-log
        calls only, keyed by ``from`` (``"from..to"`` for a multi-day range). ``by_log`` has each
        report endpoint's own ``report_calls``, ``report_calls_by_day``, ``faults_by_kind``,
        ``status_counts``, ``pages_served``, ``records_served``, ``page_tokens_issued`` and
        ``qps_rejections``. ``token_calls`` counts the token calls carrying the account's client_id,
        ``tokens_issued`` those that minted. ``max_concurrent_tokens`` is the largest number of the
        account's access tokens whose [first use, last use] report-call intervals overlap;
        ``max_in_flight`` the most of its report requests open at once; ``connections`` the TCP
        connections the server accepted (from any client) since.
        """
        with self._lock:
            return self._account(account).stats(self._connections)

    def _track(self, conn: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._conns.add(conn)
                self._connections += 1
            else:
                self._conns.discard(conn)

    @staticmethod
    def _take_fault(queue: list[_Fault], log: str | None, applies: Any) -> _Fault | None:
        """Pop the first due, applicable fault of ``log``; a call with no fault advances the countdown
        of every fault of ``log`` (None: the token endpoint)."""
        mine = [fault for fault in queue if fault.log == log]
        for fault in mine:
            if fault.after == 0 and applies(fault):
                fault.times -= 1
                if fault.times == 0:
                    queue.remove(fault)
                return fault
        for fault in mine:
            if fault.after > 0:
                fault.after -= 1
        return None

    # -- routing -----------------------------------------------------------------------------------
    def _route(self, method: str, target: str, headers: Any, body: bytes) -> _Resp:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        log = _LOGS.get(path[len("/v2/report/"):]) if path.startswith("/v2/report/") else None
        if log is not None:
            if method != "GET":
                return _api_error(405, 405, "Method not allowed.")
            return self._report(query, headers, log)
        if path == "/oauth/token":
            if method != "POST":
                return _oauth_error("Method not allowed", "invalid_request")
            return self._token(query, headers, body)
        if path.startswith("/_sim/"):
            return self._control(method, path[len("/_sim/"):], query, body)
        return _api_error(404, 404, "Not Found")

    # -- OAuth -------------------------------------------------------------------------------------
    def _token(self, query: dict, headers: Any, body: bytes) -> _Resp:
        params = dict(query)
        if body and "json" not in (headers.get("Content-Type") or ""):
            # Zoom accepts the same parameters as an x-www-form-urlencoded body.
            params.update({k: v[0] for k, v in parse_qs(body.decode("latin-1"), keep_blank_values=True).items()})
        client_id = secret = None
        auth = headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
        with self._lock:
            # The call is the account's whose app the client_id names (an unknown one: the default's).
            state = next((a for a in self._accounts.values() if a.client_id == client_id),
                         self._accounts[DEFAULT_ACCOUNT])
            state.token_calls += 1
            fault = self._take_fault(state.token_faults, None, lambda f: True)
            if fault is not None:
                state.token_counts.faults[fault.kind] = state.token_counts.faults.get(fault.kind, 0) + 1
        answer = functools.partial(self._status, state.token_counts)
        if fault is not None:
            if fault.kind == "token_connection_reset":
                return _Resp(0, reset=True)
            if fault.kind == "token_slow":
                time.sleep(float(fault.params.get("seconds", 1.0)))
            else:
                status = int(fault.params.get("status", 500))
                return answer(_json(status, {"reason": HTTPStatus(status).phrase, "error": "server_error"}))

        with self._lock:
            if client_id != state.client_id or secret != state.client_secret:
                return answer(_oauth_error("Invalid client_id or client_secret", "invalid_client"))
            grant_type = params.get("grant_type")
            if not grant_type:
                return answer(_oauth_error("Missing grant_type", "invalid_request"))
            if grant_type != "account_credentials":
                return answer(_oauth_error("Unsupported grant type", "unsupported_grant_type"))
            account = params.get("account_id")
            if not account:
                return answer(_oauth_error("Bad Request", "invalid_request"))
            if account != state.account_id:
                if any(other.account_id == account for other in self._accounts.values()):
                    # Another account's id: this app's credentials are not valid there.
                    return answer(_oauth_error("Invalid client_id or client_secret", "invalid_client"))
                return answer(_oauth_error("Account does not exist", "invalid_request"))
            if state.invalidate_on_mint:
                for earlier in state.tokens.values():  # they now answer 401, code 124 "Invalid access token."
                    earlier.invalid = True
            token = self._mint(state)
            state.tokens_issued += 1
            return answer(_json(200, {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl,
                                      "scope": state.scopes, "api_url": self.root_url}))

    def _mint(self, state: _AccountState) -> str:
        # Looks like Zoom's JWT-shaped tokens, but only the account's table gives it meaning.
        now = time.time()

        def b64(obj: Any) -> str:
            return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()
        token = ".".join((b64({"sv": "00000001", "alg": "HS512", "v": "2.0", "kid": secrets.token_hex(8)}),
                          b64({"aud": "https://oauth.zoom.us", "uid": state.client_id, "ver": 9,
                               "auid": secrets.token_hex(16), "iat": int(now), "exp": int(now + self.token_ttl)}),
                          secrets.token_urlsafe(64)))
        state.tokens[token] = _Token(time.monotonic())
        return token

    def _owner(self, bearer: str) -> _AccountState:
        """The account that minted ``bearer``; the default account for a token nobody minted."""
        for state in self._accounts.values():
            if bearer in state.tokens:
                return state
        return self._accounts[DEFAULT_ACCOUNT]

    # -- report ------------------------------------------------------------------------------------
    def _report(self, query: dict, headers: Any, log: _Log) -> _Resp:
        auth = headers.get("Authorization") or ""
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        has_page_token = bool(query.get("next_page_token"))
        key = query.get("from", "")
        if query.get("to", key) != key:
            key = f"{key}..{query.get('to', '')}"
        with self._lock:
            state = self._owner(bearer)  # the token decides the account: its data, limits, faults, counters
            counts = state.counts[log.name]
            counts.calls += 1
            n = counts.calls
            counts.by_day[key] = counts.by_day.get(key, 0) + 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            if state.max_requests_per_second is not None and state.over_qps():
                counts.qps += 1
                state.in_flight -= 1
                return self._status(counts, _api_error(429, 429, MSG_QPS, (("X-RateLimit-Category", "Heavy"),
                                                                           ("X-RateLimit-Type", "QPS"))))
            token = state.tokens.get(bearer)
            if token is not None and not token.invalid:
                now = time.monotonic()
                state.token_use.setdefault(bearer, [now, now])[1] = now
            fault = self._take_fault(state.faults, log.name,
                                     lambda f: f.kind != "invalid_page_token" or has_page_token)
            if fault is not None:
                counts.faults[fault.kind] = counts.faults.get(fault.kind, 0) + 1
        try:
            if fault is not None and fault.kind == "slow":
                time.sleep(float(fault.params.get("seconds", 1.0)))  # outside the lock
                fault = None
            with self._lock:
                if fault is None:
                    resp = self._page(query, bearer, log, state, n)
                elif fault.kind == "truncated_body":
                    served = counts.records
                    full = self._page(query, bearer, log, state, n)
                    resp = full._replace(body=full.body[: len(full.body) // 2])
                    if full.status == 200:  # the client never gets these records
                        counts.pages -= 1
                        counts.records = served
                else:
                    resp = self._fault_response(fault, query, bearer, log, state)
                for action in state.triggers.pop((log.name, n), []):
                    action()
                return self._status(counts, resp)
        finally:
            with self._lock:
                state.in_flight -= 1

    def _status(self, counts: _Counts, resp: _Resp) -> _Resp:
        if not resp.reset:
            with self._lock:
                key = str(resp.status)
                counts.statuses[key] = counts.statuses.get(key, 0) + 1
        return resp

    def _fault_response(self, fault: _Fault, query: dict, bearer: str, log: _Log, state: _AccountState) -> _Resp:
        kind, params = fault.kind, fault.params
        if kind == "rate_limit_qps":
            headers = [("X-RateLimit-Category", "Heavy"), ("X-RateLimit-Type", "QPS")]
            if params.get("retry_after") is not None:
                headers.append(("Retry-After", str(params["retry_after"])))
            return _api_error(429, 429, MSG_QPS, tuple(headers))
        if kind == "rate_limit_daily":
            # The daily quota resets at 00:00 UTC; Retry-After is an ISO timestamp, not seconds.
            reset = params.get("retry_after") or f"{self._today() + dt.timedelta(days=1)}T00:00:00Z"
            return _api_error(429, 429, MSG_DAILY, (
                ("X-RateLimit-Category", "Heavy"), ("X-RateLimit-Type", "Daily-limit"),
                ("X-RateLimit-Limit", str(params.get("limit", 30000))), ("X-RateLimit-Remaining", "0"),
                ("Retry-After", str(reset))))
        if kind == "server_error":
            status = int(params.get("status", 500))
            phrase = HTTPStatus(status).phrase
            if params.get("body", "json") == "html":
                page = (f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
                        f"<center><h1>{status} {phrase}</h1></center>\r\n</body>\r\n</html>\r\n")
                return _Resp(status, page.encode(), ctype="text/html")
            return _api_error(status, status, params.get("message", phrase))
        if kind == "token_expired":
            token = state.tokens.get(bearer)
            if token is not None:
                token.revoked = True
            return _api_error(401, 124, MSG_EXPIRED_TOKEN)
        if kind == "invalid_page_token":
            state.page_tokens.pop(query.get("next_page_token", ""), None)
            return _api_error(400, 300, MSG_BAD_PAGE_TOKEN)
        if kind == "connection_reset":
            return _Resp(0, reset=True)
        if kind == "malformed_page":  # a 200 without the records list; its token says "last page"
            shape = params.get("shape", "missing")
            if shape == "empty":
                return _json(200, {})
            if shape == "message":
                return _json(200, {"message": "upstream timeout"})
            body: dict[str, Any] = {"from": log.bound(query.get("from", "")), "to": log.bound(query.get("to", "")),
                                    "page_size": int(query.get("page_size") or DEFAULT_PAGE_SIZE),
                                    "next_page_token": ""}
            if shape != "missing":
                body[log.records_key] = None if shape == "null" else {}
            return _json(200, body)
        if kind == "raw_body":  # a 200 with exactly these bytes: JSON that strict parsers refuse, odd shapes
            body = params.get("body", "")
            return _Resp(200, body.encode("latin-1") if isinstance(body, str) else bytes(body))
        raise AssertionError(f"unhandled fault {kind}")

    def _page(self, query: dict, bearer: str, log: _Log, state: _AccountState, call: int = 0) -> _Resp:
        """Serve one page of ``log`` of ``state``'s account for its report call number ``call`` (caller
        holds the lock)."""
        now = time.monotonic()
        token = state.tokens.get(bearer)
        if token is None or token.invalid:
            return _api_error(401, 124, MSG_INVALID_TOKEN)
        if token.revoked or now - token.issued > self.token_ttl:
            return _api_error(401, 124, MSG_EXPIRED_TOKEN)
        if not any(scope in state.scopes.split() for scope in log.scopes):
            # Zoom answers a missing scope with 400, not 401/403.
            return _api_error(400, 4711, f"Invalid access token, does not contain scopes:[{log.scopes[0]}]")

        dates = {}
        for name in ("from", "to"):
            raw = query.get(name)
            if not raw:
                return _api_error(400, 300, f"The '{name}' field is required (yyyy-mm-dd).")
            try:
                dates[name] = _parse_day(raw)
            except ValueError:
                return _api_error(400, 300, f"Invalid date format for '{name}': {raw!r}. Expected yyyy-mm-dd.")
        frm, to = dates["from"].isoformat(), dates["to"].isoformat()
        if dates["to"] < dates["from"]:
            return _api_error(400, 300, "The 'to' date must not be earlier than the 'from' date.")
        if dates["from"] < self._today() - dt.timedelta(days=self.retention_days):
            return _api_error(400, 300, MSG_RETENTION)

        size = DEFAULT_PAGE_SIZE
        if query.get("page_size"):
            try:
                size = int(query["page_size"])
            except ValueError:
                return _api_error(400, 300, f"Invalid page_size: {query['page_size']!r}.")
            size = DEFAULT_PAGE_SIZE if size <= 0 else min(size, MAX_PAGE_SIZE)

        offset = 0
        page_token = query.get("next_page_token")
        if page_token:
            entry = state.page_tokens.get(page_token)  # bound to its account, endpoint and date range
            if entry is None or now - entry.issued > self.page_token_ttl or entry[:3] != (log.name, frm, to):
                return _api_error(400, 300, MSG_BAD_PAGE_TOKEN)
            offset = entry.offset
            if not query.get("page_size"):
                size = entry.size

        rng = None
        if self.shuffle_within_second:  # one permutation per call, shared by every day of the range
            rng = random.Random() if self.shuffle_seed is None else random.Random(f"{self.shuffle_seed}/{call}")
        records: list[dict] = []
        total = 0
        skip = offset
        raw = False
        for day in sorted((d for name, d in state.days if name == log.name and frm <= d <= to), reverse=True):
            data = state.days[(log.name, day)]
            day_total = data.total
            total += day_total
            if len(records) < size and skip < day_total:
                raw = raw or data.raw
                if rng is None:
                    records.extend(data.slice(skip, size - len(records)))
                else:
                    records.extend(data.shuffled_slice(skip, size - len(records), rng))
                skip = 0
            else:
                skip = max(0, skip - day_total)

        body: dict[str, Any] = {"from": log.bound(frm), "to": log.bound(to), "page_size": size}
        counts = state.counts[log.name]
        if offset + len(records) < total:
            body["next_page_token"] = self._issue_page_token(
                state, _PageToken(log.name, frm, to, offset + len(records), size, now))
            counts.page_tokens += 1
        elif self.last_token_style == "empty":
            body["next_page_token"] = ""
        elif self.last_token_style == "null":
            body["next_page_token"] = None
        body[log.records_key] = records
        counts.pages += 1
        counts.records += len(records)
        return _Resp(200, _dumps_with_raw(body, log.records_key)) if raw else _json(200, body)

    def _issue_page_token(self, state: _AccountState, entry: _PageToken) -> str:
        if len(state.page_tokens) >= 10_000:  # drop expired entries so long runs stay bounded
            cutoff = entry.issued - self.page_token_ttl
            state.page_tokens = {k: v for k, v in state.page_tokens.items() if v.issued >= cutoff}
        token = secrets.token_urlsafe(24).replace("-", "x").replace("_", "Z")
        state.page_tokens[token] = entry
        return token

    # -- control endpoints -------------------------------------------------------------------------
    def _control(self, method: str, name: str, query: dict, body: bytes) -> _Resp:
        try:
            data = orjson.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if method == "GET":
                account = query.get("account", DEFAULT_ACCOUNT)
                if name == "stats":
                    return _json(200, self.stats(account=account))
                if name == "config":
                    return _json(200, self.config(account=account))
                if name == "faults":
                    return _json(200, self.pending_faults(account=account))
                if name == "accounts":
                    return _json(200, [self.account(n)._asdict() for n in self.accounts()])
                if name == "records":
                    limit, log = query.get("limit"), query.get("log", "operationlogs")
                    where = {"log": log, "account": account}
                    return _json(200, {"records": _raw_out(self.day_records(
                        query["day"], int(query.get("offset", 0)), None if limit is None else int(limit), **where)),
                        "count": self.day_count(query["day"], **where)})
                return _json(404, {"error": f"unknown control endpoint GET /_sim/{name}"})
            if method != "POST":
                return _json(405, {"error": "use GET or POST"})
            log = data.get("log", "operationlogs")
            account = data.get("account", DEFAULT_ACCOUNT)
            where = {"log": log, "account": account}
            if name == "account":
                unknown = set(data) - {"name", "client_secret", "account_id", "client_id", "scopes",
                                       "max_requests_per_second"}
                if unknown:
                    raise ValueError(f"unknown field(s): {sorted(unknown)}")
                options = {k: v for k, v in data.items() if k not in ("name", "client_secret")}
                return _json(200, self.add_account(data["name"], client_secret=data["client_secret"],
                                                   **options)._asdict())
            if name == "day":
                if "generate" in data:
                    self.generate_day(data["day"], int(data["generate"]), seed=int(data.get("seed", 0)),
                                      twins=int(data.get("twins", 0)), **where)
                else:
                    self.set_day(data["day"], _raw_in(data["records"]), **where)
            elif name == "add":
                self.add_records(data["day"], _raw_in(data["records"]), **where)
            elif name == "fault":
                params = {k: v for k, v in data.items()
                          if k not in ("kind", "times", "after_calls", "log", "account")}
                self.inject(data["kind"], times=int(data.get("times", 1)),
                            after_calls=int(data.get("after_calls", 0)), **where, **params)
            elif name == "trigger":
                self.on_report_call(int(data["n"]), data["day"], _raw_in(data["records"]), **where)
            elif name == "late_events":
                if not isinstance(data.get("twins", False), bool):
                    raise ValueError("twins must be true or false")
                self.late_events(data["day"], after_call=int(data["after_call"]), position=int(data["position"]),
                                 count=int(data["count"]), seed=int(data.get("seed", 0)),
                                 twins=data.get("twins", False), **where)
            elif name == "make_records":
                return _json(200, {"records": self.make_records(
                    data["day"], int(data["count"]), seed=int(data.get("seed", 0)),
                    start_time=data.get("start_time"), log=log)})
            elif name == "config":
                return _json(200, self.configure(**data))
            elif name == "stats":
                return _json(200, self.stats(account=account))
            elif name in ("reset_stats", "expire_page_tokens", "expire_access_tokens", "clear_faults", "reset"):
                getattr(self, name)(account=account)
            else:
                return _json(404, {"error": f"unknown control endpoint POST /_sim/{name}"})
            return _json(200, {"ok": True})
        except (KeyError, TypeError, ValueError) as exc:
            message = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            return _json(400, {"error": message})


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # concurrent clients must not be refused
    sim: ZoomSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (or stop() dropping them) is normal here; keep stderr quiet.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ZoomSimulator/1.0"
    sys_version = ""
    # Headers and body go out in one write, and TCP_NODELAY avoids the Nagle/delayed-ACK 40 ms stall.
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections eventually free their thread
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.sim._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(_json(400, {"error": "bad Content-Length"}))
            return
        body = self.rfile.read(length) if length else b""
        try:
            resp = self.server.sim._route(self.command, self.path, self.headers, body)
        except Exception as exc:  # a simulator bug must surface as a 500, not a hung client
            resp = _json(500, {"code": 500, "message": f"simulator error: {exc!r}"})
        if resp.reset:
            self._reset()
        else:
            self._write(resp)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _write(self, resp: _Resp) -> None:
        lines = [
            f"HTTP/1.1 {resp.status} {HTTPStatus(resp.status).phrase}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {resp.ctype}",
            f"Content-Length: {len(resp.body)}",
        ]
        lines.extend(f"{k}: {v}" for k, v in resp.headers)
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body)

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST; rfile is closed first because its reference would
        # otherwise keep the descriptor open.
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print the URLs as one JSON line first."""
    ap = argparse.ArgumentParser(prog="python -m zoom_pipeline.simulator", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    ap.add_argument("--generate", action="append", default=[], metavar="DAY=COUNT[:SEED[:TWINS]]",
                    help="generate a day of operation logs lazily, e.g. 2026-11-20=1000 or 2026-11-20=1000000:7:25")
    ap.add_argument("--generate-activities", action="append", default=[], metavar="DAY=COUNT[:SEED[:TWINS]]",
                    help="the same for a day of sign-in / sign-out activities")
    ap.add_argument("--account-id", default="sim-account")
    ap.add_argument("--client-id", default="sim-client-id")
    ap.add_argument("--client-secret", default="sim-client-secret")
    ap.add_argument("--account", action="append", default=[], metavar="NAME:CLIENT_SECRET",
                    help="add an account with generated ids (printed in the JSON line); repeatable")
    ap.add_argument("--scopes", default=DEFAULT_SCOPES)
    ap.add_argument("--token-ttl", type=float, default=3600)
    ap.add_argument("--page-token-ttl", type=float, default=900)
    ap.add_argument("--retention-days", type=int, default=180)
    ap.add_argument("--last-token-style", choices=LAST_TOKEN_STYLES, default="empty")
    ap.add_argument("--today", default=None, help="pin today's date (YYYY-MM-DD); default: real UTC date")
    ap.add_argument("--shuffle-within-second", action="store_true",
                    help="serve records of the same second in a fresh random order on every report call")
    ap.add_argument("--shuffle-seed", type=int, default=None, help="make that order a function of (seed, call)")
    args = ap.parse_args(argv)
    extra = [spec.partition(":") for spec in args.account]
    if any(not name or not sep or not secret for name, sep, secret in extra):
        ap.error("--account takes NAME:CLIENT_SECRET")

    def whole(x: float) -> float:
        return int(x) if float(x).is_integer() else x

    sim = ZoomSimulator(args.host, args.port, account_id=args.account_id, client_id=args.client_id,
                        client_secret=args.client_secret, token_ttl=whole(args.token_ttl),
                        page_token_ttl=whole(args.page_token_ttl), retention_days=args.retention_days,
                        scopes=args.scopes, last_token_style=args.last_token_style, today=args.today,
                        shuffle_within_second=args.shuffle_within_second, shuffle_seed=args.shuffle_seed)
    for log, specs in (("operationlogs", args.generate), ("activities", args.generate_activities)):
        for spec in specs:
            day, _, rest = spec.partition("=")
            count, seed, twins = ([int(x) for x in rest.split(":")] + [0, 0])[:3]
            sim.generate_day(day, count, seed=seed, twins=twins, log=log)
    try:
        for name, _, secret in extra:
            sim.add_account(name, client_secret=secret)
    except ValueError as exc:
        ap.error(str(exc))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.start()
    try:
        sys.stdout.write(orjson.dumps({"base_url": sim.base_url, "token_url": sim.token_url,
                                       "control_url": sim.control_url,
                                       "port": int(sim.root_url.rsplit(":", 1)[1]),
                                       "accounts": [sim.account(n)._asdict() for n in sim.accounts()],
                                       }).decode() + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):  # a short wait keeps signal delivery prompt
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
