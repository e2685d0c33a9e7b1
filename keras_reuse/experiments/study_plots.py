"""The layer-reuse study's plots, drawn from its rows.

`plot(rows, output_dir, title, epoch_rows)` writes final accuracy against N
(the control arms beside their shared networks), accuracy against epoch per
arm with bands, parameters against N, accuracy against unrolled depth, and
the four side by side. Drawn on matplotlib's Agg canvas without pyplot, so
the global backend (e.g. a notebook's) is left alone.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_reuse.experiments.study_results import (
    Arm,
    EpochRow,
    StudyRow,
    group_by_arm,
    mean_std,
)
from keras_reuse.utils import atomic

PLOT_NAMES = {
    "overview": "layer_reuse_study.png",
    "accuracy": "layer_reuse_study_accuracy.png",
    "epochs": "layer_reuse_study_epochs.png",
    "params": "layer_reuse_study_params.png",
    "depth": "layer_reuse_study_depth.png",
}


def _save_figure(figure: Figure, path: str) -> None:
    FigureCanvasAgg(figure)
    atomic.write_file(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def _seeds_note(rows: Sequence[StudyRow]) -> str:
    seeds = {r.seed for r in rows}
    return "" if len(seeds) == 1 else f" (mean ± std over {len(seeds)} seeds)"


def _params_text(params: int) -> str:
    return f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"


def _plot_accuracy_against(ax, rows: Sequence[StudyRow], depth: bool) -> None:
    groups = group_by_arm(rows)
    for shared in (True, False):
        arms = [arm for arm in groups if arm.shared == shared]
        if not arms:
            continue
        x = [groups[a][0].unrolled_depth if depth else a.layer_reuse for a in arms]
        if not shared:  # beside the shared network of the same N, not on it
            span = max(r.unrolled_depth if depth else r.layer_reuse for r in rows)
            x = [xi + 0.03 * span for xi in x]
        stats = [mean_std([100 * r.test_accuracy for r in groups[a]]) for a in arms]
        y = [m for m, _ in stats]
        if shared:
            color, fmt, label = ("tab:purple" if depth else "tab:blue"), "o-", "shared (LruNet)"
        else:
            color, fmt, label = "tab:red", "s", "unshared control"
        ax.errorbar(x, y, yerr=[e for _, e in stats], fmt=fmt, color=color, capsize=4, label=label)
        for arm, xi, yi in zip(arms, x, y, strict=True):
            params = _params_text(groups[arm][0].trainable_params)
            text = f"{arm.label}: {yi:.2f}" if depth or not shared else f"{yi:.2f}"
            # Beside the point, clear of its error bar; the control's below it.
            offset = (6, 4) if shared else (6, -24)
            ax.annotate(
                f"{text}\n{params} params",
                (xi, yi),
                textcoords="offset points",
                xytext=offset,
                ha="left",
                fontsize="small",
                color=color,
            )
    if depth:
        ax.set_xlabel("unrolled depth (convolution calls, 8N + 3)")
        ax.set_title("Final accuracy vs. unrolled depth" + _seeds_note(rows))
    else:
        ax.set_xlabel("layer reuse N (applications of each stage's convolutions)")
        ax.set_title("Final accuracy vs. reuse" + _seeds_note(rows))
        ax.set_xticks(sorted({a.layer_reuse for a in groups}))
    ax.set_ylabel("test accuracy (%)")
    ax.margins(x=0.2)  # room for the labels right of the points
    if not all(a.shared for a in groups):
        ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def _plot_accuracy(ax, rows: Sequence[StudyRow], epoch_rows: Sequence[EpochRow]) -> None:
    _plot_accuracy_against(ax, rows, depth=False)


def _plot_depth(ax, rows: Sequence[StudyRow], epoch_rows: Sequence[EpochRow]) -> None:
    _plot_accuracy_against(ax, rows, depth=True)


def _plot_epochs(ax, rows: Sequence[StudyRow], epoch_rows: Sequence[EpochRow]) -> None:
    params = {arm: group[0].trainable_params for arm, group in group_by_arm(rows).items()}
    curves: dict[Arm, dict[int, list[float]]] = {}
    for r in epoch_rows:
        curves.setdefault(r.arm, {}).setdefault(r.epoch, []).append(100 * r.test_accuracy)
    for i, (arm, by_epoch) in enumerate(sorted(curves.items(), key=lambda c: c[0].sort_key())):
        epochs = sorted(by_epoch)
        stats = [mean_std(by_epoch[e]) for e in epochs]
        mean = [m for m, _ in stats]
        color = f"C{i}"
        label = arm.label + (f" ({_params_text(params[arm])} params)" if arm in params else "")
        ax.plot(epochs, mean, "o-" if arm.shared else "s--", color=color, label=label, ms=3)
        ax.fill_between(
            epochs,
            [m - s for m, s in stats],
            [m + s for m, s in stats],
            color=color,
            alpha=0.2,
            linewidth=0,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs. epoch" + _seeds_note(rows).replace("mean ±", "mean, shaded ±"))
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def _plot_params(ax, rows: Sequence[StudyRow], epoch_rows: Sequence[EpochRow]) -> None:
    groups = group_by_arm(rows)
    first = [g[0] for arm, g in groups.items() if arm.shared]
    controls = [g[0] for arm, g in groups.items() if not arm.shared]
    x = [r.layer_reuse for r in first]
    ax.plot(
        x, [r.trainable_params / 1e3 for r in first], "o-", color="tab:green", label="trainable"
    )
    ax.plot(
        x,
        [r.unrolled_params / 1e3 for r in first],
        "s--",
        color="tab:gray",
        label="unrolled (one layer per call)",
    )
    if controls:
        ax.plot(
            [r.layer_reuse for r in controls],
            [r.trainable_params / 1e3 for r in controls],
            "s",
            color="tab:red",
            label="unshared control (trainable)",
        )
    for r in first + controls:
        ax.annotate(
            _params_text(r.trainable_params),
            (r.layer_reuse, r.trainable_params / 1e3),
            textcoords="offset points",
            xytext=(0, -14) if r.shared else (-8, 6),
            ha="center" if r.shared else "right",
        )
    ax.set_xlabel("layer reuse N")
    ax.set_ylabel("parameters (thousands)")
    ax.set_xticks(sorted({a.layer_reuse for a in groups}))
    top = max([r.unrolled_params for r in first] + [r.trainable_params for r in controls])
    ax.set_ylim(0, 1.1 * top / 1e3)
    ax.set_title("Parameters vs. reuse")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)


def _pad_accuracy_axis(ax, rows: Sequence[StudyRow]) -> None:
    stats = [mean_std([100 * r.test_accuracy for r in g]) for g in group_by_arm(rows).values()]
    low = min(m - s for m, s in stats)
    high = max(m + s for m, s in stats)
    span = max(high - low, 1.0)
    ax.set_ylim(low - 0.35 * span, high + 0.35 * span)


def plot(
    rows: Sequence[StudyRow],
    output_dir: str,
    title: str = "",
    epoch_rows: Sequence[EpochRow] = (),
) -> dict[str, str]:
    """Draws the study's plots as PNG files.

    Args:
        rows: The study's rows (any order; several seeds per N are averaged).
        output_dir: Existing directory for the PNGs.
        title: Suptitle, e.g. the dataset and budget.
        epoch_rows: The per-epoch rows; without them there is no
            accuracy-against-epoch plot.

    Returns:
        Plot name ("overview", "accuracy", "epochs", "params", "depth") -> path.

    Raises:
        ValueError: if `rows` is empty.
    """
    if not rows:
        raise ValueError("`rows` must hold at least one study row. Received: rows=[]")
    drawers = {"accuracy": _plot_accuracy}
    if epoch_rows:
        drawers["epochs"] = _plot_epochs
    drawers.update(params=_plot_params, depth=_plot_depth)
    paths = {}
    overview = Figure(figsize=(5.7 * len(drawers), 5.2), layout="constrained")
    axes = overview.subplots(1, len(drawers))
    for ax, (name, draw) in zip(axes, drawers.items(), strict=True):
        draw(ax, rows, epoch_rows)
        if name in ("accuracy", "depth"):
            _pad_accuracy_axis(ax, rows)
    if title:
        overview.suptitle(title)
    paths["overview"] = os.path.join(output_dir, PLOT_NAMES["overview"])
    _save_figure(overview, paths["overview"])
    for name, draw in drawers.items():
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = figure.subplots()
        draw(ax, rows, epoch_rows)
        if name in ("accuracy", "depth"):
            _pad_accuracy_axis(ax, rows)
        if title:
            # One panel is narrow: break the title instead of clipping it.
            figure.suptitle(textwrap.fill(title, 80), fontsize="medium")
        paths[name] = os.path.join(output_dir, PLOT_NAMES[name])
        _save_figure(figure, paths[name])
    return paths
