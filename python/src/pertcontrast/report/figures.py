"""Saving figures: ``figures/<name>.png`` and ``.svg`` beside the report, and the PNG
bytes for embedding. Matplotlib's object API only (no pyplot state); labels from the data
are drawn as plain text (``text.parse_math`` off, so a gene called ``$x$`` is not TeX)."""

from __future__ import annotations

import base64
import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from pertcontrast.io import atomic_path

PAGE_DPI = 100  # embedded in the page: 256-colour PNG, small
FILE_DPI = 150  # figures/*.png for slides and papers: full colour
SVG_RASTER_DPI = 150  # scatter points are rasterised inside the SVG (20k points stay small)
PAGE_COLOURS = 256
RC = {
    "text.parse_math": False,
    "svg.fonttype": "none",  # text stays text in the SVG (editable for papers)
    "svg.hashsalt": "pertcontrast",  # the same figure gives the same file
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}


@dataclass
class SavedFigure:
    name: str
    title: str
    caption: str
    png: bytes
    width: int
    height: int

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@contextlib.contextmanager
def figure_style():
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


class FigureWriter:
    """Writes every figure of a report into ``folder`` and keeps its PNG for the page."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.saved: list[SavedFigure] = []

    def save(self, figure, name: str, title: str, caption: str = "") -> SavedFigure:
        with figure_style():
            with atomic_path(self.folder / f"{name}.png", suffix=".png") as tmp:
                figure.savefig(tmp, format="png", dpi=FILE_DPI, metadata={"Software": None})
            figure.set_layout_engine("none")  # keep the layout just computed: no recomputing per format
            with atomic_path(self.folder / f"{name}.svg", suffix=".svg") as tmp:
                figure.savefig(tmp, format="svg", dpi=SVG_RASTER_DPI, metadata={"Date": None})
            png, (width, height) = _page_png(figure)
        figure.clear()
        saved = SavedFigure(name, title, caption, png, width, height)
        self.saved.append(saved)
        return saved


def _page_png(figure) -> tuple[bytes, tuple[int, int]]:
    """The figure as a 256-colour PNG (about a third of the size, no visible change)."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PAGE_DPI)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    small = image.quantize(colors=PAGE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), image.size


def category_colours(categories: list[str], fixed: dict[str, str] | None = None) -> dict[str, str]:
    """A colour per category: ``fixed`` ones first, the rest from tab10/tab20."""
    from matplotlib import colormaps

    fixed = fixed or {}
    free = [c for c in categories if c not in fixed]
    # no greys (grey means control / other in every figure): tab10 without grey, plus black
    if len(free) <= 10:
        palette = [c for c in colormaps["tab10"].colors if len(set(c[:3])) > 1] + [(0.0, 0.0, 0.0)]
    else:
        palette = [c for c in colormaps["tab20"].colors if len(set(c[:3])) > 1]
    colours = {c: _hex(palette[i % len(palette)]) for i, c in enumerate(free)}
    colours.update({c: v for c, v in fixed.items() if c in categories})
    return colours


def short_label(label, limit: int = 28) -> str:
    """A label shortened for legends and axes (the full text is in the tables)."""
    label = str(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(v * 255)):02x}" for v in rgb[:3])
