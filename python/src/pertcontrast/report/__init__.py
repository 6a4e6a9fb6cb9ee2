"""Reports from exported files only: figures, the self-contained HTML page per screen and
the run summary page.

* ``latents``/``inputs``: read what a report needs (h5ad read selectively; tables in the
  formats of docs/outputs.md), refusing incomplete inputs with one-line messages.
* ``metrics``: background removal, the perturbation table, the headline numbers.
* ``embedding``: 2-D views of the plotted subsample (UMAP or PCA).
* ``figures`` and ``plots_*``: matplotlib figures, saved as PNG and SVG.
* ``markup``/``tables``/``page``/``templating``/``summary``: HTML with escaping by
  default, a CSP that allows only the page's own script and data: images.

The file-level steps are in ``pertcontrast.steps.report``.
"""
