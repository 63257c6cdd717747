"""Which return drivers each family encodes: linear probes against the generator's truth.

The default shop's returns have known causes (prodvec/generator/behaviour.py):
the brand's fit offset (sizing), the product's hidden quality (seen only in
behaviour), a visual trait (painted only into the image) and the product's
style (what a user's taste is compared with). For each served family a
cross-validated linear probe from the product vector, as served at the
evaluation cutoff, to each driver: R² for the continuous ones (style: mean R²
over its coordinates), ROC-AUC for the visual trait. A family that misses a
driver shows as R² ≈ 0 / AUC ≈ 0.5, so a return model built on it cannot
learn that cause from the product vector. Only where the shop's truth lies
beside it (a generated shop); skipped otherwise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prodvec.core import columns as C
from prodvec.core.shop.truth import PRODUCTS_TRUTH_FILE, truth_dir
from prodvec.consumers.evaluation import EvalContext, TaskResult, fit_side_by_side

FOLDS = 5
CONTINUOUS = ("fit_offset", "quality")


def probe_drivers(x: np.ndarray, truth: pd.DataFrame, seed: int = 0) -> dict[str, float]:
    """Cross-validated R²/AUC of linear probes from `x` (rows aligned with `truth`) to each driver."""
    folds = KFold(FOLDS, shuffle=True, random_state=seed)
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    out = {}
    continuous = [name for name in CONTINUOUS if name in truth]
    if continuous:
        # One fit for all of them, each with its own penalty (the same numbers as one fit per driver): the
        # ridge's decomposition of the vectors is most of its cost, ~1 s a fit at 1,920 dimensions.
        per_target = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13), alpha_per_target=True))
        y = truth[continuous].to_numpy(float)
        predicted = cross_val_predict(per_target, x, y, cv=folds)
        for k, name in enumerate(continuous):
            out[f"{name}_r2"] = r2_score(y[:, k], predicted[:, k])
    if "visual_trait" in truth and truth["visual_trait"].nunique() == 2:
        y = truth["visual_trait"].to_numpy(bool)
        logistic = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500))
        scores = cross_val_predict(logistic, x, y, cv=folds, method="predict_proba")[:, 1]
        out["visual_trait_auc"] = roc_auc_score(y, scores)
    if "style" in truth:
        style = np.stack(truth["style"].to_numpy()).astype(float)
        predicted = cross_val_predict(ridge, x, style, cv=folds)
        out["style_r2"] = float(np.mean([r2_score(style[:, k], predicted[:, k]) for k in range(style.shape[1])]))
    return out


def evaluate_return_drivers(ctx: EvalContext) -> TaskResult:
    path = truth_dir(ctx.shop.root) / PRODUCTS_TRUTH_FILE
    if not path.exists():
        raise ValueError(f"no generator truth beside the shop ({path}): the return drivers are unknown")
    truth = pd.read_parquet(path).set_index(C.PRODUCT_ID)
    catalog = ctx.catalog_at(ctx.eval_cutoff)
    catalog = catalog[catalog[C.PRODUCT_ID].isin(truth.index)].reset_index(drop=True)
    if len(catalog) < 10 * FOLDS:
        raise ValueError(f"{len(catalog)} products with truth at {ctx.eval_cutoff}: too few to probe")
    rows = truth.loc[catalog[C.PRODUCT_ID]].reset_index()
    lookups = ctx.embeddings(catalog)
    # Products without a vector in this family are probed as the zero vector (what a consumer gets), flagged.
    probes = fit_side_by_side(delayed(probe_drivers)(np.hstack([lookup.matrix, lookup.found[:, None].astype(np.float32)]),
                                                     rows, ctx.seed) for lookup in lookups.values())
    table = {family: {**probe, "coverage": float(lookup.found.mean())}
             for (family, lookup), probe in zip(lookups.items(), probes)}
    frame = pd.DataFrame.from_dict(table, orient="index")
    notes = [f"{len(catalog)} products listed by {ctx.eval_cutoff.date()}, each with the vector served then; "
             f"{FOLDS}-fold cross-validated linear probes (ridge for R², logistic regression for AUC) to the "
             "generator's true drivers of returns.",
             "fit_offset: how small the brand runs (text and brand name can tell); quality: hidden, only behaviour "
             "reveals it; visual_trait: only the image shows it; style: the 8-d style vector a user's taste is "
             "compared with (mean R² over coordinates). R² ≤ 0 / AUC ≈ 0.5: the family does not encode it."]
    return TaskResult("return_drivers", "Return drivers encoded by each family (generated shop only)", frame,
                      headline="quality_r2", notes=notes)
