"""Named training recipes: one flag for a published configuration or the quick demo.

`keras-reuse train --recipe=NAME` (or `TrainConfig.from_values(recipes.values(NAME))`)
sets every `TrainConfig` field the recipe lists; flags given explicitly
override them. The table `RECIPES` is the only place the recipes live.

The published configurations are the paper's (Köpüklü et al., ICIP 2019)
recipe: 300 epochs, SGD momentum 0.9 with coupled L2 5e-4, batch 256,
learning rate 0.1 divided by 10 at epochs 200 and 250. `paper_accuracy` is
the test accuracy of the authors' published checkpoint of that network
(read from `keras_reuse.applications.lrunet.presets.PRESETS`, the one place
those figures are written)
(which `keras_reuse.load_lrunet_checkpoint` reproduces), so results.json
can state the paper's number next to ours.

`quick` is the Quickstart's job: LruNet-1 (the fastest LruNet: 11
convolutions deep instead of 83 for LruNet-10) for one epoch on 60% of
Fashion-MNIST with a small batch, linear warm-up then cosine decay, and
precise BatchNorm statistics, so that a CPU run of a few minutes visibly
learns. Its reference is the full recipe of the same network.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from keras_reuse.applications.lrunet.presets import PRESETS
from keras_reuse.training.errors import ConfigError

_PAPER = dict(
    model="lrunet",
    epochs=300,
    batch_size=256,
    learning_rate=0.1,
    weight_decay=5e-4,
    momentum=0.9,
    schedule="step",
    warmup_epochs=0.0,
    precise_bn_batches=0,
    max_train_examples=None,
    max_eval_examples=None,
    steps_per_epoch=None,
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One named recipe.

    Attributes:
        name: The `--recipe` value.
        values: `TrainConfig` field -> value the recipe sets.
        paper_accuracy: Test accuracy of the published network this recipe
            trains (a fraction), or None.
        reference: Name of the recipe whose `paper_accuracy` is the full
            recipe's result for this one (itself for a published row).
        description: One line for `--help` and results.json.
    """

    name: str
    values: dict[str, Any]
    paper_accuracy: float | None
    reference: str
    description: str


_DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def _published(name: str, dataset: str, n: int, k: float, accuracy: float, what: str) -> Recipe:
    values = dict(_PAPER, dataset=dataset, layer_reuse=n, width_multiplier=k, dropout=0.5)
    return Recipe(name, values, accuracy, name, what)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "quick",
            dict(
                model="lrunet",
                dataset="fashion_mnist",
                layer_reuse=1,
                width_multiplier=1.0,
                dropout=0.5,
                epochs=1,
                max_train_examples=36_000,
                max_eval_examples=None,
                steps_per_epoch=None,
                batch_size=64,
                learning_rate=0.05,
                weight_decay=5e-4,
                momentum=0.9,
                schedule="cosine",
                warmup_epochs=0.1,
                precise_bn_batches=30,
            ),
            None,
            "lrunet1_fashion_mnist",
            "LruNet-1, 1 epoch on 36,000 Fashion-MNIST images, batch 64, warm-up + cosine, "
            "precise BatchNorm (a few minutes on a CPU)",
        ),
        *(
            _published(
                p.name,
                p.dataset,
                p.layer_reuse,
                p.width_multiplier,
                round(p.paper_accuracy / 100, 6),
                f"{p.layer_reuse}-LruNet-{p.width_multiplier:g}x, {_DATASET_NAMES[p.dataset]}",
            )
            for p in PRESETS.values()
        ),
    )
}


def get(name: Any) -> Recipe:
    """The recipe called `name`.

    Raises:
        keras_reuse.training.ConfigError: for an unknown name, naming
            `--recipe`, the value and the valid names.
    """
    if name not in RECIPES:
        raise ConfigError("recipe", name, f"unknown recipe; one of {', '.join(RECIPES)}")
    return RECIPES[name]


def values(name: str) -> dict[str, Any]:
    """The `TrainConfig` fields recipe `name` sets, `recipe` included."""
    return {**get(name).values, "recipe": name}


def paper_comparison(name: str, test_accuracy: float) -> dict[str, Any]:
    """The results.json entries that put our accuracy next to the paper's.

    Args:
        name: The run's recipe.
        test_accuracy: Our final test accuracy (a fraction).

    Returns:
        `recipe`, `recipe_description`, `paper_recipe` (the full recipe it
        is compared with), `paper_test_accuracy` (that recipe's published
        checkpoint) and `test_accuracy_minus_paper`.
    """
    recipe = get(name)
    reference = get(recipe.reference)
    return {
        "recipe": name,
        "recipe_description": recipe.description,
        "paper_recipe": reference.name,
        "paper_test_accuracy": reference.paper_accuracy,
        "test_accuracy_minus_paper": test_accuracy - reference.paper_accuracy,
    }
