"""The run spec: generated flags, --config files, model arguments checked against constructors."""

import dataclasses
import json
import sys
import textwrap

import processes
import pytest
from test_recipes import parse  # the train command's generated flags, parsed

from keras_reuse import training
from keras_reuse.applications import registry as _registry
from keras_reuse.training import config as spec

# A constructor of the registry's kind with one keyword no other model has.
THROWAWAY = textwrap.dedent(
    '''
    import keras
    from keras_reuse.applications import register_model

    @register_model("throwaway")
    def Throwaway(num_classes=10, input_shape=None, classifier_activation="softmax",
                  name="throwaway", *, blocks: int = 2, gate: bool = False):
        """A model for the test.

        Args:
            num_classes: Classes.
            blocks: How many dense blocks to stack. Two by default.
            gate: Whether to gate them.
        """
        if isinstance(blocks, bool) or blocks < 1:
            raise ValueError(f"`blocks` must be an integer >= 1. Received: blocks={blocks!r}")
        inputs = keras.Input(input_shape or (4, 4, 1))
        x = keras.layers.Flatten()(inputs)
        for _ in range(blocks):
            x = keras.layers.Dense(8)(x)
        return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name=name)
    '''
)


def test_a_new_constructor_keyword_is_a_train_flag_with_no_other_edit():
    # Registering a model is the only edit: its keywords are flags of
    # `keras-reuse train --help`, and a parsed flag reaches the constructor.
    code = THROWAWAY + textwrap.dedent(
        """
        import contextlib, io, json, sys
        from keras_reuse import cli

        help_text = io.StringIO()
        with contextlib.redirect_stdout(help_text):
            try:
                cli.run(["keras-reuse", "train", "--help"])
            except SystemExit:
                pass
        from keras_reuse.training import config as spec
        from keras_reuse.cli import train as command  # imported by cli.run
        from keras_reuse.cli.flags import config_from_flags

        command.FLAGS(["train", "--model=throwaway", "--blocks=5", "--nogate"])
        config = config_from_flags(command.FLAGS, command._NAMES)
        spec.validate(config)
        print(json.dumps({"help": help_text.getvalue(), "model_args": config.model_args}))
        """
    )
    proc = processes.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "--blocks: throwaway: How many dense blocks to stack. Default: the model's." in (
        " ".join(result["help"].split())
    )
    assert "--[no]gate" not in result["help"] and "--gate: throwaway: Whether to gate" in (
        " ".join(result["help"].split())
    )
    assert "throwaway" in result["help"]  # the --model help lists it
    assert result["model_args"] == {"blocks": 5, "gate": False}


@pytest.fixture
def throwaway(monkeypatch):
    namespace = {}
    exec(THROWAWAY.replace('@register_model("throwaway")', ""), namespace)
    monkeypatch.setitem(_registry._MODELS, "throwaway", namespace["Throwaway"])
    return namespace["Throwaway"]


def test_model_arguments_come_from_the_signatures_and_docstrings(throwaway):
    arguments = spec.model_arguments()
    assert arguments["blocks"] == spec.ModelArgument(
        "blocks", int, "How many dense blocks to stack.", ("throwaway",)
    )
    assert arguments["gate"].kind is bool
    assert arguments["layer_reuse"].kind is int and arguments["layer_reuse"].models == ("lrunet",)
    assert arguments["dropout"].models == ("lrunet", "wide_sharesnet")
    assert arguments["reuse_loop"].kind is bool
    # What the run decides, and private keywords, are not model arguments.
    for name in ("num_classes", "input_shape", "weights", "name", "data_format", "layer_types"):
        assert name not in arguments


def test_two_models_giving_one_keyword_two_kinds_is_refused(monkeypatch, throwaway):
    def other(num_classes=10, *, blocks: float = 1.0):
        """Args:
        blocks: Fractional blocks."""

    monkeypatch.setitem(_registry._MODELS, "zz_other", other)
    with pytest.raises(TypeError, match="`blocks` is a int of throwaway but a float of zz_other"):
        spec.model_arguments()


