"""Cell-level figures: the latent views coloured by phase, condition, perturbation, batch
and responder call; salient norms; the background-removal bars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pertcontrast.report.figures import category_colours, new_figure, short_label

CONTROL_GREY, OTHER_GREY = "#8c8c8c", "#dcdcdc"
PHASE_COLOURS = {"G1": "#4c72b0", "S": "#dd8452", "G2M": "#55a868"}
CALL_COLOURS = {"control": CONTROL_GREY, "responder": "#d62728", "non-responder": "#1f77b4"}
VIEW_TITLES = {"salient": "salient latent", "background": "background latent", "counts": "log-normalised counts"}
OTHER = "other perturbations"


@dataclass
class Colouring:
    name: str
    title: str
    labels: np.ndarray  # one per plotted cell
    colours: dict[str, str]  # legend order
    note: str = ""
    muted: tuple[str, ...] = ()  # drawn underneath, smaller; the other categories stand out


def colourings(latents, rows: np.ndarray, strongest: list[str], strength: str) -> list[Colouring]:
    """The colourings that the data allow, for the plotted ``rows``."""
    control = latents.control_label
    result = []
    if latents.phase is not None:
        phases = latents.phase[rows]
        order = [p for p in PHASE_COLOURS if p in phases] + sorted(set(phases) - set(PHASE_COLOURS))
        result.append(Colouring("phase", "cell-cycle phase", phases, category_colours(order, PHASE_COLOURS)))
    condition = np.where(latents.is_control[rows], "control", "perturbed")
    result.append(Colouring("condition", "perturbed vs control", condition,
                            {"control": CONTROL_GREY, "perturbed": "#d62728"}))
    labels = latents.perturbation[rows]
    shown = [p for p in strongest if p in set(labels)]
    grouped = np.where(np.isin(labels, shown), labels, np.where(labels == control, control, OTHER))
    colours = {OTHER: OTHER_GREY, control: CONTROL_GREY, **category_colours(shown)}
    result.append(Colouring("perturbation", "perturbation", grouped, colours,
                            f"the {len(shown)} strongest perturbations by {strength.replace('_', ' ')}, drawn "
                            "larger; controls in grey, the other perturbations in light grey", muted=(OTHER, control)))
    if latents.batch is not None:
        batches = latents.batch[rows]
        result.append(Colouring("batch", f"batch ({latents.batch_key})", batches,
                                category_colours(sorted(set(batches)))))
    if latents.responder_call is not None:
        calls = latents.responder_call[rows]
        order = [c for c in CALL_COLOURS if c in calls] + sorted(set(calls) - set(CALL_COLOURS))
        result.append(Colouring("responder_call", "responder call", calls, category_colours(order, CALL_COLOURS)))
    return result


def scatter_figure(views: dict[str, np.ndarray], colouring: Colouring, method: str, seed: int = 0):
    """One panel per view, side by side, the same colours in each."""
    n_panels = len(views)
    figure = new_figure(3.6 * n_panels + 2.2, 3.7)
    axes = figure.subplots(1, n_panels, squeeze=False)[0]
    n = len(colouring.labels)
    size = 10.0 if n < 2000 else 4.0 if n < 8000 else 1.2
    draw = _draw_order(colouring, seed)
    labels = colouring.labels[draw]
    colours = np.array([colouring.colours.get(v, OTHER_GREY) for v in labels])
    sizes = np.where(np.isin(labels, colouring.muted), size, max(size, 6.0)) if colouring.muted else size
    for axis, (name, coords) in zip(axes, views.items()):
        axis.scatter(coords[draw, 0], coords[draw, 1], c=colours, s=sizes, linewidths=0, rasterized=True)
        axis.set_title(VIEW_TITLES.get(name, name))
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel(f"{method.upper()} 1")
        axis.set_ylabel(f"{method.upper()} 2")
    present = [c for c in colouring.colours if c in set(colouring.labels)]
    handles = [_legend_handle(colouring.colours[c]) for c in present]
    figure.legend(handles, [short_label(c) for c in present], loc="outside right center", title=colouring.title,
                  ncols=1 if len(present) <= 16 else 2, fontsize=8, markerscale=1.0)
    return figure


def norms_figure(latents, strongest: list[str]):
    """Salient norms: controls vs perturbed cells, and per perturbation (strongest first)."""
    figure = new_figure(10, 3.8)
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.3])
    norms = latents.salient_norm
    bins = np.linspace(0, float(np.nanpercentile(norms, 99.5)) or 1.0, 60)
    for name, mask, colour in (("control", latents.is_control, CONTROL_GREY),
                               ("perturbed", ~latents.is_control, "#d62728")):
        if mask.any():
            left.hist(np.clip(norms[mask], 0, bins[-1]), bins=bins, density=True, histtype="stepfilled",
                      alpha=0.45, color=colour, label=f"{name} ({int(mask.sum()):,} cells)")
    left.set_xlabel("salient norm")
    left.set_ylabel("density")
    left.legend(fontsize=8)
    left.set_title("all cells")
    groups = [latents.control_label] + strongest[:20]
    data = [norms[latents.perturbation == g] for g in groups]
    right.boxplot(data, showfliers=False, widths=0.6, **_horizontal())
    right.set_yticks(range(1, len(groups) + 1), [short_label(g) for g in groups], fontsize=7)
    right.invert_yaxis()
    right.set_xlabel("salient norm")
    right.set_title("per perturbation (controls first, then strongest)")
    return figure


def removal_figure(removal: dict[str, dict[str, float]]):
    """Grouped bars: phase and batch predictability from the salient and background latents."""
    figure = new_figure(4.8, 3.2)
    axis = figure.subplots()
    labels = list(removal)
    x = np.arange(len(labels))
    for offset, which, colour in ((-0.2, "salient", "#d62728"), (0.2, "background", "#4c72b0")):
        values = [removal[label].get(which) for label in labels]
        axis.bar(x + offset, [v if v is not None else 0 for v in values], width=0.38, color=colour, label=which)
    axis.set_xticks(x, labels)
    axis.set_ylabel("k-NN balanced accuracy − chance")
    axis.axhline(0, color="black", linewidth=0.6)
    axis.legend(title="latent", fontsize=8)
    return figure


def _horizontal() -> dict:
    """Horizontal boxes (``vert=False`` is deprecated from matplotlib 3.10 on)."""
    import matplotlib

    major, minor = (int(v) for v in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def _draw_order(colouring: Colouring, seed: int) -> np.ndarray:
    """Shuffled (no category hides another by drawing order), muted categories underneath."""
    order = np.random.default_rng(seed).permutation(len(colouring.labels))
    if not colouring.muted:
        return order
    on_top = ~np.isin(colouring.labels[order], colouring.muted)
    return order[np.argsort(on_top, kind="stable")]


def _legend_handle(colour: str):
    from matplotlib.lines import Line2D

    return Line2D([], [], linestyle="", marker="o", markersize=6, markerfacecolor=colour, markeredgewidth=0)
