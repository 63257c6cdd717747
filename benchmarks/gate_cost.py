"""Seconds the validation gate costs per snapshot, for this gate or an older one.

    python benchmarks/gate_cost.py --shop workspace/shop --home HOME [--family text_dae] [--old DIR]

Validates the family's newest snapshot three times (after one warm-up
validation of its oldest, which pays for the GX import and context) and prints
the median. `--old DIR` loads `prodvec.validation` from DIR instead, e.g. the
gate before issue 12: `git archive f93a5e6 validation | tar -x -C /tmp/old` then
`--old /tmp/old/validation`. Both update the snapshots' model cards: use a
copy of a home.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shop", required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--family", default="text_dae")
    parser.add_argument("--old", default=None)
    args = parser.parse_args()
    import prodvec

    if args.old:
        module = types.ModuleType("prodvec.validation")
        module.__path__ = [args.old]
        sys.modules["prodvec.validation"] = module
        prodvec.validation = module
    from prodvec.core.shop import load_shop
    from prodvec.core.snapshots import SnapshotStore
    from prodvec.producers import make_producer
    import prodvec.validation.verdict as verdict

    shop = load_shop(args.shop, log=lambda *_: None)
    store = SnapshotStore(Path(args.home))
    refs = store.snapshots(args.family)
    producer = make_producer(args.family)
    started = time.perf_counter()
    verdict.validate_snapshot(store, refs[0], shop, producer)
    first = time.perf_counter() - started
    times = []
    for _ in range(3):
        started = time.perf_counter()
        validation = verdict.validate_snapshot(store, refs[-1], shop, producer)
        times.append(time.perf_counter() - started)
    print(f"{'old' if args.old else 'new'} gate: first validation in the process {first:.1f}s (GX import + context); "
          f"then per snapshot median {np.median(times):.2f}s ({', '.join(f'{x:.2f}' for x in times)}); "
          f"{validation['summary'][:100]}")


if __name__ == "__main__":
    main()
