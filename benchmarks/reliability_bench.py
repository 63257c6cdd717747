"""`make bench` (reliability part): the fault table of RELIABILITY.md, from real runs.

Fault classes, each tried many times on real processes, files and a real
redis-server; for each: times tried, what was lost (snapshots lost or
retrained, rows missing online: must be 0) and what the user saw.

    .venv/bin/python benchmarks/reliability_bench.py [--kills 10] [--fuzz 200] [--fuzz-train 15]
                                                     [--online 3] [--out reports/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harnesses live with the tests


def _common(counter: Counter, n: int = 2) -> str:
    return "; ".join(f"{text} ({count}×)" for text, count in counter.most_common(n))


def kills(rounds: int, work: Path, log) -> list[dict]:
    from tests.kill_harness import build_scenarios, kill_rounds
    from tests.shop_factory import make_shop

    shop_dir = make_shop(work, n_products=40)
    tally = kill_rounds(build_scenarios(shop_dir, work / "kill"), work / "kill", rounds, seed=1, log=log)
    rows = []
    for name in ("produce", "validate", "promote", "materialize"):
        rows.append({"fault": f"SIGKILL `prodvec {name}` at a random moment, then re-run it",
                     "tried": tally.tried[name], "killed mid-run": tally.killed[name],
                     "lost": tally.lost[name],
                     "broken invariants": sum(p.startswith(name) for p in tally.problems),
                     "what the user saw": _common(tally.seen.get(name, Counter()))})
    for problem in tally.problems:
        log(f"PROBLEM: {problem}")
    return rows


def fuzz(examples: int, train: int, work: Path, log) -> list[dict]:
    rows = []
    for n, with_training in ((examples, False), (train, True)):
        if n == 0:
            continue
        tally = work / f"fuzz_{with_training}.jsonl"
        env = {**os.environ, "PRODVEC_FUZZ_EXAMPLES": str(n), "PRODVEC_FUZZ_TALLY": str(tally),
               "PRODVEC_FUZZ_RANDOM": "1", "PRODVEC_FUZZ_TRAIN": "1" if with_training else "0"}
        ran = subprocess.run([sys.executable, "-m", "pytest", "tests/test_fuzz_shop.py", "-q", "-p", "no:cacheprovider",
                              "-x"], cwd=ROOT, env=env, capture_output=True, text=True)
        outcomes = [json.loads(line) for line in tally.read_text().splitlines()] if tally.exists() else []
        verdicts = Counter(o["verdict"] for o in outcomes)
        shown = Counter(o["line"].split(":")[1].strip() if o["line"].startswith("Error:") else o["line"][:60]
                        for o in outcomes if o["line"])
        log(ran.stdout[-2000:])
        rows.append({"fault": "hypothesis-mutated shop files, `prodvec check`" +
                              (" then `produce text_dae` and `image_siamese` on accepted ones" if with_training else ""),
                     "tried": len(outcomes), "killed mid-run": "-", "lost": 0,
                     "broken invariants": 0 if ran.returncode == 0 else "FAILED (see log)",
                     "what the user saw": f"{verdicts['accepted']} accepted, {verdicts['rejected']} rejected in one "
                                          f"line naming file/column/row, 0 tracebacks; most frequent: "
                                          f"{_common(shown, 3)}"})
    return rows


def online(times: int, work: Path, log) -> list[dict]:
    from tests.test_online_faults import (Redis, test_a_redis_restart_mid_load_loses_nothing,
                                          test_reads_during_materialize_never_mix_two_snapshots,
                                          test_redis_down_during_materialize_is_a_clear_error_and_a_rerun_completes)

    cases = [("redis-server killed mid-`materialize`, back after the command gave up; re-run",
              test_redis_down_during_materialize_is_a_clear_error_and_a_rerun_completes),
             ("redis-server restarted (empty) mid-`materialize`", test_a_redis_restart_mid_load_loses_nothing),
             ("`get_online_features` in a loop while `materialize` loads a new snapshot",
              test_reads_during_materialize_never_mix_two_snapshots)]
    rows = []
    for label, case in cases:
        ok, seen = 0, Counter()
        for k in range(times):
            tmp = work / f"online_{case.__name__}_{k}"
            tmp.mkdir(parents=True)
            server = Redis(tmp)
            server.start()
            try:
                case(tmp, server)
                ok += 1
            except AssertionError as error:
                log(f"PROBLEM {label}: {error}")
            finally:
                if server.process.poll() is None:
                    server.kill()
            for out in ("out.txt", "o.txt", "out2.txt"):
                if (tmp / out).exists():
                    text = (tmp / out).read_text()
                    errors = [line for line in text.splitlines() if line.startswith("Error:")]
                    seen[(errors[0][:150] if errors else text.strip().splitlines()[-1][:80]) if text.strip() else ""] += 1
                    break
        rows.append({"fault": label, "tried": times, "killed mid-run": "-", "lost": times - ok,
                     "broken invariants": times - ok, "what the user saw": _common(seen)})
    return rows


def concurrency(times: int, work: Path, log) -> list[dict]:
    """Two `prodvec produce` of one family at once; and of two families at once."""
    from tests.kill_harness import FAST, run_command, start_command
    from tests.shop_factory import make_shop

    shop = make_shop(work / "conc", n_products=40)
    same, other, seen = 0, 0, Counter()
    for k in range(times):
        home = work / f"conc_home_{k}"
        first = start_command(["produce", "text_dae", "--shop", shop, "--home", home, *FAST], work / "c1.txt")
        deadline = time.time() + 120
        while not (home / "snapshots" / "text_dae" / ".lock").exists() and time.time() < deadline:
            time.sleep(0.02)
        second = run_command(["produce", "text_dae", "--shop", shop, "--home", home, *FAST], work / "c2.txt")
        third = run_command(["produce", "clicks_bpr", "--shop", shop, "--home", home, "--set", "epochs=2"], work / "c3.txt")
        first.join()
        from prodvec.core.snapshots import SnapshotStore

        store = SnapshotStore(home)
        refused = second.code == 1 and "locked by PID" in second.output
        same += refused and first.exitcode in (0, 3) and len(store.snapshots("text_dae")) == 1
        other += third.code in (0, 3) and len(store.snapshots("clicks_bpr")) == 1
        seen[next((line[:130] for line in second.output.splitlines() if line.startswith("Error:")), "no error")] += 1
    return [{"fault": "two `prodvec produce` of one family on one home at once", "tried": times,
             "killed mid-run": "-", "lost": times - same, "broken invariants": times - same,
             "what the user saw": f"the second: {_common(seen, 1)}"},
            {"fault": "`prodvec produce` of another family during it", "tried": times, "killed mid-run": "-",
             "lost": times - other, "broken invariants": times - other, "what the user saw": "both finish"}]


def damaged(times: int, work: Path, log) -> list[dict]:
    """Truncate a model card, an embeddings file or the Feast registry at a random length."""
    import numpy as np
    import pandas as pd
    from click.testing import CliRunner

    from prodvec.cli import main
    from prodvec.core.embeddings import Embeddings
    from prodvec.core.snapshots import SnapshotStore

    rng = np.random.default_rng(0)
    rows = []
    for what, command in (("model_card.json", "snapshots"), ("embeddings.parquet", "promote"),
                          ("registry.db", "materialize")):
        clear, seen = 0, Counter()
        for k in range(times):
            home = work / f"damaged_{what}_{k}"
            store = SnapshotStore(home)
            ref = store.write("fam", 1, pd.Timestamp("2025-01-01", tz="UTC"),
                              Embeddings(np.array(["a", "b"]), np.ones((2, 4), np.float32)), {})
            store.update_card(ref, validation={"success": True, "summary": "PASSED"})
            if what == "registry.db":
                store.promote(ref)
                CliRunner().invoke(main, ["apply", "--home", str(home)])
                path = home / "feast" / "registry.db"
            else:
                path = ref.path / what
            data = path.read_bytes()
            path.write_bytes(data[: int(rng.integers(0, len(data)))])
            args = {"snapshots": ["snapshots"], "promote": ["promote", ref.id], "materialize": ["materialize"]}[command]
            result = CliRunner().invoke(main, [*args, "--home", str(home)])
            one_line = isinstance(result.exception, (SystemExit, type(None)))
            errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
            clear += one_line and (result.exit_code == 0 or (len(errors) == 1 and what in errors[0]))
            seen[(errors[0].split(": ", 2)[-1][:110] if errors else f"exit {result.exit_code}") if one_line
                 else f"TRACEBACK {result.exception!r}"[:110]] += 1
        rows.append({"fault": f"{what} truncated at a random length, then `prodvec {command}`", "tried": times,
                     "killed mid-run": "-", "lost": 0, "broken invariants": times - clear,
                     "what the user saw": _common(seen, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per command")
    parser.add_argument("--fuzz", type=int, default=200, help="fuzzed shops checked")
    parser.add_argument("--fuzz-train", type=int, default=15, help="fuzzed shops checked and trained on")
    parser.add_argument("--online", type=int, default=3, help="repetitions of each online fault")
    parser.add_argument("--other", type=int, default=5, help="repetitions of lock and damaged-home faults")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "reliability.md")
    args = parser.parse_args()
    import pandas as pd

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    work = Path(tempfile.mkdtemp(prefix="prodvec-reliability-"))
    started = time.perf_counter()
    log_lines = []

    def log(message: str) -> None:
        log_lines.append(message)
        print(message, flush=True)

    try:
        rows = ((kills(args.kills, work, log) if args.kills else [])
                + (concurrency(args.other, work, log) + damaged(args.other * 2, work, log) if args.other else [])
                + (online(args.online, work, log) if args.online else [])
                + fuzz(args.fuzz, args.fuzz_train, work, log))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = pd.DataFrame(rows)
    command = " ".join(["benchmarks/reliability_bench.py", *sys.argv[1:]])
    lines = ["# prodvec reliability run", "", f"command: `.venv/bin/python {command}`; "
             f"{time.perf_counter() - started:.0f}s", "", table.to_markdown(index=False), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    (args.out.with_suffix(".log")).write_text("\n".join(log_lines))
    print("\n".join(lines))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
