"""careflow/heap.py: start-up objects frozen out of the collector's walks, a larger young generation."""

from __future__ import annotations

import gc

import pytest

from careflow.heap import settle
from careflow.settings import Settings


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_is_loaded_and_sets_the_young_threshold(restored_gc) -> None:
    settle("test", Settings(gc_young_threshold=10_000))
    assert gc.get_freeze_count() > 10_000  # modules, models and terminology, not a handful
    young, middle, old = gc.get_threshold()
    # full collections still about every 70,000 allocations, as with Python's defaults
    assert young == 10_000 and 50_000 <= young * middle * old <= 70_000
    # what is allocated afterwards is still collected
    cycle: list = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


def test_settle_keeps_pythons_threshold_when_told(restored_gc) -> None:
    before = gc.get_threshold()
    settle("test", Settings(gc_young_threshold=0))
    assert gc.get_threshold() == before
