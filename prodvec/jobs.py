"""Producing a family by name: the registry's producer, the core's training loop, the validation gate.

The one place the three stages meet for a single family; `prodvec produce`,
`prodvec run` and the tests call it.
"""

from __future__ import annotations

from functools import partial

import pandas as pd

from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotStore
from prodvec.core.training import RunResult, train_snapshots
from prodvec.producers import make_producer
from prodvec.validation.verdict import refresh_data_docs, validate_snapshot


def produce(shop: Shop, family: str, cutoffs: list[pd.Timestamp], store: SnapshotStore, *,
            overrides: dict | None = None, replace: bool = False, keep_existing: bool = False,
            validate: bool = True, gate: dict[str, str] | None = None, warm_start: bool = True,
            progress: bool = True, log=print) -> list[RunResult]:
    """Train `family` once per cutoff (oldest first), write and (unless `validate=False`) gate each snapshot.

    `gate`: threshold overrides for this run (keys as in `GateConfig.for_family`);
    `warm_start=False` trains every cutoff from scratch.
    """
    producer = make_producer(family, overrides)
    validator = partial(validate_snapshot, settings=gate) if validate else None
    results = train_snapshots(shop, producer, cutoffs, store, validator=validator, replace=replace,
                              keep_existing=keep_existing, warm_start=warm_start, progress=progress, log=log)
    if validate and any(r.validation and not r.kept for r in results):
        refresh_data_docs(store.home)  # one index for the family's validations, not one per snapshot
    return results
