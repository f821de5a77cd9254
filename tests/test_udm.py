"""Golden and property tests of zoom_pipeline.udm.

Every expected event below is written out by hand from the mapping rules (notes §6.1 and the issue text),
never computed by the code under test. The operation_detail strings of notes §5.1 and §5.2 are verbatim.
The golden cases are tables, one row a case: a `_zoom` row writes a record as Zoom sends it, whose values
the event carries as they are, once (in the record) and the rest of its event by hand; any other row writes
its record and its whole event.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from zoom_pipeline.udm import (
    PROBLEMS,
    TARGET_FIELDS,
    UDM_MAPPING,
    ParsedDetail,
    Rule,
    coverage,
    map_line,
    parse_operation_detail,
    product_log_id,
    to_udm_event,
)

LOG_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
FALLBACK = datetime(2026, 11, 14, tzinfo=UTC)
DAY_START = "2026-11-14T00:00:00Z"  # FALLBACK in RFC 3339: the time of a record whose own time is not read
LONG_VALUE = "x" * 10_000
LONG_DETAIL = "Update User long@example.com  - Job Title: set to " + LONG_VALUE

# notes §5.1 and §5.2, verbatim (trailing spaces included).
VERBATIM_DETAILS = (
    "Add User homer@simpson.io  - User Type: Basic - Department: Foo",
    "Update User lisa@panther.io  - Job Title: set to Contractor",
    "Update User example@example.io  - Job Title: set to Contractor",
    "Update User bart@panther.io  - User Role: from Member to Admin",
    "Edit User homer.simpson@duff.co  - Change Type: from Basic to Licensed",
    "Change Role  - homer.simpson@duff.io: from User to Co-Owner",
    "Change Role  - homer.simpson@duff.io: from Admin to Co-Owner",
    "Change Role  - homer.simpson@duff.io: from Admin to Billing Admin",
    "Change Role  - homer.simpson@duff.io: from Member to Billing Admin",
    "Change Role  - homer.simpson@duff.io: from Co-Owner to User",
    "Change Role  - homer.simpson@duff.io: from Co-Owner to Admin",
    "Edit Group Springfield  - Personal Meeting ID (PMI) Passcode: from On to Off",
    "Edit Group Springfield  - Personal Meeting ID (PMI) Passcode: from Off to On",
    "Security  - Require that all meetings are secured with one security option: from On to Off",
    "Security  - Automatically sign users out after a specified time: from On to Off",
    "Security  - Require a passcode when scheduling new meetings: from On to Off",
    "Security  - Sign in with Two-Factor Authentication: from On to Off",
    "Sign-in Methods  - Allow users to sign in with Google: from Off to On",
    "Sign-in Methods  - Allow users to sign in with Apple ID: from Off to On",
    "Sign-In Password Requirement  - Include at least 1 letter: from On to Off - Include at least "
    "1 number: "
    "from On to Off - Include both uppercase and lowercase characters: from On to Off",
    "Sign-In Password Requirement  - Have at least specified length of characters: from 8 to 14 - "
    "Include at "
    "least 1 letter: from On to Off - Include at least 1 number: from On to Off - Include both "
    "uppercase and "
    "lowercase characters: from On to Off",
    "Quality Settings - Audio  - Receive Bitrate: from 20 to 200 - Send Bitrate: from 20 to 200",
    "Update a Channel TestGroupChannel1  - Cloud Storage Retention: set to  - Name: from "
    "TestGroup1 to "
    "TestGroupChannel1",
    "Assign admin for channel TestChannel3  - test@test.com",
    "Search Chat  - Search Date: 03/02/2023 - 03/30/2023",
    "Activate User sjkfhdsf@jdfgkhgd.com ",
    "Deactivate User mynewemail@jdfkdshfhjdsf.ffasdm ",
    "Delete User example@example.com",
    "Add Group Engineers",
    "Edit Group Recruiting ",
    "Unbind Phone Number +1112222 From Not_Delete_CallQueue_Recording",
    "Delete Phone Number +123456 From abc.zoom.us",
    "Add Device testDevice",
    "Assign Phone Number +120000123 to Sam Mendes(abcdaccount@someaccount.com)",
    "Add User bob@example.com",
    "Delete cloud recording for meeting 11122223333",
    "Change account setting Cloud Recording from ON to OFF",
    "Update billing contact information",
)


# ---- golden records: one row a case -------------------------------------------------------------------


def _event(
    timestamp: str,
    event_type: str = "USER_UNCATEGORIZED",
    *,
    action: str | None = None,
    description: str | None = None,
    principal: dict | None = None,
    target: dict | None = None,
    about: list | None = None,
    category: str | None = None,
) -> dict:
    """One whole expected event of `to_udm_event(..., log_id=LOG_ID)`: the metadata every event carries, then
    the parts given, in the order of Chronicle's JSON (`category` is the additional `category_type`)."""
    metadata = {
        "productLogId": LOG_ID,
        "eventTimestamp": timestamp,
        "eventType": event_type,
        "vendorName": "ZOOM",
        "productName": "ZOOM_OPERATION_LOGS",
        "logType": "ZOOM_OPERATION_LOGS",
    }
    if action is not None:
        metadata["productEventType"] = action
    if description is not None:
        metadata["description"] = description
    event: dict = {"metadata": metadata}
    for key, part in (("principal", principal), ("target", target), ("about", about)):
        if part is not None:
            event[key] = part
    if category is not None:
        event["additional"] = {"category_type": category}
    return event


def _emails(*addresses: str) -> dict:
    """A principal or target that is only e-mail addresses."""
    return {"user": {"emailAddresses": list(addresses)}}


def _zoom(
    case_id: str,
    time: str,
    operator: str,
    action: str,
    category: str,
    detail: str,
    target: dict | None = None,
    problems: tuple[str, ...] = (),
) -> object:
    """A row for a record as Zoom sends it: its five fields, strings, the operator an e-mail address.

    What the record gives the event as it is (its time, action, category and detail; the operator as the
    principal's e-mail) is written once, in the record; the row names what the mapping makes of the detail:
    the target (none if None) and the problems.
    """
    record = {
        "action": action,
        "category_type": category,
        "operation_detail": detail,
        "operator": operator,
        "time": time,
    }
    expected = _event(
        time, action=action, description=detail, principal=_emails(operator), target=target, category=category
    )
    return pytest.param(record, expected, problems, id=case_id)


ISSUE_DETAIL = "Update User jane@example.com  - Job Title: from Engineer to Staff Engineer"
ISSUE_RECORD = {
    "time": "2026-11-14T01:01:11Z",
    "operator": "admin@example.com",
    "category_type": "User",
    "action": "Update",
    "operation_detail": ISSUE_DETAIL,
}
THREE_ELEMENTS_DETAIL = (
    'Update Assistant  - json_data: [{"userId": "u1", "assistant": "a@example.com", "options": "view"}, '
    '{"userId": "u2", "assistant": "b@example.com", "options": "edit - all: yes"}, '
    '{"userId": 3, "options": ["view", "edit"]}] - Type: Assistant'
)
NON_ASCII_DETAIL = (
    "Update User josé@exämple.com  - Job Title: set to Ingénieur 日本 - Department: Forschung & Entwicklung 🚀"
)
NEWLINES_DETAIL = "Update User a@example.com  - Job Title: set to Line one\nLine two - Department: R&D\r\n"
TWO_USERS_DETAIL = "Change Role  - a@example.com: from User to Admin - b@example.com: from User to Member"

