"""Look and output of every figure: palette, paper-sized fonts, PDF + PNG written atomically.

Sizes fit a two-column paper: a single column is 3.3 in wide, a double column 7 in;
text is 7–8 pt. Colours are Okabe & Ito's colour-blind-safe set. Figures are
plain `matplotlib.figure.Figure` objects drawn on an Agg canvas, so nothing here
touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hitkit.files import atomic_write

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