@pytest.mark.parametrize(
    "model_args, message",
    [
        ({"blocks": "3"}, "blocks='3': must be an integer"),
        ({"blocks": True}, "blocks=True: must be an integer"),
        ({"gate": 1}, "gate=1: must be True or False"),
        ({"layer_reuse": 2}, "layer_reuse=2: does not apply to --model=throwaway"),
    ],
)
def test_model_arguments_are_checked_against_the_constructor(throwaway, model_args, message):
    config = training.TrainConfig(model="throwaway", model_args=model_args)
    with pytest.raises(spec.ConfigError) as raised:
        training.validate(config)
    assert str(raised.value) == message
    field, value = message.split("=", 1)[0], model_args[message.split("=", 1)[0]]
    assert raised.value.flag_message().startswith(f"--{field}={value}: ")


def test_a_constructors_value_error_names_the_argument(throwaway):
    from keras_reuse import data
    from keras_reuse.training import builders

    config = training.TrainConfig(model="throwaway", model_args={"blocks": 0})
    training.validate(config)  # the type is right; the value is the constructor's to judge
    info = data.DatasetInfo("toy", 3, ("a", "b", "c"), (4, 4, 1), {"train": 8})
    with pytest.raises(spec.ConfigError) as raised:
        builders.build_model(config, info)
    assert raised.value.flag_message() == "--blocks=0: must be an integer >= 1"
    assert builders.build_model(config, info, blocks=3).output.shape == (None, 3)


def test_a_saved_config_reproduces_the_run_and_flags_override_it(tmp_path):
    saved = parse("--recipe=quick", "--epochs=3", "--width_multiplier=0.5", "--seed=7")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved.to_dict()))
    assert spec.load_config(str(path)) == saved
    assert parse(f"--config={path}") == saved  # the recipe is not re-applied over the file
    # results.json holds the config too.
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"test_accuracy": 0.5, "config": saved.to_dict()}))
    assert parse(f"--config={results}") == saved
    # Flags given explicitly win, then --recipe, then the file.
    over = parse(f"--config={path}", "--batch_size=32", "--layer_reuse=4")
    assert (over.batch_size, over.model_args, over.epochs) == (
        32,
        {"layer_reuse": 4, "width_multiplier": 0.5, "dropout": 0.5},
        3,
    )
    recipe = parse(f"--config={path}", "--recipe=lrunet10_fashion_mnist")
    assert (recipe.epochs, recipe.model_args["layer_reuse"], recipe.seed) == (300, 10, 7)


def test_a_config_file_of_an_earlier_version_reads_back(tmp_path):
    # Before model_args, model arguments were fields beside the others.
    legacy = training.TrainConfig(epochs=4).to_dict()
    del legacy["model_args"]
    legacy.update(layer_reuse=10, width_multiplier=None, share=None, depth=None, width=None)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(legacy))
    config = spec.load_config(str(path))
    assert config.model_args == {"layer_reuse": 10} and config.epochs == 4


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "No such file"),
        ("{", "not JSON"),
        ("[1, 2]", "holds no configuration object"),
        ('{"epochz": 3}', "epochz: neither a TrainConfig field nor an argument"),
    ],
)
def test_a_bad_config_file_names_the_flag_and_the_path(tmp_path, content, message):
    path = tmp_path / "run.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(spec.ConfigError) as raised:
        parse(f"--config={path}")
    assert raised.value.flag_message().startswith(f"--config={path}: ")
    assert message in str(raised.value)


def test_resume_compares_model_arguments_one_by_one():
    a = training.TrainConfig(model_args={"layer_reuse": 2})
    assert a.difference(training.TrainConfig(model_args={"layer_reuse": 2})) is None
    b = training.TrainConfig(model_args={"layer_reuse": 2, "dropout": 0.1})
    assert a.difference(b, spec.MODEL_FIELDS) == ("dropout", None, 0.1)
    assert a.difference(training.TrainConfig(epochs=3)) == ("layer_reuse", 2, None)
    assert a.difference(training.TrainConfig(model_args={"layer_reuse": 2}, epochs=3)) == (
        "epochs",
        300,
        3,
    )


def test_every_field_is_documented_and_its_flag_says_so():
    # The Attributes section of TrainConfig's docstring is the one place a
    # field is described: the API reference and `keras-reuse train --help`.
    helps = spec.field_help()
    assert set(helps) == {f.name for f in dataclasses.fields(spec.TrainConfig)}
    assert helps["unshare"].endswith("the same depth and compute.")
    assert all(text.strip() for text in helps.values())
