from __future__ import annotations

import click

from pertcontrast.cli._common import progress_option, resolve_progress, setup_logging

# data.simulate.PRESET_NAMES, repeated so --help does not import numpy and pandas (a test checks)
PRESET_NAMES = ("tiny", "standard", "hard", "many", "large")


@click.command("simulate")
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="standard", show_default=True,
              help="tiny (2k cells, tests); standard (15k cells, 24 perturbations, 4 programs); hard (20k cells: "
                   "weaker programs of mixed sizes partly in lowly expressed genes, some aligned with clone or "
                   "cycle axes or active in G1 only, knockdown-only perturbations, 25-50% escapers); many (20k "
                   "cells, 125 perturbations of ~130 cells); large (300k cells, written in chunks).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; the same seed gives the same screen.")
@click.option("--cell-seed", type=int, default=None,
              help="Draw fresh cells from the same screen design as --seed (held-out data for evaluation).")
@click.option("--n-cells", type=click.IntRange(min=50), default=None, help="Override the preset's number of cells.")
@click.option("--n-genes", type=click.IntRange(min=200), default=None, help="Override the preset's number of genes.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="The .h5ad file to write.")
@progress_option
def simulate_command(preset, seed, cell_seed, n_cells, n_genes, output, progress):
    """Simulate a Perturb-seq screen of raw counts with known truth.

    The background (continuous cell cycle on real S and G2/M marker genes, clonal
    sub-states, batches, depth) is stronger than most perturbation effects, so a PCA or
    UMAP of log-normalised counts mixes knockouts with controls. Perturbations knock down
    their target and shift shared downstream programs; some have no effect; a fraction of
    perturbed cells escape. The truth is in obs (truth_* columns) and uns["truth"].
    """
    from pertcontrast.steps.simulate import simulate_file

    setup_logging()
    n = simulate_file(output, preset=preset, seed=seed, cell_seed=cell_seed, progress=resolve_progress(progress),
                      n_cells=n_cells, n_genes=n_genes)
    click.echo(f"wrote {n} cells to {output}", err=True)


COMMANDS = [simulate_command]
