"""The repository's shape holds: data flows down the stages, nothing imports in a circle,
every module imports on its own, and a new producer is one file and one registry line."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Installed name prefix -> folder (pyproject.toml's package-dir).
PACKAGES = {"prodvec.producers": "producers", "prodvec.validation": "validation",
            "prodvec.consumers": "consumers", "prodvec": "prodvec"}

# Lower layers never import higher ones: core <- producers <- validation <- consumers <- the shell.
# The data sources (generator, importers) and feature_repo/ sit on the core alone.
LAYER_OF = {"core": 0, "generator": 1, "importers": 1, "feature_repo": 1, "producers": 1, "validation": 2,
            "consumers": 3, "shell": 4}


def stage(module: str) -> str:
    parts = module.split(".")
    if module == "feature_repo" or parts[0] == "feature_repo":
        return "feature_repo"
    if len(parts) > 1 and parts[1] in ("core", "generator", "importers", "producers", "validation", "consumers"):
        return parts[1]
    return "shell"  # prodvec, prodvec.cli, prodvec.pipeline, prodvec.jobs, prodvec.report.*


def project_modules() -> dict[str, Path]:
    modules = {}
    for prefix, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "prodvec" and len(parts) and parts[0] in ("producers", "validation", "consumers"):
                continue
            modules[name] = path
    modules["feature_repo.repo"] = ROOT / "feature_repo" / "repo.py"
    return modules


def imports(path: Path, module: str, top_level_only: bool) -> set[str]:
    """prodvec modules imported by a file (all of them, or only those run at import time)."""
    tree = ast.parse(path.read_text())
    found = set()

    def visit(node, lazy: bool):
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = True
            if isinstance(child, ast.Import) and not (top_level_only and lazy):
                found.update(a.name for a in child.names if a.name.startswith("prodvec"))
            elif isinstance(child, ast.ImportFrom) and not (top_level_only and lazy):
                base = child.module or ""
                if child.level:  # relative import
                    base = ".".join(module.split(".")[: -child.level] + ([base] if base else []))
                if base.startswith("prodvec"):
                    # "from prodvec.core import columns" imports the submodule prodvec.core.columns;
                    # "from prodvec.core.shop.model import Shop" resolves to the module (see `resolve`).
                    found.update(f"{base}.{a.name}" for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def resolve(name: str, known: set[str]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def test_data_flows_down_the_stages():
    modules = project_modules()
    known = set(modules)
    wrong = []
    for module, path in modules.items():
        for target in imports(path, module, top_level_only=False):
            target = resolve(target, known)
            if target is None or stage(target) == stage(module):
                continue
            if LAYER_OF[stage(target)] >= LAYER_OF[stage(module)]:
                wrong.append(f"{module} ({stage(module)}) imports {target} ({stage(target)})")
    assert not wrong, "\n".join(wrong)


def test_core_imports_no_stage_and_producers_no_consumer():
    modules = project_modules()
    for module, path in modules.items():
        targets = imports(path, module, top_level_only=False)
        if stage(module) == "core":
            assert all(t.startswith("prodvec.core") for t in targets), (module, targets)
        if stage(module) == "producers":
            assert not any(t.startswith(("prodvec.consumers", "prodvec.validation")) for t in targets), (module, targets)


def test_no_import_cycle():
    modules = project_modules()
    known = set(modules)
    graph = {m: {resolve(t, known) for t in imports(p, m, top_level_only=True)} - {None, m}
             for m, p in modules.items()}
    # A package's __init__ is imported before its submodules: that edge is not a cycle.
    cycles, state = [], {}

    def walk(node, trail):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt):] + [nxt]
                if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(cycles)


@pytest.mark.integration
def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(m for m in project_modules() if not m.startswith("feature_repo"))
    script = textwrap.dedent(f"""
        import importlib, sys
        failed = []
        for name in {names!r}:
            try:
                importlib.import_module(name)
            except Exception as error:
                failed.append(f"{{name}}: {{type(error).__name__}}: {{error}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stdout + out.stderr


def test_importing_the_package_changes_no_environment():
    script = ("import os; before = dict(os.environ); import prodvec, prodvec.cli, prodvec.core.producer; "
              "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=True)
    assert out.stdout.strip() == "[]"


TOY_PRODUCER = '''
"""A toy family for the layout test: one-hot category plus seeded noise."""
from dataclasses import dataclass

import numpy as np

from prodvec.core.embeddings import Embeddings
from prodvec.core.producer import Producer, ProducerConfig


@dataclass(frozen=True)
class ToyConfig(ProducerConfig):
    dim: int = 12


class Toy(Producer):
    name = "toy"
    Config = ToyConfig
    min_coverage = 0.99

    def train(self, shop, context):
        rng = np.random.default_rng(self.config.seed)
        names, codes = np.unique(shop.products["category"].astype(str), return_inverse=True)
        centres = rng.normal(size=(len(names), self.config.dim))
        vectors = centres[codes] + 0.3 * rng.normal(size=(len(codes), self.config.dim))
        self.card_extras_ = {"toy": {"categories": int(len(centres))}}
        return Embeddings(shop.products["product_id"].to_numpy(), vectors)
'''


@pytest.mark.integration
def test_a_new_producer_is_one_file_and_one_registry_line(tmp_path, monkeypatch):
    """Written in a temporary module, registered by one line: `prodvec run` trains, gates and serves it."""
    from click.testing import CliRunner

    from prodvec.cli import main
    from prodvec.core import feast_ops
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.generator import GeneratorConfig, generate_shop
    from prodvec.producers import PRODUCERS

    (tmp_path / "toy_family.py").write_text(TOY_PRODUCER)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(PRODUCERS, "toy", "toy_family:Toy")  # the one registry line

    shop_dir, home = tmp_path / "shop", tmp_path / "home"
    generate_shop(shop_dir, tmp_path / "shop_truth", GeneratorConfig(n_products=200, seed=5), progress=False)
    result = CliRunner().invoke(main, ["run", "--shop", str(shop_dir), "--home", str(home), "--family", "toy",
                                       "--first", "56", "--every", "56", "--quiet", "--no-report"])
    assert result.exit_code == 0, result.output
    assert "product_toy_v1" in result.output

    store = SnapshotStore(home)
    served = store.promoted("toy", 1)
    assert served, "the gate passed it and it was promoted"
    card = store.get(f"toy/v1/{served[-1]}").card()
    assert card["validation"]["success"] and card["toy"]["categories"] > 1, "its card extras reached the card"
    fs = feast_ops.open_store(home)
    product = store.read(store.get(f"toy/v1/{served[-1]}")).ids[0]
    row = fs.get_online_features(features=["product_toy_v1:embedding"], entity_rows=[{"product_id": product}])
    assert len(row.to_dict()["embedding"][0]) == 12, "Feast serves it online"
