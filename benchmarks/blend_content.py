"""What unified_blend's content part should read: the report's attributes probe on three choices of it.

Rebuilds the served `unified_blend` basis at the cutoff that froze it, from
the same modality snapshots, weights and β (its model card), with the
content part read

- from every modality, every axis up to its width (the v2 choice),
- from the complete modalities only (the card's `content_modalities`), every axis,
- from the complete modalities, as many axes as served (v3: the version's first snapshot kept those
  holding 99.9% of their variance),

and scores each as the report's attributes task does: a standardised
logistic regression per attribute, trained on products listed by the
evaluation cutoff (the snapshots of that cutoff), scored on products listed
after it (the newest snapshots), mean macro-F1; every modality's own vectors
beside them. Reads snapshots only (no Feast): any home, or a copy of one.

    .venv/bin/python benchmarks/blend_content.py workspace [--shop workspace/shop]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home")
    parser.add_argument("--shop", help="the shop [default: HOME/shop]")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    from prodvec.consumers.attributes import AttributeConfig, probe_features, score_attribute
    from prodvec.consumers.evaluation import Lookup
    from prodvec.core import columns as C
    from prodvec.core.neighbours import served_ref
    from prodvec.core.shop import load_shop
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.pipeline import Schedule
    from prodvec.producers.fusion import concatenate
    from prodvec.producers.unified_blend import CONTENT, UnifiedBlendConfig, two_part_basis

    shop = load_shop(args.shop or f"{args.home}/shop", log=lambda *_: None)
    store = SnapshotStore(args.home)
    newest = served_ref(store, "unified_blend")
    refs = store.snapshots("unified_blend", newest.version)
    frozen = next(r for r in refs if r.card()["fusion"]["selection"].get("frozen_because"))
    fusion = frozen.card()["fusion"]
    order, weights = fusion["modalities"], fusion["weights"]
    ids = shop.products[C.PRODUCT_ID].to_numpy().astype(str)

    def sources(ref) -> dict:
        """The modality snapshots `ref` was built from, by family."""
        return {f: store.read(store.get(i)) for f, i in ref.card()["fusion"]["sources"].items()}

    def blocks(parts: dict):
        """The centred unit-row concatenation of `parts`, and which rows have any."""
        x, present = concatenate(ids, parts, order, {f: parts[f].dim for f in order})
        return x.astype(np.float64), present.any(1)

    frozen_parts = sources(frozen)
    x, keep = blocks(frozen_parts)
    mean = x[keep].mean(0)
    dims = [frozen_parts[f].dim for f in order]
    config = UnifiedBlendConfig()
    content_dims = int(round(config.dim * config.content_share))
    complete = [f in fusion["content_modalities"] for f in order]

    served_content = newest.card()["fusion"]["dim"] - (config.dim - content_dims)

    def basis(complete, count):
        return two_part_basis(x[keep] - mean, dims, [weights[f] for f in order], weights[CONTENT],
                              config.dim - content_dims, count, complete, kept_variance=None)

    # The report's split: products listed by the evaluation cutoff read as served then; later ones as served last.
    cutoff = Schedule().eval_cutoff(shop)
    listed = shop.products[C.CREATED_AT]
    train_ref = max((r for r in refs if r.cutoff <= cutoff), key=lambda r: r.cutoff)
    test_ref = newest
    train_rows = (listed <= cutoff).to_numpy()
    test_rows = ((listed > cutoff) & (listed <= test_ref.cutoff)).to_numpy()
    train_parts, test_parts = sources(train_ref), sources(test_ref)
    (x_train, found_train), (x_test, found_test) = blocks(train_parts), blocks(test_parts)

    def macro_f1(train_vectors, train_found, test_vectors, test_found) -> float:
        # The report's features; a product a basis projects without any block is zeros, as a lookup gives it.
        features = lambda v, f, rows: probe_features(Lookup(v * f[:, None], f))[rows]  # noqa: E731
        a, b = features(train_vectors, train_found, train_rows), features(test_vectors, test_found, test_rows)
        scores = []
        for column in shop.label_columns:
            y_train = shop.products.loc[train_rows, column].reset_index(drop=True)
            y_test = shop.products.loc[test_rows, column].reset_index(drop=True)
            has_train, has_test = y_train.notna().to_numpy(), y_test.notna().to_numpy()
            with threadpool_limits(1):
                result = score_attribute(a[has_train], y_train[has_train], b[has_test], y_test[has_test],
                                         AttributeConfig(), seed=0)
            if result is not None:
                scores.append(result["macro_f1"])
        return float(np.mean(scores))

    print(f"unified_blend v{newest.version}, frozen at {frozen.tag}: weights "
          + ", ".join(f"{f} {w:g}" for f, w in weights.items() if w) + f"; complete: {', '.join(fusion['content_modalities'])}")
    print(f"{len(train_rows.nonzero()[0])} products listed by {cutoff.date()} train, {test_rows.sum()} listed after test")
    rows = []
    for name, chosen, count in (("content over every modality, every axis", [True] * len(order), content_dims),
                                ("content over complete modalities, every axis", complete, content_dims),
                                ("... as many as served (v3: 99.9% of their variance)", complete, served_content)):
        b = basis(chosen, count)
        score = macro_f1((x_train - mean) @ b, found_train, (x_test - mean) @ b, found_test)
        rows.append((name, b.shape[1], score))
    for family in order:
        train_vectors, train_found = train_parts[family].lookup(ids)
        test_vectors, test_found = test_parts[family].lookup(ids)
        rows.append((family, train_vectors.shape[1], macro_f1(train_vectors, train_found, test_vectors, test_found)))
    print(pd.DataFrame(rows, columns=["vectors", "dims", "attributes macro_f1"]).to_string(index=False,
                                                                                            float_format="%.3f"))


if __name__ == "__main__":
    main()
