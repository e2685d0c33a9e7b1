"""Faithfulness: our Keras training against the authors' recipe in PyTorch, side by side.

  python -m benchmarks.faithful --dataset=fashion_mnist --layer_reuse=1,10 --seeds=0,1,2 \
      --epochs=E --max_train_examples=M --output_dir=runs/faithful [--resume]

For every reuse count N and seed it trains

- the Keras LruNet with `keras-reuse train`'s recipe
  (`keras_reuse.training.train`: CoupledSGD, the `keras_reuse.data`
  pipeline and augmentation), and
- the PyTorch reference network (`torch_reference.lrunet.TorchLruNet`) with
  the authors' recipe written here in plain torch: `torch.optim.SGD`
  (momentum 0.9, weight_decay 5e-4 added to the gradient), random crop after
  4-pixel zero padding, horizontal flip, rotation within ±10 degrees
  (nearest), inputs /255, kaiming-normal (fan_out) convolutions, the step
  schedule (/10 at 2/3 and 5/6 of the epochs) compressed to the budget,

on the same training images (read once from TFDS through `keras_reuse.data`,
as numpy for torch) with the same batch size and epochs, and evaluates both
on the full test split (or its first `--max_eval_examples`) after every
epoch. Both sides checkpoint every epoch
(Keras: the run's crash-safe backup; PyTorch: `checkpoint.pt`, written
atomically), so `--resume` continues a killed run losing at most an epoch.

Writes to `--output_dir`: `faithful.csv` (one row per framework, N, seed and
epoch), `faithful.png` (mean ± std test accuracy against epoch per
framework, one panel per N), `faithful_verdict.json` and a line per N:

  PASS when the two frameworks' mean final accuracies are shown equivalent
  within 0.5 points: two one-sided Welch t-tests at alpha 0.05 (TOST), i.e.
  the 90% confidence interval of the difference lies inside (-0.5, +0.5).
  A noisier run gets a wider interval, so it passes less easily; fewer than
  two seeds per framework cannot show equivalence and FAIL.

`python -m benchmarks.faithful --verdict_from=docs/reports/faithful.csv --epochs=E` re-states the
verdict of a finished table without training.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import sys
import textwrap
import time
from typing import Any

from absl import app, flags
from scipy import stats

from keras_reuse.experiments.study import EPOCH_COLUMNS

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags, when it runs rather than at import.

    The tests import this module for its verdict beside modules that define
    flags of the same names.
    """
    flags.DEFINE_string("dataset", "fashion_mnist", "TFDS image-classification dataset.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory (default: $TFDS_DATA_DIR).")
    flags.DEFINE_list("layer_reuse", ["1", "10"], "Reuse counts N, e.g. 1,10.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per framework and N.")
    flags.DEFINE_integer("epochs", 10, "Epochs (the step schedule is compressed to them).")
    flags.DEFINE_integer("max_train_examples", None, "Train on the first N images (default: all).")
    flags.DEFINE_integer(
        "max_eval_examples", None, "Evaluate on the first N test images (default: all)."
    )
    flags.DEFINE_integer("batch_size", 256, "Batch size (both frameworks).")
    flags.DEFINE_float("learning_rate", 0.1, "Base learning rate (both frameworks).")
    flags.DEFINE_string("output_dir", "runs/faithful", "Where the runs, CSV and plot go.")
    flags.DEFINE_boolean("resume", False, "Continue the runs in --output_dir.")
    flags.DEFINE_integer("verbose", 0, "Keras fit verbosity.")
    flags.DEFINE_string(
        "verdict_from", None, "Print the verdict of this faithful.csv at --epochs; train nothing."
    )


CSV_NAME = "faithful.csv"
PLOT_NAME = "faithful.png"
VERDICT_NAME = "faithful_verdict.json"
# The study's per-epoch columns, one row per framework.
# The study's per-epoch columns but its arm: both sides train shared LruNets.
COLUMNS = ("framework", *(c for c in EPOCH_COLUMNS if c != "shared"))
# The equivalence margin (accuracy points) and the level of each one-sided test.
MARGIN_POINTS = 0.5
ALPHA = 0.05


def _fail(message: str) -> None:
    print(f"benchmarks.faithful: error: {message}", file=sys.stderr)
    sys.exit(2)


