"""Zoom REST API simulator served over real HTTP on 127.0.0.1.

Simulates Server-to-Server OAuth (``POST /oauth/token``) and two report endpoints, the admin operation
logs (``GET /v2/report/operationlogs``) and the sign-in / sign-out activity report
(``GET /v2/report/activities``), closely enough to test a real client, with several accounts, injectable
faults, events that arrive while a client pages, an unspecified order within one second, and lazily
generated days of up to millions of records. Used by the tests, the demo and the benchmarks: in-process
(``with ZoomSimulator().start() as sim: ...``) or as ``python -m zoom_pipeline.simulator --port 8765``,
driven through the JSON control endpoints under ``/_sim/``.

One module per concept:

- ``records``: vocabularies, record generators and the two report endpoints' shapes (``LOGS``);
- ``day``: one day of records, generated lazily and merged with explicit ones (``_Day``);
- ``state``: what Zoom keeps per account (``_AccountState``), faults (``FAULT_KINDS``), page tokens, counters;
- ``responses``: Zoom's error bodies and messages, pages with raw bytes;
- ``server``: ``ZoomSimulator`` (lifecycle, settings, accounts, counters, routing), assembled from
  ``scenario`` (days, faults, triggers), ``api`` (the OAuth and report endpoints) and ``control``
  (``/_sim/``);
- ``handler``: the HTTP server and request handler;
- ``cli``: ``main()``, the command line.
"""

from zoom_pipeline.simulator.api import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE  # noqa: F401
from zoom_pipeline.simulator.cli import main
from zoom_pipeline.simulator.day import _Day  # noqa: F401 - bench/benchmark.py finds a generated day's twins with it
from zoom_pipeline.simulator.records import _LOGS, LOGS  # noqa: F401
from zoom_pipeline.simulator.responses import (  # noqa: F401
    MSG_BAD_PAGE_TOKEN,
    MSG_DAILY,
    MSG_EXPIRED_TOKEN,
    MSG_INVALID_TOKEN,
    MSG_QPS,
    MSG_RETENTION,
)
from zoom_pipeline.simulator.server import ZoomSimulator
from zoom_pipeline.simulator.state import (  # noqa: F401
    DEFAULT_ACCOUNT,
    DEFAULT_SCOPES,
    FAULT_KINDS,
    LAST_TOKEN_STYLES,
    MALFORMED_SHAPES,
    TOKEN_FAULT_KINDS,
    SimAccount,
)

# Besides these, every name the single module had stays importable from here (the lines marked F401).
__all__ = ["DEFAULT_ACCOUNT", "DEFAULT_SCOPES", "FAULT_KINDS", "LOGS", "MALFORMED_SHAPES", "TOKEN_FAULT_KINDS",
           "SimAccount", "ZoomSimulator", "main"]
