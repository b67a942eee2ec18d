"""What pages hand out besides HTML: CSV files and charts drawn on the server.

CSV is RFC 4180 (CRLF line ends, quoted where needed), with cells a spreadsheet would
run as formulas kept as text. Charts are plain SVG built here, so a page needs no
script and no CDN (the CSP forbids both).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Sequence
from html import escape


def safe_cell(value):
    """Spreadsheets run a cell starting with = + - @ as a formula; a leading quote keeps it text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence], *, bom: bool = False) -> str:
    """A UTF-8 BOM (``bom``) makes Excel read non-ASCII names right."""
    out = io.StringIO()
    if bom:
        out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()


def stacked_bars_svg(series: Sequence[tuple[dt.date, int, int]], *, title: str, names: tuple[str, str] = ("in", "out"),
                     label: Callable[[dt.date], str] = lambda day: f"{day:%d %b}", label_every: int = 7,
                     width: int = 720, height: int = 180) -> str:
    """Two stacked series per date (CSS classes ``in`` and ``out``), an axis label every ``label_every`` bars."""
    if not series:
        return ""
    top = max((a + b for _, a, b in series), default=0) or 1
    gap, left, bottom = 2, 36, 20
    bar = max(1, (width - left) // len(series) - gap)
    plot = height - bottom - 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'width="100%" aria-label="{escape(title)}">',
             f'<text x="0" y="12" class="axis">{top}</text><text x="0" y="{plot + 6}" class="axis">0</text>']
    for n, (day, first, second) in enumerate(series):
        x = left + n * (bar + gap)
        h_first, h_second = plot * first // top, plot * second // top
        y_first = plot + 6 - h_first
        parts.append(f'<g><title>{escape(label(day))}: {first} {escape(names[0])}, {second} {escape(names[1])}'
                     f'</title><rect class="in" x="{x}" y="{y_first}" width="{bar}" height="{h_first}"/>'
                     f'<rect class="out" x="{x}" y="{y_first - h_second}" width="{bar}" height="{h_second}"/></g>')
        if n % label_every == 0:
            parts.append(f'<text x="{x}" y="{height - 4}" class="axis">{escape(label(day))}</text>')
    parts.append("</svg>")
    return "".join(parts)
