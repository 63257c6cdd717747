"""The framework side of a producer run: cut the shop, train, align, write, validate.

Everything a producer should not have to know lives here, once: the model
card, the version number, atomic snapshot writes, alignment with the previous
snapshot, and handing each snapshot to the validation stage's gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.linalg import orthogonal_procrustes
from threadpoolctl import threadpool_limits

from prodvec.core import columns as C
from prodvec.core.embeddings import Embeddings, InsufficientData
from prodvec.core.producer import Producer, TrainContext
from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotError, SnapshotRef, SnapshotStore

# (store, written snapshot, shop, producer) -> the verdict recorded in its model card.
Validator = Callable[[SnapshotStore, SnapshotRef, Shop, Producer], dict]


@dataclass(frozen=True)
class RunResult:
    family: str
    cutoff: pd.Timestamp
    ref: SnapshotRef | None = None
    seconds: float = 0.0
    skipped: str | None = None
    validation: dict | None = None
    # Written by an earlier run and left as it was (its serving state is the operator's).
    kept: bool = False

    def line(self) -> str:
        if self.skipped:
            return f"{self.family}: skipped: {self.skipped}"
        verdict = self.validation["summary"] if self.validation else "not validated"
        return f"{self.ref.id}: {self.ref.card()['rows']} rows in {self.seconds:.1f}s; {verdict}"


def align(new: Embeddings, previous: Embeddings | None) -> tuple[Embeddings, dict]:
    """Rotate `new` onto `previous` (orthogonal Procrustes over shared products).

    A retrain lands in an arbitrarily rotated space; a model trained on last
    week's snapshot would read this week's coordinates as noise. A rotation
    keeps every distance, so neighbours and validation metrics are unchanged.
    """
    if previous is None or previous.dim != new.dim:
        return new, {"aligned_to_previous": False}
    a, found_new = new.lookup(previous.ids)
    shared = found_new
    if shared.sum() < new.dim:
        return new, {"aligned_to_previous": False, "shared_products": int(shared.sum())}
    a = a[shared].astype(np.float64)
    b = previous.vectors[shared].astype(np.float64)
    rotation, _ = orthogonal_procrustes(a, b)
    rotated = (new.vectors.astype(np.float64) @ rotation).astype(np.float32)
    before = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
    after = float(np.linalg.norm(a @ rotation - b) / max(np.linalg.norm(b), 1e-12))
    info = {"aligned_to_previous": True, "shared_products": int(shared.sum()),
            "relative_residual_before": round(before, 4), "relative_residual_after": round(after, 4)}
    return Embeddings(new.ids, rotated), info


def _data_window(shop: Shop) -> dict:
    starts = [shop.products[C.CREATED_AT].min()]
    if shop.events is not None and len(shop.events):
        starts.append(shop.events[C.TS].min())
    return {"start": str(min(starts)), "products": len(shop.products),
            "events": 0 if shop.events is None else len(shop.events),
            "orders": 0 if shop.orders is None else len(shop.orders)}


def train_snapshots(shop: Shop, producer: Producer, cutoffs: list[pd.Timestamp], store: SnapshotStore, *,
                    validator: Validator | None = None, replace: bool = False, keep_existing: bool = False,
                    warm_start: bool = True, progress: bool = True, log=print) -> list[RunResult]:
    """Train `producer` once per cutoff (oldest first) and write one snapshot each.

    `validator` judges each snapshot in its temporary directory, before it
    becomes visible, and records its verdict (the validation stage's gate;
    the core does not know how a snapshot is judged), so a run killed at any
    point leaves no snapshot without a verdict.
    `keep_existing`: a cutoff that already has a snapshot of this version is
    left as it is (a scheduled re-run trains only the new cutoffs; one left
    without a verdict by an older run is validated now); otherwise it is an
    error, raised before any training, unless `replace`.
    The family's lock is held throughout: a second run of the same family
    is refused with the holder's PID instead of training in parallel.
    `warm_start=False` hides the previous snapshot from the producer (it
    trains from scratch; the result is still aligned to it): how much retrains
    drift without warm start.
    """
    family = producer.name
    missing = shop.missing(producer.requires)
    if missing:
        reason = f"needs {', '.join(missing)}, which this shop does not have"
        return [RunResult(family, pd.Timestamp(c), skipped=reason) for c in cutoffs]
    with store.lock(family):
        return _train_locked(shop, producer, cutoffs, store, validator, replace, keep_existing, warm_start,
                             progress, log)


def _train_locked(shop, producer, cutoffs, store, validator, replace, keep_existing, warm_start, progress, log):
    family = producer.name
    version = store.register_version(family, producer.schema())
    results = []
    existing = {r.cutoff: r for r in store.snapshots(family, version)}
    for cutoff in sorted(pd.Timestamp(c) for c in cutoffs):
        if cutoff in existing and not replace:
            ref = existing[cutoff]
            if not keep_existing:
                raise SnapshotError(f"snapshot {ref.id} exists; pass replace=True (--force) to retrain it")
            validation = ref.card().get("validation")
            if validation is None and validator is not None:
                validation = validator(store, ref, shop, producer)
                log(f"{ref.id}: exists, validated now: {validation['summary']}")
            else:
                log(f"{ref.id}: exists, kept")
            results.append(RunResult(family, cutoff, ref, validation=validation, kept=True))
            continue
        view = shop.until(cutoff)
        # A refused snapshot is never served, so it is no reference for the next one either.
        earlier = [r for r in store.snapshots(family, version)
                   if r.cutoff < cutoff and r.card().get("validation", {}).get("success", True)]
        previous = store.read(earlier[-1]) if earlier else None
        context = TrainContext(cutoff=cutoff, store=store, previous=previous if warm_start else None,
                               previous_artifacts=store.artifacts(earlier[-1]) if earlier and warm_start else {},
                               progress=progress, log=log)
        started = time.perf_counter()
        try:
            emb = producer.train(view, context)
        except InsufficientData as reason:
            results.append(RunResult(family, cutoff, skipped=f"cutoff {cutoff}: {reason}"))
            log(results[-1].line())
            continue
        seconds = time.perf_counter() - started
        with threadpool_limits(1, user_api="blas"):  # one small SVD: threads only fight (see the gate)
            emb, alignment = align(emb, previous if producer.aligns else None)
        card = {
            "producer": producer.name,
            "description": producer.description,
            "schema": producer.schema(),
            "parameters": producer.config.to_dict(),
            "data_window": {**_data_window(view), "cutoff": str(cutoff)},
            "train_seconds": round(seconds, 2),
            "alignment": alignment,
            "warm_start": bool(warm_start and previous is not None),
            "shop": str(shop.root),
            **producer.card_extras_,
        }
        verdict = {}
        check = None if validator is None else (lambda tmp_ref: verdict.update(validator(store, tmp_ref, shop, producer)))
        ref = store.write(family, version, cutoff, emb, card, replace=replace,
                          artifacts=producer.artifacts_ or None, check=check)
        validation = verdict or None
        result = RunResult(family, cutoff, ref, seconds, validation=validation)
        log(result.line())
        results.append(result)
    return results
