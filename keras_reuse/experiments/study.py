"""The layer-reuse study: LruNet trained at several reuse counts on one budget, tabled and plotted.

`run_study(reuse=(1, 2, 4, 8, 10), config=TrainConfig(...), seeds=(0, 1))`
trains N-LruNet for every N and seed with `keras_reuse.training.trainer.train`, the
same configuration for all (only `layer_reuse` and `seed` differ), and
writes to `output_dir`:

- `lrunet_reuse{N}_seed{S}/`: each run's own output (model, metrics.csv,
  results.json, the per-epoch backup it resumes from);
- `lrunet_reuse{N}_unshared_seed{S}/`: the same for a control arm
  (`unshared=(N,)`): `keras_reuse.unshare(LruNet(N))`, the same depth and
  compute with a fresh layer at every call, which separates what reuse does
  by depth from what it does by sharing;
- `layer_reuse_study.csv`: one row per (arm, seed), the final result
  (rewritten after every run);
- `layer_reuse_study_epochs.csv`: one row per (arm, seed, epoch): the test
  accuracy and loss after every epoch, and the training ones;
- `layer_reuse_study_accuracy.png`: final test accuracy against N (mean,
  error bars one standard deviation over the seeds);
- `layer_reuse_study_epochs.png`: test accuracy against epoch per N (mean,
  shaded one standard deviation over the seeds);
- `layer_reuse_study_params.png`: trainable parameters against N (and what
  the unrolled network, one layer per call, would have);
- `layer_reuse_study_depth.png`: test accuracy against unrolled depth;
- `layer_reuse_study.png`: the four side by side.

A killed study started again with `resume=True` (`--resume`) takes the
finished runs as they are and continues the unfinished one from its last
completed epoch (`training.train(..., resume=True)`).

Unrolled depth is the number of convolution calls on the input-to-output
path, 8N + 3 for LruNet (stem, 4 stages x N x depthwise + pointwise, two
head convolutions), counted from the model's graph by `reuse_summary`.
Plots are drawn on matplotlib's Agg canvas without pyplot, so the global
backend (e.g. a notebook's) is left alone.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import statistics
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_reuse import training
from keras_reuse.reuse.summary import reuse_summary
from keras_reuse.training import builders
from keras_reuse.training.callbacks import latest_backup_epoch
from keras_reuse.training.config import load_config
from keras_reuse.utils import atomic

CSV_NAME = "layer_reuse_study.csv"
EPOCHS_CSV_NAME = "layer_reuse_study_epochs.csv"
PLOT_NAMES = {
    "overview": "layer_reuse_study.png",
    "accuracy": "layer_reuse_study_accuracy.png",
    "epochs": "layer_reuse_study_epochs.png",
    "params": "layer_reuse_study_params.png",
    "depth": "layer_reuse_study_depth.png",
}
COLUMNS = (
    "layer_reuse",
    "shared",
    "seed",
    "unrolled_depth",
    "trainable_params",
    "unrolled_params",
    "macs_per_example",
    "test_accuracy",
    "test_loss",
    "epochs",
    "images_per_sec",
    "wall_time_s",
)
EPOCH_COLUMNS = (
    "layer_reuse",
    "shared",
    "seed",
    "epoch",
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
)
# Fields the study sets per run, or that do not change what is trained.
_PER_RUN_FIELDS = ("output_dir", "seed", "resume", "verbose")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One network the study trains: LruNet at a reuse count, shared or unshared.

    Attributes:
        layer_reuse: N, reuses per stage.
        shared: False for the control, `keras_reuse.unshare(LruNet(N))`.
    """

    layer_reuse: int
    shared: bool = True

    @property
    def label(self) -> str:
        """ "N=10", or "N=10 unshared" for a control arm."""
        return f"N={self.layer_reuse}" + ("" if self.shared else " unshared")

    def run_name(self, seed: int) -> str:
        """The directory of this arm's run with `seed`."""
        unshared = "" if self.shared else "_unshared"
        return f"lrunet_reuse{self.layer_reuse}{unshared}_seed{seed}"

    def sort_key(self) -> tuple[int, bool]:
        """Increasing N; at one N the shared network first."""
        return self.layer_reuse, not self.shared


