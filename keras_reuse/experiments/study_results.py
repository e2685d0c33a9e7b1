"""The layer-reuse study's results: arms, rows, their CSV files and their tables.

`StudyRow` is one run's final result (an arm and a seed), `EpochRow` one
epoch of one run; `read_csv` reads the study's CSVs back, `format_table` and
`format_summary` write Markdown. The runner is `keras_reuse.experiments.study`,
the plots `keras_reuse.experiments.study_plots`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import statistics
from collections.abc import Sequence
from typing import Any

CSV_NAME = "layer_reuse_study.csv"
EPOCHS_CSV_NAME = "layer_reuse_study_epochs.csv"
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


def csv_text(rows: Sequence[Any], columns: Sequence[str] = COLUMNS) -> str:
    """Rows (`StudyRow`s or `EpochRow`s) as CSV text with a header of `columns`."""
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


def group_by_arm(rows: Sequence[StudyRow]) -> dict[Arm, list[StudyRow]]:
    """The rows grouped by arm: increasing N, the shared arm first; seeds in order."""
    groups: dict[Arm, list[StudyRow]] = {}
    for r in sorted(rows, key=lambda r: (r.arm.sort_key(), r.seed)):
        groups.setdefault(r.arm, []).append(r)
    return groups


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


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
    for arm, group in group_by_arm(rows).items():
        mean, std = mean_std([100 * r.test_accuracy for r in group])
        n = arm.layer_reuse if arm.shared else f"{arm.layer_reuse} unshared"
        params = group[0].trainable_params
        lines.append(f"| {n} | {len(group)} | {mean:.2f} ± {std:.2f} | {params:,} |")
    return "\n".join(lines)
