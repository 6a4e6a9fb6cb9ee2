from __future__ import annotations

from pathlib import Path


def simulate_file(
    output: str | Path, preset: str = "standard", seed: int = 0, cell_seed: int | None = None,
    progress: bool = False, **overrides,
) -> int:
    """Write a simulated screen to ``output`` (.h5ad), chunk by chunk; returns the cell count."""
    from pertcontrast.data.simulate import simulate_to_h5ad

    return simulate_to_h5ad(output, preset=preset, seed=seed, cell_seed=cell_seed, progress=progress, **overrides)
