"""The evaluation report: every served family × every consumer task, as Markdown and HTML."""

from prodvec.report.build import build_report

__all__ = ["build_report"]
