"""The garbage collector's work in a long-running careflow process (API, worker, simulator).

What a process loads at start — modules, fhir.resources' models, the terminology, the pathways —
lives as long as the process, yet Python's collector walks all of it on every full collection:
100–200 ms each on the benchmark machine, several a minute under load. `settle()` collects once,
then freezes what is left (`gc.freeze()`: out of every later walk), so a full collection walks only
what the process allocated since it began to serve.

It also makes the youngest generation larger (`CAREFLOW_GC_YOUNG_THRESHOLD`, Python's default is
700). A request or a workflow task allocates thousands of container objects that die with it;
collected every 700 allocations, many are still alive and get walked, and promoted, for nothing.
benchmarks/RESULTS.md (round 6) has the measurements.
"""

from __future__ import annotations

import gc
import logging

from careflow.settings import Settings

log = logging.getLogger(__name__)


def settle(process: str, settings: Settings) -> None:
    """Call once a process has loaded what it keeps, before it serves. Builds the message models
    first (`messaging.warm_up`), so that they are among what is frozen."""
    from messaging import warm_up

    warm_up()
    gc.collect()
    gc.freeze()
    if settings.gc_young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(settings.gc_young_threshold, middle, old)
    log.info(
        "%s: %d start-up objects kept out of the garbage collector's walks; thresholds %s",
        process,
        gc.get_freeze_count(),
        gc.get_threshold(),
    )