@dataclasses.dataclass(frozen=True)
class StudyRow:
    """One run's result (an arm and a seed); the columns of the CSV.

    Attributes:
        layer_reuse: N, reuses per stage.
        seed: The run's random seed (weights, data order, augmentation).
        unrolled_depth: Convolution calls on the input-to-output path.
        trainable_params: Trainable parameters (shared ones once).
        unrolled_params: Trainable parameters with one layer per call.
        macs_per_example: Multiply-accumulates per example.
        test_accuracy: Accuracy on the evaluation split after training.
        test_loss: Loss on the evaluation split.
        epochs: Epochs trained.
        images_per_sec: Median training throughput.
        wall_time_s: Wall time of the run (its last session when resumed).
        shared: False for a control arm (the unshared network).
    """

    layer_reuse: int
    seed: int
    unrolled_depth: int
    trainable_params: int
    unrolled_params: int
    macs_per_example: int
    test_accuracy: float
    test_loss: float
    epochs: int
    images_per_sec: float | None
    wall_time_s: float
    shared: bool = True

    @property
    def arm(self) -> Arm:
        """The network this row trained."""
        return Arm(self.layer_reuse, self.shared)


@dataclasses.dataclass(frozen=True)
class EpochRow:
    """One epoch of one run; the columns of the per-epoch CSV.

    Attributes:
        layer_reuse: N.
        seed: The run's seed.
        epoch: Epochs completed (1 for the first).
        test_accuracy: Accuracy on the evaluation split after this epoch.
        test_loss: Loss on the evaluation split after this epoch.
        train_accuracy: Training accuracy over the epoch (running, augmented).
        train_loss: Training loss over the epoch.
        shared: False for a control arm (the unshared network).
    """

    layer_reuse: int
    seed: int
    epoch: int
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    train_loss: float
    shared: bool = True

    @property
    def arm(self) -> Arm:
        """The network this row trained."""
        return Arm(self.layer_reuse, self.shared)


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What `run_study` wrote.

    Attributes:
        rows: One `StudyRow` per (arm, seed): increasing N, the shared arm
            first, then seed.
        epoch_rows: One `EpochRow` per (arm, seed, epoch).
        csv_path: Path of the CSV table.
        epochs_csv_path: Path of the per-epoch CSV.
        plots: Plot name ("overview", "accuracy", "epochs", "params", "depth") -> PNG path.
        run_dirs: (arm, seed) -> that run's output directory.
    """

    rows: tuple[StudyRow, ...]
    epoch_rows: tuple[EpochRow, ...]
    csv_path: str
    epochs_csv_path: str
    plots: dict[str, str]
    run_dirs: dict[tuple[Arm, int], str]


def _check_reuse(reuse: Any, name: str = "reuse", minimum: int = 1) -> tuple[int, ...]:
    values = tuple(reuse) if isinstance(reuse, (list, tuple)) else None
    if values is None or (name == "reuse" and not values):
        raise ValueError(
            f"`{name}` must be a non-empty sequence of integers >= {minimum}. "
            f"Received: {name}={reuse!r}"
        )
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= minimum for n in values):
        raise ValueError(f"`{name}` must hold integers >= {minimum}. Received: {name}={reuse!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"`{name}` must not repeat a reuse count. Received: {name}={reuse!r}")
    return tuple(sorted(values))


def unrolled_depth(model: Any) -> int:
    """Convolution and dense calls of a model, each call of a shared layer counted.

    Args:
        model: A functional Keras model with a fixed input size whose layers
            with weights lie on one input-to-output path (LruNet).

    Returns:
        The depth the network has when every reuse is unrolled.
    """
    return sum(row.calls for row in reuse_summary(model).layers if row.macs > 0)


def _check_seeds(seeds: Any) -> tuple[int, ...]:
    values = tuple(seeds) if isinstance(seeds, (list, tuple)) else None
    if not values or not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
        raise ValueError(
            f"`seeds` must be a non-empty sequence of integers. Received: seeds={seeds!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"`seeds` must not repeat a seed. Received: seeds={seeds!r}")
    return values


def _run_config(
    base: training.TrainConfig, arm: Arm, seed: int, run_dir: str
) -> training.TrainConfig:
    model_args = {**base.model_args, "layer_reuse": arm.layer_reuse}
    return dataclasses.replace(
        base,
        model_args=model_args,
        unshare=not arm.shared,
        seed=seed,
        output_dir=run_dir,
        resume=True,
    )


def read_run_epochs(run_dir: str, n: int, seed: int, shared: bool = True) -> list[EpochRow]:
    """The per-epoch rows of one run, from its `metrics.csv` (empty if none yet)."""
    path = os.path.join(run_dir, "metrics.csv")
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return [
            EpochRow(
                layer_reuse=n,
                seed=seed,
                epoch=int(record["epoch"]) + 1,
                test_accuracy=float(record["val_accuracy"]),
                test_loss=float(record["val_loss"]),
                train_accuracy=float(record["accuracy"]),
                train_loss=float(record["loss"]),
                shared=shared,
            )
            for record in csv.DictReader(f)
        ]


def _finished_results(config: training.TrainConfig) -> dict[str, Any] | None:
    """The results of a finished run of exactly `config` in its directory, else None.

    Raises:
        ConfigError: if the directory holds a run (finished or not) of
            another configuration.
    """
    config_path = os.path.join(config.output_dir, "config.json")
    if not os.path.isfile(config_path):
        return None
    compared = [f.name for f in dataclasses.fields(config) if f.name not in _PER_RUN_FIELDS]
    differs = config.difference(load_config(config_path), compared)
    if differs is not None:
        field, ours, theirs = differs
        raise training.ConfigError(
            field, ours, f"differs from the run in {config.output_dir} ({field}={theirs})"
        )
    results_path = os.path.join(config.output_dir, "results.json")
    if not os.path.isfile(results_path):
        return None
    with open(results_path) as f:
        results = json.load(f)
    return results if results.get("epochs_completed") == config.epochs else None


def _csv_text(rows: Sequence[Any], columns: Sequence[str] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = dataclasses.asdict(row)
        # repr: the shortest text that reads back as the same float.
        writer.writerow(
            repr(values[c]) if isinstance(values[c], float) else values[c] for c in columns
        )
    return buffer.getvalue()


def read_csv(path: str, row_type: type = StudyRow) -> list[Any]:
    """Reads a study CSV back into rows.

    Args:
        path: A `layer_reuse_study.csv` (or `layer_reuse_study_epochs.csv`
            with `row_type=EpochRow`).
        row_type: `StudyRow` or `EpochRow`.

    Returns:
        Its rows.
    """
    types = {f.name: f.type for f in dataclasses.fields(row_type)}
    rows = []
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            values = {}
            for name, text in record.items():
                if text == "":
                    values[name] = None
                elif types[name] == "int":
                    values[name] = int(text)
                elif types[name] == "bool":
                    values[name] = {"True": True, "False": False}[text]
                else:
                    values[name] = float(text)
            rows.append(row_type(**values))
    return rows


# -------------------------------------------------------------------- plots ---


def _save_figure(figure: Figure, path: str) -> None:
    FigureCanvasAgg(figure)
    atomic.write_file(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))


def _by_arm(rows: Sequence[StudyRow]) -> dict[Arm, list[StudyRow]]:
    groups: dict[Arm, list[StudyRow]] = {}
    for r in sorted(rows, key=lambda r: (r.arm.sort_key(), r.seed)):
        groups.setdefault(r.arm, []).append(r)
    return groups


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _seeds_note(rows: Sequence[StudyRow]) -> str:
    seeds = {r.seed for r in rows}
    return "" if len(seeds) == 1 else f" (mean ± std over {len(seeds)} seeds)"


def _params_text(params: int) -> str:
    return f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"


def _plot_accuracy_against(ax, rows: Sequence[StudyRow], depth: bool) -> None:
    groups = _by_arm(rows)
    for shared in (True, False):
        arms = [arm for arm in groups if arm.shared == shared]
        if not arms:
            continue
        x = [groups[a][0].unrolled_depth if depth else a.layer_reuse for a in arms]
        if not shared:  # beside the shared network of the same N, not on it
            span = max(r.unrolled_depth if depth else r.layer_reuse for r in rows)
            x = [xi + 0.03 * span for xi in x]
        stats = [_mean_std([100 * r.test_accuracy for r in groups[a]]) for a in arms]
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
    params = {arm: group[0].trainable_params for arm, group in _by_arm(rows).items()}
    curves: dict[Arm, dict[int, list[float]]] = {}
    for r in epoch_rows:
        curves.setdefault(r.arm, {}).setdefault(r.epoch, []).append(100 * r.test_accuracy)
    for i, (arm, by_epoch) in enumerate(sorted(curves.items(), key=lambda c: c[0].sort_key())):
        epochs = sorted(by_epoch)
        stats = [_mean_std(by_epoch[e]) for e in epochs]
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
    groups = _by_arm(rows)
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
    stats = [_mean_std([100 * r.test_accuracy for r in g]) for g in _by_arm(rows).values()]
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


def describe_budget(
    config: training.TrainConfig,
    num_train: int,
    num_eval: int,
    seeds: Sequence[int] | None = None,
) -> str:
    """A one-line description of the shared budget, used as the plots' title."""
    seeds = (config.seed,) if seeds is None else tuple(seeds)
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    precise = f", precise BN over {config.precise_bn_batches} batches" * bool(
        config.precise_bn_batches
    )
    return (
        f"LruNet-{config.model_args.get('width_multiplier') or 1:g}x on {config.dataset}: "
        f"{config.epochs} epoch(s) on {num_train:,} training images, batch {config.batch_size}, "
        f"lr {config.learning_rate:g} ({config.schedule}){precise}, {seed_text}; "
        f"accuracy on {num_eval:,} test images"
    )


