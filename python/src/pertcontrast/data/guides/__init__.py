"""Screens as they come off the sequencer: guide capture in, one perturbation per cell out.

* ``readers``: Cell Ranger's ``.h5`` / MatrixMarket output with both feature types, a
  separate guide x cell matrix, or a calls table.
* ``guide_table``: guide -> target and class (targeting / non-targeting / safe-targeting).
* ``mixture`` and ``assignment``: per-guide UMI thresholds (a two-component Gaussian
  mixture on log UMIs) and the calls of every cell.
* ``moi``: several guides of one target count as that target; several targets are excluded
  or combined (``A+B``).
* ``qc`` and ``knockdown``: per-guide and per-perturbation tables, on-target knockdown
  against the controls, and whether the kinds of control differ.
* ``screen``: all of it for one screen; ``simulate``: guide UMIs with known truth.

The file-level step is ``pertcontrast.steps.guides``.
"""