# _zoom(id, time, operator, action, category_type, operation_detail, target, problems=…), or
# pytest.param(record, _event(…), problems, id=…) for any other record.
GOLDEN = [
    # ---- the issue's example -------------------------------------------------------------------------
    pytest.param(
        ISSUE_RECORD,
        _event("2026-11-14T01:01:11Z", action="Update", description=ISSUE_DETAIL,
               principal=_emails("admin@example.com"),
               target={"user": {"emailAddresses": ["jane@example.com"], "title": "Staff Engineer"}}, category="User"),
        (), id="issue-example"),
    # ---- notes §5.1: with Key: value pairs -----------------------------------------------------------
    _zoom("5.1-add-user-type-department", "2023-01-05T10:00:00Z", "admin@simpson.io", "Add", "User",
          "Add User homer@simpson.io  - User Type: Basic - Department: Foo",
          {"user": {"department": ["Foo"], "emailAddresses": ["homer@simpson.io"],
                    "attribute": {"labels": [{"key": "User Type", "value": "Basic"}]}}}),
    _zoom("5.1-job-title-set-to-lisa", "2023-01-05T10:00:01Z", "homer@panther.io", "Update", "User",
          "Update User lisa@panther.io  - Job Title: set to Contractor",
          {"user": {"emailAddresses": ["lisa@panther.io"], "title": "Contractor"}}),
    _zoom("5.1-job-title-set-to-example", "2023-01-05T10:00:02Z", "homer@panther.io", "Update", "User",
          "Update User example@example.io  - Job Title: set to Contractor",
          {"user": {"emailAddresses": ["example@example.io"], "title": "Contractor"}}),
    _zoom("5.1-user-role-from-to", "2023-01-05T10:00:03Z", "homer@panther.io", "Update", "User",
          "Update User bart@panther.io  - User Role: from Member to Admin",
          {"user": {"emailAddresses": ["bart@panther.io"], "attribute": {"roles": [{"name": "Admin"}]}}}),
    _zoom("5.1-edit-user-change-type-unmapped", "2023-01-05T10:00:04Z", "homer@duff.co", "SCIM API - Update",
          "User",
          "Edit User homer.simpson@duff.co  - Change Type: from Basic to Licensed",
          _emails("homer.simpson@duff.co")),
    _zoom("5.1-change-role-user-to-co-owner", "2023-01-05T10:00:05Z", "marge@duff.io", "Batch Update", "User",
          "Change Role  - homer.simpson@duff.io: from User to Co-Owner",
          {"user": {"emailAddresses": ["homer.simpson@duff.io"], "attribute": {"roles": [{"name": "Co-Owner"}]}}}),
    _zoom("5.1-change-role-admin-to-co-owner", "2023-01-05T10:00:06Z", "marge@duff.io", "Batch Update", "User",
          "Change Role  - homer.simpson@duff.io: from Admin to Co-Owner",
          {"user": {"emailAddresses": ["homer.simpson@duff.io"], "attribute": {"roles": [{"name": "Co-Owner"}]}}}),
    _zoom("5.1-change-role-admin-to-billing-admin", "2023-01-05T10:00:07Z", "marge@duff.io", "Batch Update",
          "User",
          "Change Role  - homer.simpson@duff.io: from Admin to Billing Admin",
          {"user": {"emailAddresses": ["homer.simpson@duff.io"],
                    "attribute": {"roles": [{"name": "Billing Admin"}]}}}),
    _zoom("5.1-change-role-member-to-billing-admin", "2023-01-05T10:00:08Z", "marge@duff.io", "Batch Update",
          "User",
          "Change Role  - homer.simpson@duff.io: from Member to Billing Admin",
          {"user": {"emailAddresses": ["homer.simpson@duff.io"],
                    "attribute": {"roles": [{"name": "Billing Admin"}]}}}),
    _zoom("5.1-change-role-co-owner-to-user", "2023-01-05T10:00:09Z", "marge@duff.io", "Batch Update", "User",
          "Change Role  - homer.simpson@duff.io: from Co-Owner to User",
          {"user": {"emailAddresses": ["homer.simpson@duff.io"], "attribute": {"roles": [{"name": "User"}]}}}),
    _zoom("5.1-change-role-co-owner-to-admin", "2023-01-05T10:00:10Z", "marge@duff.io", "Batch Update", "User",
          "Change Role  - homer.simpson@duff.io: from Co-Owner to Admin",
          {"user": {"emailAddresses": ["homer.simpson@duff.io"], "attribute": {"roles": [{"name": "Admin"}]}}}),
    _zoom("5.1-pmi-passcode-on-to-off", "2023-01-05T10:00:11Z", "homer@springfield.gov", "Update", "User Group",
          "Edit Group Springfield  - Personal Meeting ID (PMI) Passcode: from On to Off"),
    _zoom("5.1-pmi-passcode-off-to-on", "2023-01-05T10:00:12Z", "homer@springfield.gov", "Update", "User Group",
          "Edit Group Springfield  - Personal Meeting ID (PMI) Passcode: from Off to On"),
    _zoom("5.1-security-one-option", "2023-01-05T10:00:13Z", "example@example.io", "Update", "Account",
          "Security  - Require that all meetings are secured with one security option: from On to Off"),
    _zoom("5.1-security-sign-out", "2023-01-05T10:00:14Z", "example@example.io", "Update", "Account",
          "Security  - Automatically sign users out after a specified time: from On to Off"),
    _zoom("5.1-security-passcode", "2023-01-05T10:00:15Z", "example@example.io", "Update", "Account",
          "Security  - Require a passcode when scheduling new meetings: from On to Off"),
    _zoom("5.1-security-2fa", "2023-01-05T10:00:16Z", "example@example.io", "Update", "Account",
          "Security  - Sign in with Two-Factor Authentication: from On to Off"),
    _zoom("5.1-sign-in-google", "2023-01-05T10:00:17Z", "example@example.io", "Update", "Account",
          "Sign-in Methods  - Allow users to sign in with Google: from Off to On"),
    _zoom("5.1-sign-in-apple", "2023-01-05T10:00:18Z", "example@example.io", "Update", "Account",
          "Sign-in Methods  - Allow users to sign in with Apple ID: from Off to On"),
    _zoom("5.1-password-requirement-3", "2023-01-05T10:00:19Z", "example@example.io", "Update", "Account",
          "Sign-In Password Requirement  - Include at least 1 letter: from On to Off - Include at least 1 number: "
          "from On to Off - Include both uppercase and lowercase characters: from On to Off"),
    _zoom("5.1-password-requirement-4", "2023-01-05T10:00:20Z", "example@example.io", "Update", "Account",
          "Sign-In Password Requirement  - Have at least specified length of characters: from 8 to 14 - Include at "
          "least 1 letter: from On to Off - Include at least 1 number: from On to Off - Include both uppercase and "
          "lowercase characters: from On to Off"),
    _zoom("5.1-quality-settings-audio", "2023-01-05T10:00:21Z", "example@example.io", "Update", "Account",
          "Quality Settings - Audio  - Receive Bitrate: from 20 to 200 - Send Bitrate: from 20 to 200"),
    _zoom("5.1-channel-empty-set-to", "2023-03-01T08:00:00Z", "admin@test.com", "Update", "Channels",
          "Update a Channel TestGroupChannel1  - Cloud Storage Retention: set to  - Name: from TestGroup1 to "
          "TestGroupChannel1"),
    _zoom("5.1-channel-admin-bare-email", "2023-03-01T08:00:01Z", "admin@test.com", "Update", "Channels",
          "Assign admin for channel TestChannel3  - test@test.com",
          _emails("test@test.com")),
    _zoom("5.1-search-date-with-hyphen", "2023-03-30T12:00:00Z", "auditor@test.com", "Search", "Team Chat",
          "Search Chat  - Search Date: 03/02/2023 - 03/30/2023"),
    # ---- notes §5.2: without pairs -------------------------------------------------------------------
    _zoom("5.2-zoom-example-activate", "2019-08-20T19:09:01Z", "someuser@sfksfhksdfsf.com", "Update", "User",
          "Activate User sjkfhdsf@jdfgkhgd.com ",
          _emails("sjkfhdsf@jdfgkhgd.com")),
    _zoom("5.2-zoom-example-deactivate", "2019-08-20T18:59:56Z", "anotheruser@sfhidshfidshufds.com", "Update",
          "User",
          "Deactivate User mynewemail@jdfkdshfhjdsf.ffasdm ",
          _emails("mynewemail@jdfkdshfhjdsf.ffasdm")),
    _zoom("5.2-delete-user", "2024-02-29T23:59:59Z", "admin@example.com", "Delete", "User",
          "Delete User example@example.com",
          _emails("example@example.com")),
    _zoom("5.2-add-group", "2024-03-01T00:00:00Z", "admin@example.com", "Add", "User Group",
          "Add Group Engineers"),
    _zoom("5.2-edit-group-trailing-space", "2024-03-01T00:00:01Z", "admin@example.com", "Update", "User Group",
          "Edit Group Recruiting "),
    _zoom("5.2-phone-unbind", "2021-06-01T09:30:00Z", "phoneadmin@someaccount.com", "Update", "Phone Number",
          "Unbind Phone Number +1112222 From Not_Delete_CallQueue_Recording"),
    _zoom("5.2-phone-delete", "2021-06-01T09:30:01Z", "phoneadmin@someaccount.com", "Delete", "Phone Number",
          "Delete Phone Number +123456 From abc.zoom.us"),
    _zoom("5.2-phone-add-device", "2021-06-01T09:30:02Z", "phoneadmin@someaccount.com", "Add", "Device",
          "Add Device testDevice"),
    _zoom("5.2-phone-assign-email-in-parentheses", "2021-06-01T09:30:03Z", "phoneadmin@someaccount.com", "Assign",
          "Phone Number",
          "Assign Phone Number +120000123 to Sam Mendes(abcdaccount@someaccount.com)",
          _emails("abcdaccount@someaccount.com")),
    _zoom("5.2-elastic-add-user", "2025-05-05T05:05:05Z", "alice@example.com", "Add", "User",
          "Add User bob@example.com",
          _emails("bob@example.com")),
    _zoom("5.2-elastic-delete-recording", "2025-05-05T05:05:06Z", "alice@example.com", "Delete", "Recording",
          "Delete cloud recording for meeting 11122223333"),
    _zoom("5.2-elastic-account-setting", "2025-05-05T05:05:07Z", "alice@example.com", "Update", "Account",
          "Change account setting Cloud Recording from ON to OFF"),
    # Elastic's fixture has neither operator nor action.
    pytest.param(
        {"category_type": "Billing", "operation_detail": "Update billing contact information",
         "time": "2025-05-05T05:05:08Z"},
        _event("2025-05-05T05:05:08Z", "GENERIC_EVENT", description="Update billing contact information",
               category="Billing"),
        (), id="5.2-elastic-billing-no-operator"),
    # ---- keys known only from Google's table (shapes unconfirmed, notes §5.3) ------------------------
    _zoom("names-and-email-address", "2026-01-02T03:04:05Z", "admin@example.com", "Update", "User",
          "Update User ned@example.com  - First Name: from Ned to Edward - Last Name: set to Flanders - Display Name: "
          "Edward Flanders - Email Address: from ned@example.com to edward@example.com",
          {"user": {"userDisplayName": "Edward Flanders", "emailAddresses": ["ned@example.com", "edward@example.com"],
                    "firstName": "Edward", "lastName": "Flanders"}}),
    _zoom("location-and-two-departments", "2026-01-02T03:04:06Z", "admin@example.com", "Update", "User",
          "Update User ned@example.com  - Location: from Springfield to Shelbyville - Department: from Sales to R&D - "
          "Department: Support",
          {"user": {"department": ["R&D", "Support"], "emailAddresses": ["ned@example.com"]},
           "location": {"name": "Shelbyville"}}),
    _zoom("role-name-and-description", "2026-01-02T03:04:07Z", "owner@example.com", "Add", "Role",
          "Add Role Auditors  - Role Name: Auditors - Description: Read-only access to reports - a summary: yes",
          {"user": {"roleDescription": "Read-only access to reports", "attribute": {"roles": [{"name": "Auditors"}]}}}),
    _zoom("labels-keep-table-spelling", "2026-01-02T03:04:08Z", "rooms@example.com", "Update", "Zoom Rooms",
          "Update Zoom Room Lobby  - Room Name: from Lobby to Front Desk - Type: set to Zoom Rooms - user type: from "
          "Basic to Licensed",
          {"user": {"attribute": {"labels": [{"key": "Room Name", "value": "Front Desk"},
                                             {"key": "Type", "value": "Zoom Rooms"},
                                             {"key": "User Type", "value": "Licensed"}]}}}),
    _zoom("keys-case-insensitive-last-scalar-wins", "2026-01-02T03:04:09Z", "admin@example.com", "Update", "User",
          "Update User jane@example.com  - JOB TITLE: set to Lead - user role: from Member to Admin - Job Title: from "
          "Lead to Principal",
          {"user": {"emailAddresses": ["jane@example.com"], "title": "Principal",
                    "attribute": {"roles": [{"name": "Admin"}]}}}),
    _zoom("email-dedup-case-insensitive-old-value-ignored", "2026-01-02T03:04:10Z", "admin@example.com", "Update",
          "User",
          "Update User Jane@Example.com  - Email Address: from jane@example.com to JANE@EXAMPLE.COM",
          _emails("Jane@Example.com")),
    _zoom("json-data-one-element", "2026-01-02T03:04:11Z", "boss@example.com", "Update", "User",
          'Update Assistant  - json_data: [{"userId": "u1", "assistant": "a@example.com", "options": "view"}]',
          {"user": {"attribute": {"labels": [{"key": "assistant", "value": "a@example.com"},
                                             {"key": "options", "value": "view"}]},
                    "userid": "u1"}}),
    # ---- edge records --------------------------------------------------------------------------------
    pytest.param(
        {"action": "Update", "operation_detail": THREE_ELEMENTS_DETAIL, "time": "2026-01-02T03:04:12Z"},
        _event("2026-01-02T03:04:12Z", "GENERIC_EVENT", action="Update", description=THREE_ELEMENTS_DETAIL,
               target={"user": {"attribute": {"labels": [{"key": "Type", "value": "Assistant"},
                                                         {"key": "assistant", "value": "a@example.com"},
                                                         {"key": "options", "value": "view"}]},
                                "userid": "u1"}},
               about=[{"user": {"userid": "u2",
                                "attribute": {"labels": [{"key": "assistant", "value": "b@example.com"},
                                                         {"key": "options", "value": "edit - all: yes"}]}}},
                      {"user": {"userid": "3",
                                "attribute": {"labels": [{"key": "options", "value": '["view","edit"]'}]}}}]),
        (), id="json-data-three-elements-no-email-is-generic"),
    _zoom("json-data-invalid-rest-still-parsed", "2026-01-02T03:04:13Z", "boss@example.com", "Update", "User",
          'Update Assistant  - json_data: [{"userId": "u1", "assistant": - Job Title: set to Helper',
          {"user": {"title": "Helper"}}, problems=("json_data_invalid",)),
    pytest.param(
        {"operation_detail": 'Update Assistant  - json_data: {"userId": "u1"}', "operator": "boss@example.com",
         "time": "2026-01-02T03:04:14Z"},
        _event("2026-01-02T03:04:14Z", description='Update Assistant  - json_data: {"userId": "u1"}',
               principal=_emails("boss@example.com")),
        ("json_data_invalid",), id="json-data-not-an-array"),
    pytest.param({}, _event(DAY_START, "GENERIC_EVENT"), ("time_missing",), id="empty-object"),
    pytest.param({"time": None, "operator": None, "action": None, "category_type": None, "operation_detail": None},
                 _event(DAY_START, "GENERIC_EVENT"), ("time_missing",), id="all-nulls"),
    pytest.param(
        {"time": 1763082071, "operator": 12345, "action": True, "category_type": ["User", "Admin"],
         "operation_detail": {"detail": "Update User x@example.com"}},
        _event(DAY_START, action="true", description='{"detail":"Update User x@example.com"}',
               principal={"user": {"userid": "12345"}}, target=_emails("x@example.com"), category='["User","Admin"]'),
        ("non_string_value", "time_unparseable"), id="non-string-values"),
    pytest.param({"time": "yesterday at noon", "operator": "Zoom System", "action": "Update"},
                 _event(DAY_START, action="Update", principal={"user": {"userid": "Zoom System"}}),
                 ("time_unparseable",), id="time-unparseable-operator-not-email"),
    pytest.param({"time": "2026-02-30T01:01:11Z", "operator": "  "}, _event(DAY_START, "GENERIC_EVENT"),
                 ("time_unparseable",), id="time-impossible-date-blank-operator"),
    pytest.param({"time": "2026-11-14T10:01:11.250+09:00", "operator": " admin@example.com "},
                 _event("2026-11-14T01:01:11.25Z", principal=_emails("admin@example.com")),
                 (), id="time-with-offset-normalised-to-utc"),
    pytest.param({"time": "2026-11-14 01:01:11", "operator": "api_app_7Xy"},
                 _event("2026-11-14T01:01:11Z", principal={"user": {"userid": "api_app_7Xy"}}),
                 (), id="time-without-zone-read-as-utc"),
    pytest.param(
        {"time": "2026-11-14T01:01:11Z", "operator": "zoë@exämple.com", "category_type": "Benutzer",
         "action": "Aktualisieren", "operation_detail": NON_ASCII_DETAIL},
        _event("2026-11-14T01:01:11Z", action="Aktualisieren", description=NON_ASCII_DETAIL,
               principal=_emails("zoë@exämple.com"),
               target={"user": {"department": ["Forschung & Entwicklung 🚀"], "emailAddresses": ["josé@exämple.com"],
                                "title": "Ingénieur 日本"}},
               category="Benutzer"),
        (), id="non-ascii"),
    pytest.param(
        {"time": "2026-11-14T01:01:11Z", "operation_detail": NEWLINES_DETAIL},
        _event("2026-11-14T01:01:11Z", description=NEWLINES_DETAIL,
               target={"user": {"department": ["R&D"], "emailAddresses": ["a@example.com"],
                                "title": "Line one\nLine two"}}),
        (), id="embedded-newlines"),
    pytest.param(
        {"time": "2026-11-14T01:01:11Z", "operator": "admin@example.com", "operation_detail": LONG_DETAIL},
        _event("2026-11-14T01:01:11Z", description=LONG_DETAIL, principal=_emails("admin@example.com"),
               target={"user": {"emailAddresses": ["long@example.com"], "title": LONG_VALUE}}),
        (), id="10k-char-detail"),
    pytest.param(
        {"time": "2026-11-14T01:01:11Z",
         "operation_detail": "Update User a@example.com  - Job Title: set to A\ud800B"},
        _event("2026-11-14T01:01:11Z", description="Update User a@example.com  - Job Title: set to A?B",
               target={"user": {"emailAddresses": ["a@example.com"], "title": "A?B"}}),
        ("invalid_unicode",), id="lone-surrogate"),
    pytest.param(
        {"time": "2026-11-14T01:01:11Z", "operation_detail": "Update User a@example.com  - ", "extra": 1},
        _event("2026-11-14T01:01:11Z", description="Update User a@example.com  - ", target=_emails("a@example.com")),
        (), id="separator-without-pairs-and-unknown-field"),
    pytest.param(
        {"time": "2026-11-14T01:01:11Z", "operation_detail": TWO_USERS_DETAIL},
        _event("2026-11-14T01:01:11Z", description=TWO_USERS_DETAIL,
               target={"user": {"emailAddresses": ["a@example.com"], "attribute": {"roles": [{"name": "Admin"}]}}}),
        (), id="change-role-two-users-first-is-email2"),
    # ---- records that are not objects ----------------------------------------------------------------
    pytest.param(["Update User a@example.com", 1],
                 _event(DAY_START, "GENERIC_EVENT", description='["Update User a@example.com",1]'),
                 ("not_an_object", "time_missing"), id="not-an-object-list"),
    pytest.param(42, _event(DAY_START, "GENERIC_EVENT", description="42"), ("not_an_object", "time_missing"),
                 id="not-an-object-number"),
    pytest.param(None, _event(DAY_START, "GENERIC_EVENT", description="null"), ("not_an_object", "time_missing"),
                 id="not-an-object-null"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "expected", "problems"), GOLDEN)
