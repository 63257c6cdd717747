"""`prodvec real-report`: every data set found under the data folder, one report, swapped in whole."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prodvec.report.output import PLOTS, staged, write_json, write_pages
from prodvec.report.real import myntra, online_retail, yoochoose
from prodvec.report.real.common import DEFAULT_DATA, MYNTRA, RETAIL, YOOCHOOSE, DatasetOutcome, RealConfig
from prodvec.report.render import Section, no_flags

# Data set name -> (its folder under the data folder, the module whose `run` reports on it), in report order.
DATASETS = {MYNTRA: ("myntra", myntra), YOOCHOOSE: ("yoochoose", yoochoose), RETAIL: ("online_retail", online_retail)}
TITLE = "Product embeddings on real data (Myntra, YooChoose, Online Retail)"


@dataclass
class RealReport:
    markdown: Path
    html: Path
    outcomes: dict[str, DatasetOutcome]
    seconds: float

    @property
    def claims(self) -> list[str]:
        return [claim for outcome in self.outcomes.values() for claim in outcome.claims]


def build_real_report(data: str | Path = DEFAULT_DATA, out_dir: str | Path = "reports/real",
                      work: str | Path = "workspace/real", config: RealConfig = RealConfig(),
                      log=print) -> RealReport:
    """Run every data set found under `data`, write `out_dir`/report.md and report.html (swapped in whole)."""
    started = time.perf_counter()
    data, out_dir, work = Path(data), Path(out_dir), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    with staged(out_dir) as staging:
        outcomes = {}
        for name, (folder, module) in DATASETS.items():
            source = data / folder
            if not source.is_dir():
                outcomes[name] = DatasetOutcome(name, skipped=f"{source} not found")
                log(f"real-report: {name}: skipped: {source} not found")
                continue
            log(f"real-report: {name} from {source}")
            begun = time.perf_counter()
            outcomes[name] = module.run(source, work, staging / PLOTS, config, log)
            outcomes[name].seconds = time.perf_counter() - begun
            log(f"real-report: {name} done in {outcomes[name].seconds:.0f}s")
        seconds = time.perf_counter() - started
        sections = [_summary(outcomes, data, seconds, config)]
        sections += [s for outcome in outcomes.values() for s in outcome.sections]
        write_pages(staging, TITLE, sections)
        payload = {name: {"seconds": round(o.seconds, 1), "skipped": o.skipped, "claims": o.claims, **o.numbers}
                   for name, o in outcomes.items()}
        write_json(staging / "results.json", {"seconds": round(seconds, 1), "data": str(data), "datasets": payload})
    return RealReport(out_dir / "report.md", out_dir / "report.html", outcomes, seconds)


def _summary(outcomes: dict[str, DatasetOutcome], data: Path, seconds: float, config: RealConfig) -> Section:
    claims = [claim for o in outcomes.values() for claim in o.claims]
    skipped = [f"{name}: skipped — {o.skipped}" for name, o in outcomes.items() if o.skipped]
    table = pd.DataFrame({"status": ["skipped" if o.skipped else "ran" for o in outcomes.values()],
                          "seconds": [round(o.seconds) for o in outcomes.values()]},
                         index=pd.Index(list(outcomes), name="dataset"))
    notes = [*claims, *skipped,
             f"Data: {data} (public samples, see its README). Whole run {seconds:.0f}s "
             f"({seconds / 60:.1f} min); seed {config.seed}. Reproduce with `make real-report` "
             "(`prodvec real-report --data ../shared/data --out reports/real`)."]
    return Section("Summary", notes=notes, tables=[("Data sets", table, no_flags(table))])
