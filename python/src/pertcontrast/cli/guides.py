"""``assign-guides``: from Cell Ranger output (or counts plus guide data) to one
perturbation per cell."""

from __future__ import annotations

import click

from pertcontrast.cli._common import echo_command_line, setup_logging
from pertcontrast.data.guides.settings import MULTIPLE_TARGETS, AssignmentSettings, GuideSettings


@click.command("assign-guides")
@click.argument("counts", type=click.Path(exists=True))
@click.option("--guide-table", required=True, type=click.Path(exists=True, dir_okay=False),
              help="CSV with the columns guide, target and optionally class (targeting, non-targeting, "
                   "safe-targeting).")
@click.option("--guides", "guides", type=click.Path(exists=True), default=None,
              help="Guide data when COUNTS has no guide capture: a guide x cell UMI matrix (.h5ad, 10x .h5, "
                   "MatrixMarket, .csv) or a calls table (protospacer_calls_per_cell.csv, or cell,guide columns).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The .h5ad to write: Gene Expression counts of the cells with a perturbation.")
@click.option("--qc-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the QC tables (default: guide_qc/ beside --output).")
@click.option("--perturbation-key", default=GuideSettings.perturbation_key, show_default=True,
              help="obs column to write each cell's perturbation into (give it to preprocess).")
@click.option("--min-guide-umis", type=int, default=AssignmentSettings.min_umis, show_default=True,
              help="A guide is never called below this many UMIs (the mixture threshold may be higher).")
@click.option("--min-guide-fraction", type=float, default=AssignmentSettings.min_fraction, show_default=True,
              help="A called guide has at least this share of the cell's guide UMIs.")
@click.option("--min-cells-for-mixture", type=int, default=AssignmentSettings.min_cells_for_mixture,
              show_default=True, help="Guides with UMIs in fewer cells get --min-guide-umis as threshold.")
@click.option("--multiple-targets", type=click.Choice(MULTIPLE_TARGETS), default=GuideSettings.multiple_targets,
              show_default=True, help="Cells with guides of different targets: exclude them, or keep them as "
                                      "'A+B'.")
@click.option("--knockdown-fdr", type=float, default=GuideSettings.knockdown_fdr, show_default=True,
              help="FDR of the on-target knockdown calls.")
@click.option("--max-knockdown-controls", type=int, default=GuideSettings.max_knockdown_controls,
              show_default=True, help="Control cells in each knockdown test (a seeded subsample).")
@click.option("--seed", type=int, default=GuideSettings.seed, show_default=True, help="Seed of that subsample.")
def assign_guides_command(counts, guide_table, guides, output, qc_dir, perturbation_key, min_guide_umis,
                          min_guide_fraction, min_cells_for_mixture, multiple_targets, knockdown_fdr,
                          max_knockdown_controls, seed):
    """Assign guides to cells and write counts ready for 'pertcontrast preprocess'.

    COUNTS is Cell Ranger's filtered_feature_bc_matrix.h5 or MatrixMarket folder (Gene
    Expression and CRISPR Guide Capture), or expression (.h5ad, 10x) with --guides. Per
    guide, a two-component Gaussian mixture on log UMIs sets the threshold; several guides
    of one target count as that target; controls are labelled by their class, so give
    preprocess --control-label non-targeting (and safe-targeting). Writes --output (obs:
    guide, guide_umis, guide_umis_total, n_guides, assignment, guide_class and the
    perturbation) and the QC folder: guides.csv, perturbations.csv (cells, on-target
    knockdown), control_kinds.csv, cells.csv.gz (every cell), summary.json.
    """
    from pertcontrast.steps.guides import assign_guides_file

    setup_logging()
    echo_command_line()
    settings = GuideSettings(
        assignment=AssignmentSettings(min_umis=min_guide_umis, min_fraction=min_guide_fraction,
                                      min_cells_for_mixture=min_cells_for_mixture),
        multiple_targets=multiple_targets, perturbation_key=perturbation_key, knockdown_fdr=knockdown_fdr,
        max_knockdown_controls=max_knockdown_controls, seed=seed,
    )
    files = assign_guides_file(counts, guide_table, output, qc_dir=qc_dir, guides=guides, settings=settings)
    for line in files.lines():
        click.echo(line, err=True)
    click.echo(f"wrote {files.h5ad} and {files.qc_dir}/", err=True)


COMMANDS = [assign_guides_command]
