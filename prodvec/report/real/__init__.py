"""`prodvec real-report`: the whole pipeline on the public samples in ../shared/data (issue 6).

    prodvec real-report --data ../shared/data --out reports/real      # or: make real-report

One module per data set (`myntra`, `yoochoose`, `online_retail`), each with
`run(source, work, plots, config, log)`: it imports its sample into a shop
under `work/` (the `prodvec import` importers), runs the real pipeline or the
consumer the data supports, and returns report sections and claim sentences
computed from its numbers; `common` holds what they share, `build` runs the
ones whose folder is present (an absent one is skipped with one line) and
writes the report with the evaluation report's renderer and output staging
(`prodvec.report.render`, `prodvec.report.output`), so it reads like
`prodvec report`.

Sizes are capped by `RealConfig` (the tests run the same code on a few
hundred products).
"""

from prodvec.report.real.build import DATASETS, RealReport, build_real_report
from prodvec.report.real.common import DEFAULT_DATA, MYNTRA, RETAIL, YOOCHOOSE, DatasetOutcome, RealConfig
from prodvec.report.real.myntra import (catalogue_sample, chance_claim, fusion_claim, held_out, hide_labels,
                                        label_reader_note, mrnet_claim, nearest, neighbour_agreement,
                                        neighbour_grid)
from prodvec.report.real.online_retail import RETAIL_FILE
from prodvec.report.real.yoochoose import sample_sessions

__all__ = ["DATASETS", "DEFAULT_DATA", "MYNTRA", "RETAIL", "RETAIL_FILE", "YOOCHOOSE", "DatasetOutcome", "RealConfig",
           "RealReport", "build_real_report", "catalogue_sample", "chance_claim", "fusion_claim", "held_out",
           "hide_labels", "label_reader_note", "mrnet_claim", "nearest", "neighbour_agreement", "neighbour_grid",
           "sample_sessions"]
