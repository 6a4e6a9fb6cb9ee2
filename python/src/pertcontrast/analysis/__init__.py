"""Analysis beyond the latents: generated expression, differential expression (model-based
and Wilcoxon), responder calls, the perturbation effect table, perturbation clusters and
gene programs. Library functions on arrays and models; files are handled in
``pertcontrast.steps.analysis``."""
