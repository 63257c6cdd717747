"""Return prediction: will this cart line come back?

Training rows are orders placed before `eval_cutoff - label_days` with the
labels known at `eval_cutoff`; test rows are orders placed after the cutoff
whose return window has closed. Every row gets each embedding as served at
its own order time (Feast point-in-time). Each family is scored with the same
scikit-learn model on baseline features (price, category, the user's earlier
orders and returns, and the size-fit, return-rate and engagement features of
`return_features.py`, all as known before the order) plus that family's
product embedding and the user's profile in the same space (the
`user_<family>_v<N>` Feast view: mean kept and returned products before the
order), entering as cosines and as a stacked score read from those vectors
(`content_scores`); the baseline alone is the no-embedding row. Where the generator's
truth lies beside the shop, the `oracle` row scores the true return
probabilities of the same test lines: the ceiling any model could reach.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg
from joblib import delayed
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score

from prodvec.core import columns as C
from prodvec.consumers.evaluation import fit_side_by_side
from prodvec.consumers.features import historical_embeddings, user_history
from prodvec.consumers.return_features import return_features
from prodvec.consumers.user_profiles import historical_profiles, home_of, profile_rows, write_profiles
from prodvec.core.embeddings import InsufficientData
from prodvec.core.shop.model import Shop
from prodvec.core.shop.truth import ORDERS_TRUTH_FILE, truth_dir

BASELINE = "no_embedding"
ORDER_ROW = "order_row"
# The generator's true return probabilities on the same test lines: the ceiling a model could reach.
ORACLE = "oracle"
# Product folds of the stacked content score, and its ridge penalties in units of the vectors' mean variance
# (chosen on training rows).
FOLDS = 5
RIDGE_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


@dataclass(frozen=True)
class ReturnTask:
    eval_cutoff: pd.Timestamp
    # Returns arrive up to this long after the order: younger labels are not final.
    label_days: int = 30
    train_from: pd.Timestamp | None = None
    seed: int = 0


def split_orders(shop: Shop, task: ReturnTask) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) order lines with label, as a consumer would have known them."""
    window = pd.Timedelta(days=task.label_days)
    known = shop.until(task.eval_cutoff).orders
    train = known[known[C.ORDERED_AT] < task.eval_cutoff - window]
    if task.train_from is not None:
        train = train[train[C.ORDERED_AT] >= task.train_from]
    orders = shop.orders
    test = orders[(orders[C.ORDERED_AT] >= task.eval_cutoff) & (orders[C.ORDERED_AT] <= shop.end - window)]
    # Which line of shop.orders each row is: the user context is computed over all of them.
    return (train.rename_axis(ORDER_ROW).reset_index(), test.rename_axis(ORDER_ROW).reset_index())


def baseline_frame(shop: Shop, rows: pd.DataFrame) -> pd.DataFrame:
    at = rows.rename(columns={C.ORDERED_AT: C.EVENT_TIMESTAMP})
    frame = user_history(shop.orders, at)
    frame["log_price"] = np.log(rows[C.PRICE].to_numpy())
    category = rows[C.PRODUCT_ID].map(shop.products.set_index(C.PRODUCT_ID)[C.CATEGORY]) \
        if C.CATEGORY in shop.products else pd.Series("unknown", index=rows.index)
    # One fixed category list for train and test, so codes mean the same in both.
    known = sorted(shop.products[C.CATEGORY].dropna().unique()) if C.CATEGORY in shop.products else []
    frame[C.CATEGORY] = pd.Categorical(category.fillna("unknown").astype(str).to_numpy(),
                                       categories=[*known, "unknown"])
    return frame


def shop_side_design(shop: Shop, train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) features from the shop's own columns, as known before each order: the no-embedding model's."""
    side = return_features(shop.orders, shop.products,
                           np.r_[train[ORDER_ROW].to_numpy(), test[ORDER_ROW].to_numpy()], shop.events)
    return (pd.concat([baseline_frame(shop, train), side.iloc[:len(train)].set_index(train.index)], axis=1),
            pd.concat([baseline_frame(shop, test), side.iloc[len(train):].set_index(test.index)], axis=1))


def _model(seed: int):
    # Gradient boosting: return propensity is a non-linear function of where a
    # product sits in embedding space (a linear probe loses most of it).
    return HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15, l2_regularization=1.0,
                                          early_stopping=True, validation_fraction=0.15, n_iter_no_change=20,
                                          categorical_features="from_dtype", random_state=seed)


@dataclass(frozen=True)
class FamilyRows:
    """What one family adds to the model's rows (training rows first, then test rows)."""

    product: np.ndarray  # each row's product vector as served at its order time
    found: np.ndarray
    kept: np.ndarray  # the user's profile just before the order
    returned: np.ndarray
    n_kept: np.ndarray


