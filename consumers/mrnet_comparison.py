"""The MRNet-Product2Vec comparison: embeddings against a TF-IDF bag of title words.

Biswas et al. (2017) judge a product embedding by classification tasks the
network was *not* trained on, each embedding used as a dense feature and
compared with a sparse TF-IDF bag of title words, under logistic regression
(LR) and random forest (RF), every number reported relative to TF-IDF-LR.
This module runs that comparison on any shop, through Feast:

- **Tasks**: the category and every side-information column
  (`Shop.side_info_columns`), minus the classification tasks the `mrnet`
  producer trains on (`mrnet_tasks`' rule under `MRNetConfig`'s defaults,
  never a list of names); `tasks=` chooses them
  explicitly. When that leaves nothing (the generated shop: MRNet trains on
  every column it has), all columns are scored and the notes say plainly
  that they are MRNet training tasks, so the mrnet rows are favoured.
- **Split**: the time split of the other consumers. Training products are
  those listed by the evaluation cutoff, embedded as served at the cutoff;
  test products are listed after it (cold start), embedded as served at the
  shop's end. A product without an embedding at its time is scored from a
  zero vector rather than dropped, so every family sees the same test set;
  `covered_rel` repeats the comparison on the test products the family has
  a vector for (TF-IDF-LR scored on those same products), which separates
  how good a family's vectors are from how many products it has one for.
- **Features**: each family's vector (LR on standardised features, RF as
  is); the TF-IDF of title words, its vocabulary fitted on the training
  titles (LR on the sparse matrix, RF as is); `random` vectors as chance.
- **Scores**: macro-F1 and accuracy; classes with fewer than
  `min_class_train` training products are left out of training and test.
  The headline is the **relative change** of macro-F1 against TF-IDF-LR on
  the same task and test rows, ``f1 / f1_tfidf_lr - 1`` (0 = as good,
  +0.10 = 10% better), averaged over tasks, as the paper reports it.
- **Small training set**: the same tasks with only `small_train` randomly
  drawn training products (the paper's low-data tasks); classes too rare in
  the sample leave its test set too.
- **Unseen population**: the test products whose title is least like any
  training title: per test title, the largest TF-IDF cosine to a training
  title (the vocabulary includes the test titles, so a word no training
  title has counts as a difference), and the lowest `unseen_quantile` (a
  quartile) of test products by it. Chosen over a split by title clusters
  because it leaves the time split alone: the training set, the models and
  the snapshots each product reads are those of the main comparison, and
  only which cold-start test products count changes, so unseen_rel differs
  from rel_tfidf_lr by the population alone. A cluster split would have to
  move products listed before the cutoff into the test set and products
  listed after it into training, breaking the point-in-time setting every
  other number of the report keeps; a quantile also always yields a test
  set of known size, where clusters of templated titles come out uneven.

`compare_on_tasks` is the core on plain arrays (titles, labels, dense
features), reusable on data that never went through Feast (e.g. a real
catalogue with its own columns); `summarise` and `per_task_tables` turn its
scores into the report's tables; `evaluate_mrnet_comparison` is the wrapper
for one evaluation run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from joblib import delayed
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from prodvec.core import columns as C
from prodvec.consumers.attributes import split_products
from prodvec.consumers.evaluation import RANDOM, EvalContext, TaskResult, fit_side_by_side
from prodvec.core.shop.model import Shop

TFIDF = "tfidf"
TFIDF_LR, TFIDF_RF = "tfidf_lr", "tfidf_rf"
LR, RF = "lr", "rf"
FULL, SMALL, UNSEEN, COVERED = "full", "small_train", "unseen", "covered"
SETTINGS = (FULL, SMALL, UNSEEN)
REFERENCE = (TFIDF, LR)


@dataclass(frozen=True)
class MRNetComparisonConfig:
    # None: the category and side-information columns MRNet did not train on (all of them if none is left).
    tasks: tuple[str, ...] | None = None
    exclude_mrnet_tasks: bool = True
    # A class needs this many training products to be learned; rarer ones leave training and test.
    min_class_train: int = 5
    # Training products of the small-training-set variant, drawn per task from the labelled ones.
    small_train: int = 200
    # Share of test products, least like any training title, that form the unseen population.
    unseen_quantile: float = 0.25
    # Inverse regularisation of the LRs: standardised dense features take the usual C=1; TF-IDF
    # rows have unit length (entries ~0.3), so the same penalty would flatten them.
    lr_c: float = 1.0
    tfidf_lr_c: float = 10.0
    lr_max_iter: int = 1000
    # The forests dominate the run time (118 of the task's 145 CPU seconds on the demo-full home with 50
    # trees). 25 trees, each grown on half the training products, cost an eighth of 100 full bootstraps;
    # against 50 trees the families' forest rel_tfidf_lr moved by -0.028 to +0.008 on that home (the
    # logistic regressions, the headline, are untouched) and the task's CPU fell from 145 s to 85 s.
    # The real-data report keeps 50 (`RealReportConfig.rf_trees`).
    rf_trees: int = 25
    rf_min_leaf: int = 2
    rf_max_samples: float = 0.5
    seed: int = 0


# -- the core, on plain arrays -------------------------------------------------------------------


def title_tfidf(train_titles: pd.Series, test_titles: pd.Series, vocabulary_from_test: bool = False):
    """TF-IDF of title words, fitted on the training titles (and the test titles too if asked): sparse, unit rows."""
    from prodvec.producers.mrnet_tasks import TOKEN

    train_titles = pd.Series(train_titles).fillna("").astype(str)
    test_titles = pd.Series(test_titles).fillna("").astype(str)
    vectoriser = TfidfVectorizer(token_pattern=TOKEN.pattern, lowercase=True, dtype=np.float32)
    vectoriser.fit(pd.concat([train_titles, test_titles]) if vocabulary_from_test else train_titles)
    return vectoriser.transform(train_titles), vectoriser.transform(test_titles)


def title_novelty(train_titles: pd.Series, test_titles: pd.Series) -> np.ndarray:
    """Per test title, its largest TF-IDF cosine to any training title.

    The vocabulary includes the test titles' words, so a word no training
    title has makes a title less similar instead of being ignored. Labels
    play no part: this only picks a population.
    """
    return nearest_train_similarity(*title_tfidf(train_titles, test_titles, vocabulary_from_test=True))


def nearest_train_similarity(train_tfidf, test_tfidf, batch: int = 2048) -> np.ndarray:
    """Per test row, the largest cosine to any training row (rows are unit or zero, so a dot product)."""
    out = np.zeros(test_tfidf.shape[0], dtype=np.float64)
    train_t = train_tfidf.T.tocsc()
    for start in range(0, test_tfidf.shape[0], batch):
        block = (test_tfidf[start : start + batch] @ train_t).tocsr()
        if block.shape[1]:
            out[start : start + batch] = block.max(axis=1).toarray().ravel()
    return out


def unseen_population(similarity: np.ndarray, quantile: float) -> np.ndarray:
    """Mask of test rows in the lowest `quantile` of nearest-training-title similarity."""
    if len(similarity) == 0:
        return np.zeros(0, dtype=bool)
    return similarity <= np.quantile(similarity, quantile)


def _classifier(features: str, model: str, config: MRNetComparisonConfig):
    if model == RF:
        # One thread: the cores are used by fitting several models at once (`compare_on_tasks`), and a
        # forest's threads add up the trees' votes in whatever order they finish, so a tie could go
        # either way from one run to the next.
        return RandomForestClassifier(n_estimators=config.rf_trees, min_samples_leaf=config.rf_min_leaf,
                                      max_samples=config.rf_max_samples, n_jobs=1, random_state=config.seed)
    if features == TFIDF:  # sparse: scaling would turn rare words into huge features
        return LogisticRegression(C=config.tfidf_lr_c, max_iter=config.lr_max_iter)
    return make_pipeline(StandardScaler(), LogisticRegression(C=config.lr_c, max_iter=config.lr_max_iter))


def _fit_predict(features: str, model: str, config: MRNetComparisonConfig, x_train, y_train: np.ndarray,
                 x_test) -> np.ndarray:
    classifier = _classifier(features, model, config)
    classifier.fit(x_train, y_train)
    return classifier.predict(x_test)


def _scores(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {"macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
            "accuracy": accuracy_score(truth, predicted)}


def _learnable(labels: pd.Series, rows: np.ndarray, min_count: int) -> np.ndarray:
    counts = labels.iloc[rows].value_counts()
    return counts.index[counts >= min_count].to_numpy()


def learnable_rows(y_train: pd.Series, y_test: pd.Series, rows: np.ndarray,
                   min_count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes, training rows, mask of scored test rows) for fitting on `rows`: classes with at least
    `min_count` of them, the rows of those classes, the test rows labelled with one (never an unlabelled one)."""
    classes = _learnable(y_train, rows, min_count)
    return classes, rows[y_train.iloc[rows].isin(classes).to_numpy()], y_test.isin(classes).to_numpy()


