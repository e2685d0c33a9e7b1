"""Hyperparameter search: a real keras-tuner search on Fashion-MNIST, the HyperModels, bad input."""

import csv
import json
import os
import sys

import keras
import keras_tuner
import numpy as np
import processes
import pytest

from keras_reuse import data
from keras_reuse.experiments import tuning
from keras_reuse.reuse.summary import reuse_summary
from keras_reuse.training.optimizers import CoupledSGD

# A tiny slice of the real data (TFDS_DATA_DIR, set by .ci/run).
TINY = dict(
    dataset="fashion_mnist",
    epochs=1,
    batch_size=64,
    train_examples=256,
    validation_examples=128,
    verbose=0,
)
TINY_FLAGS = [
    "--epochs=1",
    "--batch_size=64",
    "--train_examples=256",
    "--validation_examples=128",
    "--verbose=0",
]
SPACE = {"layer_reuse": (1, 2), "width_multiplier": 0.5, "dropout": 0.5, "learning_rate": 0.05}


def read_trials(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(*args):
    return processes.run(
        [sys.executable, "-m", "keras_reuse", "tune", *args],
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_two_trial_search_from_the_cli_then_continued_in_python(tmp_path):
    out = str(tmp_path / "search")
    # Only layer_reuse varies: two choices, two trials, and random search
    # skips repeats, so both are tried.
    proc = cli(
        "--max_trials=2",
        "--layer_reuse=1,2",
        "--width_multiplier=0.5",
        "--dropout=0.5",
        "--learning_rate=0.05",
        *TINY_FLAGS,
        f"--output_dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    rows = read_trials(os.path.join(out, "trials.csv"))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"COMPLETED"}
    assert sorted(int(r["layer_reuse"]) for r in rows) == [1, 2]
    assert {r["width_multiplier"] for r in rows} == {"0.5"}
    scores = [float(r["val_accuracy"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # best first

    with open(os.path.join(out, "best.json")) as f:
        best = json.load(f)
    assert best["val_accuracy"] == pytest.approx(max(scores)) and best["trials"] == 2
    assert best["train_examples"] == 256 and best["validation_examples"] == 128
    n = best["hyperparameters"]["layer_reuse"]
    assert best["train_command"].startswith("keras-reuse train --model=lrunet ")
    assert f"--layer_reuse={n} " in best["train_command"]
    assert f"retrain: {best['train_command']}" in proc.stdout

    # The same search from Python continues the one in the directory: the two
    # trials are done, so it trains nothing and reports the same best.
    checkpoints = sorted(str(p) for p in (tmp_path / "search" / "tuner").rglob("*.weights.h5"))
    mtimes = [os.path.getmtime(p) for p in checkpoints]
    result = tuning.search(output_dir=out, max_trials=2, space=SPACE, **TINY)
    assert len(result.trials) == 2 and result.best_hyperparameters == best["hyperparameters"]
    assert result.best_trial_id == best["trial_id"] == rows[0]["trial_id"]
    assert [os.path.getmtime(p) for p in checkpoints] == mtimes and checkpoints

    # The best model is that trial's network, and it scores what the table
    # says on the held-out slice (the 128 train examples after the first 256).
    model = result.best_model()
    assert reuse_summary(model).calls["stage1_dw"] == n
    val = data.load("fashion_mnist", "train[256:384]", batch_size=64, augment=False, shuffle=False)
    labels = np.concatenate([y.numpy() for _, y in val])
    logits = model.predict(val, verbose=0)
    assert (logits.argmax(1) == labels).mean() == pytest.approx(best["val_accuracy"], abs=1e-6)


def test_tied_trials_rank_earliest_first_whatever_order_the_oracle_holds():
    # A reloaded oracle may hold its trials in another order than the search
    # that ran them; the table and the best trial must not depend on it.
    def trial(trial_id, score):
        hp = keras_tuner.HyperParameters()
        hp.values["layer_reuse"] = int(trial_id) + 1
        return _Trial(trial_id, hp, score)

    for order in (["2", "0", "1", "3"], ["3", "1", "0", "2"]):
        scores = {"0": 0.25, "1": 0.5, "2": 0.5, "3": None}
        oracle = type("Oracle", (), {"trials": {i: trial(i, scores[i]) for i in order}})
        rows = tuning._trial_rows(type("Tuner", (), {"oracle": oracle}))
        assert [r["trial_id"] for r in rows] == ["1", "2", "0", "3"]


class _Trial:
    def __init__(self, trial_id, hyperparameters, score):
        self.trial_id, self.hyperparameters, self.score = trial_id, hyperparameters, score
        self.status = "COMPLETED" if score is not None else "RUNNING"
        self.best_step = None if score is None else 0


def test_lrunet_hypermodel_builds_compiled_logit_models():
    hypermodel = tuning.LruNetHyperModel(layer_reuse=(3, 5), width_multiplier=0.5)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values["layer_reuse"] == 3  # a Choice defaults to its first value
    assert 0.01 <= hp.values["learning_rate"] <= 0.2
    assert reuse_summary(model).calls["stage4_pw"] == 3
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert isinstance(model.optimizer, CoupledSGD) and model.optimizer.l2 == pytest.approx(5e-4)
    assert model.loss.get_config()["from_logits"] is True
    # Logits, like keras_reuse.training.trainer: the output may be negative.
    assert model.get_layer("predictions").activation is keras.activations.linear
    # The space is what a tuner would explore.
    assert hp.space[0].name == "layer_reuse" and list(hp.space[0].values) == [3, 5]


def test_sharesnet_hypermodel_searches_sharing_and_depth():
    hypermodel = tuning.ShaResNetHyperModel(input_shape=(28, 28, 1), depth=(22, 10), width=1)
    params = {}
    for share in (True, False):
        hp = keras_tuner.HyperParameters()
        hp.Fixed("share", share)
        model = hypermodel.build(hp)
        assert hp.values["depth"] == 22
        params[share] = reuse_summary(model).unique_params
    # Blocks 2 and 3 of each stage share one 3x3 conv: fewer stored weights.
    assert params[True] < params[False]
    flags = hypermodel.train_flags({"share": False, "depth": 22, "width": 1, "learning_rate": 0.1})
    assert flags[:4] == ["--model=wide_sharesnet", "--noshare", "--depth=22", "--width=1"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tuner="grid"), "`tuner` must be one of random, bayesian, hyperband"),
        (dict(model="resnet"), "`model` must be one of lrunet, sharesnet"),
        (dict(max_trials=0), "`max_trials` must be an integer >= 1. Received: max_trials=0"),
        (dict(space={"depth": (10, 16)}), "does not tune: ['depth']"),
        (dict(space={"layer_reuse": (0, 2)}), "Received: layer_reuse=(0, 2)"),
        (dict(space={"width_multiplier": 0.3}), "Received: width_multiplier=0.3"),
        (dict(space={"dropout": (0.5, 0.1)}), "min <= max. Received: dropout=(0.5, 0.1)"),
        (dict(space={"learning_rate": 0.0}), "Received: learning_rate=0.0"),
        (dict(train_examples=59_900), "exceed the 60000 examples"),
        (dict(dataset="fashion_mnistt"), "Did you mean 'fashion_mnist'"),
    ],
)
def test_bad_search_arguments_fail_before_writing(tmp_path, kwargs, message):
    out = tmp_path / "never"
    with pytest.raises(ValueError) as error:
        tuning.search(output_dir=str(out), **{**TINY, **kwargs})
    assert message in str(error.value)
    assert not out.exists()