def _int_list(name: str, values: list[str], minimum: int | None) -> list[int]:
    text = ",".join(values)
    try:
        numbers = [int(v) for v in values]
    except ValueError:
        numbers = []
    if not numbers or (minimum is not None and min(numbers) < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        _fail(f"--{name}={text}: expected integers{bound}, e.g. 1,10")
    if len(set(numbers)) != len(numbers):
        _fail(f"--{name}={text}: a value is repeated")
    return numbers


# ------------------------------------------------------------------ PyTorch ---


def load_numpy(dataset: str, split: str, data_dir: str | None):
    """A TFDS split as float32 NCHW images in [0, 1] and int64 labels (numpy)."""
    import numpy as np

    from keras_reuse import data

    ds = data.load(dataset, split, batch_size=2048, augment=False, shuffle=False, data_dir=data_dir)
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images).transpose(0, 3, 1, 2).copy(), np.concatenate(labels)


def augment(images, generator):
    """The authors' torchvision augmentation in torch ops: crop, flip, rotate.

    Random crop back to the size after 4-pixel zero padding, horizontal flip
    with probability 1/2, rotation by a uniform angle in [-10, 10] degrees
    about the centre (nearest, zeros outside), each image its own draw.
    """
    import torch
    from torch.nn import functional

    n, _, h, w = images.shape
    padded = functional.pad(images, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=generator)
    dx = torch.randint(0, 9, (n,), generator=generator)
    rows = (dy[:, None, None] + torch.arange(h)[None, :, None]).expand(n, h, w)
    cols = (dx[:, None, None] + torch.arange(w)[None, None, :]).expand(n, h, w)
    # Advanced indices around a slice: (n, h, w, channels).
    cropped = padded[torch.arange(n)[:, None, None], :, rows, cols]
    cropped = cropped.permute(0, 3, 1, 2)
    flip = torch.rand(n, generator=generator) < 0.5
    cropped = torch.where(flip[:, None, None, None], cropped.flip(3), cropped)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = functional.affine_grid(theta, list(cropped.shape), align_corners=False)
    return functional.grid_sample(
        cropped, grid, mode="nearest", padding_mode="zeros", align_corners=False
    )