def compare_on_tasks(train_titles: pd.Series, test_titles: pd.Series, train_labels: pd.DataFrame,
                     test_labels: pd.DataFrame, features: dict[str, tuple[np.ndarray, np.ndarray]],
                     config: MRNetComparisonConfig = MRNetComparisonConfig(),
                     covered: dict[str, np.ndarray] | None = None, jobs: int | None = None) -> pd.DataFrame:
    """Scores of every (task, features, model, setting): one row each, with the relative change to TF-IDF-LR.

    `train_labels`/`test_labels` hold one column per task (null = unlabelled),
    rows aligned with the titles; `features` maps a family to its dense
    (train, test) matrices; TF-IDF of the titles is added as `tfidf`.
    `covered` (optional) maps a family to the test rows it really has a
    vector for: those get a `covered` setting, scored with TF-IDF-LR on the
    same rows. Columns: task, features, model, setting, macro_f1, accuracy,
    rel_tfidf_lr, classes, train, test.
    `jobs`: processes fitting the (features, model) pairs of a task side by
    side [default: one per core], each model on one thread; the scores are
    the same for any `jobs`.
    """
    train_labels, test_labels = train_labels.reset_index(drop=True), test_labels.reset_index(drop=True)
    train_tfidf, test_tfidf = title_tfidf(train_titles, test_titles)
    unseen = unseen_population(title_novelty(train_titles, test_titles), config.unseen_quantile)
    matrices = {TFIDF: (train_tfidf, test_tfidf), **features}
    rng = np.random.default_rng([config.seed, 11])
    rows = []
    # BLAS threads fighting over a shared 2-core machine made one small LR fit 30x slower.
    with threadpool_limits(1):
        for task in train_labels.columns:
            y_train, y_test = train_labels[task], test_labels[task]
            truth = y_test.to_numpy()
            labelled = np.flatnonzero(y_train.notna().to_numpy())
            small = np.sort(rng.choice(labelled, size=min(config.small_train, len(labelled)), replace=False))
            for fit_setting, fit_rows in ((FULL, labelled), (SMALL, small)):
                classes, fit_rows, scored = learnable_rows(y_train, y_test, fit_rows, config.min_class_train)
                if len(classes) < 2 or not scored.any():
                    continue
                pairs = [(name, model) for name in matrices for model in (LR, RF)]
                fitted = fit_side_by_side((delayed(_fit_predict)(name, model, config, matrices[name][0][fit_rows],
                                                                 y_train.iloc[fit_rows].to_numpy(),
                                                                 matrices[name][1][scored])
                                           for name, model in pairs), jobs)
                predictions = {}
                for key, predicted in zip(pairs, fitted):
                    predictions[key] = np.empty(len(truth), dtype=object)
                    predictions[key][scored] = predicted
                evaluations = [(fit_setting, scored, list(predictions))]
                if fit_setting == FULL:
                    evaluations.append((UNSEEN, scored & unseen, list(predictions)))
                    evaluations += [(COVERED, scored & np.asarray(found, bool), [(f, LR), (f, RF)])
                                    for f, found in (covered or {}).items() if f in features]
                for setting, mask, keys in evaluations:
                    if not mask.any():
                        continue
                    reference = _scores(truth[mask], predictions[REFERENCE][mask])["macro_f1"]
                    for name, model in keys:
                        got = _scores(truth[mask], predictions[name, model][mask])
                        rows.append({"task": task, "features": name, "model": model, "setting": setting, **got,
                                     "rel_tfidf_lr": got["macro_f1"] / reference - 1 if reference > 0 else np.nan,
                                     "classes": len(classes), "train": len(fit_rows), "test": int(mask.sum())})
    return pd.DataFrame(rows, columns=["task", "features", "model", "setting", "macro_f1", "accuracy",
                                       "rel_tfidf_lr", "classes", "train", "test"])


