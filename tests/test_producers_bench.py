"""benchmarks/producers_bench.py: the per-10k table, resuming from kept stage results, fusions after backbones.

The bench's numbers are read as ratios between sizes; these tests pin the
arithmetic and the bookkeeping behind them, not any timing.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "producers_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("producers_bench", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scale_table_gives_seconds_per_10k_and_the_ratio_to_the_smallest_size(bench):
    rows = [{"stage": "a", "products": 10_000, "wall_s": 10.0, "cpu_s": 8.0, "peak_rss_mb": 1.0},
            {"stage": "b", "products": 10_000, "wall_s": 4.0, "cpu_s": 2.0, "peak_rss_mb": 1.0},
            {"stage": "a", "products": 100_000, "wall_s": 150.0, "cpu_s": 80.0, "peak_rss_mb": 1.0},
            {"stage": "b", "products": 100_000, "note": "timed out after 60 s"}]
    table = bench.scale_table(rows).set_index(["stage", "products"])
    assert table.loc[("a", 100_000), "wall_per_10k"] == pytest.approx(15.0)
    assert table.loc[("a", 100_000), "wall_×smallest"] == pytest.approx(1.5)
    assert table.loc[("a", 100_000), "cpu_×smallest"] == pytest.approx(1.0)  # linear in CPU, not in wall
    assert table.loc[("b", 10_000), "cpu_×smallest"] == pytest.approx(1.0)
    assert np.isnan(table.loc[("b", 100_000), "cpu_×smallest"])  # a timed-out stage has no ratio
    assert list(table.columns).index("wall_s") < list(table.columns).index("note")


def test_scale_table_refers_to_the_smallest_size_a_stage_finished(bench):
    rows = [{"stage": "a", "products": 10_000, "note": "timed out after 60 s"},
            {"stage": "a", "products": 100_000, "wall_s": 20.0, "cpu_s": 20.0, "peak_rss_mb": 1.0},
            {"stage": "a", "products": 1_000_000, "wall_s": 400.0, "cpu_s": 300.0, "peak_rss_mb": 1.0}]
    table = bench.scale_table(rows).set_index("products")
    assert table.loc[1_000_000, "cpu_×smallest"] == pytest.approx(1.5)


def test_a_kept_stage_result_is_reused_and_a_timed_out_one_is_run_again(bench, tmp_path, monkeypatch):
    calls = []

    def child(stage, *args, timeout=None):
        calls.append((stage, args))
        return {"wall_s": 1.0, "ran": len(calls)}

    monkeypatch.setattr(bench, "child", child)
    results = tmp_path / "results"
    first = bench.cached_child(results, "x-10", "produce", "shop", "home", "x", log=lambda m: None)
    again = bench.cached_child(results, "x-10", "produce", "shop", "home", "x", log=lambda m: None)
    assert first == again == {"wall_s": 1.0, "ran": 1} and len(calls) == 1
    (results / "y-10.json").write_text(json.dumps({"timed_out": True, "child_wall_s": 5.0}))
    retried = bench.cached_child(results, "y-10", "produce", "shop", "home", "y", log=lambda m: None)
    assert retried["ran"] == 2
    assert json.loads((results / "y-10.json").read_text())["ran"] == 2


def test_run_trains_the_fusions_after_the_backbones_and_records_a_timeout(bench, tmp_path, monkeypatch):
    order, seen_args = [], []

    def cached_child(results, name, stage, *args, timeout=None, kept_only=False, log=print):
        seen_args.append(args)
        order.append(name)
        if stage == "generate":
            return {"events": 1, "child_wall_s": 1.0, "child_cpu_s": 1.0, "peak_rss_mb": 1.0}
        if name.startswith("text_dae"):
            return {"timed_out": True, "child_wall_s": 7.0, "child_cpu_s": 7.0}
        return {"wall_s": 2.0, "train_s": 1.0, "cpu_s": 2.0, "passed": not name.startswith("unified_concat"),
                "skipped": None, "peak_rss_mb": 1.0}

    monkeypatch.setattr(bench, "cached_child", cached_child)
    result = bench.run([10], tmp_path, ["unified", "text_dae", "unified_concat", "clicks_bpr"], bpr=False,
                       overrides={"clicks_bpr": {"epochs": "2"}}, log=lambda m: None)
    assert order == ["generate-10", "text_dae-10", "clicks_bpr-10", "unified-10", "unified_concat-10"]
    timed_out = [r for r in result["scale"] if r["stage"] == "text_dae"]
    assert timed_out == [{"stage": "text_dae", "products": 10, "note": "timed out after 7 s"}]
    # A family's parameters reach its own stage only, as JSON for the child's command line.
    assert json.loads(seen_args[2][-1]) == {"epochs": "2"} and json.loads(seen_args[1][-1]) == {}
    notes = {r["stage"]: r.get("note") for r in result["scale"]}
    assert notes["unified_concat"] == "failed the gate" and notes["unified"] == ""
    assert bench.section(result)[0] == "## Producers at scale"


def test_kept_only_tables_what_is_kept_and_runs_nothing(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "child", lambda *a, **k: pytest.fail("kept_only ran a stage"))
    results = tmp_path / "results"
    results.mkdir()
    (results / "generate-10.json").write_text(json.dumps({"child_wall_s": 3.0, "child_cpu_s": 2.0, "peak_rss_mb": 1}))
    (results / "prod2vec-10.json").write_text(json.dumps(
        {"wall_s": 4.0, "train_s": 3.0, "cpu_s": 2.5, "passed": True, "skipped": None, "peak_rss_mb": 1}))
    result = bench.run([10, 20], tmp_path, ["prod2vec", "text_dae"], bpr=False, kept_only=True, log=lambda m: None)
    assert [(r["stage"], r["products"]) for r in result["scale"]] == [("generate", 10), ("prod2vec", 10)]


def test_bpr_stage_trains_both_sides_on_the_same_pairs_from_the_same_events(bench, served_home):
    # implicit's side derives its matrix from the training events on its own clock, as the producer does;
    # both must then see the same pairs, and each must rank held-out products above chance.
    sides = {which: bench._bpr(str(served_home.shop_dir), "1", which) for which in ("implicit", "producer")}
    for result in sides.values():  # every training pair, and none of the held-out ones
        assert result["trained_pairs"] == result["pairs"] > 0, result
    assert sides["implicit"]["products"] == sides["producer"]["products"]
    for result in sides.values():
        assert result["auc"] > 0.6, result
