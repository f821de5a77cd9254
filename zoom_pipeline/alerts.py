"""Alerts on a failed day: one chat message per failed run and per failing check, posted to an incoming webhook.

With ALERT_WEBHOOK_URL set (read and checked when the definitions load), two sensors post Slack-compatible
JSON (`{"text": ..., "blocks": [...]}`) to it:

- `zoom_run_failure_alert_sensor`: a run of this deployment's assets or checks that failed (the day job, the
  check jobs, the asset page, an asset backfill's `__ASSET_JOB` runs, a re-execution). Step retries are inside
  the run, so a run that fails after them is one failure; another failing run of the same account, source and
  day (a re-execution, a run retry, the next tick's run) does not post again within REPEAT_AFTER_SECONDS.
- `zoom_check_failure_alert_sensor`: a failed ERROR-severity evaluation of `day_matches_zoom`,
  `day_matches_fresh_listing`, `yesterday_landed_by_deadline` or `every_day_in_zoom_window_collected`, once per
  account, source, check and day within REPEAT_AFTER_SECONDS. WARN evaluations (records awaiting confirmation,
  gaps that do not leave Zoom's window soon) do not alert: they resolve themselves or have days to go
  (`build_alert_sensors(alert_on_warn=True)` changes that).

A message names the account (none for a deployment without an accounts file), the source, the day, the reason
in one sentence (the failed step's error, or the check's description) and, with DAGSTER_WEBSERVER_URL set, a
link to the run. The webhook URL is a secret (anyone who has it can post to the channel): it is never in a
message, a log line, an error or a definition, and known secrets are scrubbed from every message.

The payload is Slack's incoming-webhook format: `text`, complete on its own (plain lines, the run link as a
bare URL), and one Block Kit `section` block for Slack. Mattermost and Rocket.Chat incoming webhooks accept
Slack's `text` field. Microsoft Teams Workflows webhooks ("When a Teams webhook request is received") accept
Adaptive Cards only, so they need another shape (a relay that wraps `text` in a card).

Both sensors run by default (DefaultSensorStatus.RUNNING): setting ALERT_WEBHOOK_URL is the opt-in, and they
launch nothing (the automation's sensors, which launch runs that call Zoom, start STOPPED); stopping one in
the UI keeps it stopped. Like Dagster's run status sensors, a first tick starts after what has already
failed. A run counts when it planned one of these accounts' assets or checks, whatever its job: a
`run_failure_sensor(monitored_jobs=[day job])` would miss the `__ASSET_JOB` runs of asset-page backfills
(Dagster 1.13 matches monitored jobs by name), and one without `monitored_jobs` would alert on other
components' runs in the same code location; a run of another code location is left to that location's
sensors.

Why not `dg.run_failure_sensor`: it owns its cursor (a `SensorResult` with a cursor of its own raises) and
moves it past a run whether or not the function succeeded, so it can neither remember which days were alerted
nor keep an alert whose post failed. This sensor reads the same records (`instance.fetch_run_status_changes`,
RUN_FAILURE, after a storage id) and keeps its own cursor: the last record read, the keys alerted in the last
REPEAT_AFTER_SECONDS, and the messages not delivered yet (retried on the next ticks, bounded). Check
evaluations are read from the instance's asset check executions (`get_asset_check_execution_history`), which
every storage (SQLite included) indexes across runs.
"""

import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import dagster as dg
import requests
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from zoom_pipeline.accounts import DEFAULT_ACCOUNT, Account
from zoom_pipeline.constants import DAY_MATCHES_FRESH_LISTING, DAY_MATCHES_ZOOM, WINDOW_COLLECTED, YESTERDAY_LANDED
from zoom_pipeline.settings import check_url
from zoom_pipeline.sources import SOURCES, Source

WEBHOOK_SETTING = "ALERT_WEBHOOK_URL"
WEBSERVER_SETTING = "DAGSTER_WEBSERVER_URL"
RUN_FAILURE_ALERT_SENSOR_NAME = "zoom_run_failure_alert_sensor"
CHECK_ALERT_SENSOR_NAME = "zoom_check_failure_alert_sensor"
ALERTED_CHECKS = (DAY_MATCHES_ZOOM, DAY_MATCHES_FRESH_LISTING, YESTERDAY_LANDED, WINDOW_COLLECTED)

