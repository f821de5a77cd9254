"""The command line, ``python -m zoom_pipeline.simulator --port N [--account NAME:SECRET ...]``: serve a
simulator until SIGTERM or SIGINT, printing its URLs and accounts as one JSON line first."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import orjson

from zoom_pipeline.simulator.server import ZoomSimulator
from zoom_pipeline.simulator.state import DEFAULT_SCOPES, LAST_TOKEN_STYLES

_DESCRIPTION = "Zoom REST API simulator served over real HTTP on 127.0.0.1."


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print the URLs as one JSON line first."""
    ap = argparse.ArgumentParser(prog="python -m zoom_pipeline.simulator", description=_DESCRIPTION)
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