# -------------------------------------------------------------------- study ---


def run_study(
    reuse: Sequence[int] = (1, 2, 4, 8, 10),
    output_dir: str = "runs/layer_reuse_study",
    config: training.TrainConfig | None = None,
    resume: bool = False,
    seeds: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
    unshared: Sequence[int] = (),
) -> StudyResult:
    """Trains LruNet at each reuse count and seed with one budget, then tables and plots it.

    Args:
        reuse: The reuse counts N to train.
        output_dir: Where the runs, the CSVs and the plots go.
        config: The budget shared by every run (dataset, epochs, batch size,
            learning rate, precise BN, example limits, ...); its `model` must
            be "lrunet". `layer_reuse`, `seed`, `output_dir` and `resume` are
            set per run. Defaults to `TrainConfig(dataset="fashion_mnist", epochs=10)`.
        resume: Continue a study in `output_dir`: finished runs of the same
            configuration are taken as they are, an unfinished one resumes
            from its last completed epoch. Without it, a directory that
            already holds a study is refused.
        seeds: The seeds to train every N with; defaults to `(config.seed,)`.
        progress: Called with a line before and after every run (e.g.
            `print`); None for silence.
        unshared: Reuse counts N (>= 2) to train as control arms too:
            `keras_reuse.unshare(LruNet(N))`, the same depth and compute
            with a fresh layer at every call.

    Returns:
        A `StudyResult`.

    Raises:
        ValueError: (`training.ConfigError` for configuration fields) naming
            the argument and its value, before any training or file writing.
    """
    arms = sorted(
        [Arm(n) for n in _check_reuse(reuse)]
        + [Arm(n, shared=False) for n in _check_reuse(unshared, "unshared", minimum=2)],
        key=Arm.sort_key,
    )
    if not isinstance(resume, bool):
        raise ValueError(f"`resume` must be True or False. Received: resume={resume!r}")
    if config is None:
        config = training.TrainConfig(dataset="fashion_mnist", epochs=10)
    if not isinstance(config, training.TrainConfig):
        raise ValueError(f"`config` must be a TrainConfig. Received: config={config!r}")
    seed_values = _check_seeds((config.seed,) if seeds is None else seeds)
    if config.model != "lrunet":
        raise training.ConfigError("model", config.model, "the layer-reuse study trains lrunet")
    if config.export_tflite:
        raise training.ConfigError("export_tflite", True, "not part of the study")
    if config.unshare:
        raise training.ConfigError(
            "unshare", True, "the study sets it per arm; name the control arms in `unshared`"
        )
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise training.ConfigError("output_dir", output_dir, "exists and is not a directory")
    keys = [(arm, seed) for arm in arms for seed in seed_values]
    run_dirs = {(a, s): os.path.join(output_dir, a.run_name(s)) for a, s in keys}
    existing = [d for d in run_dirs.values() if os.path.exists(d)]
    if os.path.exists(os.path.join(output_dir, CSV_NAME)):
        existing.append(os.path.join(output_dir, CSV_NAME))
    if existing and not resume:
        raise training.ConfigError(
            "output_dir",
            output_dir,
            f"already holds a study ({existing[0]}); pass --resume to continue it "
            "or choose another directory",
        )
    configs = {(a, s): _run_config(config, a, s, run_dirs[a, s]) for a, s in keys}
    for run_config in configs.values():
        training.validate(run_config)
    info = builders.dataset_info(config)
    finished = {key: _finished_results(configs[key]) for key in keys}

    # The architecture columns come from the graph, before any training.
    depths = {}
    for arm in arms:
        model = builders.build_model(configs[arm, seed_values[0]], info)
        depths[arm] = unrolled_depth(model)
        del model

    say = progress or (lambda line: None)
    os.makedirs(output_dir, exist_ok=True)
    csv_path = os.path.join(output_dir, CSV_NAME)
    epochs_csv_path = os.path.join(output_dir, EPOCHS_CSV_NAME)
    rows: list[StudyRow] = []
    epoch_rows: list[EpochRow] = []
    for i, (arm, seed) in enumerate(keys, start=1):
        where = f"[{i}/{len(keys)}] {arm.label} seed={seed}"
        results = finished[arm, seed]
        if results is not None:
            say(f"{where}: finished earlier, test accuracy {results['test_accuracy']:.4f}")
        else:
            done = latest_backup_epoch(os.path.join(run_dirs[arm, seed], "backup"))
            start = f"resuming after epoch {done}" if done else "starting"
            say(f"{where}: {start}, {config.epochs} epoch(s) in {run_dirs[arm, seed]}")
            results = training.train(configs[arm, seed])
            say(
                f"{where}: done, test accuracy {results['test_accuracy']:.4f} "
                f"({results['wall_time_s']:.0f} s this session)"
            )
        rows.append(
            StudyRow(
                layer_reuse=arm.layer_reuse,
                shared=arm.shared,
                seed=seed,
                unrolled_depth=depths[arm],
                trainable_params=results["trainable_params"],
                unrolled_params=results["unrolled_params"],
                macs_per_example=results["macs_per_example"],
                test_accuracy=results["test_accuracy"],
                test_loss=results["test_loss"],
                epochs=results["epochs_completed"],
                images_per_sec=results["images_per_sec"],
                wall_time_s=results["wall_time_s"],
            )
        )
        epoch_rows.extend(read_run_epochs(run_dirs[arm, seed], arm.layer_reuse, seed, arm.shared))
        atomic.write_text(csv_path, _csv_text(rows))
        atomic.write_text(epochs_csv_path, _csv_text(epoch_rows, EPOCH_COLUMNS))

    train_split = "train" if "train" in info.splits else next(iter(info.splits))
    eval_split = "test" if "test" in info.splits else "validation"
    num_train = min(info.splits[train_split], config.max_train_examples or info.splits[train_split])
    num_eval = min(info.splits[eval_split], config.max_eval_examples or info.splits[eval_split])
    title = describe_budget(config, num_train, num_eval, seed_values)
    plots = plot(rows, output_dir, title, epoch_rows)
    return StudyResult(
        rows=tuple(rows),
        epoch_rows=tuple(epoch_rows),
        csv_path=csv_path,
        epochs_csv_path=epochs_csv_path,
        plots=plots,
        run_dirs=run_dirs,
    )


