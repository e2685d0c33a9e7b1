"""The layer-reuse study: LruNet trained at several reuse counts on one budget, tabled and plotted.

`run_study(reuse=(1, 2, 4, 8, 10), config=TrainConfig(...))` trains
N-LruNet for every N with `keras_reuse.training.train`, the same
configuration and seed for all (only `layer_reuse` differs), and writes to
`output_dir`:

- `lrunet_reuse{N}/`: each run's own output (model, metrics, results.json);
- `layer_reuse_study.csv`: one row per N (rewritten after every run);
- `layer_reuse_study_accuracy.png`: test accuracy against N;
- `layer_reuse_study_params.png`: trainable parameters against N (and what
  the unrolled network, one layer per call, would have);
- `layer_reuse_study_depth.png`: test accuracy against unrolled depth;
- `layer_reuse_study.png`: the three side by side.

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
import tempfile
import textwrap
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from keras_reuse import applications, data, training
from keras_reuse.callbacks import write_text_atomic
from keras_reuse.summary import reuse_summary

CSV_NAME = "layer_reuse_study.csv"
PLOT_NAMES = {
    "overview": "layer_reuse_study.png",
    "accuracy": "layer_reuse_study_accuracy.png",
    "params": "layer_reuse_study_params.png",
    "depth": "layer_reuse_study_depth.png",
}
COLUMNS = (
    "layer_reuse",
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
# Fields the study sets per run, or that do not change what is trained.
_PER_RUN_FIELDS = ("output_dir", "layer_reuse", "resume", "verbose")


@dataclasses.dataclass(frozen=True)
class StudyRow:
    """One reuse count's result; the columns of the CSV.

    Attributes:
        layer_reuse: N, reuses per stage.
        unrolled_depth: Convolution calls on the input-to-output path.
        trainable_params: Trainable parameters (shared ones once).
        unrolled_params: Trainable parameters with one layer per call.
        macs_per_example: Multiply-accumulates per example.
        test_accuracy: Accuracy on the evaluation split after training.
        test_loss: Loss on the evaluation split.
        epochs: Epochs trained.
        images_per_sec: Median training throughput.
        wall_time_s: Wall time of the run (its last session when resumed).
    """

    layer_reuse: int
    unrolled_depth: int
    trainable_params: int
    unrolled_params: int
    macs_per_example: int
    test_accuracy: float
    test_loss: float
    epochs: int
    images_per_sec: float | None
    wall_time_s: float


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """What `run_study` wrote.

    Attributes:
        rows: One `StudyRow` per reuse count, in increasing N.
        csv_path: Path of the CSV table.
        plots: Plot name ("overview", "accuracy", "params", "depth") -> PNG path.
        run_dirs: N -> that run's output directory.
    """

    rows: tuple[StudyRow, ...]
    csv_path: str
    plots: dict[str, str]
    run_dirs: dict[int, str]


def _check_reuse(reuse: Any) -> tuple[int, ...]:
    values = tuple(reuse) if isinstance(reuse, (list, tuple)) else None
    if not values or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in values
    ):
        raise ValueError(
            f"`reuse` must be a non-empty sequence of integers >= 1. Received: reuse={reuse!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"`reuse` must not repeat a reuse count. Received: reuse={reuse!r}")
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


def _run_config(base: training.TrainConfig, n: int, run_dir: str) -> training.TrainConfig:
    return dataclasses.replace(base, layer_reuse=n, output_dir=run_dir, resume=True)


def _finished_results(config: training.TrainConfig) -> dict[str, Any] | None:
    """The results of a finished run of exactly `config` in its directory, else None.

    Raises:
        ConfigError: if the directory holds a run (finished or not) of
            another configuration.
    """
    config_path = os.path.join(config.output_dir, "config.json")
    if not os.path.isfile(config_path):
        return None
    with open(config_path) as f:
        saved = json.load(f)
    for field, value in dataclasses.asdict(config).items():
        if field not in _PER_RUN_FIELDS and saved.get(field) != value:
            raise training.ConfigError(
                field,
                value,
                f"differs from the run in {config.output_dir} ({field}={saved.get(field)})",
            )
    results_path = os.path.join(config.output_dir, "results.json")
    if not os.path.isfile(results_path):
        return None
    with open(results_path) as f:
        results = json.load(f)
    return results if results.get("epochs_completed") == config.epochs else None


def _csv_text(rows: Sequence[StudyRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        values = dataclasses.asdict(row)
        # repr: the shortest text that reads back as the same float.
        writer.writerow(
            repr(values[c]) if isinstance(values[c], float) else values[c] for c in COLUMNS
        )
    return buffer.getvalue()


def read_csv(path: str) -> list[StudyRow]:
    """Reads a study CSV back into `StudyRow`s.

    Args:
        path: A `layer_reuse_study.csv`.

    Returns:
        Its rows.
    """
    types = {f.name: f.type for f in dataclasses.fields(StudyRow)}
    rows = []
    with open(path, newline="") as f:
        for record in csv.DictReader(f):
            values = {}
            for name, text in record.items():
                if text == "":
                    values[name] = None
                elif types[name] == "int":
                    values[name] = int(text)
                else:
                    values[name] = float(text)
            rows.append(StudyRow(**values))
    return rows


# -------------------------------------------------------------------- plots ---


def _save_figure(figure: Figure, path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".png")
    os.close(fd)
    try:
        FigureCanvasAgg(figure)
        figure.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _plot_accuracy(ax, rows: Sequence[StudyRow]) -> None:
    x = [r.layer_reuse for r in rows]
    y = [100 * r.test_accuracy for r in rows]
    ax.plot(x, y, "o-", color="tab:blue")
    for xi, yi in zip(x, y, strict=True):
        ax.annotate(f"{yi:.2f}", (xi, yi), textcoords="offset points", xytext=(0, 7), ha="center")
    ax.set_xlabel("layer reuse N (applications of each stage's convolutions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(x)
    ax.set_title("Accuracy vs. reuse")
    ax.grid(alpha=0.3)


def _plot_params(ax, rows: Sequence[StudyRow]) -> None:
    x = [r.layer_reuse for r in rows]
    ax.plot(x, [r.trainable_params / 1e3 for r in rows], "o-", color="tab:green", label="trainable")
    ax.plot(
        x,
        [r.unrolled_params / 1e3 for r in rows],
        "s--",
        color="tab:gray",
        label="unrolled (one layer per call)",
    )
    for r in rows:
        ax.annotate(
            f"{r.trainable_params / 1e3:.0f}K",
            (r.layer_reuse, r.trainable_params / 1e3),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
        )
    ax.set_xlabel("layer reuse N")
    ax.set_ylabel("parameters (thousands)")
    ax.set_xticks(x)
    ax.set_ylim(0, 1.1 * max(r.unrolled_params for r in rows) / 1e3)
    ax.set_title("Parameters vs. reuse")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)


def _plot_depth(ax, rows: Sequence[StudyRow]) -> None:
    x = [r.unrolled_depth for r in rows]
    y = [100 * r.test_accuracy for r in rows]
    ax.plot(x, y, "o-", color="tab:purple")
    for r, xi, yi in zip(rows, x, y, strict=True):
        ax.annotate(
            f"N={r.layer_reuse}", (xi, yi), textcoords="offset points", xytext=(0, 7), ha="center"
        )
    ax.set_xlabel("unrolled depth (convolution calls, 8N + 3)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(x)
    ax.set_title("Accuracy vs. unrolled depth")
    ax.grid(alpha=0.3)


def _pad_accuracy_axis(ax, rows: Sequence[StudyRow]) -> None:
    y = [100 * r.test_accuracy for r in rows]
    span = max(max(y) - min(y), 1.0)
    ax.set_ylim(min(y) - 0.25 * span, max(y) + 0.35 * span)


def plot(rows: Sequence[StudyRow], output_dir: str, title: str = "") -> dict[str, str]:
    """Draws the study's plots as PNG files.

    Args:
        rows: The study's rows (any order).
        output_dir: Existing directory for the PNGs.
        title: Suptitle, e.g. the dataset and budget.

    Returns:
        Plot name ("overview", "accuracy", "params", "depth") -> path.

    Raises:
        ValueError: if `rows` is empty.
    """
    if not rows:
        raise ValueError("`rows` must hold at least one study row. Received: rows=[]")
    rows = sorted(rows, key=lambda r: r.layer_reuse)
    drawers = {"accuracy": _plot_accuracy, "params": _plot_params, "depth": _plot_depth}
    paths = {}
    overview = Figure(figsize=(17, 5.2), layout="constrained")
    axes = overview.subplots(1, 3)
    for ax, (name, draw) in zip(axes, drawers.items(), strict=True):
        draw(ax, rows)
        if name != "params":
            _pad_accuracy_axis(ax, rows)
    if title:
        overview.suptitle(title)
    paths["overview"] = os.path.join(output_dir, PLOT_NAMES["overview"])
    _save_figure(overview, paths["overview"])
    for name, draw in drawers.items():
        figure = Figure(figsize=(6.4, 4.8), layout="constrained")
        ax = figure.subplots()
        draw(ax, rows)
        if name != "params":
            _pad_accuracy_axis(ax, rows)
        if title:
            # One panel is narrow: break the title instead of clipping it.
            figure.suptitle(textwrap.fill(title, 80), fontsize="medium")
        paths[name] = os.path.join(output_dir, PLOT_NAMES[name])
        _save_figure(figure, paths[name])
    return paths


def describe_budget(config: training.TrainConfig, num_train: int, num_eval: int) -> str:
    """A one-line description of the shared budget, used as the plots' title."""
    return (
        f"LruNet-{config.width_multiplier or 1:g}x on {config.dataset}: "
        f"{config.epochs} epoch(s) on {num_train:,} training images, batch {config.batch_size}, "
        f"lr {config.learning_rate:g} ({config.schedule}), seed {config.seed}; "
        f"accuracy on {num_eval:,} test images"
    )


