"""Report folders are swapped in whole: a failed build leaves the previous report as it was."""

from __future__ import annotations

import pytest

from prodvec.report.output import PLOTS, staged, write_pages
from prodvec.report.render import Section


def test_a_finished_block_replaces_the_folder_and_a_failed_one_leaves_it(tmp_path):
    out = tmp_path / "report"
    with staged(out) as folder:
        assert (folder / PLOTS).is_dir() and not out.exists()
        markdown, html = write_pages(folder, "first", [Section("S", notes=["one"])])
    assert (out / "report.md").read_text().startswith("# first") and (out / "report.html").is_file()
    assert (out / PLOTS).is_dir() and oct(out.stat().st_mode & 0o777) == "0o755"

    with pytest.raises(RuntimeError):
        with staged(out) as folder:
            write_pages(folder, "second", [Section("S", notes=["two"])])
            raise RuntimeError("a data set failed")
    assert (out / "report.md").read_text().startswith("# first")
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left behind
