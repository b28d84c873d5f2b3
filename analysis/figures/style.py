"""Look and output of every figure: palette, paper-sized fonts, PDF + PNG written atomically.

Sizes fit a two-column paper: a single column is 3.3 in wide, a double column 7 in;
text is 7–8 pt. Colours are Okabe & Ito's colour-blind-safe set. Figures are
plain `matplotlib.figure.Figure` objects drawn on an Agg canvas, so nothing here
touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend import Legend
from matplotlib.lines import Line2D

from hitkit.study.files import atomic_write

SINGLE = 3.3  # inches: one column of a two-column paper
DOUBLE = 7.0  # inches: the full text width

# Okabe & Ito (2008), in the order figures use them; yellow last (weak on white).
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "yellow": "#F0E442",
    "black": "#000000",
}
PALETTE = list(OKABE_ITO.values())
GREY = "#7F7F7F"
LIGHT_GREY = "#D9D9D9"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

PNG_DPI = 300

RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["Liberation Sans", "Arial", "Helvetica", "DejaVu Sans"],
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 8,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.titlepad": 4,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "lines.markersize": 4,
    "errorbar.capsize": 0,
    "legend.frameon": False,
    "legend.handletextpad": 0.4,
    "legend.borderaxespad": 0.3,
    "legend.columnspacing": 1.0,
    "pdf.fonttype": 42,  # TrueType: text stays text in the PDF
    "svg.fonttype": "none",
    "savefig.dpi": PNG_DPI,
    "figure.dpi": 100,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """rcParams for paper figures, for the duration of the block."""
    with mpl.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure on an Agg canvas (no pyplot), laid out with the constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, hspace=0.04, wspace=0.04)
    return fig


def text_width(texts: Iterable[str], size: float = 7.0, weight: str = "normal") -> float:
    """Width in inches of the widest line of `texts` at `size` pt in the current font."""
    dpi = RC["figure.dpi"]  # the resolution layouts are computed at (hinting varies with it)
    renderer = RendererAgg(1, 1, dpi)
    prop = FontProperties(size=size, weight=weight)
    widest = 0.0
    for text in texts:
        for line in str(text).split("\n"):
            if line:
                widest = max(widest, renderer.get_text_width_height_descent(
                    line, prop, ismath=False)[0])
    return widest / dpi


def shorten(text: str, width: float, size: float = 7.0) -> str:
    """`text` (one line), or its start and end around an ellipsis, at most `width` inches."""
    if text_width([text], size) <= width:
        return text
    keep_lo, keep_hi = 0, len(text)
    while keep_lo < keep_hi:  # the most characters kept that still fit
        keep = (keep_lo + keep_hi + 1) // 2
        if text_width([_cut(text, keep)], size) <= width:
            keep_lo = keep
        else:
            keep_hi = keep - 1
    return _cut(text, max(keep_lo, 2))


def _cut(text: str, keep: int) -> str:
    head = (keep + 1) // 2
    return text[:head].rstrip() + "…" + text[len(text) - (keep - head):].lstrip()


def wrap_label(text: str, width: float, size: float = 7.0, max_lines: int = 2) -> str:
    """`text` broken after spaces, '-', '_', '/' or '·' into at most `max_lines` lines of
    at most `width` inches each (existing line breaks kept; what does not fit in the last
    line shortened with an ellipsis in its middle)."""
    lines: list[str] = []  # unstripped, so that lines can be joined again as they were
    for part in str(text).split("\n"):
        line = ""
        for piece in (p for p in re.split(r"(?<=[\s\-_/·])", part) if p):
            if line.strip() and text_width([(line + piece).strip()], size) > width:
                lines.append(line)
                line = piece
            else:
                line += piece
        lines.append(line + " ")  # a space where a line break was
    if len(lines) > max_lines:
        lines = lines[:max_lines - 1] + ["".join(lines[max_lines - 1:])]
    return "\n".join(shorten(line.strip(), width, size) for line in lines)


def fit_legend(fig: Figure, handles: Sequence[Artist], labels: Sequence[str],
               ncols: Sequence[int], **kwargs) -> Legend:
    """A figure legend with the first of `ncols` (most columns first) whose box fits the
    figure's width; at the last, labels are shortened until it fits."""
    width = fig.get_figwidth() * fig.dpi * 0.98
    renderer = fig.canvas.get_renderer()
    legend = None
    for n in ncols:
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles=list(handles), labels=list(labels), ncols=n, **kwargs)
        if legend.get_window_extent(renderer).width <= width:
            return legend
    # still too wide (very long labels): shorten the widest until it fits
    size = legend.get_texts()[0].get_fontsize() if labels else 7.0
    over = (legend.get_window_extent(renderer).width - width) / fig.dpi
    limit = max(text_width(labels, size) - over / max(ncols[-1], 1), 0.3)
    for text in legend.get_texts():
        text.set_text(shorten(text.get_text(), limit, size))
    return legend