ALERT_INTERVAL_SECONDS = 30  # Dagster's default sensor interval
REPEAT_AFTER_SECONDS = 24 * 3600  # one alert per account, source and day (and check) within this
MAX_REMEMBERED = 500  # alerted keys kept in a cursor (the oldest are forgotten first)
MAX_PENDING = 20  # undelivered messages kept in a cursor; beyond it the oldest is dropped with an error log
PENDING_MAX_AGE_SECONDS = 24 * 3600  # an undelivered message older than this is dropped with an error log
POST_TIMEOUT_SECONDS = 5.0
POST_PAUSES_SECONDS = (0.5, 1.5)  # before the second and third try of one post
RUN_FAILURES_PER_TICK = 100
CHECK_RECORDS_PER_KEY = 25  # latest failed executions read per check (an execution is planned before it ends)
REASON_MAX_CHARS = 300

_RUN_EVENT_TYPES = {
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.RUN_FAILURE,
}
# Exceptions Dagster wraps a step's own error in; the reason is the error they carry.
_WRAPPERS = re.compile(r"^(Dagster\w*Error|RetryRequestedFromPolicy|RetryRequested)$")
_SECRET_SETTING = re.compile(r"SECRET|PASSWORD|TOKEN|WEBHOOK", re.IGNORECASE)


# ---- the webhook: a secret -------------------------------------------------------------------------


def masked_url(raw: str) -> str:
    """`raw` fit for a message: its scheme and host only (an incoming webhook's path or query is its key)."""
    try:
        parts = urlsplit(raw.strip())
        host = parts.hostname
    except ValueError:
        host = None
    if host and parts.scheme:
        return f"{parts.scheme}://{host}/***"
    return "*** (hidden)"


class Webhook:
    """A chat's incoming-webhook URL. Its repr and every message about it show the host only."""

    __slots__ = ("_url",)

    def __init__(self, url: str):
        self._url = url

    def __repr__(self) -> str:
        return f"Webhook({masked_url(self._url)})"

    @property
    def host(self) -> str:
        return urlsplit(self._url).hostname or "the webhook"

    def secrets(self) -> list[str]:
        """The URL and the parts of it that hold its key (path and query), for scrubbing."""
        parts = urlsplit(self._url)
        return [s for s in (self._url, parts.path, parts.query) if len(s) > 1]

    def post(self, payload: dict) -> str | None:
        """Post `payload` with a short timeout and up to three tries; None when delivered, else what went
        wrong (never the URL)."""
        problem = None
        for attempt in range(len(POST_PAUSES_SECONDS) + 1):
            if attempt:
                time.sleep(POST_PAUSES_SECONDS[attempt - 1])
            try:
                response = requests.post(self._url, json=payload, timeout=POST_TIMEOUT_SECONDS, allow_redirects=False)
            except requests.RequestException as exc:  # its text holds the URL: only its kind is told
                problem = f"{type(exc).__name__} reaching {self.host}"
                continue
            if 200 <= response.status_code < 300:
                return None
            body = " ".join(response.text.split()) if response.text else ""
            for secret in self.secrets():  # in case a proxy echoes the address
                body = body.replace(secret, "***")
            body = body[:80]
            problem = f"HTTP {response.status_code} from {self.host}" + (f" ({body})" if body else "")
            if response.status_code < 500 and response.status_code != 429:
                break  # a refusal (bad payload, revoked hook) does not change within seconds
        return problem


def load_webhook(env: Mapping[str, str]) -> Webhook | None:
    """ALERT_WEBHOOK_URL, checked like the other URLs, or None when unset; the error never shows its path."""
    raw = (env.get(WEBHOOK_SETTING) or "").strip()
    if not raw:
        return None
    try:
        check_url(WEBHOOK_SETTING, raw, "https://hooks.slack.com/services/...")
    except ValueError:
        raise ValueError(
            f"{WEBHOOK_SETTING} must be an absolute http:// or https:// URL with a host (a chat's incoming "
            f"webhook, such as 'https://hooks.slack.com/services/...'), got {masked_url(raw)!r} (the rest is "
            "hidden: it is a secret)."
        ) from None
    return Webhook(raw)


def load_webserver_url(env: Mapping[str, str]) -> str:
    """DAGSTER_WEBSERVER_URL without a trailing slash, or "" when unset (messages then carry no link)."""
    raw = (env.get(WEBSERVER_SETTING) or "").strip()
    return check_url(WEBSERVER_SETTING, raw, "http://localhost:3000").rstrip("/") if raw else ""


