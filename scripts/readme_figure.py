"""The README's figure: UMAPs of the background and the salient latent of one demo screen,
coloured by cell-cycle phase and by the simulated program each perturbation acts on.

    bash scripts/demo.sh                       # writes results/
    .venv/bin/python scripts/readme_figure.py  # writes docs/images/demo_latents.png

Reads results/<screen>/prepared/<screen>.prepared.h5ad (cell labels, the simulated truth)
and results/<screen>/latents/<screen>.latents.h5ad (the latents); the PNG has 128 colours
so that it stays small enough to commit.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results", help="the demo's --outdir")
    parser.add_argument("--screen", default="simulated_0", help="screen id")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "images" / "demo_latents.png")
    args = parser.parse_args()
    folder = args.results / args.screen
    prepared = folder / "prepared" / f"{args.screen}.prepared.h5ad"
    latents = folder / "latents" / f"{args.screen}.latents.h5ad"
    for path in (prepared, latents):
        if not path.is_file():
            raise SystemExit(f"{path}: not found; run 'bash scripts/demo.sh' first (or pass --results/--screen).")
    png = draw(prepared, latents)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(png)
    print(f"wrote {args.output} ({len(png) / 1024:.0f} KB)")


def draw(prepared_path: Path, latents_path: Path) -> bytes:
    import anndata as ad

    from pertcontrast.report.embedding import embed
    from pertcontrast.report.figures import category_colours, figure_style, new_figure
    from pertcontrast.report.plots_cells import CONTROL_GREY, PHASE_COLOURS

    adata = ad.read_h5ad(prepared_path, backed="r")
    latents = ad.read_h5ad(latents_path, backed="r")
    if list(latents.obs_names) != list(adata.obs_names):
        raise SystemExit(f"{latents_path}: not the cells of {prepared_path} in the same order.")
    obs = adata.obs
    control = adata.uns["pertcontrast"]["settings"]["control_label"]
    programs = _program_labels(adata, obs["perturbation"].astype(str).to_numpy(), control)
    colourings = {
        "cell-cycle phase": (obs["phase"].astype(str).to_numpy(), PHASE_COLOURS),
        "perturbation (program)": (programs, {control: CONTROL_GREY, NO_EFFECT: "#c7c7c7",
                                              **category_colours(sorted(set(programs) - {control, NO_EFFECT}))}),
    }
    views = {"background latent": embed(latents.obsm["X_background"], "umap"),
             "salient latent": embed(latents.obsm["X_salient"], "umap")}
    with figure_style():
        figure = new_figure(7.6, 6.2)
        axes = figure.subplots(2, 2)
        for row, (title, (labels, colours)) in enumerate(colourings.items()):
            order = np.random.default_rng(0).permutation(len(labels))
            for column, (view, coords) in enumerate(views.items()):
                axis = axes[row, column]
                axis.scatter(coords[order, 0], coords[order, 1], s=3, linewidths=0,
                             c=[colours.get(v, CONTROL_GREY) for v in labels[order]], rasterized=True)
                axis.set_xticks([])
                axis.set_yticks([])
                if row == 0:
                    axis.set_title(view)
            handles = [axes[row, 1].scatter([], [], s=20, c=colour, label=name) for name, colour in colours.items()
                       if name in set(labels)]
            axes[row, 1].legend(handles=handles, title=title, loc="center left", bbox_to_anchor=(1.0, 0.5),
                                fontsize=7, title_fontsize=8)
        return _small_png(figure)


NO_EFFECT = "no effect"


def _program_labels(adata, perturbation: np.ndarray, control: str) -> np.ndarray:
    """Each cell's perturbations grouped by the simulated program they act on, e.g.
    "GATA1, TAL1"; perturbations without an effect are one group."""
    import pandas as pd

    truth = pd.DataFrame(adata.uns["truth"]["perturbations"]).astype({"perturbation": str})
    groups = truth.groupby("program")["perturbation"].apply(lambda names: ", ".join(sorted(names)))
    name = {p: NO_EFFECT if program == "none" else groups[program]
            for p, program in zip(truth["perturbation"], truth["program"])}
    return np.array([control if p == control else name.get(p, NO_EFFECT) for p in perturbation], dtype=object)


def _small_png(figure) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    small = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return out.getvalue()


if __name__ == "__main__":
    main()
