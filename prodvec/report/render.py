"""Markdown and HTML from one report structure; both show the same tables, best per column marked."""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field

import pandas as pd

BEST_MARK = "★"


@dataclass
class Section:
    """One titled block: sentences, then tables (title -> table with best-per-column flags), then images."""

    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame, pd.DataFrame]] = field(default_factory=list)  # (caption, values, best)
    images: list[tuple[str, str]] = field(default_factory=list)  # (relative path, caption)


def no_flags(table: pd.DataFrame) -> pd.DataFrame:
    """No best marks anywhere (a table of sizes or settings, not of competing scores)."""
    return pd.DataFrame(False, index=table.index, columns=table.columns)


def best_flags(table: pd.DataFrame, lower_is_better: frozenset[str] = frozenset()) -> pd.DataFrame:
    """True where a cell holds its column's best value (ties all marked); text columns never."""
    flags = no_flags(table)
    for column in table.columns:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().sum() < 2:
            continue
        metric = column[-1] if isinstance(column, tuple) else column
        target = values.min() if metric in lower_is_better else values.max()
        flags[column] = values.eq(target)
    return flags


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _header(column) -> str:
    return " · ".join(map(str, column)) if isinstance(column, tuple) else str(column)


def markdown_table(table: pd.DataFrame, best: pd.DataFrame) -> str:
    name = table.index.name or "family"
    lines = ["| " + " | ".join([name, *map(_header, table.columns)]) + " |",
             "|" + "---|" * (len(table.columns) + 1)]
    for row in table.index:
        cells = []
        for column in table.columns:
            text = _cell(table.at[row, column])
            cells.append(f"**{text}** {BEST_MARK}" if best.at[row, column] else text)
        lines.append("| " + " | ".join([str(row), *cells]) + " |")
    return "\n".join(lines)


def to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        out += [f"- {note}" for note in section.notes]
        if section.notes:
            out.append("")
        for caption, table, best in section.tables:
            if caption:
                out += [f"**{caption}**", ""]
            out += [markdown_table(table, best), ""]
        for path, caption in section.images:
            out += [f"![{caption}]({path})", ""]
    return "\n".join(out)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #eef2f8; } td.name { text-align: left; font-weight: 600; }
td.best { background: #dff0d8; font-weight: 700; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; } .caption { font-weight: 600; margin-top: 1em; }
"""


def html_table(table: pd.DataFrame, best: pd.DataFrame) -> str:
    name = html.escape(table.index.name or "family")
    head = "".join(f"<th>{html.escape(_header(c))}</th>" for c in table.columns)
    rows = []
    for row in table.index:
        cells = []
        for column in table.columns:
            text = html.escape(_cell(table.at[row, column]))
            if best.at[row, column]:
                cells.append(f'<td class="best" title="best in column">{text} {BEST_MARK}</td>')
            else:
                cells.append(f"<td>{text}</td>")
        rows.append(f'<tr><td class="name">{html.escape(str(row))}</td>{"".join(cells)}</tr>')
    return f'<table><thead><tr><th>{name}</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _linked(text: str) -> str:
    """Markdown links [text](href) in an escaped note as HTML anchors (the same note reads well in report.md)."""
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)


def to_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.notes:
            body.append("<ul>" + "".join(f"<li>{_linked(html.escape(n))}</li>" for n in section.notes) + "</ul>")
        for caption, table, best in section.tables:
            if caption:
                body.append(f'<div class="caption">{html.escape(caption)}</div>')
            body.append(html_table(table, best))
        for path, caption in section.images:
            body.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        body.append("</section>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