class _RedactFilter(logging.Filter):
    """Keeps webhook paths out of urllib3's debug lines (`"POST /services/... HTTP/1.1" 200`)."""

    def __init__(self):
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "***")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_REDACT = _RedactFilter()
logging.getLogger("urllib3.connectionpool").addFilter(_REDACT)


class Scrubber:
    """Removes secrets from text meant for a chat: the webhook's URL, the values of the environment's secret
    settings (ZOOM_*CLIENT_SECRET, AWS_SECRET_ACCESS_KEY, DAGSTER_PG_PASSWORD, ...), user:pass@ in URLs,
    bearer tokens and key/token/secret/signature query parameters."""

    def __init__(self, webhook: Webhook, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        values = [v for k, v in env.items() if _SECRET_SETTING.search(k) and len(v.strip()) >= 6
                  and (not k.endswith("_URL") or "WEBHOOK" in k)]  # not ZOOM_OAUTH_TOKEN_URL
        self.secrets = sorted({*webhook.secrets(), *values}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = re.sub(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s@]+@", r"\1***@", text)  # user:pass@, "/" in it too
        text = re.sub(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}", r"\1 ***", text)
        text = re.sub(r"(?i)([?&](?:access_token|token|key|secret|signature|sig|password|client_secret)=)[^&\s]+",
                      r"\1***", text)
        return re.sub(r"(?i)(hooks\.slack\.com/services/)\S+", r"\1***", text)


# ---- the message -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One message: what failed, where, and why; the keys it stands for (one per account, source, day)."""

    title: str
    accounts: tuple[str, ...]
    sources: tuple[str, ...]  # "<title> (<asset key>)"
    day: str
    reason: str
    link: str
    keys: tuple[str, ...]

    def lines(self) -> list[tuple[str, str]]:
        fields = []
        if any(self.accounts):
            fields.append(("Account" if len(self.accounts) == 1 else "Accounts", ", ".join(self.accounts)))
        fields.append(("Source" if len(self.sources) == 1 else "Sources", ", ".join(self.sources)))
        if self.day:
            fields.append(("Day", self.day))
        fields.append(("Reason", self.reason))
        return fields

    def payload(self) -> dict:
        """Slack-compatible: `text` for every tool (and Slack's notifications), `blocks` for Slack."""
        text = "\n".join([self.title, *(f"{k}: {v}" for k, v in self.lines())]
                         + ([f"Run: {self.link}"] if self.link else []))
        markdown = "\n".join([f"*{_slack(self.title)}*", *(f"*{k}:* {_slack(v)}" for k, v in self.lines())]
                             + ([f"<{self.link}|Open the run in Dagster>"] if self.link else []))
        return {"text": _plain(text), "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": markdown}}]}

    def to_json(self) -> dict:
        return {"title": self.title, "accounts": list(self.accounts), "sources": list(self.sources), "day": self.day,
                "reason": self.reason, "link": self.link, "keys": list(self.keys)}

    @classmethod
    def from_json(cls, data: dict) -> "Alert":
        return cls(data["title"], tuple(data["accounts"]), tuple(data["sources"]), data["day"], data["reason"],
                   data["link"], tuple(data["keys"]))