def row_label(features: str, model: str) -> str | None:
    """The report row a (features, model) pair feeds: a family's row is its LR, TF-IDF has one row per model."""
    if features == TFIDF:
        return f"{TFIDF}_{model}"
    return features if model == LR else None


def summarise(scores: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """One row per family (its LR) plus tfidf_lr and tfidf_rf; task means of every setting.

    Columns: macro_f1, accuracy, rel_tfidf_lr (headline), small_train_rel,
    unseen_rel, covered_rel (the test products the family has a vector
    for, TF-IDF-LR on the same ones), and each family's random forest as
    macro_f1_rf and rel_tfidf_lr_rf (empty for the TF-IDF rows, which are
    one model each).
    """
    metrics = ["macro_f1", "accuracy", "rel_tfidf_lr"]
    means = scores.groupby(["features", "model", "setting"], sort=False)[metrics].mean()
    records = {}
    for (features, model), part in means.groupby(level=["features", "model"], sort=False):
        part = part.droplevel(["features", "model"])

        def get(setting: str, metric: str, part: pd.DataFrame = part) -> float:
            return part[metric].get(setting, np.nan)

        label = row_label(features, model)
        if label is not None:
            records.setdefault(label, {}).update({
                "macro_f1": get(FULL, "macro_f1"), "accuracy": get(FULL, "accuracy"),
                "rel_tfidf_lr": get(FULL, "rel_tfidf_lr"), "small_train_rel": get(SMALL, "rel_tfidf_lr"),
                "unseen_rel": get(UNSEEN, "rel_tfidf_lr"), "covered_rel": get(COVERED, "rel_tfidf_lr")})
        if features != TFIDF and model == RF:
            records.setdefault(features, {}).update({"macro_f1_rf": get(FULL, "macro_f1"),
                                                     "rel_tfidf_lr_rf": get(FULL, "rel_tfidf_lr")})
    table = pd.DataFrame.from_dict(records, orient="index")
    columns = ["macro_f1", "accuracy", "rel_tfidf_lr", "small_train_rel", "unseen_rel", "covered_rel",
               "macro_f1_rf", "rel_tfidf_lr_rf"]
    table = table.reindex(columns=columns)
    if order is not None:
        table = table.reindex([r for r in order if r in table.index] + [r for r in table.index if r not in order])
    table.index.name = "family"
    return table


def per_task_tables(scores: pd.DataFrame, order: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Task × row tables: relative change in every setting, the forests', and plain macro-F1."""
    labelled = scores.assign(row=[row_label(f, m) for f, m in zip(scores["features"], scores["model"])])

    def pivot(frame: pd.DataFrame, setting: str, value: str) -> pd.DataFrame:
        table = frame[frame["setting"] == setting].pivot(index="task", columns="row", values=value)
        if order is not None:
            table = table.reindex(columns=[r for r in order if r in table.columns])
        table.columns.name = None
        return table

    rows, forests = labelled[labelled["row"].notna()], labelled[(labelled["model"] == RF)]
    forests = forests.assign(row=forests["features"].where(forests["features"] != TFIDF, TFIDF_RF))
    return {
        "relative change of macro-F1 vs TF-IDF-LR, per task (families: LR)": pivot(rows, FULL, "rel_tfidf_lr"),
        "relative change vs TF-IDF-LR, per task, random forest on every feature": pivot(forests, FULL, "rel_tfidf_lr"),
        "relative change vs TF-IDF-LR, small training set (LR)": pivot(rows, SMALL, "rel_tfidf_lr"),
        "relative change vs TF-IDF-LR, unseen population (LR)": pivot(rows, UNSEEN, "rel_tfidf_lr"),
        "relative change vs TF-IDF-LR, test products with a vector (LR)": pivot(rows, COVERED, "rel_tfidf_lr"),
        "macro-F1 per task (all test products)": pivot(rows, FULL, "macro_f1"),
    }


# -- one evaluation run through Feast -----------------------------------------------------------------


def mrnet_training_tasks(shop: Shop) -> set[str]:
    """The classification columns the `mrnet` producer (default config) learns from on this shop."""
    from prodvec.producers.mrnet import MRNetConfig
    from prodvec.producers.mrnet_tasks import classification_task

    cfg = MRNetConfig()
    products = shop.products
    if C.TITLE in products:  # mrnet reads only titled products
        products = products[products[C.TITLE].fillna("").str.strip().str.len() > 0]
    candidates = shop.label_columns
    # The rule mrnet_tasks.build_tasks applies to these columns; only its classification tasks matter here.
    return {column for column in candidates
            if classification_task(column, products[column], cfg.min_labelled, cfg.min_class_size) is not None}


def choose_tasks(shop: Shop, config: MRNetComparisonConfig) -> tuple[list[str], set[str], bool]:
    """(tasks, those MRNet trained on, whether all were kept for want of unseen ones)."""
    trained = mrnet_training_tasks(shop)
    if config.tasks is not None:
        return list(config.tasks), trained, False
    candidates = shop.label_columns
    if not config.exclude_mrnet_tasks:
        return candidates, trained, False
    unseen = [c for c in candidates if c not in trained]
    return (unseen, trained, False) if unseen else (candidates, trained, True)


def evaluate_mrnet_comparison(ctx: EvalContext, config: MRNetComparisonConfig = MRNetComparisonConfig()) -> TaskResult:
    started = time.perf_counter()
    if C.TITLE not in ctx.shop.products:
        raise ValueError("MRNet comparison: the shop has no titles, so there is no TF-IDF baseline to compare with")
    tasks, trained, fallback = choose_tasks(ctx.shop, config)
    missing = [t for t in tasks if t not in ctx.shop.products]
    if missing or not tasks:
        raise ValueError(f"MRNet comparison: tasks {missing or tasks} are not product columns of the shop")
    train, test = split_products(ctx)
    if train.empty or test.empty:
        raise ValueError(f"MRNet comparison: {len(train)} products listed by and {len(test)} after "
                         f"{ctx.eval_cutoff}; need both")
    train_emb, test_emb = ctx.embeddings(train), ctx.embeddings(test)
    families = [f for f in train_emb if train_emb[f].matrix.shape[1] > 0]
    features = {f: (train_emb[f].matrix, test_emb[f].matrix) for f in families}
    covered = {f: test_emb[f].found for f in families if f != RANDOM}
    scores = compare_on_tasks(train[C.TITLE], test[C.TITLE], train[tasks], test[tasks], features, config, covered)
    if scores.empty:
        raise ValueError(f"MRNet comparison: no task among {tasks} has two learnable classes and test products")

    order = [*ctx.families, RANDOM, TFIDF_LR, TFIDF_RF]
    table = summarise(scores, order)
    vocabulary = title_tfidf(train[C.TITLE], test[C.TITLE])[0].shape[1]
    table["dim"] = pd.Series({**{f: train_emb[f].matrix.shape[1] for f in families},
                              TFIDF_LR: vocabulary, TFIDF_RF: vocabulary}).reindex(table.index)
    table["test_coverage"] = pd.Series({f: float(test_emb[f].found.mean()) for f in families}).reindex(table.index)
    extra = per_task_tables(scores, order)
    extra["tasks"] = _task_table(scores, trained)

    scored_tasks = list(dict.fromkeys(scores["task"]))
    unseen_n = int(scores.loc[scores["setting"] == UNSEEN, "test"].max()) if (scores["setting"] == UNSEEN).any() \
        else 0
    fits = int(scores["setting"].isin([FULL, SMALL]).sum())
    notes = [
        (f"{len(train)} products listed by {ctx.eval_cutoff.date()} (embedded as served then) train the "
         f"classifiers; {len(test)} listed after it and by the newest snapshot ({ctx.newest_snapshot.date()}; "
         f"cold start, embedded as served then) are "
         "the test set."),
        ("Headline rel_tfidf_lr: relative change of macro-F1 against a logistic regression on the TF-IDF of title "
         "words on the same task and test products, f1 / f1_tfidf_lr - 1 (0 = as good, +0.10 = 10% better), "
         "averaged over tasks. Family rows are a logistic regression on the standardised embedding; their random "
         "forest is in macro_f1_rf / rel_tfidf_lr_rf; tfidf_rf is the forest on TF-IDF."),
        _tasks_note(scored_tasks, trained, fallback, left_out=config.tasks is None and config.exclude_mrnet_tasks),
        (f"small_train_rel: the same, each task trained on {config.small_train} random labelled training products. "
         f"unseen_rel: the same models scored only on the {config.unseen_quantile:.0%} of test products whose "
         f"title is least like any training title (largest TF-IDF cosine to one); up to {unseen_n} products. "
         "covered_rel: only the test products the family has a vector for, TF-IDF-LR scored on the same ones."),
        f"Classes with fewer than {config.min_class_train} training products are left out of training and test.",
        _coverage_note(families, train_emb, test_emb),
        f"{fits} classifiers fitted in {time.perf_counter() - started:.0f} s.",
    ]
    skipped = [f for f in train_emb if f not in families]
    if skipped:
        notes.append(f"Not in the Feast store, so not scored: {', '.join(skipped)}.")
    return TaskResult("mrnet_comparison", "MRNet comparison: embeddings vs TF-IDF of titles (relative to TF-IDF-LR)",
                      table, headline="rel_tfidf_lr", notes=notes, extra=extra)


def _tasks_note(tasks: list[str], trained: set[str], fallback: bool, left_out: bool) -> str:
    seen = [t for t in tasks if t in trained]
    if fallback:
        return (f"Tasks: {', '.join(tasks)}. MRNet trains on every one of them (no column of this shop is left for "
                "an unseen task), so all are scored: unlike in the paper, the mrnet rows (and fusions over mrnet) "
                "are favoured here.")
    if left_out:
        return (f"Tasks: {', '.join(tasks)}, the columns MRNet does not train on (its training tasks "
                f"{', '.join(sorted(trained)) or 'none'} are left out).")
    return f"Tasks: {', '.join(tasks)}; MRNet trains on {', '.join(seen) if seen else 'none'} of them."


def _coverage_note(families: list[str], train_emb: dict, test_emb: dict) -> str:
    gaps = [f"{f}: {int((~test_emb[f].found).sum())} of {len(test_emb[f].found)} test and "
            f"{int((~train_emb[f].found).sum())} of {len(train_emb[f].found)} training products"
            for f in families if f != RANDOM and not (test_emb[f].found.all() and train_emb[f].found.all())]
    where = ("Products without an embedding at their time: " + "; ".join(gaps) + ". ") if gaps else \
        "Every family has an embedding for every product. "
    return where + "A product without one is scored from a zero vector, not dropped: every family has one test set."


def _task_table(scores: pd.DataFrame, trained: set[str]) -> pd.DataFrame:
    reference = scores[(scores["features"] == TFIDF) & (scores["model"] == LR)]
    sizes = reference.pivot(index="task", columns="setting", values="test").reindex(columns=list(SETTINGS))
    full = reference[reference["setting"] == FULL].set_index("task")
    small = reference[reference["setting"] == SMALL].set_index("task")
    out = pd.DataFrame({"classes": full["classes"], "train": full["train"], "test": sizes[FULL],
                        "small_train": small["train"], "small_train_classes": small["classes"],
                        "unseen_test": sizes[UNSEEN]})
    out["mrnet_trained"] = [t in trained for t in out.index]
    return out
