"""Record generators: what the simulated records are made of, and how each report endpoint shapes them.

Pure functions and constants, no state and no I/O (the vocabularies are built on first use, never at
import). Operation logs are built from verbatim public samples of Zoom's `operation_detail`; sign-in /
sign-out activities from a few hundred people with one to three clients each. ``_LOGS`` describes the
two report endpoints (``GET /v2/report/<name>``): their records key, scopes, vocabulary and record shape.
``_mix`` and ``_clock`` are the hash and the clock of the lazily generated days (day.py);
``_make_records`` and ``_late_records`` make records on request (``make_records``, ``late_events``).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import math
import random
import re
from collections.abc import Callable
from typing import Any, NamedTuple

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


def _parse_day(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DAY_RE.match(value):
        raise ValueError(f"day must be YYYY-MM-DD, got {value!r}")
    return dt.date.fromisoformat(value)


def _day_str(value: Any) -> str:
    return _parse_day(value).isoformat()


# --------------------------------------------------------------------------------------------------
# Records made on request.
# --------------------------------------------------------------------------------------------------


def _make_records(kind: _Log, day: str, count: int, seed: int, start_time: Any = None) -> list[dict]:
    """Realistic, distinct records of ``kind`` for ``day``, newest first, deterministic per seed (see
    ZoomSimulator.make_records)."""
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


def _late_records(log: _Log, day: str, seed: int, when: Any, count: int, taken: set[str]) -> list[dict]:
    """Up to ``count`` realistic records of ``log`` at time ``when``, distinct from each other and from
    the ``repr`` of every record in ``taken`` (which gains theirs), deterministic per ``seed``."""
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
    return out
