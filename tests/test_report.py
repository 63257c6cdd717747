"""The evaluation report: its tables and claims, and that a browser shows them."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from prodvec.consumers.evaluation import TaskResult
from prodvec.report.build import fusion_claims
from prodvec.report.render import BEST_MARK, Section, best_flags, to_html, to_markdown
from prodvec.report.tasks import TASKS, TaskOutcome


def test_best_flags_mark_the_best_cell_of_each_column_and_respect_lower_is_better():
    table = pd.DataFrame({"auc": [0.6, 0.7, 0.7], "loss": [0.2, 0.1, 0.3]}, index=["a", "b", "c"])
    flags = best_flags(table, frozenset({"loss"}))
    assert flags["auc"].tolist() == [False, True, True]  # ties are all best
    assert flags["loss"].tolist() == [False, True, False]


def test_markdown_and_html_show_the_same_numbers_with_the_best_marked():
    table = pd.DataFrame({"auc": [0.61234, 0.5], "n": [np.nan, 3.0]}, index=pd.Index(["unified", "random"], name="family"))
    section = Section("Summary", notes=["a note"], tables=[("caption", table, best_flags(table))])
    md, page = to_markdown("T", [section]), to_html("T", [section])
    assert f"| unified | **0.612** {BEST_MARK} | – |" in md
    assert "| random | 0.500 | 3.000 |" in md  # one value in a column: nothing to mark
    assert f'<td class="best" title="best in column">0.612 {BEST_MARK}</td>' in page
    assert "<li>a note</li>" in page


def _outcome(name: str, values: dict[str, float]) -> TaskOutcome:
    task = next(t for t in TASKS if t.name == name)
    table = pd.DataFrame({"m": values})
    return TaskOutcome(task, TaskResult(name, name, table, headline="m"), None, 0.0)


def test_fusion_claim_holds_only_within_five_percent_everywhere_and_best_somewhere():
    families = ["unified", "text_dae", "clicks_bpr"]
    good = [_outcome("attributes", {"unified": 0.70, "text_dae": 0.72, "clicks_bpr": 0.3, "random": 0.1}),
            _outcome("returns", {"unified": 0.66, "text_dae": 0.63, "clicks_bpr": 0.64})]
    assert " holds" in fusion_claims(good, families)[0]
    far = [_outcome("attributes", {"unified": 0.60, "text_dae": 0.72, "clicks_bpr": 0.3}), good[1]]
    claim = fusion_claims(far, families)[0]
    assert "does not hold" in claim and "-16.7%" in claim
    never_best = [_outcome("attributes", {"unified": 0.71, "text_dae": 0.72, "clicks_bpr": 0.3})]
    assert "does not hold" in fusion_claims(never_best, families)[0]


@pytest.fixture(scope="module")
def report(served_home, tmp_path_factory):
    from prodvec.report import build_report

    out = tmp_path_factory.mktemp("reports") / "run"
    return build_report(served_home.shop, served_home.home, out, schedule=served_home.schedule,
                        log=lambda *_: None)


@pytest.mark.integration
def test_report_scores_every_family_on_every_task_the_shop_supports(report, served_home):
    from prodvec.core.snapshots import latest_views
    from prodvec.core.snapshots import SnapshotStore

    families = set(latest_views(SnapshotStore(served_home.home)))
    ran = {o.task.name for o in report.outcomes if o.result is not None}
    assert ran == {t.name for t in TASKS}, [(o.task.name, o.skipped) for o in report.outcomes]
    assert families | {"random"} <= set(report.main_table.index)
    # Chance level stays at chance, and the trained families beat it on attributes.
    attributes = report.main_table["attributes macro_f1"]
    assert attributes["text_dae"] > attributes["random"] + 0.2
    assert report.claims and "unified" in report.claims[0]
    text = report.markdown.read_text()
    assert BEST_MARK in text and "Evaluation cutoff" in text
    assert (report.markdown.parent / "results.json").exists()


@pytest.mark.integration
def test_a_browser_shows_the_tables_and_every_picture(report):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (make test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report.html.resolve().as_uri())
            page.wait_for_load_state("load")
            summary = page.locator("table").first
            assert summary.is_visible()
            assert summary.bounding_box()["height"] > 50
            assert "unified" in summary.inner_text() and BEST_MARK in summary.inner_text()
            images = page.evaluate("Array.from(document.images).map(i => ({src: i.getAttribute('src'), "
                                   "ok: i.complete && i.naturalWidth > 100, h: i.getBoundingClientRect().height}))")
            srcs = {i["src"] for i in images}
            assert {"plots/map.png", "plots/spectrum.png", "plots/returns.png", "plots/drift.png"} <= srcs
            docs = page.locator("a", has_text="index.html").first  # the Data Docs link of the drift section
            assert docs.count() == 1 and (report.html.parent / docs.get_attribute("href")).resolve().exists()
            assert all(i["ok"] and i["h"] > 50 for i in images), images
        finally:
            browser.close()


@pytest.mark.integration
def test_the_report_reuses_the_pipelines_return_model_instead_of_fitting_it_again(served_home):
    from prodvec.consumers.evaluation import EvalContext
    from prodvec.consumers.returns import ReturnTask
    from prodvec.core.snapshots import SnapshotStore, latest_views
    from prodvec.report.build import served_cutoffs
    from prodvec.report.tasks import evaluate_return_task

    shop, schedule = served_home.shop, served_home.schedule
    store = SnapshotStore(served_home.home)
    views = latest_views(store)
    # The task exactly as run_pipeline builds it, with numbers no real fit gives.
    task = ReturnTask(eval_cutoff=schedule.eval_cutoff(shop), train_from=schedule.cutoffs(shop)[0])
    frame = pd.DataFrame({"family": ["no_embedding", *views], "view": ["", *views.values()],
                          "return_auc": 0.5 + 0.01 * np.arange(len(views) + 1), "return_pr_auc": 0.3,
                          "train_orders": 10, "test_orders": 5, "test_rows_with_embedding": 1.0})
    # No Feast store: only a reused frame can answer (the report's own task key must equal the pipeline's).
    ctx = EvalContext(shop, None, views, schedule.eval_cutoff(shop), snapshot_times=served_cutoffs(store),
                      known={task: frame})
    result = evaluate_return_task(ctx)
    assert result.table["return_auc"].tolist() == frame["return_auc"].tolist()