def context_frame(rows: FamilyRows) -> pd.DataFrame:
    """Per order line: how its product sits against the user's profile as it stood just before.

    The profile (mean of the products the user kept, mean of those they sent
    back, how many they kept) comes from the `user_<family>_v<N>` Feast view
    through `get_historical_features`, point-in-time (`evaluate_returns`);
    cosines are NaN where the user has no such history (gradient boosting
    reads NaN as "unknown").
    """
    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        return np.where((norms > 0) & rows.found, (a * b).sum(1) / np.maximum(norms, 1e-12), np.nan)

    product, kept, returned = rows.product, rows.kept, rows.returned
    return pd.DataFrame({"cos_user_kept": cosine(product, kept), "cos_user_returned": cosine(product, returned),
                         "cos_user_kept_minus_returned": cosine(product, kept - returned),
                         "user_kept_before": rows.n_kept})


def product_folds(train_products: pd.Series, test_products: pd.Series, seed: int,
                  k: int = FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """A fold per product: (fold of each training row, fold of each test row; -1 for a product not in training).

    Every line of a product falls in one fold, so a model fitted on the other
    folds has seen none of that product's labels.
    """
    products = pd.Index(pd.unique(train_products.astype(str)))
    fold = np.random.default_rng(seed).integers(0, k, len(products))
    at_test = products.get_indexer(test_products.astype(str))
    return fold[products.get_indexer(train_products.astype(str))], np.where(at_test >= 0, fold[at_test], -1)


def shop_residuals(x_train: pd.DataFrame, y_train: np.ndarray, train_fold: np.ndarray, seed: int,
                   jobs: int | None = 1) -> np.ndarray:
    """What the shop-side model leaves unexplained on each training row: label minus its out-of-product-fold probability.

    `jobs`: processes fitting the folds side by side (`fit_side_by_side`; the same numbers for any count).
    """
    out = np.empty(len(y_train))
    folds = np.unique(train_fold)
    held = [train_fold == f for f in folds]
    fitted = fit_side_by_side((delayed(_fit_predict)(x_train[~h], y_train[~h], x_train[h], seed) for h in held), jobs)
    for h, probability in zip(held, fitted):
        out[h] = y_train[h] - probability
    return out


def _fit_predict(x_train: pd.DataFrame, y_train: np.ndarray, x_test: pd.DataFrame, seed: int) -> np.ndarray:
    return _model(seed).fit(x_train, y_train).predict_proba(x_test)[:, 1]


def content_scores(x_train: np.ndarray, residual: np.ndarray, x_test: np.ndarray, train_fold: np.ndarray,
                   test_fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How much more (or less) often than the shop-side model expects a line comes back, read from its vectors.

    A ridge regression from the vectors to `shop_residuals`: the embedding is
    asked only for what the shop's own columns do not already tell (size fit,
    the product's known return rate), so its weights go to causes that live
    in the product and in how it lines up with the user's history (a visual
    trait, quality, taste). Gradient boosting splits one coordinate at a
    time and, on ~10k rows, learns little from 64-128 raw coordinates; a
    direction found linearly enters it as one feature (stacking).

    Fitted per product fold: a training row is scored by the model that saw
    none of its product's lines, and so is a test row of a product seen in
    training (a product new to training: the mean of the fold models). So
    the score never carries the product's own labels, which the boosted
    model reads from the product's return rate, as of the order's time;
    plain row folds let a product's later returns leak into its earlier rows'
    scores, and the boosted model then trusted them more than they deserve
    on test rows. The ridge penalty is chosen on the training rows alone,
    by the same folds.
    """
    folds = np.unique(train_fold)
    # Each fold's raw sums once; a fit's (all folds but one) centred Gram matrix follows from the totals
    # minus the held-out fold's. The Gram products are the step's cost (rows × width², width 1,920 for a
    # 640-d concatenation): one pass over the rows where refitting on four folds of five cost four.
    parts = {f: _sums(x_train[train_fold == f].astype(np.float64), residual[train_fold == f]) for f in folds}
    total = [sum(part[i] for part in parts.values()) for i in range(5)]
    fits = {}
    for f in folds:
        rows, xs, xx, ys, xy = (t - h for t, h in zip(total, parts[f]))
        mean, y_mean = xs / rows, ys / rows
        gram = xx - rows * np.outer(mean, mean)
        moment = xy - mean * ys  # Σ (x - x̄)(y - ȳ) = Σ x·y - x̄ Σ y
        # Ridge in the vectors' own coordinates, not standardised ones: the penalty then costs least along
        # the directions the embedding spreads products over and most along those it hardly uses, where a
        # per-coordinate rescaling made a near-constant coordinate as cheap to use as a main axis. With ~10k
        # noisy labels for 192 weights that prior matters: on the demo-full home image_siamese's return AUC
        # went from 0.778 to 0.785 (the family that holds the visual trait); over the 14 families the mean
        # moved +0.0005, from -0.0035 (unified_proj) to +0.0066, about the spread of refits.
        # Penalties in units of the mean variance, so the grid fits any width and norm of vectors.
        alphas = np.array(RIDGE_ALPHAS) * max(np.trace(gram) / len(gram), 1e-12)
        # G + aI is positive definite: a Cholesky solve costs half of the general (LU) one, which was most
        # of the ridge's time at width 1,920 (unified_concat).
        weights = np.stack([scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram + a * np.eye(len(gram)),
                                                                           overwrite_a=True, check_finite=False),
                                                   moment, check_finite=False) for a in alphas], axis=1)
        fits[f] = (mean, weights, y_mean)

    def predict(f, x: np.ndarray) -> np.ndarray:
        mean, weights, intercept = fits[f]
        return (x - mean) @ weights + intercept  # one column per penalty

    held_out = np.empty((len(x_train), len(RIDGE_ALPHAS)))
    for f in folds:
        held_out[train_fold == f] = predict(f, x_train[train_fold == f])
    best = int(((held_out - residual[:, None]) ** 2).mean(0).argmin())  # chosen on training rows alone
    test, unseen = np.zeros(len(x_test)), test_fold == -1
    for f in folds:
        test[test_fold == f] = predict(f, x_test[test_fold == f])[:, best]
        test[unseen] += predict(f, x_test[unseen])[:, best] / len(folds)
    return held_out[:, best], test


def _sums(x: np.ndarray, y: np.ndarray) -> tuple:
    """(rows, Σx, Σxxᵀ, Σy, Σx·y): what a centred ridge fit needs of these rows."""
    return len(x), x.sum(0), x.T @ x, y.sum(), x.T @ y


def refresh_profiles(fs, home, orders: pd.DataFrame, views: list[str],
                     embedded: dict[str, tuple[np.ndarray, np.ndarray]], jobs: int | None = 1) -> None:
    """Rebuild the user-profile tables of `views` from every order line and register them with Feast.

    `jobs`: processes building and writing the tables side by side (one per view).
    """
    from prodvec.core import feast_ops  # here, not at the top: the worker processes that import this module skip Feast

    lines = orders[[C.USER_ID, C.ORDERED_AT, C.RETURNED, C.RETURNED_AT]]
    fit_side_by_side((delayed(_write_profile_table)(home, view, lines, *embedded[view]) for view in views), jobs)
    feast_ops.apply(fs, home)


def _write_profile_table(home, view: str, lines: pd.DataFrame, matrix: np.ndarray, found: np.ndarray) -> None:
    write_profiles(home, view, profile_rows(lines, matrix, found), matrix.shape[1])


def _design(base: pd.DataFrame, score: np.ndarray, found: np.ndarray, context: pd.DataFrame) -> pd.DataFrame:
    extra = pd.DataFrame({"embedding_return_score": score, "has_embedding": found.astype(float)}, index=base.index)
    return pd.concat([base, extra, context.set_index(base.index)], axis=1)


def _vectors(rows: FamilyRows) -> np.ndarray:
    """[product; product ⊙ kept; product ⊙ returned]: the product, and how it lines up with the user's history."""
    unit = lambda m: m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # noqa: E731
    p = unit(rows.product)
    return np.hstack([p, p * unit(rows.kept), p * unit(rows.returned)])


def oracle_row(shop: Shop, test: pd.DataFrame) -> dict | None:
    """The generator's true return probability of each test line, where the shop's truth lies beside it."""
    path = truth_dir(shop.root) / ORDERS_TRUTH_FILE
    if not path.exists():
        return None
    truth = pd.read_parquet(path, columns=[C.ORDER_ID, C.PRODUCT_ID, "return_probability"])
    truth = truth.drop_duplicates([C.ORDER_ID, C.PRODUCT_ID]).set_index([C.ORDER_ID, C.PRODUCT_ID])
    keys = pd.MultiIndex.from_frame(test[[C.ORDER_ID, C.PRODUCT_ID]].astype(str))
    probability = truth["return_probability"].reindex(keys).to_numpy()
    known = ~np.isnan(probability)
    if known.mean() < 0.99:  # not this shop's truth (or a shop edited since)
        return None
    y = test[C.RETURNED].to_numpy(bool)[known]
    return {"family": ORACLE, "view": "", "return_auc": roc_auc_score(y, probability[known]),
            "return_pr_auc": average_precision_score(y, probability[known]),
            "train_orders": 0, "test_orders": int(known.sum()), "test_rows_with_embedding": float("nan")}


def evaluate_returns(shop: Shop, fs, views: dict[str, str], task: ReturnTask, home=None,
                     jobs: int | None = None) -> pd.DataFrame:
    """One row per family (and the baseline, and the oracle where truth exists): ROC-AUC and PR-AUC on later orders.

    `views` maps family -> Feast feature view to read; `home` (default: the
    store's own) is where the user-profile tables are written. `jobs`:
    processes fitting the families' models side by side [default: one per
    core]; every Feast read stays in this process, and the numbers are the
    same for any count.
    """
    train, test = split_orders(shop, task)
    if train.empty or test.empty or train[C.RETURNED].nunique() < 2:
        raise InsufficientData(f"return task: {len(train)} train and {len(test)} test orders around "
                               f"{task.eval_cutoff}; need both, with returned and kept lines")
    # Every order line once, as of its own time: the users' histories are built from all of them.
    orders = shop.orders
    at = orders.rename(columns={C.ORDERED_AT: C.EVENT_TIMESTAMP})
    embedded = historical_embeddings(fs, at, list(views.values()))
    refresh_profiles(fs, home if home is not None else home_of(fs), orders, list(views.values()), embedded, jobs)
    base_train, base_test = shop_side_design(shop, train, test)
    y_train, y_test = train[C.RETURNED].to_numpy(bool), test[C.RETURNED].to_numpy(bool)
    at_train, at_test = orders.index.get_indexer(train[ORDER_ROW]), orders.index.get_indexer(test[ORDER_ROW])
    train_fold, test_fold = product_folds(train[C.PRODUCT_ID], test[C.PRODUCT_ID], task.seed)
    residual = shop_residuals(base_train, y_train, train_fold, task.seed, jobs) if views else None
    # The model's rows only (train, then test), point-in-time. A user's returns count only once known at the
    # row's time (the `orders` labels are final ones; the profile rows are stamped at returned_at). One read
    # per family: Feast's frame of a read holds every value as a Python object, so one read of all families
    # cost 0.3 GB more at its peak.
    lines = np.r_[at_train, at_test]
    at_lines = at.iloc[lines]
    profiles = {view: historical_profiles(fs, at_lines, [view])[view] for view in views.values()}

    def family_rows(view: str) -> FamilyRows:
        matrix, found = embedded[view]
        profile = profiles[view]
        return FamilyRows(matrix[lines], found[lines], profile["kept"], profile["returned"],
                          profile["n_bought"] - profile["n_returned"])

    names = [BASELINE, *views]
    # A generator: joblib takes a few calls ahead of the workers, so only those families' rows are copied out
    # at once (all of them: the model's rows times every family's width, three times). joblib may advance it
    # from its callback thread, which is safe because family_rows only slices arrays already read.
    calls = itertools.chain([delayed(fit_and_score)(base_train, base_test, y_train, task.seed)],
                            (delayed(fit_and_score)(base_train, base_test, y_train, task.seed, family_rows(view),
                                                    (residual, train_fold, test_fold))
                             for view in views.values()))
    scores = fit_side_by_side(calls, jobs)
    rows = []
    for family, score, found in zip(names, scores, [None, *(embedded[v][1][at_test] for v in views.values())]):
        rows.append({
            "family": family, "view": views.get(family, ""),
            "return_auc": roc_auc_score(y_test, score),
            "return_pr_auc": average_precision_score(y_test, score),
            "train_orders": len(train), "test_orders": len(test),
            "test_rows_with_embedding": float(found.mean()) if found is not None else float("nan"),
        })
    oracle = oracle_row(shop, test)
    return pd.DataFrame(rows + ([oracle] if oracle else []))


def fit_and_score(base_train: pd.DataFrame, base_test: pd.DataFrame, y_train: np.ndarray, seed: int,
                  family: FamilyRows | None = None, folds: tuple | None = None) -> np.ndarray:
    """The return model on the shop-side features (and one family's, if given): its scores of the test rows.

    `folds`: what every family's content score is fitted with, (shop_residuals of the training rows,
    product fold of each training row, of each test row).
    """
    x_train, x_test = base_train, base_test
    if family is not None:
        n = len(base_train)
        context, vectors = context_frame(family), _vectors(family)
        residual, train_fold, test_fold = folds
        s_train, s_test = content_scores(vectors[:n], residual, vectors[n:], train_fold, test_fold)
        x_train = _design(base_train, s_train, family.found[:n], context.iloc[:n])
        x_test = _design(base_test, s_test, family.found[n:], context.iloc[n:])
    return _model(seed).fit(x_train, y_train).predict_proba(x_test)[:, 1]
