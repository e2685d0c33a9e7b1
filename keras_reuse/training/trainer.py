"""Training on `model.fit`: one `train` function over a `TrainConfig`.

`train(TrainConfig(...))` (the spec: `keras_reuse.training.config`; its parts are
built by `keras_reuse.training.builders`) reproduces the papers' recipe by default (SGD
momentum 0.9 with coupled L2 5e-4, batch 256, learning rate 0.1 divided by
10 at 2/3 and 5/6 of the epochs, dropout 0.5, cross-entropy on logits),
builds the model from the dataset's metadata, and writes to `output_dir`:

- `model.keras`: the final model (outputs logits), written atomically;
- `logs/`: TensorBoard logs; `metrics.csv`: per-epoch metrics;
- `config.json`: the run's configuration, checked on `resume`;
- `results.json`: parameters, test accuracy, images/s, wall time;
- `backup/`: the per-epoch backup that `resume=True` continues from.

`precise_bn_batches=B` recomputes the BatchNorm statistics over B training
batches before every evaluation (`keras_reuse.training.callbacks.PreciseBatchNorm`);
`recipe="quick"` or a published configuration's name
(`keras_reuse.training.recipes`) is recorded, and results.json then states the
paper's accuracy next to ours.

No hand-written loop: Keras callbacks do the checkpointing and logging.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import keras

from keras_reuse.reuse.summary import reuse_summary
from keras_reuse.training import builders, distribute, precision, recipes
from keras_reuse.training.builders import learning_rate_schedule
from keras_reuse.training.callbacks import latest_backup_epoch
from keras_reuse.training.config import (
    MODEL_FIELDS,
    ConfigError,
    TrainConfig,
    load_config,
    validate,
)
from keras_reuse.utils import atomic

__all__ = [
    "MODEL_FIELDS",
    "ConfigError",
    "TrainConfig",
    "learning_rate_schedule",
    "train",
    "validate",
]


def _check_output_dir(config: TrainConfig) -> None:
    """Refuses to overwrite a run, or to resume one with another network."""
    saved_path = os.path.join(config.output_dir, "config.json")
    if not os.path.isfile(saved_path):
        return
    if not config.resume:
        raise ConfigError(
            "output_dir",
            config.output_dir,
            "already holds a run; pass --resume to continue it or choose another directory",
        )
    differs = config.difference(load_config(saved_path), MODEL_FIELDS)
    if differs is not None:
        field, ours, theirs = differs
        raise ConfigError(
            field,
            ours,
            f"differs from the run being resumed in {config.output_dir} ({field}={theirs})",
        )


def _prune_csv(path: str, completed_epochs: int) -> None:
    """Drops CSV rows of epochs that the resumed run will redo."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines:
        return
    kept = [lines[0]]
    for line in lines[1:]:
        epoch = line.split(",")[0]
        # A row that a kill cut short is the redone epoch's: drop it too.
        if epoch.isdigit() and int(epoch) < completed_epochs:
            kept.append(line)
    atomic.write_text(path, "\n".join(kept) + "\n", fault="metrics_csv")


def train(config: TrainConfig) -> dict[str, Any]:
    """Trains a registered model on a TFDS dataset with `model.fit`.

    Args:
        config: The run's configuration.

    Returns:
        The content of `results.json`.

    Raises:
        ConfigError: (a ValueError) for an invalid field, before anything is
            written.
    """
    start = time.perf_counter()
    validate(config)
    info = builders.dataset_info(config)
    _check_output_dir(config)
    policy = precision.resolve_precision(config.mixed_precision)
    strategy = distribute.make_strategy(config.strategy)
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    with strategy.scope(), precision.dtype_policy_scope(policy):
        model = builders.build_model(config, info)
    datasets = builders.build_datasets(config, info)
    with strategy.scope():
        builders.compile_model(model, config, datasets.steps_per_epoch, policy)

    chief = distribute.is_chief(strategy)
    out = config.output_dir
    if not chief:
        # Non-chief workers must still save (collectives), but privately.
        out = os.path.join(out, ".workers", str(strategy.cluster_resolver.task_id))
    os.makedirs(out, exist_ok=True)
    # Temporary files of writes that a kill interrupted.
    atomic.remove_leftovers(out)
    if chief:
        atomic.write_text(
            os.path.join(out, "config.json"),
            json.dumps(config.to_dict(), indent=2),
            fault="config_json",
        )
    csv_path = os.path.join(out, "metrics.csv")
    backup_dir = os.path.join(out, "backup")
    _prune_csv(csv_path, latest_backup_epoch(backup_dir))
    callbacks, throughput = builders.build_callbacks(config, out, datasets.train)
    with distribute.fit_compat(model, strategy, datasets.train):
        history = model.fit(
            datasets.train,
            epochs=config.epochs,
            steps_per_epoch=datasets.steps_per_epoch,
            validation_data=datasets.test,
            callbacks=callbacks,
            verbose=config.verbose,
        )
        if history.epoch:
            # The last epoch's validation pass is the test evaluation.
            test = {
                "accuracy": history.history["val_accuracy"][-1],
                "loss": history.history["val_loss"][-1],
            }
        else:  # a resumed run that had nothing left to train
            test = model.evaluate(datasets.test, return_dict=True, verbose=0)

    model_path = os.path.join(out, "model.keras")
    atomic.save_model(model, model_path, fault="model_keras")
    summary = reuse_summary(model)
    results = {
        "model": config.model,
        "dataset": config.dataset,
        "config": config.to_dict(),
        "mixed_precision": policy,
        "strategy": config.strategy,
        "num_replicas": strategy.num_replicas_in_sync,
        "trainable_params": summary.unique_params,
        "unrolled_params": summary.unrolled_params,
        "macs_per_example": summary.macs,
        "epochs_completed": int(model.optimizer.iterations.numpy()) // datasets.steps_per_epoch,
        "epochs_this_session": len(history.epoch),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["loss"]),
        "images_per_sec": (
            statistics.median(throughput.epoch_rates) if throughput.epoch_rates else None
        ),
        "wall_time_s": time.perf_counter() - start,
        "model_path": os.path.abspath(model_path),
    }
    if config.recipe is not None:
        results.update(recipes.paper_comparison(config.recipe, results["test_accuracy"]))
    if config.export_tflite and chief:
        # Lazy: TensorFlow's converter loads only when a run exports.
        from keras_reuse import export

        tflite_path = os.path.join(out, "model.tflite")
        export.to_tflite(model, tflite_path)
        results["tflite_path"] = os.path.abspath(tflite_path)
    atomic.write_text(
        os.path.join(out, "results.json"), json.dumps(results, indent=2), fault="results_json"
    )
    return results