def _init_like_the_authors(net) -> None:
    from torch import nn

    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _evaluate(net, images, labels, batch_size: int = 1000) -> tuple[float, float]:
    import torch
    from torch.nn import functional

    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(images[i : i + batch_size]).contiguous(
                memory_format=torch.channels_last
            )
            y = torch.from_numpy(labels[i : i + batch_size])
            logits = net(x)
            loss += float(functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    return correct / len(images), loss / len(images)


def _save_atomic(obj: Any, path: str) -> None:
    import torch

    from keras_reuse.utils import atomic

    atomic.write_file(path, lambda tmp: torch.save(obj, tmp))


def train_torch(
    run_dir: str, n: int, seed: int, train_np, test_np, num_classes: int, settings: dict
) -> list[dict[str, Any]]:
    """Trains TorchLruNet with the authors' recipe; returns one row per epoch.

    Checkpoints (weights, optimizer, scheduler, random states, rows) after
    every epoch to `run_dir/checkpoint.pt` and continues from it.
    """
    import torch
    from torch.nn import functional

    from torch_reference.lrunet import TorchLruNet

    images, labels = train_np
    epochs, batch = settings["epochs"], settings["batch_size"]
    torch.manual_seed(seed)
    net = TorchLruNet(num_classes=num_classes, layer_reuse=n, in_channels=images.shape[1])
    _init_like_the_authors(net)
    # NHWC kernels: the same arithmetic, 1.5-1.8x faster on this CPU.
    net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=settings["learning_rate"], momentum=0.9, weight_decay=5e-4
    )
    milestones = [round(epochs * 2 / 3), round(epochs * 5 / 6)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, Any]] = []
    path = os.path.join(run_dir, "checkpoint.pt")
    os.makedirs(run_dir, exist_ok=True)
    if os.path.isfile(path):
        state = torch.load(path, weights_only=False)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        rows = state["rows"]
    steps = len(images) // batch  # the last, smaller batch is dropped, as in Keras
    for epoch in range(len(rows), epochs):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(images), generator=generator)
        seen, correct, total_loss = 0, 0, 0.0
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            x = augment(torch.from_numpy(images[index.numpy()]), generator)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(labels[index.numpy()])
            logits = net(x)
            loss = functional.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            total_loss += loss.item() * len(y)
        scheduler.step()
        test_accuracy, test_loss = _evaluate(net, *test_np)
        rows.append(
            dict(
                framework="pytorch",
                layer_reuse=n,
                seed=seed,
                epoch=epoch + 1,
                test_accuracy=test_accuracy,
                test_loss=test_loss,
                train_accuracy=correct / max(seen, 1),
                train_loss=total_loss / max(seen, 1),
            )
        )
        _save_atomic(
            dict(
                net=net.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                generator=generator.get_state(),
                torch_rng=torch.get_rng_state(),
                rows=rows,
            ),
            path,
        )
        print(
            f"faithful pytorch N={n} seed={seed} epoch {epoch + 1}/{epochs}: "
            f"test accuracy {test_accuracy:.4f} ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return rows


# -------------------------------------------------------------------- Keras ---


def train_keras(run_dir: str, n: int, seed: int, settings: dict) -> list[dict[str, Any]]:
    """Trains the Keras LruNet with keras-reuse train's recipe; one row per epoch."""
    from keras_reuse import training
    from keras_reuse.experiments import study

    config = training.TrainConfig(
        model="lrunet",
        dataset=settings["dataset"],
        data_dir=settings["data_dir"],
        model_args={"layer_reuse": n},
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        max_train_examples=settings["max_train_examples"],
        max_eval_examples=settings["max_eval_examples"],
        seed=seed,
        output_dir=run_dir,
        resume=True,
        verbose=settings["verbose"],
    )
    done = os.path.isfile(os.path.join(run_dir, "results.json"))
    if not done:
        training.train(config)
    rows = study.read_run_epochs(run_dir, n, seed)
    print(
        f"faithful keras N={n} seed={seed}: {'finished earlier' if done else 'done'}, "
        f"test accuracy {rows[-1].test_accuracy:.4f} after {len(rows)} epoch(s)",
        flush=True,
    )
    return [{"framework": "keras", **r.__dict__} for r in rows]


# ---------------------------------------------------------- verdict, plot ---


def equivalence_test(
    a: list[float], b: list[float], margin: float = MARGIN_POINTS, alpha: float = ALPHA
) -> dict[str, Any]:
    """Two one-sided Welch t-tests (TOST) of |mean(a) - mean(b)| < `margin`.

    Equivalence is shown at level `alpha` when both one-sided nulls
    (difference <= -margin, difference >= +margin) are rejected, which is
    the (1 - 2 alpha) confidence interval of the difference lying inside
    (-margin, +margin). Welch's interval (unequal variances, the
    Welch-Satterthwaite degrees of freedom) widens with the spread of
    either sample, so noise never makes equivalence easier to show.

    Args:
        a: One sample (e.g. Keras's final accuracies, one per seed).
        b: The other (PyTorch's).
        margin: The equivalence margin, in the samples' unit.
        alpha: The level of each one-sided test.

    Returns:
        `difference` (mean(a) - mean(b)), `standard_error`, `degrees_of_freedom`,
        `ci_low`/`ci_high` (the 1 - 2 alpha interval), `p_value` (the larger
        one-sided p) and `passed`; with fewer than two values in a sample the
        spread is unknown: no interval, not passed.
    """
    difference = statistics.fmean(a) - statistics.fmean(b)
    result: dict[str, Any] = dict(
        difference=difference,
        standard_error=None,
        degrees_of_freedom=None,
        ci_low=None,
        ci_high=None,
        p_value=None,
        passed=False,
    )
    if len(a) < 2 or len(b) < 2:
        return result
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    result["standard_error"] = se
    if se == 0.0:  # no spread at all: the interval is the point
        inside = abs(difference) < margin
        result.update(ci_low=difference, ci_high=difference, p_value=0.0 if inside else 1.0)
        result["passed"] = inside
        return result
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half_width = float(stats.t.ppf(1.0 - alpha, df)) * se
    p_lower = float(stats.t.sf((difference + margin) / se, df))  # H0: difference <= -margin
    p_upper = float(stats.t.cdf((difference - margin) / se, df))  # H0: difference >= +margin
    result.update(
        degrees_of_freedom=df,
        ci_low=difference - half_width,
        ci_high=difference + half_width,
        p_value=max(p_lower, p_upper),
    )
    result["passed"] = result["p_value"] < alpha
    return result


def verdict(rows: list[dict[str, Any]], epochs: int) -> list[dict[str, Any]]:
    """Per N: both frameworks' mean final accuracy and the equivalence test's PASS/FAIL.

    Args:
        rows: The faithful.csv rows (test accuracy as a fraction).
        epochs: The final epoch, whose accuracies are compared.

    Returns:
        One dict per N: the means and standard deviations (points), and
        `equivalence_test`'s figures for Keras minus PyTorch at
        `MARGIN_POINTS` and `ALPHA`.
    """
    results = []
    for n in sorted({r["layer_reuse"] for r in rows}):
        finals = {}
        for framework in ("keras", "pytorch"):
            finals[framework] = [
                r["test_accuracy"] * 100
                for r in rows
                if r["framework"] == framework and r["layer_reuse"] == n and r["epoch"] == epochs
            ]
        k, t = finals["keras"], finals["pytorch"]
        if not k or not t:
            raise ValueError(f"no final-epoch rows for both frameworks at N={n}, epoch {epochs}")
        sd = {name: statistics.stdev(v) if len(v) > 1 else 0.0 for name, v in finals.items()}
        test = equivalence_test(k, t)
        results.append(
            dict(
                layer_reuse=n,
                seeds=len(k),
                keras_mean=statistics.fmean(k),
                keras_std=sd["keras"],
                pytorch_mean=statistics.fmean(t),
                pytorch_std=sd["pytorch"],
                difference_points=test["difference"],
                standard_error_points=test["standard_error"],
                degrees_of_freedom=test["degrees_of_freedom"],
                ci90_low_points=test["ci_low"],
                ci90_high_points=test["ci_high"],
                tost_p_value=test["p_value"],
                margin_points=MARGIN_POINTS,
                alpha=ALPHA,
                passed=test["passed"],
            )
        )
    return results


def verdict_line(v: dict[str, Any]) -> str:
    if v["ci90_low_points"] is None:
        test = "no interval with fewer than 2 seeds per framework"
    else:
        test = (
            f"90% CI [{v['ci90_low_points']:+.2f}, {v['ci90_high_points']:+.2f}], "
            f"TOST p = {v['tost_p_value']:.3f}"
        )
    return (
        f"LruNet-{v['layer_reuse']}: Keras {v['keras_mean']:.2f} ± {v['keras_std']:.2f}%, "
        f"PyTorch {v['pytorch_mean']:.2f} ± {v['pytorch_std']:.2f}% ({v['seeds']} seed(s) each); "
        f"difference {v['difference_points']:+.2f} points, {test} "
        f"(equivalent within ±{v['margin_points']:g}: 90% CI inside): "
        f"{'PASS' if v['passed'] else 'FAIL'}"
    )


def read_csv(path: str) -> list[dict[str, Any]]:
    """The rows of a faithful.csv, typed as `main` writes them."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    types = {"layer_reuse": int, "seed": int, "epoch": int}
    return [
        {c: (v if c == "framework" else types.get(c, float)(v)) for c, v in r.items()} for r in rows
    ]


def plot(rows: list[dict[str, Any]], path: str, title: str) -> None:
    """Mean ± std test accuracy against epoch per framework, one panel per N."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    counts = sorted({r["layer_reuse"] for r in rows})
    figure = Figure(figsize=(6 * len(counts), 4.8), layout="constrained")
    axes = figure.subplots(1, len(counts), squeeze=False)[0]
    for ax, n in zip(axes, counts, strict=True):
        for framework, color in (("keras", "tab:red"), ("pytorch", "tab:blue")):
            by_epoch: dict[int, list[float]] = {}
            for r in rows:
                if r["framework"] == framework and r["layer_reuse"] == n:
                    by_epoch.setdefault(r["epoch"], []).append(100 * r["test_accuracy"])
            epochs = sorted(by_epoch)
            mean = [statistics.fmean(by_epoch[e]) for e in epochs]
            std = [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0 for e in epochs]
            seeds = max(len(v) for v in by_epoch.values())
            label = f"{'Keras (keras-reuse)' if framework == 'keras' else 'PyTorch (authors)'}"
            ax.plot(
                epochs, mean, "o-", color=color, markersize=3, label=f"{label}, {seeds} seed(s)"
            )
            ax.fill_between(
                epochs,
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
        ax.set_title(f"LruNet-{n}: test accuracy (mean ± std over seeds)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("test accuracy (%)")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
    # One panel is narrow: break the title instead of clipping it.
    figure.suptitle(textwrap.fill(title, 70 * len(counts)), fontsize="medium")
    FigureCanvasAgg(figure)
    from keras_reuse.utils import atomic

    atomic.write_file(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110))


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: repr(r[c]) if isinstance(r[c], float) else r[c] for c in COLUMNS})
    return buffer.getvalue()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.verdict_from is not None:
        if not os.path.isfile(FLAGS.verdict_from):
            _fail(f"--verdict_from={FLAGS.verdict_from}: no such file")
        try:
            verdicts = verdict(read_csv(FLAGS.verdict_from), FLAGS.epochs)
        except (ValueError, KeyError) as error:
            _fail(f"--verdict_from={FLAGS.verdict_from}: {error}")
        print(json.dumps(verdicts, indent=2))
        for v in verdicts:
            print(verdict_line(v))
        return
    counts = _int_list("layer_reuse", FLAGS.layer_reuse, 1)
    seeds = _int_list("seeds", FLAGS.seeds, None)
    for name in ("epochs", "batch_size"):
        if FLAGS[name].value < 1:
            _fail(f"--{name}={FLAGS[name].value}: must be an integer >= 1")
    if FLAGS.max_train_examples is not None and FLAGS.max_train_examples < FLAGS.batch_size:
        _fail(f"--max_train_examples={FLAGS.max_train_examples}: less than one batch")
    if FLAGS.max_eval_examples is not None and FLAGS.max_eval_examples < 1:
        _fail(f"--max_eval_examples={FLAGS.max_eval_examples}: must be an integer >= 1")
    if not FLAGS.learning_rate > 0:
        _fail(f"--learning_rate={FLAGS.learning_rate}: must be > 0")
    out = FLAGS.output_dir
    if os.path.exists(out) and not os.path.isdir(out):
        _fail(f"--output_dir={out}: exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not FLAGS.resume:
        _fail(f"--output_dir={out}: already holds runs; pass --resume to continue them")

    from keras_reuse import data
    from keras_reuse.utils import atomic

    try:
        info = data.info(FLAGS.dataset, data_dir=FLAGS.data_dir)
    except ValueError as error:
        _fail(f"--dataset={FLAGS.dataset}: {error}")
    import torch

    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0"))
    if threads > 0:
        torch.set_num_threads(threads)
    split = "train" if FLAGS.max_train_examples is None else f"train[:{FLAGS.max_train_examples}]"
    train_np = load_numpy(FLAGS.dataset, split, FLAGS.data_dir)
    test_split = "test" if FLAGS.max_eval_examples is None else f"test[:{FLAGS.max_eval_examples}]"
    test_np = load_numpy(FLAGS.dataset, test_split, FLAGS.data_dir)
    settings = dict(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        max_train_examples=FLAGS.max_train_examples,
        max_eval_examples=FLAGS.max_eval_examples,
        verbose=FLAGS.verbose,
    )
    os.makedirs(out, exist_ok=True)
    settings_path = os.path.join(out, "settings.json")
    if os.path.isfile(settings_path):
        with open(settings_path) as f:
            saved = json.load(f)
        for name, value in settings.items():
            if name != "verbose" and saved.get(name) != value:
                _fail(f"--{name}={value}: differs from the runs in {out} ({saved.get(name)})")
    atomic.write_text(settings_path, json.dumps(settings, indent=2))

    rows: list[dict[str, Any]] = []
    for n in counts:
        for seed in seeds:
            rows += train_keras(os.path.join(out, f"keras_reuse{n}_seed{seed}"), n, seed, settings)
            rows += train_torch(
                os.path.join(out, f"pytorch_reuse{n}_seed{seed}"),
                n,
                seed,
                train_np,
                test_np,
                info.num_classes,
                settings,
            )
            atomic.write_text(os.path.join(out, CSV_NAME), _csv_text(rows))
    verdicts = verdict(rows, FLAGS.epochs)
    title = (
        f"{FLAGS.dataset}: {FLAGS.epochs} epoch(s) on {len(train_np[1]):,} training images, "
        f"batch {FLAGS.batch_size}, lr {FLAGS.learning_rate:g} (step); "
        f"test accuracy on {len(test_np[1]):,} test images"
    )
    plot(rows, os.path.join(out, PLOT_NAME), title)
    atomic.write_text(
        os.path.join(out, VERDICT_NAME),
        json.dumps({"settings": settings, "seeds": seeds, "verdicts": verdicts}, indent=2),
    )
    print(f"csv: {os.path.join(out, CSV_NAME)}; plot: {os.path.join(out, PLOT_NAME)}")
    for v in verdicts:
        print(verdict_line(v))


if __name__ == "__main__":
    define_flags()
    app.run(main)