def format_table(rows: Sequence[StudyRow]) -> str:
    """The study's rows as a Markdown table (accuracy in percent)."""
    header = (
        "| N | seed | unrolled depth | trainable params | unrolled params | MACs/example "
        "| test accuracy (%) | test loss | epochs | images/s |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in sorted(rows, key=lambda r: (r.arm.sort_key(), r.seed)):
        rate = "" if r.images_per_sec is None else f"{r.images_per_sec:,.0f}"
        n = r.layer_reuse if r.shared else f"{r.layer_reuse} unshared"
        lines.append(
            f"| {n} | {r.seed} | {r.unrolled_depth} | {r.trainable_params:,} "
            f"| {r.unrolled_params:,} | {r.macs_per_example:,} | {100 * r.test_accuracy:.2f} "
            f"| {r.test_loss:.4f} | {r.epochs} | {rate} |"
        )
    return "\n".join(lines)


def format_summary(rows: Sequence[StudyRow]) -> str:
    """Mean ± standard deviation of the final test accuracy per arm, as Markdown."""
    lines = [
        "| N | seeds | test accuracy (%), mean ± std | trainable params |",
        "|---|---|---|---|",
    ]
    for arm, group in _by_arm(rows).items():
        mean, std = _mean_std([100 * r.test_accuracy for r in group])
        n = arm.layer_reuse if arm.shared else f"{arm.layer_reuse} unshared"
        params = group[0].trainable_params
        lines.append(f"| {n} | {len(group)} | {mean:.2f} ± {std:.2f} | {params:,} |")
    return "\n".join(lines)