def test_golden(record: object, expected: dict, problems: tuple[str, ...]) -> None:
    event, got = to_udm_event(record, log_id=LOG_ID, fallback_time=FALLBACK)
    assert event == expected
    assert orjson.dumps(event) == orjson.dumps(expected), "same content, but the key order differs"
    assert got == problems


def test_golden_covers_every_verbatim_detail_of_the_notes() -> None:
    details = [p.values[0].get("operation_detail") for p in GOLDEN if isinstance(p.values[0], dict)]
    assert [d for d in VERBATIM_DETAILS if d not in details] == []
    assert len(GOLDEN) >= 40


def _issue_event_line(log_id: bytes) -> bytes:
    """The event of the issue's example (ISSUE_RECORD) as the exact line expected, with the id `log_id`."""
    return (
        b'{"metadata":{"productLogId":"' + log_id + b'","eventTimestamp":"2026-11-14T01:01:11Z",'
        b'"eventType":"USER_UNCATEGORIZED","vendorName":"ZOOM","productName":"ZOOM_OPERATION_LOGS",'
        b'"logType":"ZOOM_OPERATION_LOGS","productEventType":"Update",'
        b'"description":"Update User jane@example.com  - Job Title: from Engineer to Staff Engineer"},'
        b'"principal":{"user":{"emailAddresses":["admin@example.com"]}},'
        b'"target":{"user":{"emailAddresses":["jane@example.com"],"title":"Staff Engineer"}},'
        b'"additional":{"category_type":"User"}}'
    )


