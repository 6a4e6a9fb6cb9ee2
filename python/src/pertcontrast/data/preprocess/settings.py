"""What preprocessing is asked to do, what it did, and what it records in the prepared file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pertcontrast.data import validate
from pertcontrast.errors import ParameterError

UNS_KEY = "pertcontrast"
# The label every control cell carries in the prepared file when several kinds of control
# are given (the model takes one control label); each cell's own kind is kept in obs.
MERGED_CONTROL_LABEL = "control"
CONTROL_KIND_COLUMN = "control_kind"


@dataclass(frozen=True)
class PreprocessSettings:
    perturbation_key: str
    control_labels: tuple[str, ...]  # one label, or several kinds of control (a str is one label)
    batch_key: str | None = None
    categorical_covariate_keys: tuple[str, ...] = ()
    continuous_covariate_keys: tuple[str, ...] = ()
    qc_mads: float = 5.0  # outliers beyond this many MADs of their batch's median; 0: off
    min_counts: int | None = None  # fixed thresholds, applied on top of the MAD outliers
    min_genes: int | None = None
    max_pct_mito: float | None = None
    max_qc_drop: float = 0.5  # stop when QC would drop a larger fraction of the cells or controls
    min_cells_per_gene: int = 3
    n_top_genes: int = 2000
    keep_target_genes: bool = True
    target_gene_key: str | None = None
    min_control_cells: int = validate.MIN_CONTROL_CELLS
    min_cells_per_perturbation: int = 20
    score_cell_cycle: bool = True
    gene_symbol_key: str | None = None
    mito_prefix: str = "MT-"

    def __post_init__(self):
        labels = (self.control_labels,) if isinstance(self.control_labels, str) else tuple(self.control_labels)
        object.__setattr__(self, "control_labels", tuple(dict.fromkeys(str(label) for label in labels)))
        if not self.control_labels:
            raise ParameterError("is required (at least one).", param="control_labels")
        if self.n_top_genes < 10:
            raise ParameterError(f"must be at least 10 (got {self.n_top_genes}).", param="n_top_genes")
        if self.max_pct_mito is not None and not 0 < self.max_pct_mito <= 100:
            raise ParameterError(f"must be in (0, 100] (got {self.max_pct_mito}).", param="max_pct_mito")
        if self.qc_mads < 0:
            raise ParameterError(f"must be 0 (off) or more (got {self.qc_mads}).", param="qc_mads")
        if not 0 <= self.max_qc_drop <= 1:
            raise ParameterError(f"must be between 0 and 1 (got {self.max_qc_drop}).", param="max_qc_drop")
        counts = ("min_counts", "min_genes", "min_cells_per_gene", "min_control_cells", "min_cells_per_perturbation")
        for name in counts:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ParameterError("must be 0 or more.", param=name)

    @property
    def control_label(self) -> str:
        """The one control label of the prepared file (what train and the analysis see)."""
        return self.control_labels[0] if len(self.control_labels) == 1 else MERGED_CONTROL_LABEL

    @property
    def all_categorical_keys(self) -> tuple[str, ...]:
        keys = (self.batch_key,) if self.batch_key else ()
        return keys + tuple(k for k in self.categorical_covariate_keys if k != self.batch_key)


@dataclass
class PreprocessReport:
    n_cells_in: int = 0
    n_genes_in: int = 0
    dropped_empty_cells: int = 0
    dropped_empty_genes: int = 0
    dropped_qc_cells: int = 0
    qc: dict = field(default_factory=dict)  # thresholds per batch and cells failing each
    dropped_rare_genes: int = 0
    dropped_perturbations: dict = field(default_factory=dict)
    all_genes_kept: bool = False  # fewer genes than n_top_genes
    cell_cycle: str = "not scored"
    n_cells_out: int = 0
    n_genes_out: int = 0
    n_controls: int = 0
    n_perturbations: int = 0
    target_genes_kept: int = 0

    def lines(self) -> list[str]:
        selection = "all kept: fewer than n_top_genes" if self.all_genes_kept else "highly variable"
        out = [
            f"cells: {self.n_cells_in} in, {self.n_cells_out} kept "
            f"({self.dropped_empty_cells} all-zero, {self.dropped_qc_cells} failed QC)",
            f"QC: {self.qc.get('summary', 'not run')}",
            f"genes: {self.n_genes_in} in, {self.n_genes_out} kept "
            f"({self.dropped_empty_genes} all-zero, {self.dropped_rare_genes} in too few cells; {selection}; "
            f"{self.target_genes_kept} perturbation targets kept)",
            f"controls: {self.n_controls}; perturbations: {self.n_perturbations}",
            f"cell cycle: {self.cell_cycle}",
        ]
        if self.dropped_perturbations:
            dropped = ", ".join(f"{k} ({v} cells)" for k, v in list(self.dropped_perturbations.items())[:10])
            out.append(f"dropped perturbations with too few cells: {dropped}")
        return out


def recorded_settings(settings: PreprocessSettings, report: PreprocessReport) -> dict:
    """What ``train``, ``export`` and the analysis read back; plain types only (it goes into
    .h5ad uns)."""
    from pertcontrast.versions import __version__

    recorded = {k: v for k, v in asdict(settings).items() if v is not None}
    recorded["control_label"] = settings.control_label
    recorded["control_labels"] = list(settings.control_labels)
    recorded["categorical_covariate_keys"] = list(settings.all_categorical_keys)
    recorded["continuous_covariate_keys"] = list(settings.continuous_covariate_keys)
    summary = asdict(report)
    summary["dropped_perturbations"] = dict(summary["dropped_perturbations"])
    return {"settings": recorded, "report": summary, "version": __version__}
