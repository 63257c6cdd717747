"""The gate applied to a written snapshot: measure it, judge it, record the verdict in its card.

Besides the snapshot and the catalogue at its cutoff, the gate compares it
with what it replaces: the products listed since the previous snapshot's
cutoff must be covered (cold start), and the snapshot must not drift from the
one served before it (`drift_reference`) beyond the configured levels. A
snapshot that fails is never promoted (SnapshotStore.promote refuses it),
so the online store keeps serving the previous one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from prodvec.core import columns as C
from prodvec.core.producer import Producer
from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotRef, SnapshotStore
from prodvec.producers import make_producer
from prodvec.validation.gate import Cohorts, GateConfig, validate_embeddings

# Under the home: GX's file-backed context (suites, results, Data Docs) and the gate's settings file.
VALIDATION_DIR = "validation"
SETTINGS_FILE = "gate.json"


def docs_root(home: Path) -> Path:
    return Path(home) / VALIDATION_DIR


def data_docs_index(home: Path) -> Path:
    """The Data Docs site's front page under a home (GX's local_site)."""
    from prodvec.validation.suite import docs_index

    return docs_index(docs_root(home))


def refresh_data_docs(home: Path) -> Path:
    """Rebuild the Data Docs index under a home (each validation writes only its own page); its path."""
    from prodvec.validation.suite import refresh_index

    return refresh_index(docs_root(home))


def gate_settings(home: Path) -> dict[str, str]:
    """Threshold overrides saved under the home (`prodvec run --gate`), KEY / FAMILY.KEY / FAMILY.vN.KEY -> value."""
    path = docs_root(home) / SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_gate_settings(home: Path, settings: dict[str, str]) -> None:
    """Merge `settings` into the home's gate settings, after checking every key names a threshold."""
    for key, value in settings.items():
        GateConfig().replace(**{key.split(".")[-1]: value})
    path = docs_root(home) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**gate_settings(home), **settings}, indent=2, sort_keys=True))


def drift_reference(store: SnapshotStore, ref: SnapshotRef) -> SnapshotRef | None:
    """The snapshot `ref` replaces: the newest earlier one of its version that passed validation.

    The same one training aligned it to (a refused snapshot is never served,
    so it is no reference either). In a pipeline run the earlier snapshots
    are promoted after the whole family trained, so "served before it" is
    "passed before it", not "promoted now".

    A fusion's provisional snapshot (equal weights until validation sessions
    exist; card `fusion.provisional`) is no reference: the next snapshot
    chooses the weights the version then keeps, so its move away from the
    placeholder measures that choice, not instability between retrains (on
    the default shop `unified`'s first chosen weights moved it 0.93-1.13x
    the spread, and every later retrain, measured against the placeholder,
    was refused).
    """
    earlier = [r for r in store.snapshots(ref.family, ref.version)
               if r.cutoff < ref.cutoff and r.card().get("validation", {}).get("success")]
    if earlier and (earlier[-1].card().get("fusion") or {}).get("provisional"):
        return None
    return earlier[-1] if earlier else None


def _block_widths(card: dict) -> tuple[int, ...] | None:
    # A concatenating fusion served whole: its modality blocks are the columns.
    fusion = card.get("fusion") or {}
    dims = fusion.get("dims")
    if isinstance(dims, dict):
        dims = [dims[m] for m in fusion.get("modalities", dims)]
    if dims and sum(int(d) for d in dims) == card.get("dim"):
        return tuple(int(d) for d in dims)
    return None


def validate_snapshot(store: SnapshotStore, ref: SnapshotRef, shop: Shop, producer: Producer | None = None,
                      *, settings: dict[str, str] | None = None) -> dict:
    """Run the Great Expectations gate on a written snapshot and record it in its model card.

    `settings` override thresholds on top of the home's saved ones (keys as in `GateConfig.for_family`).
    A served snapshot that fails is taken out of service (`withdrawn: True` in the returned verdict).
    """
    # One BLAS thread: the gate's linear algebra (Procrustes SVDs, the drift test's LDA) is small, and
    # OpenBLAS threads spinning against each other on a busy 2-core machine doubled its CPU time
    # (unified_concat's six gates: 40 s CPU / 60 s wall with two threads, 22 s / 31 s with one).
    with threadpool_limits(1, user_api="blas"):
        return _validate_snapshot(store, ref, shop, producer, settings)


def _validate_snapshot(store: SnapshotStore, ref: SnapshotRef, shop: Shop, producer: Producer | None,
                       settings: dict[str, str] | None) -> dict:
    card = ref.card()
    producer = producer or make_producer(ref.family, card.get("parameters"))
    known = shop.until(ref.cutoff)
    products = known.products
    catalog = products[C.PRODUCT_ID].to_numpy()
    coverable = producer.coverable(known) if len(catalog) else np.ones(0, dtype=bool)
    previous = drift_reference(store, ref)
    new = np.zeros(len(catalog), dtype=bool)
    if previous is not None:
        new = (products[C.CREATED_AT] > previous.cutoff).to_numpy()
    # The producer's coverage floors first (a share of what it can embed at all), then any configured override.
    floors = GateConfig(
        min_coverage=producer.min_coverage * (float(coverable.mean()) if len(catalog) else 1.0),
        min_cold_start_coverage=producer.min_coverage * (float(coverable[new].mean()) if new.any() else 1.0))
    config = GateConfig.for_family(ref.family, ref.version, {**gate_settings(store.home), **(settings or {})},
                                   base=floors)
    labels = products.set_index(C.PRODUCT_ID)[C.CATEGORY] if C.CATEGORY in products else None
    cohorts = Cohorts(labels=labels, new_ids=catalog[new] if new.any() else None,
                      reference=store.read(previous) if previous is not None else None,
                      block_widths=_block_widths(card))
    report = validate_embeddings(
        store.read(ref),
        catalog_ids=catalog,
        expected_dim=producer.output_dim(card),
        config=config,
        seed=producer.config.seed,
        cohorts=cohorts,
        docs_root=docs_root(store.home),
        run_name=ref.id.replace("/", "_"),
    )
    validation = {**report.to_dict(), "success": report.success, "summary": report.summary(),
                  "drift_reference": previous.id if previous is not None else None}
    # A served snapshot that fails now stops being served (the previous passing one takes over),
    # before the verdict is recorded: a kill in between leaves it unserved, never served and failed.
    withdrawn = not report.success and store.withdraw(ref)
    store.update_card(ref, validation=validation)
    return {**validation, "withdrawn": True} if withdrawn else validation
