"""SIGKILL real `prodvec` commands at random moments, then check what a user relies on.

Each round copies a prepared home, starts the real command (`prodvec produce`,
`validate`, `promote`, `materialize`) in a separate process, kills it with
SIGKILL after a random delay drawn from its measured duration, checks the
invariants on what it left, runs the same command again to completion and
checks the invariants plus the expected end state.

The processes are forked from a forkserver that imported prodvec, torch,
Great Expectations and Feast once: a cold `prodvec` start costs tens of
seconds on a loaded machine, and what is killed is the command, not Python's
start-up. Used by tests/test_kill.py (a few rounds) and
benchmarks/reliability_bench.py (many).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodvec.core import columns as C
from prodvec.core.snapshots import SERVED_TAGS_KEY, TMP_PREFIX, SnapshotStore

FAST = ("--set", "epochs=3", "--set", "dim=8", "--set", "hidden=16")
FAMILY = "text_dae"
PRELOAD = ["prodvec.cli", "prodvec.jobs", "prodvec.validation.verdict", "prodvec.core.feast_ops", "feast", "torch"]

_ctx = None


def _context():
    global _ctx
    if _ctx is None:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        _ctx = multiprocessing.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    return _ctx


def _child(argv: list[str], out_path: str) -> None:
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from prodvec.cli import main

    main(args=argv, prog_name="prodvec")


@dataclass
class Ran:
    code: int | None  # None: killed
    output: str
    seconds: float


def start_command(argv: list[str], out: Path):
    """Start `prodvec argv` in its own process (forked from the warm forkserver); returns the Process."""
    process = _context().Process(target=_child, args=([str(a) for a in argv], str(out)))
    process.start()
    return process


def run_command(argv: list[str], out: Path, kill_after: float | None = None) -> Ran:
    """Run `prodvec argv` in its own process; SIGKILL it after `kill_after` seconds if still running."""
    started = time.perf_counter()
    process = start_command(argv, out)
    process.join(kill_after)
    killed = False
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        killed = True
    seconds = time.perf_counter() - started
    return Ran(None if killed else process.exitcode, out.read_text() if out.exists() else "", seconds)


# -- invariants ------------------------------------------------------------------------------------------------
def snapshot_inventory(home: Path) -> dict[str, str]:
    """snapshot id -> created_at of every visible snapshot (for "nothing lost, nothing retrained")."""
    store = SnapshotStore(home)
    return {ref.id: json.loads(ref.card_file.read_text())["created_at"]
            for family in store.families() for ref in store.snapshots(family)}


def violations(home: Path, *, validated: bool = True) -> list[str]:
    """What is wrong with a home right after a kill (before any recovery runs)."""
    store = SnapshotStore(home)
    found = []
    for family in store.families():
        for ref in store.snapshots(family):
            try:
                card = json.loads(ref.card_file.read_text())
                pq.read_metadata(ref.data_file)
            except (ValueError, OSError, pa.ArrowException) as error:
                found.append(f"{ref.id}: visible but unreadable: {error}")
                continue
            if validated and "validation" not in card:
                found.append(f"{ref.id}: visible without a verdict")
        for number in store._version_numbers(family):
            promoted = store.promoted(family, number)
            passing = {r.tag for r in store.snapshots(family, number)
                       if (json.loads(r.card_file.read_text()).get("validation") or {}).get("success")}
            table = store.served_table(family, number)
            served_by_table = []
            if table.exists():
                meta = pq.read_schema(table).metadata or {}
                served_by_table = json.loads(meta.get(SERVED_TAGS_KEY, b"[]"))
            for tag in set(served_by_table):
                if tag not in passing:
                    found.append(f"{family}/v{number}/{tag}: in the served table without a passing verdict")
            for tag in promoted:
                if tag not in passing and tag in served_by_table:
                    found.append(f"{family}/v{number}/{tag}: listed as served without a passing verdict")
    return found


def leftovers(home: Path) -> list[str]:
    return [str(p.relative_to(home)) for p in home.rglob(f"{TMP_PREFIX}*")]


def online_vectors(home: Path, product_ids: list[str], view: str) -> dict[str, np.ndarray | None]:
    from prodvec.core import feast_ops

    fs = feast_ops.open_store(home)
    rows = fs.get_online_features(features=[f"{view}:{C.EMBEDDING}"],
                                  entity_rows=[{C.PRODUCT_ID: p} for p in product_ids]).to_dict()
    return {p: (None if v is None else np.asarray(v, np.float32)) for p, v in zip(rows[C.PRODUCT_ID], rows[C.EMBEDDING])}


# -- scenarios ---------------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    argv: Callable[[Path], list[str]]
    # The end state after the completing run; returns what is wrong.
    expect: Callable[[Path], list[str]]
    base: Path  # the prepared home each round starts from
    ok_codes: tuple[int, ...] = (0,)


@dataclass
class Tally:
    tried: Counter = field(default_factory=Counter)
    killed: Counter = field(default_factory=Counter)
    lost: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seen: dict[str, Counter] = field(default_factory=dict)


def _served(home: Path) -> list[str]:
    return SnapshotStore(home).promoted(FAMILY, 1)


def build_scenarios(shop_dir: Path, work: Path) -> list[Scenario]:
    """Prepare one base home per command (trained once) and the expected end state of each."""
    from prodvec.core.shop import load_shop
    from prodvec.jobs import produce

    shop = load_shop(shop_dir, log=lambda m: None)
    start = shop.products[C.CREATED_AT].min().normalize()
    cutoffs = [start + pd.Timedelta(days=d) for d in (60, 120)]
    cut_args = [a for c in cutoffs for a in ("--cutoff", c.isoformat())]

    empty = work / "base_empty"
    empty.mkdir(parents=True, exist_ok=True)

    trained = work / "base_trained"
    store = SnapshotStore(trained)
    runs = produce(shop, FAMILY, cutoffs, store, overrides={"epochs": 3, "dim": 8, "hidden": 16},
                   keep_existing=True, progress=False, log=lambda m: None)
    first, second = (r.ref for r in runs)
    for ref in (first, second):  # the gate on a tiny shop may be strict; these two stand for passing ones
        store.update_card(ref, validation={**ref.card()["validation"], "success": True, "summary": "PASSED"})

    # promote: the older is served, the newer passed and waits.
    promote_base = work / "base_promote"
    shutil.copytree(trained, promote_base)
    SnapshotStore(promote_base).promote(first.__class__(first.family, first.version, first.cutoff,
                                                        promote_base / first.path.relative_to(trained)))

    # validate: both served; the newer's data went bad after it was promoted (its verdict still says passed).
    validate_base = work / "base_validate"
    shutil.copytree(trained, validate_base)
    vstore = SnapshotStore(validate_base)
    for ref in vstore.snapshots(FAMILY):
        vstore.promote(ref)
    newer = vstore.snapshots(FAMILY)[-1]
    data = pq.read_table(newer.data_file)
    dim = data.schema.field(C.EMBEDDING).type.list_size
    nan = pa.FixedSizeListArray.from_arrays(pa.array(np.full(len(data) * dim, np.nan, np.float32)), dim)
    pq.write_table(data.set_column(1, C.EMBEDDING, nan), newer.data_file)

    # materialize: both served and online, then the newer rolled back: the online store must fall back.
    from prodvec.core import feast_ops

    mat_base = work / "base_materialize"
    shutil.copytree(trained, mat_base)
    mstore = SnapshotStore(mat_base)
    for ref in mstore.snapshots(FAMILY):
        mstore.promote(ref)
    fs = feast_ops.open_store(mat_base)
    feast_ops.apply(fs, mat_base)
    feast_ops.materialize(fs, mat_base)
    mstore.rollback(FAMILY, 1)
    older_vectors = mstore.read(mstore.snapshots(FAMILY)[0])
    sample = list(older_vectors.ids[:20])

    def expect_produce(home):
        store = SnapshotStore(home)
        refs = store.snapshots(FAMILY)
        wrong = [] if [r.cutoff for r in refs] == cutoffs else [f"snapshots {[r.id for r in refs]}"]
        passing = [r.tag for r in refs if r.card()["validation"]["success"]]
        return wrong + ([] if _served(home) == passing else [f"served {_served(home)} != passing {passing}"])

    def expect_promote(home):
        return [] if _served(home) == [first.tag, second.tag] else [f"served {_served(home)}"]

    def expect_validate(home):
        store = SnapshotStore(home)
        ok = _served(home) == [first.tag] and not store.get(f"{FAMILY}/v1/{second.tag}").card()["validation"]["success"]
        return [] if ok else [f"served {_served(home)} after the newer failed"]

    def expect_materialize(home):
        online = online_vectors(home, sample, f"product_{FAMILY}_v1")
        wrong = [p for p, v in online.items()
                 if v is None or not np.allclose(v, older_vectors.vectors[list(older_vectors.ids).index(p)])]
        return [f"{len(wrong)} products online do not serve the rolled-back-to snapshot"] if wrong else []

    return [
        Scenario("produce", lambda h: ["produce", FAMILY, "--shop", shop_dir, "--home", h, *cut_args, *FAST,
                                       "--promote"], expect_produce, empty, ok_codes=(0, 3)),
        Scenario("validate", lambda h: ["validate", f"{FAMILY}/v1/{second.tag}", "--shop", shop_dir, "--home", h],
                 expect_validate, validate_base, ok_codes=(3,)),
        Scenario("promote", lambda h: ["promote", f"{FAMILY}/v1/{second.tag}", "--home", h],
                 expect_promote, promote_base),
        Scenario("materialize", lambda h: ["materialize", "--home", h], expect_materialize, mat_base),
    ]


def _fresh(base: Path, home: Path) -> Path:
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(base, home)
    # The Feast registry records absolute paths of the served tables: point it at this copy.
    if (home / "feast" / "registry.db").exists():
        from prodvec.core import feast_ops

        feast_ops.apply(feast_ops.open_store(home), home)
    return home


def kill_rounds(scenarios: list[Scenario], work: Path, rounds: int, seed: int = 0, log=print) -> Tally:
    """`rounds` kills per scenario at random moments; every invariant broken is one entry in tally.problems."""
    rng = np.random.default_rng(seed)
    tally = Tally()
    run_command(["--help"], work / "out.txt")  # start the forkserver (imports) outside every measured run
    for scenario in scenarios:
        home = work / f"home_{scenario.name}"
        reference = run_command(scenario.argv(_fresh(scenario.base, home)), work / "out.txt")
        if reference.code not in scenario.ok_codes:
            tally.problems.append(f"{scenario.name}: the uninterrupted run failed ({reference.code}): "
                                  f"{reference.output[-500:]}")
            continue
        tally.problems += [f"{scenario.name} (uninterrupted): {p}" for p in scenario.expect(home)]
        seen = tally.seen.setdefault(scenario.name, Counter())
        for k in range(rounds):
            _fresh(scenario.base, home)
            before = snapshot_inventory(home)
            delay = float(rng.uniform(0.0, reference.seconds))
            killed = run_command(scenario.argv(home), work / "out.txt", kill_after=delay)
            tally.tried[scenario.name] += 1
            tally.killed[scenario.name] += killed.code is None
            where = f"{scenario.name} round {k} (killed at {delay:.2f}s of {reference.seconds:.2f}s)"
            problems = [f"{where}: {p}" for p in violations(home)]
            after_kill = snapshot_inventory(home)
            lost = [i for i, created in before.items() if after_kill.get(i) != created]
            rerun = run_command(scenario.argv(home), work / "out.txt")
            if rerun.code not in scenario.ok_codes:
                problems.append(f"{where}: the re-run failed ({rerun.code}): {rerun.output[-300:]}")
            else:
                problems += [f"{where}, re-run: {p}" for p in violations(home) + scenario.expect(home)]
                problems += [f"{where}, re-run: temporary file left: {p}" for p in leftovers(home)]
                final = snapshot_inventory(home)
                lost += [i for i, created in after_kill.items() if final.get(i) != created]
            if lost:
                tally.lost[scenario.name] += len(set(lost))
                problems.append(f"{where}: lost or retrained {sorted(set(lost))}")
            seen[_what_user_saw(killed, rerun)] += 1
            tally.problems += problems
            log(f"{where}: {'ok' if not problems else problems}")
    return tally


def _what_user_saw(killed: Ran, rerun: Ran) -> str:
    if killed.code is not None:
        return f"finished before the kill (exit {killed.code})"
    recovered = [line for line in rerun.output.splitlines() if line.startswith("recovered:")]
    return ("re-run: " + recovered[0].split(":", 1)[1].strip().split(";")[0][:70]) if recovered else \
        "re-run completed, nothing to recover"