def test_issue_example_serialises_to_the_exact_line() -> None:
    event, _ = to_udm_event(ISSUE_RECORD, log_id="<id>", fallback_time=FALLBACK)
    assert orjson.dumps(event) == _issue_event_line(b"<id>")


# ---- parse_operation_detail ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        pytest.param(
            "Quality Settings - Audio  - Receive Bitrate: from 20 to 200 - Send Bitrate: from 20 to 200",
            ParsedDetail(
                head="Quality Settings - Audio",
                pairs=[("Receive Bitrate", "200"), ("Send Bitrate", "200")],
            ),
            id="hyphen-in-head",
        ),
        pytest.param(
            "Update a Channel TestGroupChannel1  - Cloud Storage Retention: set to  - Name: from "
            "TestGroup1 to "
            "TestGroupChannel1",
            ParsedDetail(
                head="Update a Channel TestGroupChannel1",
                pairs=[("Cloud Storage Retention", ""), ("Name", "TestGroupChannel1")],
            ),
            id="empty-value",
        ),
        pytest.param(
            "Search Chat  - Search Date: 03/02/2023 - 03/30/2023",
            ParsedDetail(head="Search Chat", pairs=[("Search Date", "03/02/2023 - 03/30/2023")]),
            id="hyphen-in-value",
        ),
        pytest.param(
            "Edit Group Springfield  - Personal Meeting ID (PMI) Passcode: from On to Off",
            ParsedDetail(head="Edit Group Springfield", pairs=[("Personal Meeting ID (PMI) Passcode", "Off")]),
            id="parentheses-in-key",
        ),
        pytest.param(
            "Change Role  - homer.simpson@duff.io: from User to Co-Owner",
            ParsedDetail(
                head="Change Role",
                email2="homer.simpson@duff.io",
                role="Co-Owner",
                pairs=[("homer.simpson@duff.io", "Co-Owner")],
            ),
            id="change-role",
        ),
        pytest.param(
            "Assign admin for channel TestChannel3  - test@test.com",
            ParsedDetail(head="Assign admin for channel TestChannel3", email2="test@test.com", bare=["test@test.com"]),
            id="bare-email",
        ),
        pytest.param(
            "Activate User sjkfhdsf@jdfgkhgd.com ",
            ParsedDetail(head="Activate User sjkfhdsf@jdfgkhgd.com", email="sjkfhdsf@jdfgkhgd.com"),
            id="no-pairs-trailing-space",
        ),
        pytest.param(
            "Update User a@example.com  - Email Address: from old@example.com to new@example.com",
            ParsedDetail(
                head="Update User a@example.com",
                email="a@example.com",
                email2="new@example.com",
                pairs=[("Email Address", "new@example.com")],
            ),
            id="email2-from-new-value-not-old",
        ),
        pytest.param(
            'Edit Scheduling  - json_data: [{"userId": "u1", "assistant": "x@example.com"}] - '
            "Note: from  to "
            "y@example.com",
            ParsedDetail(
                head="Edit Scheduling",
                email2="y@example.com",
                pairs=[("Note", "y@example.com")],
                json_data=[{"userId": "u1", "assistant": "x@example.com"}],
            ),
            id="json-data-then-pair-email2-not-from-json",
        ),
        pytest.param(
            "Edit Scheduling  - JSON_DATA: [1, 2",
            ParsedDetail(head="Edit Scheduling", problems=("json_data_invalid",)),
            id="json-data-invalid",
        ),
        pytest.param(
            "",
            ParsedDetail(head=""),
            id="empty",
        ),
    ],
)
def test_parse_operation_detail(detail: str, expected: ParsedDetail) -> None:
    assert parse_operation_detail(detail) == expected


