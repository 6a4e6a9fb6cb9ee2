from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging


@click.command("preprocess")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True))
@click.option("--perturbation-key", required=True, help="obs column with the perturbation (guide/target) of each cell.")
@click.option("--control-label", required=True, help="Value of --perturbation-key that marks non-targeting controls.")
@click.option("--batch-key", default=None, help="obs column with the batch (a categorical covariate of the model).")
@click.option("--categorical-covariate", "categorical", multiple=True, help="Extra categorical obs column (repeatable).")
@click.option("--continuous-covariate", "continuous", multiple=True, help="Continuous obs column (repeatable), standardised.")
@click.option("--layer", default=None, help="Read counts from this layer instead of X (e.g. 'counts').")
@click.option("--min-counts", type=int, default=200, show_default=True, help="Drop cells with fewer total counts.")
@click.option("--min-genes", type=int, default=100, show_default=True, help="Drop cells with fewer detected genes.")
@click.option("--max-pct-mito", type=float, default=25.0, show_default=True, help="Drop cells with a higher percent of mitochondrial counts.")
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
              help="Work in passes over row chunks of an on-disk .h5ad (memory set by --chunk-size and the "
                   "genes, not the cells) or read it whole; default: chunked when the counts would take "
                   "more than ~1 GB in memory. Both give the same result.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Cells per chunk with --chunked.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="Prepared .h5ad to write.")
def preprocess_command(input_path, perturbation_key, control_label, batch_key, categorical, continuous, layer,
                       min_counts, min_genes, max_pct_mito, min_cells_per_gene, n_top_genes, keep_target_genes,
                       target_gene_key, min_control_cells, min_cells_per_perturbation, cell_cycle,
                       gene_symbol_key, chunked, chunk_size, output):
    """Validate and prepare a screen of raw counts for training.

    INPUT is an .h5ad, a 10x .h5 or a 10x MatrixMarket folder of raw counts. Checks the
    counts (integer, non-negative, finite), the perturbation column, the control label and
    the number of controls; computes QC metrics and filters; scores the cell cycle from
    shipped marker genes; selects highly variable genes. Counts stay raw and sparse; the
    settings are recorded in the output so train and export reuse them. Large .h5ad
    screens are processed chunk by chunk (--chunked).
    """
    from pertcontrast.data.preprocess import PreprocessSettings
    from pertcontrast.steps.preprocess import preprocess_file

    setup_logging()
    echo_command_line()
    settings = PreprocessSettings(
        perturbation_key=perturbation_key, control_label=control_label, batch_key=batch_key,
        categorical_covariate_keys=tuple(categorical), continuous_covariate_keys=tuple(continuous),
        min_counts=min_counts, min_genes=min_genes, max_pct_mito=max_pct_mito,
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
