"""CPU seconds of mrnet's cold first snapshot on a shop, for several `epochs`, measured in one process.

A cold start is the only step `epochs` changes (a retrain continues the stored
network with `warm_epochs`), so this is what a change of `epochs` costs a
pipeline run (`prodvec run`'s default schedule: the first cutoff):

    nice -n 19 .venv/bin/python benchmarks/mrnet_cold_cost.py SHOP [--epochs 12 24]
"""

from __future__ import annotations

import argparse
import resource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop")
    parser.add_argument("--epochs", type=int, nargs="+", default=[12, 24])
    args = parser.parse_args()

    from prodvec.core.producer import TrainContext
    from prodvec.core.shop import load_shop
    from prodvec.pipeline import Schedule
    from prodvec.producers import make_producer

    shop = load_shop(args.shop, log=lambda _: None)
    cutoff = Schedule().cutoffs(shop)[0]
    part = shop.until(cutoff)
    for epochs in args.epochs:
        producer = make_producer("mrnet", {"epochs": epochs})
        before = resource.getrusage(resource.RUSAGE_SELF)
        producer.train(part, TrainContext(cutoff=cutoff, progress=False))
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        print(f"first cutoff {cutoff.date()}: {len(part.products)} products, epochs {epochs}: {cpu:.1f} s CPU "
              f"(output: {producer.card_extras_['mrnet']['output']})", flush=True)


if __name__ == "__main__":
    main()
