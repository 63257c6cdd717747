"""The gate applied to a written snapshot: measure it, judge it, record the verdict in its card."""

from __future__ import annotations

from prodvec.core import columns as C
from prodvec.core.producer import Producer
from prodvec.core.shop.model import Shop
from prodvec.core.snapshots import SnapshotRef, SnapshotStore
from prodvec.producers import make_producer
from prodvec.validation.gate import GateConfig, validate_embeddings


def validate_snapshot(store: SnapshotStore, ref: SnapshotRef, shop: Shop, producer: Producer | None = None) -> dict:
    """Run the Great Expectations gate on a written snapshot and record it in its model card.

    A served snapshot that fails is taken out of service (`withdrawn: True` in the returned verdict).
    """
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
    # A served snapshot that fails now stops being served (the previous passing one takes over),
    # before the verdict is recorded: a kill in between leaves it unserved, never served and failed.
    withdrawn = not report.success and store.withdraw(ref)
    store.update_card(ref, validation=validation)
    return {**validation, "withdrawn": True} if withdrawn else validation
