"""The framework side of a producer run: cut the shop, train, align, write, validate.

Everything a producer should not have to know lives here, once: the model
card, the version number, atomic snapshot writes, alignment with the previous
snapshot, and the validation gate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from prodvec import columns as C
from prodvec.producers import producer_class
from prodvec.producers.base import Embeddings, InsufficientData, Producer, TrainContext
from prodvec.shop.model import Shop
from prodvec.snapshots import SnapshotRef, SnapshotStore


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


def make_producer(family: str, overrides: dict | None = None) -> Producer:
    """A producer with its config, parameters given as strings coerced to the field types."""
    cls = producer_class(family)
    overrides = dict(overrides or {})
    known = {f.name: f for f in fields(cls.Config)}
    unknown = set(overrides) - set(known)
    if unknown:
        raise ValueError(f"{family}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    typed = {}
    for key, value in overrides.items():
        default = getattr(cls.Config(), key)
        if isinstance(value, str) and isinstance(default, bool):  # bool("false") would be True
            if value.lower() not in ("true", "1", "yes", "false", "0", "no"):
                raise ValueError(f"{family}.{key}: expected true or false, got {value!r}")
            typed[key] = value.lower() in ("true", "1", "yes")
        elif isinstance(value, str) and not isinstance(default, str):
            typed[key] = type(default)(value)
        else:
            typed[key] = value
    return cls(cls.Config(**typed))


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
    u, _, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
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


def produce(shop: Shop, family: str, cutoffs: list[pd.Timestamp], store: SnapshotStore, *,
            overrides: dict | None = None, replace: bool = False, keep_existing: bool = False,
            validate: bool = True, progress: bool = True, log=print) -> list[RunResult]:
    """Train `family` once per cutoff (oldest first) and write one snapshot each.

    `keep_existing`: a cutoff that already has a snapshot of this version is
    left as it is (a scheduled re-run trains only the new cutoffs); otherwise
    writing it again is an error unless `replace`.
    """
    producer = make_producer(family, overrides)
    missing = shop.missing(producer.requires)
    if missing:
        reason = f"needs {', '.join(missing)}, which this shop does not have"
        return [RunResult(family, pd.Timestamp(c), skipped=reason) for c in cutoffs]
    version = store.version_for(family, producer.schema())
    results = []
    existing = {r.cutoff: r for r in store.snapshots(family, version)}
    for cutoff in sorted(pd.Timestamp(c) for c in cutoffs):
        if keep_existing and not replace and cutoff in existing:
            ref = existing[cutoff]
            results.append(RunResult(family, cutoff, ref, validation=ref.card().get("validation"), kept=True))
            log(f"{ref.id}: exists, kept")
            continue
        view = shop.until(cutoff)
        # A refused snapshot is never served, so it is no reference for the next one either.
        earlier = [r for r in store.snapshots(family, version)
                   if r.cutoff < cutoff and r.card().get("validation", {}).get("success", True)]
        previous = store.read(earlier[-1]) if earlier else None
        context = TrainContext(cutoff=cutoff, store=store, previous=previous, progress=progress, log=log)
        started = time.perf_counter()
        try:
            emb = producer.train(view, context)
        except InsufficientData as reason:
            results.append(RunResult(family, cutoff, skipped=f"cutoff {cutoff}: {reason}"))
            log(results[-1].line())
            continue
        seconds = time.perf_counter() - started
        emb, alignment = align(emb, previous)
        card = {
            "producer": producer.name,
            "description": producer.description,
            "schema": producer.schema(),
            "parameters": producer.config.to_dict(),
            "data_window": {**_data_window(view), "cutoff": str(cutoff)},
            "train_seconds": round(seconds, 2),
            "alignment": alignment,
            "shop": str(shop.root),
            **getattr(producer, "card_extras_", {}),
        }
        ref = store.write(family, version, cutoff, emb, card, replace=replace,
                          artifacts=getattr(producer, "artifacts_", None))
        validation = validate_snapshot(store, ref, shop, producer) if validate else None
        result = RunResult(family, cutoff, ref, seconds, validation=validation)
        log(result.line())
        results.append(result)
    return results


def validate_snapshot(store: SnapshotStore, ref: SnapshotRef, shop: Shop, producer: Producer | None = None) -> dict:
    """Run the Great Expectations gate on a written snapshot and record it in its model card."""
    from prodvec.validation import GateConfig, validate_embeddings

    producer = producer or make_producer(ref.family, ref.card().get("parameters"))
    known = shop.until(ref.cutoff)
    catalog = known.products[C.PRODUCT_ID].to_numpy()
    coverable = float(producer.coverable(known).mean()) if len(catalog) else 1.0
    report = validate_embeddings(
        store.read(ref),
        catalog_ids=catalog,
        expected_dim=producer.output_dim(ref.card()),
        config=GateConfig(min_coverage=producer.min_coverage * coverable),
        seed=producer.config.seed,
    )
    validation = {**report.to_dict(), "success": report.success, "summary": report.summary()}
    store.update_card(ref, validation=validation)
    return validation
