"""The servers' heap after start-up: :func:`freeze_startup_heap`.

A started server (``serve``, the gateway) holds some 150 000 long-lived objects: modules, web3's
contract and ABI objects, pydantic models, settings. CPython's cyclic garbage collector walks all of
them on every full (generation 2) collection, which the allocations of steady traffic set off from
time to time: 75 ms or more during which the server answers nothing (every request in flight stalls,
which showed as 100–150 ms p99 spikes under load). Freezing them after start-up (``gc.freeze``,
Python ≥ 3.7) takes them out of every later collection; objects created afterwards (per request)
are collected as before, and reference counting still frees any object, frozen or not, as soon as
it is no longer referenced.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then freeze every object that survives into the permanent
    generation (never scanned by the cyclic collector again). Call once, at the end of a server's
    start-up.

    Returns:
        How many objects are frozen now (``gc.get_freeze_count()``).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