def _slack(text: str) -> str:
    """Text for Slack's mrkdwn: its three control characters escaped (no <!channel> from an error message)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _plain(text: str) -> str:
    """`text` for every tool: angle brackets (Slack's links and mentions) replaced by look-alikes."""
    return text.replace("<", "\u2039").replace(">", "\u203a")


def first_sentence(text: str) -> str:
    """The first sentence of `text` on one line, at most REASON_MAX_CHARS characters."""
    text = " ".join((text or "").split())
    found = re.search(r"[.!?](?=\s|$)", text)
    sentence = text[: found.end()] if found else text
    return sentence if len(sentence) <= REASON_MAX_CHARS else sentence[: REASON_MAX_CHARS - 1] + "\u2026"


def _error_reason(error) -> str:
    """The innermost error a step raised (Dagster's wrappers and retry requests skipped), first sentence."""
    chain = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.cause or error.context
    own = [e for e in chain if not _WRAPPERS.match(e.cls_name or "")]
    if not chain:
        return ""
    error = own[-1] if own else chain[-1]
    # The message starts with the exception's (qualified) class name: "zoom_pipeline...ZoomError: ...".
    message = re.sub(rf"^\s*(?:[\w.]+\.)?{re.escape(error.cls_name or '')}: ", "", error.message or "")
    return first_sentence(message)


def _day_of(tags: Mapping[str, str]) -> str:
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end and start != end:
        return f"{start} to {end}"
    return start or ""


# ---- the cursor: what was alerted, what is still to be delivered ---------------------------------------


class Outbox:
    """The alerted keys (with when) and the undelivered alerts of one sensor, kept in its cursor."""

    def __init__(self, state: dict, now: float):
        self.now = now
        self.sent: dict[str, float] = {k: t for k, t in state.get("sent", {}).items()
                                       if now - t < REPEAT_AFTER_SECONDS}
        self.pending: list[dict] = list(state.get("pending", []))
        self.dropped: list[str] = []

    def add(self, alert: Alert) -> bool:
        """Queue `alert` unless every key of it was alerted within REPEAT_AFTER_SECONDS."""
        if all(key in self.sent for key in alert.keys):
            return False
        for key in alert.keys:
            self.sent[key] = self.now
        self.pending.append({"alert": alert.to_json(), "since": self.now, "tries": 0})
        return True

    def deliver(self, webhook: Webhook, log: logging.Logger) -> tuple[int, str | None]:
        """Post the queued alerts, oldest first, until one fails (the webhook is likely down: the rest wait
        for the next tick). Returns (delivered, the failure)."""
        delivered, problem = 0, None
        while self.pending:
            entry = self.pending[0]
            problem = webhook.post(Alert.from_json(entry["alert"]).payload())
            if problem:
                entry["tries"] += 1
                break
            self.pending.pop(0)
            delivered += 1
        if problem:
            log.warning(f"Posting an alert to {WEBHOOK_SETTING} failed ({problem}); {len(self.pending)} alert(s) "
                        "are kept and posted again on the next tick.")
        self._bound(log)
        return delivered, problem

    def _bound(self, log: logging.Logger) -> None:
        while self.pending and (len(self.pending) > MAX_PENDING
                                or self.now - self.pending[0]["since"] > PENDING_MAX_AGE_SECONDS):
            entry = self.pending.pop(0)
            alert = entry["alert"]
            self.dropped.append(alert["title"])
            log.error(f"Dropped an alert that could not be posted after {entry['tries']} tick(s): {alert['title']} "
                      f"({', '.join(alert['sources'])}, {alert['day'] or 'no day'}): {alert['reason']}")
        if len(self.sent) > MAX_REMEMBERED:
            self.sent = dict(sorted(self.sent.items(), key=lambda item: item[1])[-MAX_REMEMBERED:])

    def state(self) -> dict:
        return {"sent": self.sent, "pending": self.pending}


def _summary(queued: int, delivered: int, problem: str | None, pending: int, what: str) -> str:
    said = f"{queued} new alert(s) about {what}, {delivered} posted"
    return said + (f"; {pending} kept for the next tick ({problem})." if problem or pending else ".")


# ---- the sensors -------------------------------------------------------------------------------------


def build_alert_sensors(accounts: Sequence[Account] = (DEFAULT_ACCOUNT,), env: Mapping[str, str] = os.environ, *,
                        prefix: str = "", alert_on_warn: bool = False,
                        default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
                        minimum_interval_seconds: int = ALERT_INTERVAL_SECONDS) -> list[dg.SensorDefinition]:
    """The alert sensors of `accounts` when ALERT_WEBHOOK_URL is set in `env`, else none. `prefix` starts
    their names (a `ZoomAccount` component's). They run by default: setting the URL is the opt-in, and they
    only read the instance and post to the chat (they launch no run)."""
    webhook = load_webhook(env)
    if webhook is None:
        return []
    webserver = load_webserver_url(env)
    _REDACT.secrets.update(webhook.secrets())
    owners: dict[dg.AssetKey, tuple[Account, Source]] = {
        account.asset_key(name): (account, source)
        for account in accounts for source in SOURCES for name in (source.name, source.udm_name)
    }
    check_keys = [dg.AssetCheckKey(account.asset_key(source.name), name)
                  for account in accounts for source in SOURCES for name in ALERTED_CHECKS]
    several = any(account.name for account in accounts)

    def link(run_id: str) -> str:
        return f"{webserver}/runs/{run_id}" if webserver and run_id else ""

    def source_label(key: dg.AssetKey) -> str:
        account, source = owners[key]
        raw = account.asset_key(source.name)
        return f"{source.title} ({raw.to_user_string()})"

    @dg.sensor(
        name=prefix + RUN_FAILURE_ALERT_SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Posts one message to {WEBHOOK_SETTING} for each failed run of the Zoom assets or checks of "
            f"{'these accounts' if several else 'the account'} (the day job, the check jobs, the asset page, "
            "asset backfills, re-executions): account, source, day, the failed step's "
            f"reason and a link to the run. Another failing run of the same day posts nothing for "
            f"{REPEAT_AFTER_SECONDS // 3600} hours; a post that fails is tried again on the next tick."
        ),
    )
    def run_failure_alerts(context: dg.SensorEvaluationContext):
        instance = context.instance
        if not context.cursor:
            latest = instance.fetch_run_status_changes(DagsterEventType.RUN_FAILURE, limit=1).records
            after = latest[0].storage_id if latest else 0
            context.update_cursor(json.dumps({"after": after, "sent": {}, "pending": []}))
            return dg.SkipReason(f"Started: runs that fail from now on are alerted (after event {after}).")
        state = json.loads(context.cursor)
        outbox = Outbox(state, time.time())
        scrub = Scrubber(webhook)
        after = state.get("after", 0)
        records = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(DagsterEventType.RUN_FAILURE, after_storage_id=after),
            limit=RUN_FAILURES_PER_TICK,
            ascending=True,
        ).records
        queued = 0
        for record in records:
            after = record.storage_id
            run = instance.get_run_by_id(record.event_log_entry.run_id)
            try:
                alert = _run_alert(context, run, owners, source_label, link, scrub) if run else None
            except Exception as exc:  # one unreadable run must not stop the alerts of the others
                context.log.error(f"Could not read why run {record.event_log_entry.run_id} failed "
                                  f"({type(exc).__name__}); it is not alerted.")
                continue
            if alert is not None and outbox.add(alert):
                queued += 1
            elif alert is not None:
                context.log.info(f"Run {run.run_id} failed like an alerted run of {alert.day or 'its day'} "
                                 f"({', '.join(alert.sources)}): not alerted again.")
        delivered, problem = outbox.deliver(webhook, context.log)
        context.update_cursor(json.dumps({"after": after, **outbox.state()}))
        return dg.SkipReason(_summary(queued, delivered, problem, len(outbox.pending), "failed runs"))

    @dg.sensor(
        name=prefix + CHECK_ALERT_SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Posts one message to {WEBHOOK_SETTING} for each failed "
            f"{'ERROR or WARN' if alert_on_warn else 'ERROR'}-severity evaluation of {', '.join(ALERTED_CHECKS)}: "
            f"account, source, day, the check's description and a link to the run; the same check of the same "
            f"day posts nothing more for {REPEAT_AFTER_SECONDS // 3600} hours."
            + ("" if alert_on_warn else " Warnings do not alert.")
        ),
    )
    def check_failure_alerts(context: dg.SensorEvaluationContext):
        storage = context.instance.event_log_storage
        started = not context.cursor
        state = json.loads(context.cursor) if context.cursor else {}
        seen: dict[str, list[int]] = state.get("seen", {})
        now_seen: dict[str, list[int]] = {}  # only this deployment's checks, each its latest failed ids
        outbox = Outbox(state, time.time())
        scrub = Scrubber(webhook)
        found: dict[tuple, list] = {}  # (account, check, day) -> failing evaluations of its sources
        for check_key in check_keys:
            name = check_key.to_user_string()
            records = storage.get_asset_check_execution_history(
                check_key, limit=CHECK_RECORDS_PER_KEY, status={AssetCheckExecutionRecordStatus.FAILED}
            )
            known = set(seen.get(name, []))
            if name in seen:  # a check first met now starts from here, like the sensor itself
                for record in records:
                    if record.id in known or record.event is None or record.event.dagster_event is None:
                        continue
                    evaluation = record.event.dagster_event.event_specific_data
                    if not isinstance(evaluation, dg.AssetCheckEvaluation) or evaluation.passed:
                        continue
                    if evaluation.severity != dg.AssetCheckSeverity.ERROR and not alert_on_warn:
                        continue
                    day = _check_day(check_key.name, record.partition, evaluation)
                    account = owners[check_key.asset_key][0]
                    found.setdefault((account.name, check_key.name, day), []).append((check_key, record, evaluation))
            now_seen[name] = [record.id for record in records]
        queued = 0
        for (account_name, check_name, day), hits in sorted(found.items()):
            check_key, record, evaluation = hits[0]
            warn = evaluation.severity != dg.AssetCheckSeverity.ERROR
            alert = Alert(
                title=f"Zoom pipeline: check {check_name} failed" + (" (warning)" if warn else ""),
                accounts=(account_name,),
                sources=tuple(sorted({source_label(h[0].asset_key) for h in hits})),
                day=day,
                reason=scrub(first_sentence(evaluation.description or "The check failed without a description.")),
                link=link(record.run_id),
                keys=tuple(sorted({f"{check_name}|{owners[h[0].asset_key][0].name}|{owners[h[0].asset_key][1].name}"
                                   f"|{day}" for h in hits})),
            )
            if outbox.add(alert):
                queued += 1
        delivered, problem = outbox.deliver(webhook, context.log)
        context.update_cursor(json.dumps({"seen": now_seen, **outbox.state()}))
        if started:
            return dg.SkipReason("Started: check evaluations that fail from now on are alerted.")
        return dg.SkipReason(_summary(queued, delivered, problem, len(outbox.pending), "failed checks"))

    return [run_failure_alerts, check_failure_alerts]


