"""Writing a report folder: built beside its destination and swapped in whole.

Both reports (`prodvec report`, `prodvec real-report`) write here, so a run
that fails half-way leaves the previous report as it was and a reader never
sees a folder with some pages or plots missing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.report.render import Section, to_html, to_markdown

PLOTS = "plots"


@contextmanager
def staged(out_dir: str | Path) -> Iterator[Path]:
    """A fresh folder (with `plots/`) beside `out_dir`; it replaces `out_dir` when the block ends without error.

    On an error the staging folder is removed and `out_dir` is untouched.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would keep the report from colleagues on a shared machine
    try:
        (staging / PLOTS).mkdir()
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_pages(folder: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """report.md and report.html of `sections` in `folder`."""
    markdown, html = folder / "report.md", folder / "report.html"
    markdown.write_text(to_markdown(title, sections))
    html.write_text(to_html(title, sections))
    return markdown, html


def records(table: pd.DataFrame | None) -> dict | None:
    """A table as {row: {column: value}} for results.json (NaN as null)."""
    if table is None:
        return None
    return json.loads(table.replace({np.nan: None}).to_json(orient="index"))


def write_json(path: Path, payload: dict) -> Path:
    """`payload` as indented JSON; numpy scalars as plain numbers, anything else unknown as its text."""
    path.write_text(json.dumps(payload, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return path
