"""Producing a family by name: the registry's producer, the core's training loop, the validation gate.

The one place the three stages meet for a single family; `prodvec produce`,
`prodvec run` and the tests call it.
"""

from __future__ import annotations

import pandas as pd

from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotStore
from prodvec.core.training import RunResult, train_snapshots
from prodvec.producers import make_producer
from prodvec.validation.verdict import validate_snapshot


def produce(shop: Shop, family: str, cutoffs: list[pd.Timestamp], store: SnapshotStore, *,
            overrides: dict | None = None, replace: bool = False, keep_existing: bool = False,
            validate: bool = True, progress: bool = True, log=print) -> list[RunResult]:
    """Train `family` once per cutoff (oldest first), write and (unless `validate=False`) gate each snapshot."""
    producer = make_producer(family, overrides)
    return train_snapshots(shop, producer, cutoffs, store, validator=validate_snapshot if validate else None,
                           replace=replace, keep_existing=keep_existing, progress=progress, log=log)
