"""The control endpoints under ``/_sim/``: the simulator's Python methods as JSON over HTTP, for a
simulator in another process (``python -m zoom_pipeline.simulator --port 8765``).

``GET stats|config|faults|accounts|records?day=&offset=&limit=&log=&account=`` and ``POST day|add|fault|
trigger|late_events|make_records|config|reset_stats|expire_page_tokens|expire_access_tokens|clear_faults|
reset|account``, each taking the Python method's arguments (``log`` and ``account`` included) as a JSON
object (``POST account`` those of add_account; it answers the new account's credentials). JSON cannot
carry bytes, so there a record value ``{"raw": "<latin-1 text>"}`` stands for the bytes of that text in
latin-1 (``"ops\\u00ffadmin"`` is ``b"ops\\xffadmin"``), the same convention as the ``raw_body`` fault;
GET records answers in that form too.

``_ControlEndpoints`` is a part of ``ZoomSimulator`` (server.py), kept apart by concept.
"""

from __future__ import annotations

from typing import Any

import orjson

from zoom_pipeline.simulator.responses import _json, _Resp
from zoom_pipeline.simulator.state import DEFAULT_ACCOUNT


def _raw_in(records: Any) -> list[dict]:
    # Control-endpoint form of bytes: {"raw": "<latin-1 text>"} (JSON has no bytes).
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("records must be a list of JSON objects")
    return [{k: v["raw"].encode("latin-1") if isinstance(v, dict) and set(v) == {"raw"} else v
             for k, v in r.items()} for r in records]


def _raw_out(records: list[dict]) -> list[dict]:
    return [{k: {"raw": v.decode("latin-1")} if isinstance(v, bytes) else v for k, v in r.items()}
            for r in records]


class _ControlEndpoints:
    """``/_sim/<name>``: each calls the simulator method of that name (mixed into ZoomSimulator)."""

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