# ---- the table -----------------------------------------------------------------------------------------


def test_mapping_table_has_the_seed_rows_in_the_seed_order() -> None:
    # Log field and UDM field columns of the seed's "UDM 매핑 테이블" (English names as in notes §6.1).
    assert [(row.source, row.udm) for row in UDM_MAPPING] == [
        ("action", "metadata.product_event_type"),
        ("category_type", "additional.fields.key"),
        ("category_type", "additional.fields.value.string_value"),
        ("Department", "target.user.department"),
        ("Description", "target.user.role_description"),
        ("Display Name", "target.user.user_display_name"),
        ("Email Address", "target.user.email_addresses"),
        ("First Name", "target.user.first_name"),
        ("Job Title", "target.user.title"),
        ("Last Name", "target.user.last_name"),
        ("Location", "target.location.name"),
        ("operation_detail", "metadata.description"),
        ("operator", "principal.user.email_addresses"),
        ("operator", "principal.user.userid"),
        ("Room Name", "target.user.attribute.labels.value"),
        ("Role Name", "target.user.attribute.roles.name"),
        ("time", "metadata.event_timestamp.seconds"),
        ("Type", "target.user.attribute.labels.value"),
        ("User Role", "target.user.attribute.roles.name"),
        ("User Type", "target.user.attribute.labels.value"),
        ("ZOOM_OPERATION_LOGS", "metadata.log_type"),
        ("ZOOM", "metadata.vendor_name"),
        ("ZOOM_OPERATION_LOGS", "metadata.product_name"),
        ("operator, email, email2", "metadata.event_type"),
        ("json_data", "about.user.attribute.labels.value"),
        ("json_data", "about.user.userid"),
        ("json_data", "target.user.attribute.labels.value"),
        ("json_data", "target.user.userid"),
        ("email", "target.user.email_addresses"),
        ("email2", "target.user.email_addresses"),
        ("role", "target.user.attribute.roles.name"),
    ]
    assert all(isinstance(row.rule, Rule) for row in UDM_MAPPING)


def test_target_fields() -> None:
    assert TARGET_FIELDS == (
        "target.user.department",
        "target.user.roleDescription",
        "target.user.userDisplayName",
        "target.user.emailAddresses",
        "target.user.firstName",
        "target.user.title",
        "target.user.lastName",
        "target.user.attribute.labels",
        "target.user.attribute.roles",
        "target.user.userid",
        "target.location.name",
        "about",
    )


def test_coverage() -> None:
    event, _ = to_udm_event(
        {
            "operation_detail": "Update User a@example.com  - Location: Paris - User Role: Admin - "
            "json_data: "
            '[{"userId": "u1"}, {"userId": "u2"}]'
        },
        log_id=LOG_ID,
        fallback_time=FALLBACK,
    )
    assert coverage(event) == (
        "target.user.emailAddresses",
        "target.user.attribute.roles",
        "target.user.userid",
        "target.location.name",
        "about",
    )
    assert coverage({"metadata": {}}) == ()


# ---- product_log_id ------------------------------------------------------------------------------------

LINE = b'{"time":"2026-11-14T01:01:11Z"}'


def test_product_log_id_is_sha256_of_line_and_occurrence() -> None:
    assert product_log_id(LINE, 0) == "65604b503d8ae94d4ef027cedef0fc0a"
    assert product_log_id(LINE, 1) == "c1b6bd73b1d9770daaefa8537bc35140"
    assert product_log_id(LINE, 7) == hashlib.sha256(LINE + b"\x00" + b"7").hexdigest()[:32]


def test_product_log_id_ignores_the_line_break() -> None:
    assert product_log_id(LINE + b"\n", 0) == product_log_id(LINE + b"\r\n", 0) == product_log_id(LINE, 0)


def test_identical_twins_get_distinct_ids() -> None:
    ids = [product_log_id(LINE, n) for n in range(1000)]
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_product_log_id_is_stable_across_processes() -> None:
    code = "from zoom_pipeline.udm import product_log_id; print(product_log_id(b'{\"a\": 1}', 3))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert outputs == {product_log_id(b'{"a": 1}', 3)}


# ---- properties over random and garbage input ----------------------------------------------------------

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
FRAGMENTS = (
    "Update User ", "Change Role", "  - ", " - ", ": ", ":", "from ", " to ", "set to", "set to ", "@",
    ".", "homer@simpson.io", "a@b.co", "Job Title", "job title", "Department", "User Type", "Type",
    "Role Name", "User Role", "Email Address", "Location", "json_data: ", "json_data:", "[", "]", "{", "}",
    '"userId"', '"assistant"', '"options"', ",", '"', "\\", "\n", "\r", "\t", "\x00", " ", "é", "日本",
    "🚀", "\ud800", "\u202e", "(PMI)", "-", "03/02/2023", "On", "Off", "x" * 300,
)  # fmt: skip


