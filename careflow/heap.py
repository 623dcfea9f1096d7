"""The garbage collector's work in a long-running careflow process (API, worker, simulator).

What a process loads at start — modules, the pathways, the settings — lives as long as the
process, yet Python's collector walks all of it on every full collection: 100–200 ms each on the
benchmark machine, several a minute under load. `settle()` freezes what is loaded when the process
is about to serve (`gc.freeze()`: out of every later walk; it takes no time), so a full collection
walks little more than what the process allocated since. It neither collects first nor builds the
message models first: either would delay every start, and the fault suite restarts the API every
few seconds (a start 1–3 s slower under load cost four times the deadline escalations).

It also makes the youngest generation larger (`CAREFLOW_GC_YOUNG_THRESHOLD`, Python's default is
700). A request or a workflow task allocates thousands of container objects that die with it;
collected every 700 allocations, many are still alive and get walked, and promoted, for nothing.
The older generations are collected as often as before: a full collection every 70,000 or so
allocations. Ten times rarer ones (10,000 × 10 × 10) let the cyclic garbage of evicted workflows
pile up: the worker grew from 268 to 446 MB between 1,000 and 10,000 open pathways.
benchmarks/RESULTS.md (round 6) has the measurements.
"""

from __future__ import annotations

import gc
import logging

from careflow.settings import Settings

log = logging.getLogger(__name__)

FULL_COLLECTION_EVERY = 70_000  # allocations, as Python's default thresholds have it
MIDDLE = 2  # young collections per middle-generation collection


def settle(process: str, settings: Settings) -> None:
    """Call once a process has loaded what it keeps, before it serves; it returns at once."""
    gc.freeze()
    if settings.gc_young_threshold:
        young = settings.gc_young_threshold
        # Full collections as often as with Python's defaults (700 × 10 × 10 = 70,000 allocations):
        # rarer ones let cyclic garbage (an evicted workflow's objects) pile up between them.
        old = max(1, FULL_COLLECTION_EVERY // (young * MIDDLE))
        gc.set_threshold(young, MIDDLE, old)
    log.info(
        "%s: %d start-up objects kept out of the garbage collector's walks; thresholds %s",
        process,
        gc.get_freeze_count(),
        gc.get_threshold(),
    )
