"""How AnnData columns become model inputs: the data encoding.

A :class:`DataEncoding` is created once from the training data and saved in the model's
config (under its ``registry`` key, the name model folders have always used), so new data is encoded exactly like the training data (same label order, same
covariate categories, same standardisation, same genes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pertcontrast.errors import InputDataError


@dataclass
class DataEncoding:
    perturbation_key: str
    control_label: str
    perturbations: list[str]  # labels of perturbed cells, in classifier order
    gene_names: list[str]
    categorical_covariates: dict[str, list[str]] = field(default_factory=dict)
    continuous_covariates: dict[str, tuple[float, float]] = field(default_factory=dict)
    library_key: str | None = None  # categorical column that groups the library prior
    library_groups: list[str] = field(default_factory=lambda: ["all"])
    # continuous columns the salient latent should not depend on (mean, sd): not model
    # inputs, only the ``nuisance`` term's targets (by default the cell-cycle scores)
    nuisance_covariates: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def n_covariates(self) -> int:
        return sum(len(c) for c in self.categorical_covariates.values()) + len(self.continuous_covariates)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DataEncoding":
        data = dict(data)
        for key in ("continuous_covariates", "nuisance_covariates"):
            data[key] = {k: tuple(v) for k, v in data.get(key, {}).items()}
        return cls(**data)

    @classmethod
    def from_obs(
        cls,
        obs: pd.DataFrame,
        gene_names,
        perturbation_key: str,
        control_label: str,
        categorical_covariate_keys=(),
        continuous_covariate_keys=(),
        nuisance_keys=(),
    ) -> "DataEncoding":
        labels = obs[perturbation_key].astype(str)
        perturbations = sorted(set(labels) - {control_label})
        categorical = {}
        for key in categorical_covariate_keys:
            categorical[key] = sorted(obs[key].astype(str).unique().tolist())
        continuous = {key: _standardisation(obs[key]) for key in continuous_covariate_keys}
        library_key = categorical_covariate_keys[0] if categorical_covariate_keys else None
        groups = categorical[library_key] if library_key else ["all"]
        return cls(
            perturbation_key=perturbation_key,
            control_label=control_label,
            perturbations=perturbations,
            gene_names=[str(g) for g in gene_names],
            categorical_covariates=categorical,
            continuous_covariates=continuous,
            library_key=library_key,
            library_groups=groups,
            nuisance_covariates={key: _standardisation(obs[key]) for key in nuisance_keys},
        )

    def encode_obs(self, obs: pd.DataFrame, require_labels: bool = True,
                   nuisance: bool = False) -> dict[str, np.ndarray]:
        """Per-cell arrays: is_control, label, covariates, library_group (and, with
        ``nuisance``, the standardised nuisance columns: training needs them, new data does not).

        With ``require_labels=False`` (export on new data) a missing perturbation column or
        unseen perturbation labels are allowed: those cells get label -1.
        """
        n = len(obs)
        if self.perturbation_key in obs:
            labels = obs[self.perturbation_key].astype(str).to_numpy()
            is_control = labels == self.control_label
            lookup = {name: i for i, name in enumerate(self.perturbations)}
            label = np.array([lookup.get(x, -1) for x in labels], dtype=np.int64)
            unknown = (~is_control) & (label < 0)
            if require_labels and unknown.any():
                examples = sorted(set(labels[unknown]))[:5]
                raise InputDataError(
                    f"column '{self.perturbation_key}' has labels the model was not trained on "
                    f"({', '.join(examples)}); train on this data or drop those cells."
                )
            label[is_control] = -1
        elif require_labels:
            raise InputDataError(
                f"obs has no column '{self.perturbation_key}' (the perturbation column); "
                "pass {param} with the right name.", param="perturbation_key"
            )
        else:
            is_control = np.zeros(n, dtype=bool)
            label = np.full(n, -1, dtype=np.int64)
        covariates = np.zeros((n, self.n_covariates), dtype=np.float32)
        column = 0
        for key, categories in self.categorical_covariates.items():
            values = self._column(obs, key).astype(str).to_numpy()
            codes = pd.Categorical(values, categories=categories).codes
            if (codes < 0).any():
                unseen = sorted(set(values[codes < 0]))[:5]
                raise InputDataError(
                    f"covariate column '{key}' has values the model was not trained on "
                    f"({', '.join(unseen)}); the model knows {', '.join(categories[:10])}."
                )
            covariates[np.arange(n), column + codes] = 1.0
            column += len(categories)
        for key, (mean, sd) in self.continuous_covariates.items():
            covariates[:, column] = self._standardised(obs, key, mean, sd, "continuous covariate")
            column += 1
        if self.library_key:
            library_group = pd.Categorical(
                self._column(obs, self.library_key).astype(str), categories=self.library_groups
            ).codes.astype(np.int64)
        else:
            library_group = np.zeros(n, dtype=np.int64)
        encoded = {
            "is_control": is_control,
            "label": label,
            "covariates": covariates,
            "library_group": library_group,
        }
        if nuisance:
            columns = [self._standardised(obs, key, mean, sd, "nuisance")
                       for key, (mean, sd) in self.nuisance_covariates.items()]
            encoded["nuisance"] = np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((n, 0), np.float32)
        return encoded

    def _standardised(self, obs: pd.DataFrame, key: str, mean: float, sd: float, kind: str) -> np.ndarray:
        values = pd.to_numeric(self._column(obs, key), errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise InputDataError(
                f"{kind} column '{key}' has missing or non-numeric values; fill them or drop it."
            )
        return (values - mean) / sd

    @staticmethod
    def _column(obs: pd.DataFrame, key: str) -> pd.Series:
        if key not in obs:
            raise InputDataError(
                f"obs has no column '{key}', which the model uses as a covariate; "
                "add it or use a model trained without it."
            )
        return obs[key]


def _standardisation(column: pd.Series) -> tuple[float, float]:
    """(mean, sd) of a numeric column, NaNs left out; an sd of 0 becomes 1."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    sd = float(np.nanstd(values))
    return float(np.nanmean(values)), sd if sd > 0 else 1.0