def _random_detail(rng: random.Random) -> str:
    if rng.random() < 0.1:
        head = rng.choice(("Update Assistant  - json_data: ", "X  - a: b - json_data: "))
        elements = [
            {"userId": rng.choice(["u1", 7, None, "", [1]]), "assistant": rng.choice(["a@b.co", None, {}])}
            for _ in range(rng.randint(0, 4))
        ]
        return head + orjson.dumps(elements).decode() + rng.choice(("", " - Type: x", " trailing", "]"))
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 40)))


def _random_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.randint(-(2**70), 2**70)
    if kind == 2:
        return rng.random() * 1e30
    if kind == 3:
        return rng.random() < 0.5
    if kind in (4, 5):
        return _random_detail(rng)
    if kind == 6:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == 7:
        return {str(rng.random()): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice(
        ["2026-11-14T01:01:11Z", "2026-11-14T25:00:00Z", "0001-01-01T00:00:00+01:00",
         "9999-12-31T23:59:59-01:00", "2026-11-14t01:01:11z", "", " ", "2026-11-14", "\ud800"]
    )  # fmt: skip


def _random_record(rng: random.Random) -> object:
    if rng.random() < 0.05:
        return _random_value(rng)
    keys = ("time", "operator", "action", "category_type", "operation_detail", "other")
    return {key: _random_value(rng) for key in keys if rng.random() < 0.85}


def _assert_no_empty_values(node: object, path: str = "") -> None:
    assert node not in ("", [], {}), f"empty value at {path}"
    if isinstance(node, dict):
        for key, value in node.items():
            _assert_no_empty_values(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _assert_no_empty_values(value, f"{path}[{index}]")


def test_fuzz_one_valid_event_per_record_and_never_raises() -> None:
    rng = random.Random(20261114)
    records = [_random_record(rng) for _ in range(3000)]
    results = [to_udm_event(r, log_id=LOG_ID, fallback_time=FALLBACK) for r in records]
    assert len(results) == len(records)
    for event, problems in results:
        orjson.dumps(event)  # serialisable: no lone surrogates, no odd types
        _assert_no_empty_values(event)
        metadata = event["metadata"]
        assert metadata["productLogId"] == LOG_ID
        assert (metadata["vendorName"], metadata["productName"], metadata["logType"]) == (
            "ZOOM",
            "ZOOM_OPERATION_LOGS",
            "ZOOM_OPERATION_LOGS",
        )
        assert metadata["eventType"] in ("USER_UNCATEGORIZED", "GENERIC_EVENT")
        assert RFC3339.fullmatch(metadata["eventTimestamp"])
        assert set(event) <= {"metadata", "principal", "target", "about", "additional"}
        assert set(problems) <= set(PROBLEMS) and len(set(problems)) == len(problems)
        assert set(coverage(event)) <= set(TARGET_FIELDS)


def test_fuzz_parse_operation_detail_never_raises() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        parsed = parse_operation_detail(_random_detail(rng))
        assert isinstance(parsed, ParsedDetail)
    for hostile in (
        "X  - json_data: " + "[" * 100_000,
        "X  - " + " - " * 5000 + "Key: v",
        "a" * 20_000 + "@" + "b" * 20_000,
        "X  - " + "k: v - " * 3000,
    ):
        parse_operation_detail(hostile)


def test_fallback_time_with_offset_or_naive_is_written_in_utc() -> None:
    plus_two = datetime(2026, 11, 14, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    event, _ = to_udm_event({}, log_id=LOG_ID, fallback_time=plus_two)
    assert event["metadata"]["eventTimestamp"] == "2026-11-14T00:00:00Z"
    event, _ = to_udm_event({}, log_id=LOG_ID, fallback_time=datetime(2026, 11, 14))
    assert event["metadata"]["eventTimestamp"] == "2026-11-14T00:00:00Z"


def test_same_record_same_event() -> None:
    record = {"time": "2026-11-14T01:01:11Z", "operation_detail": "Change Role  - a@b.co: from A to B"}
    first = to_udm_event(record, log_id=LOG_ID, fallback_time=FALLBACK)
    assert to_udm_event(dict(record), log_id=LOG_ID, fallback_time=FALLBACK) == first


# ---- map_line: one stored raw line -> one UDM event line -----------------------------------------------

# Expected ids are written from the definition (sha256 of the stored line, NUL, occurrence), not by
# calling product_log_id.


def _id(line: bytes, occurrence: int = 0) -> str:
    return hashlib.sha256(line.rstrip(b"\r\n") + b"\x00" + str(occurrence).encode()).hexdigest()[:32]


def _meta(line: bytes, timestamp: str, event_type: str = "USER_UNCATEGORIZED", **more: str) -> dict:
    return {
        "productLogId": _id(line),
        "eventTimestamp": timestamp,
        "eventType": event_type,
        "vendorName": "ZOOM",
        "productName": "ZOOM_OPERATION_LOGS",
        "logType": "ZOOM_OPERATION_LOGS",
        **more,
    }


def _old_transform(line: bytes, occurrence: int) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """What assets.udm_line_transform(FALLBACK) did before map_line replaced it (kept verbatim)."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = line.decode("utf-8", "replace")
    event, problems = to_udm_event(record, log_id=product_log_id(line, occurrence), fallback_time=FALLBACK)
    return orjson.dumps(event), problems, coverage(event)


def _encode_record(record: object) -> bytes:
    """How the collector stores a record (ledger.encode_record): orjson, else ASCII-escaped stdlib JSON."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return json.dumps(record, ensure_ascii=True, separators=(",", ":")).encode()


ORDINARY_LINE = (
    b'{"time":"2026-11-14T01:01:11Z","operator":"admin@example.com","category_type":"User",'
    b'"action":"Update","operation_detail":"Update User jane@example.com  - Job Title: from Engineer to '
    b'Staff Engineer"}'
)


def test_map_line_ordinary_line_golden() -> None:
    line, problems, covered = map_line(ORDINARY_LINE, 0, FALLBACK)
    assert line == _issue_event_line(_id(ORDINARY_LINE).encode())
    assert problems == ()
    assert covered == ("target.user.emailAddresses", "target.user.title")
    assert (line, problems, covered) == _old_transform(ORDINARY_LINE, 0)


def test_map_line_keeps_the_output_of_the_transform_it_replaces() -> None:
    # Every line orjson reads exactly (no lone surrogate, no integer beyond 64 bits) maps as before.
    rng = random.Random(20261120)
    lines = [_encode_record(p.values[0]) for p in GOLDEN] + [_encode_record(_random_record(rng)) for _ in range(3000)]
    compared = 0
    for n, line in enumerate(lines):
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if _has(json.loads(line), _is_big):
            continue  # orjson reads it as a float: the defect map_line fixes
        assert map_line(line, n % 3, FALLBACK) == _old_transform(line, n % 3), line
        compared += 1
    assert compared > 500


LONE_SURROGATE_LINE = (
    b'{"operator":"ops\\ud800@x.com","action":"Update","time":"2026-11-20T10:00:00Z","category_type":"User",'
    b'"operation_detail":"Update User jane@example.com  - Job Title: set to Staff"}'
)


def test_map_line_reads_what_orjson_refuses() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(LONE_SURROGATE_LINE)  # the defect: orjson refuses what the standard library reads
    json.loads(LONE_SURROGATE_LINE)
    line = map_line(LONE_SURROGATE_LINE, 0, FALLBACK)[0]  # its whole event: MAP_LINE_GOLDEN, "lone-surrogate"
    assert b'"emailAddresses":["ops\xef\xbf\xbd@x.com"]' in line  # U+FFFD, as UTF-8
    line.decode("utf-8")


@pytest.mark.parametrize(
    ("raw", "operator"),
    [
        pytest.param(rb'"a\udfffb"', "a\ufffdb", id="lone-low"),
        pytest.param(rb'"a\uD800\uD800b"', "a\ufffd\ufffdb", id="two-highs-upper-case-hex"),
        pytest.param(rb'"a\ud83d\ude80\ud800"', "a\U0001f680\ufffd", id="pair-kept-lone-replaced"),
        pytest.param(rb'"a\\ud800"', "a\\ud800", id="escaped-backslash-is-no-escape"),
        pytest.param(rb'"a\\\ud800"', "a\\\ufffd", id="escaped-backslash-then-lone"),
        pytest.param(rb'"\u00e9\n\ud800"', "\u00e9\n\ufffd", id="other-escapes-kept"),
    ],
)
def test_map_line_lone_surrogate_escapes(raw: bytes, operator: str) -> None:
    line = b'{"time":"2026-11-20T10:00:00Z","operator":' + raw + b"}"
    out, problems, _ = map_line(line, 0, FALLBACK)
    assert orjson.loads(out) == {
        "metadata": _meta(line, "2026-11-20T10:00:00Z"),
        "principal": {"user": {"userid": operator}},
    }
    assert problems == (("lone_surrogate",) if "\ufffd" in operator else ())


def test_map_line_ids_are_those_of_the_exact_stored_bytes() -> None:
    other = LONE_SURROGATE_LINE.replace(b"\\ud800", b"\\udbff")
    first, second = map_line(LONE_SURROGATE_LINE, 0, FALLBACK)[0], map_line(other, 0, FALLBACK)[0]
    assert orjson.loads(first)["metadata"]["productLogId"] == _id(LONE_SURROGATE_LINE)
    assert orjson.loads(second)["metadata"]["productLogId"] == _id(other) != _id(LONE_SURROGATE_LINE)
    assert first.replace(_id(LONE_SURROGATE_LINE).encode(), b"") == second.replace(_id(other).encode(), b"")


BIG = "123456789012345678901234567890"

# (line, expected event with the id of b"" (the test puts the line's own), problems, covered fields)
MAP_LINE_GOLDEN = [
    # ---- lone surrogates: orjson refuses the line, the standard library reads it -----------------------
    pytest.param(
        LONE_SURROGATE_LINE,
        {
            "metadata": _meta(
                b"",
                "2026-11-20T10:00:00Z",
                productEventType="Update",
                description="Update User jane@example.com  - Job Title: set to Staff",
            ),
            "principal": {"user": {"emailAddresses": ["ops\ufffd@x.com"]}},
            "target": {"user": {"emailAddresses": ["jane@example.com"], "title": "Staff"}},
            "additional": {"category_type": "User"},
        },
        ("lone_surrogate",),
        ("target.user.emailAddresses", "target.user.title"),
        id="lone-surrogate",
    ),
    pytest.param(
        b'{"x\\ud800":1,"action":"Update"}',
        {"metadata": _meta(b"", DAY_START, "GENERIC_EVENT", productEventType="Update")},
        ("lone_surrogate", "time_missing"),
        (),
        id="lone-surrogate-in-a-key",
    ),
    pytest.param(
        b'["a\\ud800"]',
        {"metadata": _meta(b"", DAY_START, "GENERIC_EVENT", description='["a\ufffd"]')},
        ("lone_surrogate", "not_an_object", "time_missing"),
        (),
        id="lone-surrogate-in-a-non-object",
    ),
    # ---- numbers orjson reads inexactly --------------------------------------------------------------
    pytest.param(
        b'{"operator":"admin@example.com","action":"Update","time":"2026-11-20T10:00:00Z","meeting":'
        + BIG.encode()
        + b"}",
        {
            "metadata": _meta(b"", "2026-11-20T10:00:00Z", productEventType="Update"),
            "principal": {"user": {"emailAddresses": ["admin@example.com"]}},
        },
        ("big_number",),
        (),
        id="unmapped-field",
    ),
    pytest.param(
        b'{"operator":' + BIG.encode() + b',"action":"Update","time":"2026-11-20T10:00:00Z"}',
        {
            "metadata": _meta(b"", "2026-11-20T10:00:00Z", productEventType="Update"),
            "principal": {"user": {"userid": BIG}},  # exact, not 1.2345678901234568e+29
        },
        ("big_number", "non_string_value"),
        (),
        id="mapped-field-exact",
    ),
    pytest.param(
        b'{"action":-9223372036854775809,"time":"2026-11-20T10:00:00Z"}',
        {"metadata": _meta(b"", "2026-11-20T10:00:00Z", "GENERIC_EVENT", productEventType="-9223372036854775809")},
        ("big_number", "non_string_value"),
        (),
        id="below-int64",
    ),
    pytest.param(
        b'{"action":18446744073709551615,"time":"2026-11-20T10:00:00Z"}',
        {"metadata": _meta(b"", "2026-11-20T10:00:00Z", "GENERIC_EVENT", productEventType="18446744073709551615")},
        ("non_string_value",),
        (),
        id="uint64-max-is-not-big",
    ),
    pytest.param(
        b'{"action":"' + b"9" * 30 + b'","time":"2026-11-20T10:00:00Z"}',
        {"metadata": _meta(b"", "2026-11-20T10:00:00Z", "GENERIC_EVENT", productEventType="9" * 30)},
        (),
        (),
        id="long-digits-in-a-string",
    ),
    pytest.param(
        b'{"action":' + b"7" * 5000 + b',"time":"2026-11-20T10:00:00Z"}',
        {"metadata": _meta(b"", "2026-11-20T10:00:00Z", "GENERIC_EVENT", productEventType="7" * 5000)},
        ("big_number", "non_string_value"),
        (),
        id="beyond-python-int-digits",
    ),
    pytest.param(
        b'{"action":-1.5e400,"time":"2026-11-20T10:00:00Z","x":1e400}',
        {"metadata": _meta(b"", "2026-11-20T10:00:00Z", "GENERIC_EVENT", productEventType="-1.5e400")},
        ("big_number", "non_string_value"),
        (),
        id="beyond-double",
    ),
    pytest.param(
        b'{"operator":"ops\\ud800@x.com","x":' + BIG.encode() + b"}",
        {
            "metadata": _meta(b"", DAY_START),
            "principal": {"user": {"emailAddresses": ["ops\ufffd@x.com"]}},
        },
        ("lone_surrogate", "big_number", "time_missing"),
        (),
        id="both",
    ),
    # ---- characters replaced before or while the line is read ---------------------------------------
    pytest.param(
        # The collector stored U+FFFD where Zoom sent bytes that are not UTF-8: ordinary text by then.
        (
            '{"time":"2026-11-20T10:00:00Z","operator":"op\ufffd@example.com","action":"Upd\ufffdte",'
            '"operation_detail":"Update User j\ufffd@example.com  - Job Title: set to \ufffd\ufffd"}'
        ).encode(),
        {
            "metadata": _meta(
                b"",
                "2026-11-20T10:00:00Z",
                productEventType="Upd\ufffdte",
                description="Update User j\ufffd@example.com  - Job Title: set to \ufffd\ufffd",
            ),
            "principal": {"user": {"emailAddresses": ["op\ufffd@example.com"]}},
            "target": {"user": {"emailAddresses": ["j\ufffd@example.com"], "title": "\ufffd\ufffd"}},
        },
        (),
        ("target.user.emailAddresses", "target.user.title"),
        id="replacement-characters-map-normally",
    ),
    pytest.param(
        b'{"time":"2026-11-20T10:00:00Z","action":"Upd\xffte","operator":"a\xc3@example.com"}',
        {
            "metadata": _meta(b"", "2026-11-20T10:00:00Z", productEventType="Upd\ufffdte"),
            "principal": {"user": {"emailAddresses": ["a\ufffd@example.com"]}},
        },
        ("invalid_utf8",),
        (),
        id="bytes-not-utf8-replaced-and-flagged",
    ),
]


@pytest.mark.parametrize(("line", "expected", "problems", "covered"), MAP_LINE_GOLDEN)
def test_map_line_golden(line: bytes, expected: dict, problems: tuple[str, ...], covered: tuple[str, ...]) -> None:
    expected = {**expected, "metadata": {**expected["metadata"], "productLogId": _id(line)}}
    out, got, got_covered = map_line(line, 0, FALLBACK)
    assert orjson.loads(out) == expected
    assert out == orjson.dumps(expected), "same content, but the key order differs"
    assert got == problems
    assert got_covered == covered


@pytest.mark.parametrize(
    ("line", "description"),
    [
        pytest.param(b"not json at all", '"not json at all"', id="text"),
        pytest.param(
            b'{"time":"2026-11-20T10:00:00Z","action":"Upd',
            '"{\\"time\\":\\"2026-11-20T10:00:00Z\\",\\"action\\":\\"Upd"',
            id="truncated",
        ),
        pytest.param(b"", '""', id="empty"),
        pytest.param(b'{"action":"Update"} {}', '"{\\"action\\":\\"Update\\"} {}"', id="two-values"),
        pytest.param(b'{"action":NaN}', '"{\\"action\\":NaN}"', id="nan"),
        pytest.param(b'{"action":-Infinity}', '"{\\"action\\":-Infinity}"', id="infinity"),
        pytest.param(b"\xef\xbb\xbf{}", '"\ufeff{}"', id="bom"),
        pytest.param(b'{"a":"\\ud800"', '"{\\"a\\":\\"\\\\ud800\\""', id="lone-surrogate-but-truncated"),
        pytest.param(b"bad \xff bytes", '"bad \ufffd bytes"', id="text-not-utf8"),
        pytest.param(b'["Update User a@example.com",1]', '["Update User a@example.com",1]', id="list"),
        pytest.param(b"42", "42", id="number"),
        pytest.param(b'"a string"', '"a string"', id="string"),
        pytest.param(b"null", "null", id="null"),
        pytest.param(b"[" + BIG.encode() + b"]", "[" + BIG + "]", id="list-with-big-number"),
    ],
)
def test_map_line_not_an_object(line: bytes, description: str) -> None:
    out, problems, covered = map_line(line, 0, FALLBACK)
    assert b"\n" not in out
    assert orjson.loads(out) == {
        "metadata": _meta(line, "2026-11-14T00:00:00Z", "GENERIC_EVENT", description=description)
    }
    assert "not_an_object" in problems and set(problems) <= {"not_an_object", "time_missing", "big_number"}
    assert covered == ()
    if "big" not in description and not line.startswith(b"["):
        assert (out, problems, covered) == _old_transform(line, 0)  # as before the move


def test_map_line_occurrence_changes_only_the_id() -> None:
    for line in (ORDINARY_LINE, LONE_SURROGATE_LINE, b"not json"):
        outs = [map_line(line, n, FALLBACK) for n in range(3)]
        ids = [orjson.loads(out)["metadata"]["productLogId"] for out, _, _ in outs]
        assert ids == [_id(line, 0), _id(line, 1), _id(line, 2)]
        assert len({out.replace(i.encode(), b"") for (out, _, _), i in zip(outs, ids, strict=True)}) == 1
        assert len({(problems, covered) for _, problems, covered in outs}) == 1


def _fffd(value: object) -> object:
    """`value` with every lone surrogate replaced by U+FFFD, keys included."""
    if isinstance(value, str):
        return re.sub("[\ud800-\udfff]", "\ufffd", value)
    if isinstance(value, list):
        return [_fffd(v) for v in value]
    if isinstance(value, dict):
        return {_fffd(k): _fffd(v) for k, v in value.items()}
    return value


def _is_big(value: object) -> bool:
    return type(value) is int and not -(2**63) <= value < 2**64


def _has(value: object, test) -> bool:
    if isinstance(value, list):
        return any(_has(v, test) for v in value)
    if isinstance(value, dict):
        return any(_has(k, test) or _has(v, test) for k, v in value.items())
    return test(value)


def test_fuzz_map_line_maps_stored_records_like_to_udm_event() -> None:
    rng = random.Random(112026)
    surrogates = bigs = 0
    for n in range(3000):
        record = _random_record(rng)
        line = _encode_record(record)
        out, problems, covered = map_line(line, n % 2, FALLBACK)
        lone = _has(record, lambda v: isinstance(v, str) and re.search("[\ud800-\udfff]", v) is not None)
        big = _has(record, _is_big)
        surrogates, bigs = surrogates + lone, bigs + big
        expected, expected_problems = to_udm_event(_fffd(record), log_id=_id(line, n % 2), fallback_time=FALLBACK)
        assert orjson.loads(out) == expected
        assert out == orjson.dumps(expected)
        assert [p for p in problems if p not in ("lone_surrogate", "big_number")] == list(expected_problems)
        assert ("lone_surrogate" in problems) == lone
        assert ("big_number" in problems) == big
        assert covered == coverage(expected)
    assert surrogates > 100 and bigs > 100


def test_fuzz_map_line_one_valid_event_per_line_and_never_raises() -> None:
    rng = random.Random(5)
    lines = [ORDINARY_LINE, LONE_SURROGATE_LINE]
    for _ in range(3000):
        base = bytearray(_encode_record(_random_record(rng)) if rng.random() < 0.8 else rng.choice(lines))
        for _ in range(rng.randint(0, 3)):
            kind = rng.randrange(4)
            at = rng.randrange(len(base) + 1)
            if kind == 0:
                del base[at:]
            elif kind == 1:
                base[at:at] = bytes([rng.randrange(256)])
            elif kind == 2:
                base[at:at] = rng.choice((b"\\ud800", b"\\", b'"', b"\xff", b"\xef\xbf\xbd", b"9" * 25, b"\r"))
            elif base:
                del base[min(at, len(base) - 1)]
        lines.append(bytes(base).replace(b"\n", b""))  # a stored line never holds a line feed
    lines += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))).replace(b"\n", b"") for _ in range(500)]
    for n, line in enumerate(lines):
        out, problems, covered = map_line(line, n, FALLBACK)
        event = orjson.loads(out.decode("utf-8"))  # valid UTF-8, valid JSON, one line
        assert b"\n" not in out and isinstance(event, dict)
        metadata = event["metadata"]
        assert metadata["productLogId"] == _id(line, n)
        assert RFC3339.fullmatch(metadata["eventTimestamp"])
        _assert_no_empty_values(event)
        assert set(problems) <= set(PROBLEMS) and len(set(problems)) == len(problems)
        assert covered == coverage(event)
        try:
            is_object = isinstance(json.loads(line.decode("utf-8", "replace")), dict)
        except (ValueError, RecursionError):
            is_object = False
        assert ("not_an_object" in problems) == (not is_object), line


def test_map_line_problem_tags_are_listed() -> None:
    assert {"lone_surrogate", "big_number", "invalid_utf8"} <= set(PROBLEMS)