def _check_day(check_name: str, partition: str | None, evaluation: dg.AssetCheckEvaluation) -> str:
    """The day an evaluation is about: its partition, else the day its metadata names (a backfill run records
    a partitioned check without its partition); for the window check, the days about to leave Zoom's window."""
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    if check_name == WINDOW_COLLECTED:
        urgent = meta.get("days_lost_within_14_days") or []
        if isinstance(urgent, list) and urgent:
            return urgent[0] if len(urgent) == 1 else f"{urgent[0]} to {urgent[-1]} ({len(urgent)} days)"
        return ""
    day = partition or evaluation.partition or meta.get("day") or meta.get("partition") or ""
    return str(day)


def _run_alert(context, run: dg.DagsterRun, owners: Mapping[dg.AssetKey, tuple[Account, Source]], source_label,
               link, scrub) -> Alert | None:
    """The alert of a failed run, or None when it ran none of `owners`' assets or checks (another
    component's or code location's run)."""
    here = context.code_location_origin.location_name if context.code_location_origin else None
    there = (run.remote_job_origin.repository_origin.code_location_origin.location_name
             if run.remote_job_origin else None)
    if here and there and here != there:
        return None
    records = context.instance.get_records_for_run(run.run_id, of_type=_RUN_EVENT_TYPES).records
    step_keys: dict[str, set[dg.AssetKey]] = {}
    planned: set[dg.AssetKey] = set()
    failures, run_failure = [], None
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        data = event.event_specific_data
        if event.event_type in (DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                                DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED):
            key = data.asset_key
            if key in owners:
                planned.add(key)
                step_keys.setdefault(event.step_key or "", set()).add(key)
        elif event.event_type == DagsterEventType.STEP_FAILURE:
            failures.append(event)
        elif event.event_type == DagsterEventType.RUN_FAILURE:
            run_failure = event
    if not planned:
        return None
    ours = [f for f in failures if step_keys.get(f.step_key or "")]
    failed = {key for f in ours for key in step_keys[f.step_key]} or planned
    if ours:
        data = ours[0].event_specific_data
        user = getattr(data, "user_failure_data", None)
        reason = first_sentence(user.description) if user is not None and user.description else ""
        reason = reason or _error_reason(getattr(data, "error", None))
    else:
        error = getattr(run_failure.event_specific_data, "error", None) if run_failure else None
        reason = _error_reason(error) if error else first_sentence(run_failure.message if run_failure else "")
    # Accounts are not hashable (their prefixes are a dict): one pair per raw asset key, in source order.
    raw = {owners[key][0].asset_key(owners[key][1].name): owners[key] for key in failed}
    pairs = sorted(raw.values(), key=lambda p: (p[0].name, SOURCES.index(p[1])))
    day = _day_of(run.tags)
    return Alert(
        title="Zoom pipeline: a run failed",
        accounts=tuple(sorted({account.name for account, _ in pairs})),
        sources=tuple(dict.fromkeys(source_label(account.asset_key(source.name)) for account, source in pairs)),
        day=day,
        reason=scrub(reason or "The run failed without an error message."),
        link=link(run.run_id),
        keys=tuple(f"run|{account.name}|{source.name}|{day}" for account, source in pairs),
    )
