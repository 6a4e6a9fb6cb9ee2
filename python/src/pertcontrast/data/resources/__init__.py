"""Tables shipped with the package: cell-cycle marker genes, simulation target genes, the
samplesheet schema."""

from __future__ import annotations

from importlib import resources

import pandas as pd


def packaged_lines(name: str) -> list[str]:
    """Lines of a shipped text table, without blank lines and ``#`` comments."""
    text = resources.files(__name__).joinpath(name).read_text()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def cell_cycle_gene_table() -> pd.DataFrame:
    """The shipped S and G2/M marker genes (columns gene, phase, previous_symbol)."""
    rows = [line.split("\t") for line in packaged_lines("cell_cycle_genes.tsv")]
    header, body = rows[0], rows[1:]
    body = [row + [""] * (len(header) - len(row)) for row in body]
    return pd.DataFrame(body, columns=header)
