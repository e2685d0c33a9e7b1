"""The layer-reuse study: LruNet trained at several reuse counts on one budget, tabled and plotted.

`run_study(reuse=(1, 2, 4, 8, 10), config=TrainConfig(...), seeds=(0, 1))`
trains N-LruNet for every N and seed with `keras_reuse.training.train`, the
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
The rows and their files are `keras_reuse.experiments.study_results`, the
plots `keras_reuse.experiments.study_plots`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from keras_reuse import training
from keras_reuse.experiments.study_plots import PLOT_NAMES, plot
from keras_reuse.experiments.study_results import (
    COLUMNS,
    CSV_NAME,
    EPOCH_COLUMNS,
    EPOCHS_CSV_NAME,
    Arm,
    Difference,
    EpochRow,
    StudyRow,
    csv_text,
    difference,
    format_differences,
    format_summary,
    format_table,
    read_csv,
    read_run_epochs,
    study_differences,
)
from keras_reuse.reuse.summary import reuse_summary
from keras_reuse.training import builders
from keras_reuse.training.callbacks import latest_backup_epoch
from keras_reuse.training.config import load_config
from keras_reuse.utils import atomic

__all__ = [
    "COLUMNS",
    "CSV_NAME",
    "EPOCH_COLUMNS",
    "EPOCHS_CSV_NAME",
    "PLOT_NAMES",
    "Arm",
    "Difference",
    "EpochRow",
    "StudyResult",
    "StudyRow",
    "describe_budget",
    "difference",
    "format_differences",
    "study_differences",
    "format_summary",
    "format_table",
    "plot",
    "read_csv",
    "run_study",
    "unrolled_depth",
]

# Fields the study sets per run, or that do not change what is trained.
_PER_RUN_FIELDS = ("output_dir", "seed", "resume", "verbose")


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
        atomic.write_text(csv_path, csv_text(rows))
        atomic.write_text(epochs_csv_path, csv_text(epoch_rows, EPOCH_COLUMNS))

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
