"""IRI gallery: one row per model; columns target, seed and the IRI of each loss.

Images are read through the manifest's URIs (the study's store: a local folder or
s3://), the same way the survey serves them.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.figures.inputs import FigureSkipped
from analysis.figures.style import DOUBLE, paper_style, text_width, wrap_label

CELL = 0.62  # inches per image
LABEL_SIZE = 6.5  # pt, the row labels
MAX_LABEL = 2.2  # inches, the widest the row labels' column gets


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def store_reader(manifest: pd.DataFrame, root: Path) -> Callable[[str], np.ndarray]:
    """image ID -> RGB array, through the manifest's URIs (relative to the study folder)."""
    import pyarrow as pa

    from hitkit.study.images import ImageError, ImageStore, image_uris

    columns = ["iri_id", "uri", "target_id", "target_uri", "seed_id", "seed_uri"]
    store = ImageStore(root, image_uris(pa.Table.from_pandas(manifest[columns],
                                                             preserve_index=False)))

    def read(image_id: str) -> np.ndarray:
        try:
            return decode_png(store.read(image_id))
        except ImageError as exc:
            raise FigureSkipped(f"cannot read an image of the gallery: {exc}") from None
        except OSError as exc:  # not an image
            raise FigureSkipped(f"image {image_id} ({store.uris.get(image_id)}): {exc}") from None

    return read


def choose_target(manifest: pd.DataFrame, models: list[str], losses: list[str],
                  target_id: str | None = None) -> tuple[str, str]:
    """(target, seed): the given target, else the first with an IRI for every model and
    loss (so every row shows the same image); its first seed."""
    if target_id is not None:
        rows = manifest[manifest["target_id"] == target_id]
        if rows.empty:
            raise FigureSkipped(f"target {target_id!r} is not in the manifest")
    else:
        counts = (manifest[manifest["model"].isin(models) & manifest["loss"].isin(losses)]
                  .groupby(["target_id", "seed_id"])[["model", "loss"]]
                  .apply(lambda g: len(set(zip(g["model"], g["loss"], strict=True)))))
        if counts.empty:
            raise FigureSkipped("the manifest has no IRIs of the chosen models")
        best = counts[counts == counts.max()].index[0]
        return str(best[0]), str(best[1])
    seeds = sorted(rows["seed_id"].unique())
    return str(target_id), str(seeds[0])


def iri_gallery(manifest: pd.DataFrame, root: Path | None = None, *,
                read_image: Callable[[str], np.ndarray] | None = None,
                models: list[str] | None = None, losses: list[str] | None = None,
                target_id: str | None = None, row_labels: dict[str, str] | None = None
                ) -> Figure:
    """Rows: models (default: all in the manifest, in its order). Columns: the target, the
    seed the optimisation started from, and the IRI made with each loss. `read_image`
    (image ID -> RGB array) defaults to reading the manifest's URIs under `root`."""
    if read_image is None:
        if root is None:
            raise ValueError("give the study folder (root) or read_image")
        read_image = store_reader(manifest, Path(root))
    models = models or list(dict.fromkeys(manifest["model"]))
    unknown = [m for m in models if m not in set(manifest["model"])]
    if unknown:
        raise FigureSkipped(f"model(s) {', '.join(unknown)} have no IRIs in the manifest")
    losses = losses or list(dict.fromkeys(manifest["loss"]))
    target, seed = choose_target(manifest, models, losses, target_id)
    columns = ["target", "seed", *losses]
    labels = [(row_labels or {}).get(m, m) for m in models]
    n_rows, n_cols = len(models), len(columns)
    # Exact placement (no layout engine): square cells, thin gaps, labels at the left.
    gap, top, bottom, right = 0.04, 0.2, 0.04, 0.04
    with paper_style():
        # label column: as wide as the longest line (labelpad and margin besides), at most
        # MAX_LABEL; a longer label wrapped at word breaks and shortened to fit
        labels = [label if text_width([label], LABEL_SIZE) <= MAX_LABEL - 0.12
                  else wrap_label(label, MAX_LABEL - 0.12, LABEL_SIZE,
                                  max_lines=max(3, label.count("\n") + 1))
                  for label in labels]
        label_w = text_width(labels, LABEL_SIZE) + 0.12
        cell = min(CELL, (DOUBLE - label_w - right) / n_cols - gap)
        width = label_w + n_cols * (cell + gap) + right
        height = top + n_rows * (cell + gap) + bottom
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        target_image = read_image(target)
        seed_image = read_image(seed)
        for r, model in enumerate(models):
            rows = manifest[(manifest["model"] == model) & (manifest["target_id"] == target)
                            & (manifest["seed_id"] == seed)]
            for c, column in enumerate(columns):
                x0 = label_w + c * (cell + gap)
                y0 = height - top - (r + 1) * (cell + gap) + gap
                ax = fig.add_axes((x0 / width, y0 / height, cell / width, cell / height))
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_visible(False)
                if column == "target":
                    image = target_image
                elif column == "seed":
                    image = seed_image
                else:
                    hit = rows[rows["loss"] == column]
                    image = read_image(str(hit["iri_id"].iloc[0])) if len(hit) else None
                if image is None:
                    ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=6,
                            color="#7F7F7F", transform=ax.transAxes)
                    ax.set_facecolor("#F2F2F2")
                else:
                    ax.imshow(image, interpolation="nearest", aspect="auto")
                if r == 0:
                    ax.set_title(column.replace("_", " "), fontsize=7, pad=2)
                if c == 0:
                    ax.set_ylabel(labels[r], rotation=0, ha="right", va="center", fontsize=LABEL_SIZE,
                                  labelpad=4)
    return fig