def grid_legend(fig: Figure, rows: Sequence[tuple[str, Sequence[tuple[Artist, str]]]],
                **kwargs) -> Legend:
    """A figure legend of headed groups of entries ('training: ● standard ● adversarial'):
    one row for all groups when that fits the figure's width, else a row per group
    (wrapped into more rows when a group alone is too wide), headings in the first column
    and in bold. Matplotlib fills a legend column by column, so the entries are laid out
    on a full grid padded with blank entries."""
    blank = (Line2D([], [], ls="", marker=""), "")
    heading = [(Line2D([], [], ls="", marker="", gid="heading"), text) for text, _ in rows]
    one_row = [e for h, (_, entries) in zip(heading, rows, strict=True) for e in (h, *entries)]
    layouts = [[one_row]]  # a list of grid rows, each a list of (handle, label)
    most = max((len(entries) for _, entries in rows), default=0)
    for per_row in range(most, 0, -1):
        grid = []
        for h, (_, entries) in zip(heading, rows, strict=True):
            for start in range(0, max(len(entries), 1), per_row):
                grid.append([h if start == 0 else blank, *entries[start:start + per_row]])
        layouts.append(grid)
    width = fig.get_figwidth() * fig.dpi * 0.98
    renderer = fig.canvas.get_renderer()
    legend = None
    for grid in layouts:
        if legend is not None:
            legend.remove()
        ncols = max(len(r) for r in grid)
        grid = [r + [blank] * (ncols - len(r)) for r in grid]
        cells = [grid[r][c] for c in range(ncols) for r in range(len(grid))]  # column-major
        legend = fig.legend(handles=[h for h, _ in cells], labels=[t for _, t in cells],
                            ncols=ncols, **kwargs)
        for text, (handle, _) in zip(legend.get_texts(), cells, strict=True):
            if handle.get_gid() == "heading":
                text.set_fontweight("bold")
        if legend.get_window_extent(renderer).width <= width:
            return legend
    # still too wide (very long level names): shorten the entries until it fits
    over = (legend.get_window_extent(renderer).width - width) / fig.dpi
    size = legend.get_texts()[0].get_fontsize()
    entries = [t for t in legend.get_texts() if t.get_fontweight() != "bold" and t.get_text()]
    limit = max(text_width([t.get_text() for t in entries], size) - over, 0.3)
    for text in entries:
        text.set_text(shorten(text.get_text(), limit, size))
    return legend


def colour_map(levels: list[str]) -> dict[str, str]:
    """A palette colour per level, in order (cycles after eight)."""
    return {level: PALETTE[i % len(PALETTE)] for i, level in enumerate(levels)}


def marker_map(levels: list[str]) -> dict[str, str]:
    return {level: MARKERS[i % len(MARKERS)] for i, level in enumerate(levels)}


def save_figure(fig: Figure, base: Path) -> list[Path]:
    """Write base.pdf and base.png (each atomically: a killed run leaves no partial file)."""
    base = Path(base)
    written = []
    with paper_style():
        for fmt in ("pdf", "png"):
            path = base.with_name(f"{base.name}.{fmt}")
            kwargs = {"dpi": PNG_DPI} if fmt == "png" else {"metadata": {"CreationDate": None}}
            atomic_write(path, lambda tmp, fmt=fmt, kwargs=kwargs: fig.savefig(
                tmp, format=fmt, facecolor="white", **kwargs))
            written.append(path)
    return written


def png_bytes(fig: Figure, dpi: int = 200) -> bytes:
    """The figure as PNG bytes (for embedding in the HTML report)."""
    buffer = io.BytesIO()
    with paper_style():
        fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()