# -------------------------------------------------------------------- study ---


def run_study(
    reuse: Sequence[int] = (1, 2, 4, 8, 10),
    output_dir: str = "runs/layer_reuse_study",
    config: training.TrainConfig | None = None,
    resume: bool = False,
) -> StudyResult:
    """Trains LruNet at each reuse count with one budget and seed, then tables and plots it.

    Args:
        reuse: The reuse counts N to train.
        output_dir: Where the runs, the CSV and the plots go.
        config: The budget shared by every run (dataset, epochs, batch size,
            learning rate, seed, example limits, ...); its `model` must be
            "lrunet". `layer_reuse`, `output_dir` and `resume` are set per
            run. Defaults to `TrainConfig(dataset="fashion_mnist", epochs=10)`.
        resume: Continue a study in `output_dir`: finished runs of the same
            configuration are taken as they are, unfinished ones resume from
            their last epoch. Without it, a directory that already holds a
            study is refused.

    Returns:
        A `StudyResult`.

    Raises:
        ValueError: (`training.ConfigError` for configuration fields) naming
            the argument and its value, before any training or file writing.
    """
    counts = _check_reuse(reuse)
    if not isinstance(resume, bool):
        raise ValueError(f"`resume` must be True or False. Received: resume={resume!r}")
    if config is None:
        config = training.TrainConfig(dataset="fashion_mnist", epochs=10)
    if not isinstance(config, training.TrainConfig):
        raise ValueError(f"`config` must be a TrainConfig. Received: config={config!r}")
    if config.model != "lrunet":
        raise training.ConfigError("model", config.model, "the layer-reuse study trains lrunet")
    if config.export_tflite:
        raise training.ConfigError("export_tflite", True, "not part of the study")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise training.ConfigError("output_dir", output_dir, "exists and is not a directory")
    run_dirs = {n: os.path.join(output_dir, f"lrunet_reuse{n}") for n in counts}
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
    configs = {n: _run_config(config, n, run_dirs[n]) for n in counts}
    for run_config in configs.values():
        training.validate(run_config)
    try:
        info = data.info(config.dataset, data_dir=config.data_dir)
    except ValueError as error:
        raise training.ConfigError("dataset", config.dataset, str(error)) from error
    finished = {n: _finished_results(configs[n]) for n in counts}

    # The architecture columns come from the graph, before any training.
    depths = {}
    for n in counts:
        model = applications.create(
            "lrunet",
            num_classes=info.num_classes,
            input_shape=info.input_shape,
            **configs[n].model_kwargs(),
        )
        depths[n] = unrolled_depth(model)
        del model

    os.makedirs(output_dir, exist_ok=True)
    csv_path = os.path.join(output_dir, CSV_NAME)
    rows: list[StudyRow] = []
    for n in counts:
        results = finished[n] or training.train(configs[n])
        rows.append(
            StudyRow(
                layer_reuse=n,
                unrolled_depth=depths[n],
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
        write_text_atomic(csv_path, _csv_text(rows))

    train_split = "train" if "train" in info.splits else next(iter(info.splits))
    eval_split = "test" if "test" in info.splits else "validation"
    num_train = min(info.splits[train_split], config.max_train_examples or info.splits[train_split])
    num_eval = min(info.splits[eval_split], config.max_eval_examples or info.splits[eval_split])
    plots = plot(rows, output_dir, describe_budget(config, num_train, num_eval))
    return StudyResult(rows=tuple(rows), csv_path=csv_path, plots=plots, run_dirs=run_dirs)


def format_table(rows: Sequence[StudyRow]) -> str:
    """The study's rows as a Markdown table (accuracy in percent)."""
    header = (
        "| N | unrolled depth | trainable params | unrolled params | MACs/example "
        "| test accuracy (%) | test loss | epochs | images/s |"
    )
    lines = [header, "|" + "---|" * 9]
    for r in sorted(rows, key=lambda r: r.layer_reuse):
        rate = "" if r.images_per_sec is None else f"{r.images_per_sec:,.0f}"
        lines.append(
            f"| {r.layer_reuse} | {r.unrolled_depth} | {r.trainable_params:,} "
            f"| {r.unrolled_params:,} | {r.macs_per_example:,} | {100 * r.test_accuracy:.2f} "
            f"| {r.test_loss:.4f} | {r.epochs} | {rate} |"
        )
    return "\n".join(lines)
