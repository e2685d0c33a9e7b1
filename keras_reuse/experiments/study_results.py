"""The layer-reuse study's results: arms, rows, their CSV files and their tables.

`StudyRow` is one run's final result (an arm and a seed), `EpochRow` one
epoch of one run; `read_csv` reads the study's CSVs back, `difference`
compares two arms with a confidence interval, and `format_table`,
`format_summary` and `format_differences` write Markdown. The runner is
`keras_reuse.experiments.study`, the plots `keras_reuse.experiments.study_plots`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import statistics
from collections.abc import Sequence
from typing import Any

from scipy import stats

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


@dataclasses.dataclass(frozen=True)
class Difference:
    """Arm `a`'s mean final test accuracy minus arm `b`'s, in points, with its interval.

    Attributes:
        a: The arm whose mean comes first.
        b: The arm subtracted.
        mean: The difference of the means (points).
        low: The interval's lower end (points); NaN when neither arm
            varies between seeds.
        high: The interval's upper end (points); NaN likewise.
        confidence: The interval's confidence level, e.g. 0.95.
        dof: Welch-Satterthwaite degrees of freedom of the interval.
    """

    a: Arm
    b: Arm
    mean: float
    low: float
    high: float
    confidence: float
    dof: float


def difference(rows: Sequence[StudyRow], a: Arm, b: Arm, confidence: float = 0.95) -> Difference:
    """Compares two arms' final test accuracies over their seeds (Welch's t interval).

    The seeds are independent samples of each arm; the arms' variances are
    not assumed equal.

    Args:
        rows: The study's rows.
        a: The arm whose mean comes first.
        b: The arm subtracted.
        confidence: The interval's confidence level, in (0, 1).

    Returns:
        The difference `a - b` in percentage points, with its interval.

    Raises:
        ValueError: An arm with fewer than two runs, or `confidence` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}")
    groups = group_by_arm(rows)
    samples = []
    for arm in (a, b):
        values = [100 * r.test_accuracy for r in groups.get(arm, [])]
        if len(values) < 2:
            raise ValueError(
                f"Arm {arm.label} has {len(values)} run(s); an interval needs at least 2 seeds"
            )
        samples.append(values)
    (mean_a, std_a), (mean_b, std_b) = (mean_std(values) for values in samples)
    var_a, var_b = (std**2 / len(v) for std, v in zip((std_a, std_b), samples, strict=True))
    mean = mean_a - mean_b
    if var_a + var_b == 0:  # no spread measured: no interval
        return Difference(a, b, mean, float("nan"), float("nan"), confidence, float("nan"))
    dof = (var_a + var_b) ** 2 / (
        var_a**2 / (len(samples[0]) - 1) + var_b**2 / (len(samples[1]) - 1)
    )
    half = float(stats.t.ppf((1 + confidence) / 2, dof)) * (var_a + var_b) ** 0.5
    return Difference(a, b, mean, mean - half, mean + half, confidence, dof)


def study_differences(rows: Sequence[StudyRow], confidence: float = 0.95) -> list[Difference]:
    """The study's questions as differences: reuse against none, shared against unshared.

    For the largest shared N against N = 1 (does reuse pay?), and each
    unshared control against the shared network of its N (is it the
    sharing or the depth?), where both arms have at least two seeds.

    Args:
        rows: The study's rows.
        confidence: The intervals' confidence level.

    Returns:
        The differences, in that order.
    """
    groups = {arm: group for arm, group in group_by_arm(rows).items() if len(group) >= 2}
    shared = sorted(arm.layer_reuse for arm in groups if arm.shared)
    pairs = []
    if len(shared) > 1 and shared[0] == 1:
        pairs.append((Arm(shared[-1]), Arm(1)))
    pairs += [(Arm(arm.layer_reuse), arm) for arm in groups if not arm.shared]
    return [difference(rows, a, b, confidence) for a, b in pairs if a in groups]


def format_differences(rows: Sequence[StudyRow], confidence: float = 0.95) -> str:
    """`study_differences` as a Markdown table (empty when no pair has two seeds each)."""
    found = study_differences(rows, confidence)
    if not found:
        return ""
    level = f"{100 * confidence:g}%"
    lines = [
        f"| comparison | difference (points) | {level} interval | verdict |",
        "|---|---|---|---|",
    ]
    for d in found:
        if d.low != d.low:  # NaN: both arms gave the same accuracy at every seed
            verdict = "no spread between seeds: no interval"
        elif d.low > 0:
            verdict = f"{d.a.label} higher"
        elif d.high < 0:
            verdict = f"{d.b.label} higher"
        else:
            verdict = "no difference shown"
        lines.append(
            f"| {d.a.label} minus {d.b.label} | {d.mean:+.2f} | [{d.low:+.2f}, {d.high:+.2f}] "
            f"| {verdict} |"
        )
    return "\n".join(lines)
