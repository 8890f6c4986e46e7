"""Issue 16, part 2: the worker's start-up heap is frozen, so a full garbage collection does
not walk it again while the partition's commands wait.

The fleet bench timed the worker's collections (``/dispatch/batches/``: ``gc_s``,
``gc_longest_s``): a full collection of the ~100k start-up objects (the road graph, its
router and grid, Faust, the imports) held the loop for up to 87 ms while a report waited
behind it, and with the default thresholds a batch's objects were pushed into the old
generation, so full collections came every two seconds. ``streams.app.GcPauses.install``
collects and freezes that heap when the worker starts and raises the thresholds (as
``dispatchwire.collector.tune_gc`` does for the API).
"""

from __future__ import annotations

import httpx
import pytest

from dispatchwire.collector import GC_THRESHOLDS

pytestmark = pytest.mark.kafka


def test_the_worker_freezes_its_start_up_heap(settings, running_worker):
    worker = running_worker(settings)
    page = httpx.get(f"{worker.url}/dispatch/batches/", timeout=10).json()
    # the road graph alone is tens of thousands of objects; unfrozen, this is 0
    assert page.get("gc_frozen", 0) >= 50_000, page
    assert page["gc_threshold"] == list(GC_THRESHOLDS)
    assert len(page["gc_counts"]) == 3  # collections are timed per generation
