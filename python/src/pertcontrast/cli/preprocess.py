from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging


@click.command("preprocess")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--perturbation-key", required=True, help="obs column with the perturbation (guide/target) of each cell.")
@click.option("--control-label", "control_labels", required=True, multiple=True,
              help="Value of --perturbation-key that marks control cells. Repeat it for several kinds of control "
                   "(e.g. non-targeting and safe-targeting): all of them are the model's controls, labelled "
                   "'control' in the prepared file, each cell's own kind kept in obs['control_kind'].")
@click.option("--batch-key", default=None, help="obs column with the batch (a categorical covariate of the model).")
@click.option("--categorical-covariate", "categorical", multiple=True, help="Extra categorical obs column (repeatable).")
@click.option("--continuous-covariate", "continuous", multiple=True, help="Continuous obs column (repeatable), standardised.")
@click.option("--layer", default=None, help="Read counts from this layer instead of X (e.g. 'counts').")
@click.option("--qc-mads", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="QC outliers: cells whose log total counts or log genes detected lie more than this many median "
                   "absolute deviations below or above their batch's median, or whose percent of mitochondrial "
                   "counts lies as far above it (0: off).")
@click.option("--min-counts", type=int, default=None, help="Also drop cells with fewer total counts (fixed threshold).")
@click.option("--min-genes", type=int, default=None, help="Also drop cells with fewer detected genes (fixed threshold).")
@click.option("--max-pct-mito", type=float, default=None,
              help="Also drop cells with a higher percent of mitochondrial counts (fixed threshold).")
@click.option("--max-qc-drop", type=float, default=0.5, show_default=True,
              help="Stop when QC would drop a larger fraction of the cells or of the controls (1: never stop).")
@click.option("--min-cells-per-gene", type=int, default=3, show_default=True, help="Drop genes detected in fewer cells.")
@click.option("--n-top-genes", type=int, default=2000, show_default=True, help="Number of highly variable genes (seurat_v3 on counts).")
@click.option("--keep-target-genes/--no-keep-target-genes", default=True, show_default=True,
              help="Keep the perturbations' target genes even when not highly variable.")
@click.option("--target-gene-key", default=None, help="obs column naming each cell's target gene (default: the perturbation label).")
@click.option("--min-control-cells", type=int, default=50, show_default=True, help="Fail when fewer control cells remain.")
@click.option("--min-cells-per-perturbation", type=int, default=20, show_default=True,
              help="Drop perturbations with fewer cells (reported).")
@click.option("--cell-cycle/--no-cell-cycle", default=True, show_default=True, help="Score S and G2/M and call the phase.")
@click.option("--gene-symbol-key", default=None, help="var column with gene symbols when var_names are IDs.")
@click.option("--chunked/--in-memory", "chunked", default=None,
              help="Read an .h5ad from disk a block of cells at a time (memory set by --chunk-size and the "
                   "genes, not the cells) or read it whole first; default: from disk when the counts would take "
                   "more than ~1 GB in memory. The same passes run either way and give the same file.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Cells per block of every pass.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="Prepared .h5ad to write.")
def preprocess_command(input_path, perturbation_key, control_labels, batch_key, categorical, continuous, layer,
                       qc_mads, min_counts, min_genes, max_pct_mito, max_qc_drop, min_cells_per_gene, n_top_genes,
                       keep_target_genes, target_gene_key, min_control_cells, min_cells_per_perturbation, cell_cycle,
                       gene_symbol_key, chunked, chunk_size, output):
    """Validate and prepare a screen of raw counts for training.

    INPUT is an .h5ad, a 10x .h5 or a 10x MatrixMarket folder of raw counts. Checks the
    counts (integer, non-negative, finite), the perturbation column, the control labels and
    the number of controls; drops QC outliers (median absolute deviations within each
    batch, plus any fixed thresholds given) and stops if that would drop more than half of
    the cells or controls; scores the cell cycle from shipped marker genes; selects highly
    variable genes (all of them when there are fewer than --n-top-genes). Counts stay raw
    and sparse; the settings are recorded in the output so train and the analysis reuse
    them. Large .h5ad screens are read from disk a block of cells at a time (--chunked).
    """
    from pertcontrast.data.preprocess import PreprocessSettings
    from pertcontrast.steps.preprocess import preprocess_file

    setup_logging()
    echo_command_line()
    settings = PreprocessSettings(
        perturbation_key=perturbation_key, control_labels=tuple(control_labels), batch_key=batch_key,
        categorical_covariate_keys=tuple(categorical), continuous_covariate_keys=tuple(continuous),
        qc_mads=qc_mads, min_counts=min_counts, min_genes=min_genes, max_pct_mito=max_pct_mito,
        max_qc_drop=max_qc_drop,
        min_cells_per_gene=min_cells_per_gene, n_top_genes=n_top_genes, keep_target_genes=keep_target_genes,
        target_gene_key=target_gene_key, min_control_cells=min_control_cells,
        min_cells_per_perturbation=min_cells_per_perturbation, score_cell_cycle=cell_cycle,
        gene_symbol_key=gene_symbol_key,
    )
    report = preprocess_file(input_path, output, settings, layer=layer, chunked=chunked, chunk_size=chunk_size)
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(f"wrote {output}", err=True)


COMMANDS = [preprocess_command]
