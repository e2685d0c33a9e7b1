"""Bad input to every `keras-reuse` subcommand: exit 2, one line naming the flag, nothing written.

All cases run in one process (tests/support/cli_cases.py): a process start costs
seconds of TensorFlow import, a case milliseconds.
"""

import json
import os
import subprocess
import sys

import pytest
from locations import ROOT as ROOT_PATH

from keras_reuse.training import recipes

ROOT = str(ROOT_PATH)
DATA = ["--dataset=fashion_mnist", "--batch_size=32", "--max_train_examples=64"]
TRAIN = ["--model=lrunet", "--layer_reuse=1", *DATA, "--epochs=1", "--output_dir=runs/train"]
STUDY = ["--reuse=1", *DATA, "--epochs=1", "--output_dir=runs/study"]
TUNE = ["--max_trials=1", "--epochs=1", "--output_dir=runs/tune"]
EXPORT = ["model.keras", "out.tflite"]
CONVERT = ["model.t7", "out.keras"]

# (subcommand, arguments, what the error line must name)
CASES = [
    # train
    ("train", [*TRAIN, "--epochs=0"], "--epochs=0: must be an integer >= 1"),
    ("train", [*TRAIN, "--epochs=-3"], "--epochs=-3"),
    ("train", [*TRAIN, "--epochs=abc"], "--epochs=abc"),
    ("train", [*TRAIN, "--batch_size=0"], "--batch_size=0"),
    ("train", [*TRAIN, "--learning_rate=-0.1"], "--learning_rate=-0.1"),
    ("train", [*TRAIN, "--learning_rate=fast"], "--learning_rate=fast"),
    ("train", [*TRAIN, "--momentum=1.5"], "--momentum=1.5"),
    ("train", [*TRAIN, "--weight_decay=-1"], "--weight_decay=-1"),
    ("train", [*TRAIN, "--schedule=linear"], "--schedule=linear"),
    ("train", [*TRAIN, "--model=resnet9"], "--model=resnet9: unknown model"),
    ("train", [*TRAIN, "--dataset=no_such_dataset"], "--dataset=no_such_dataset"),
    ("train", [*TRAIN, "--layer_reuse=0"], "--layer_reuse=0: must be an integer >= 1"),
    ("train", [*TRAIN, "--width_multiplier=0"], "--width_multiplier=0"),
    ("train", [*TRAIN, "--dropout=1.5"], "--dropout=1.5"),
    ("train", [*TRAIN, "--mixed_precision=fp8"], "--mixed_precision=fp8"),
    ("train", [*TRAIN, "--strategy=tpu"], "--strategy=tpu"),
    ("train", [*TRAIN, "--cpu_devices=0"], "--cpu_devices=0"),
    ("train", [*TRAIN, "--steps_per_epoch=0"], "--steps_per_epoch=0"),
    ("train", [*TRAIN, "--max_eval_examples=-1"], "--max_eval_examples=-1"),
    ("train", [*TRAIN, "--warmup_epochs=-1"], "--warmup_epochs=-1"),
    ("train", [*TRAIN, "--precise_bn_batches=-1"], "--precise_bn_batches=-1"),
    (
        "train",
        [*TRAIN, "--recipe=nope"],
        "--recipe=nope: unknown recipe; one of " + ", ".join(recipes.RECIPES),
    ),
    ("train", [*TRAIN, "--seed=abc"], "--seed=abc"),
    ("train", [*TRAIN, "--resume=maybe"], "--resume=maybe"),
    ("train", [*TRAIN, "--data_dir=missing_dir"], "--data_dir=missing_dir"),
    ("train", [*TRAIN, "--output_dir=a_file"], "--output_dir=a_file"),
    ("train", [*TRAIN, "--no_such_flag=1"], "no_such_flag"),
    ("train", [*TRAIN, "extra"], "extra"),
    # study
    ("study", [*STUDY, "--reuse=0"], "--reuse=0"),
    ("study", [*STUDY, "--reuse=0,2"], "--reuse=0,2: expected integers >= 1, e.g. 1,2,4,8,10"),
    ("study", [*STUDY, "--reuse=a"], "--reuse=a"),
    ("study", [*STUDY, "--reuse=1,1"], "--reuse=1,1"),
    ("study", [*STUDY, "--seeds=x"], "--seeds=x"),
    ("study", [*STUDY, "--unshared=1"], "--unshared=1: expected integers >= 2, e.g. 10"),
    ("study", [*STUDY, "--unshared=10,10"], "--unshared=10,10: a value is repeated"),
    ("study", [*STUDY, "--epochs=0"], "--epochs=0"),
    ("study", [*STUDY, "--batch_size=-2"], "--batch_size=-2"),
    ("study", [*STUDY, "--dataset=no_such_dataset"], "--dataset=no_such_dataset"),
    ("study", [*STUDY, "--schedule=linear"], "--schedule=linear"),
    ("study", [*STUDY, "--output_dir=a_file"], "--output_dir=a_file"),
    ("study", [*STUDY, "--verbose=loud"], "--verbose=loud"),
    # tune
    ("tune", [*TUNE, "--tuner=grid"], "--tuner=grid"),
    ("tune", [*TUNE, "--max_trials=0"], "--max_trials=0"),
    ("tune", [*TUNE, "--epochs=0"], "--epochs=0"),
    ("tune", [*TUNE, "--batch_size=-1"], "--batch_size=-1"),
    ("tune", [*TUNE, "--layer_reuse=a"], "--layer_reuse=a"),
    ("tune", [*TUNE, "--layer_reuse=1,two"], "--layer_reuse=1,two: expected int values"),
    ("tune", [*TUNE, "--share=maybe"], "--share=maybe"),
    ("tune", [*TUNE, "--validation_examples=0"], "--validation_examples=0"),
    ("tune", [*TUNE, "--model=resnet9"], "--model=resnet9"),
    ("tune", [*TUNE, "--dataset=no_such_dataset"], "--dataset=no_such_dataset"),
    ("tune", [*TUNE, "--max_trials=many"], "--max_trials=many"),
    # export
    ("export", [], "MODEL"),
    ("export", ["missing.keras", "out.tflite"], "MODEL"),
    ("export", ["model.keras", "out.tf"], "OUT"),
    ("export", ["model.keras", "no_dir/out.tflite"], "OUT"),
    ("export", [*EXPORT, "--num_calibration=0"], "--num_calibration=0"),
    ("export", [*EXPORT, "--num_verification=-1"], "--num_verification=-1"),
    ("export", [*EXPORT, "--num_calibration=abc"], "--num_calibration=abc"),
    ("export", [*EXPORT, "--quantization=int9"], "--quantization=int9"),
    ("export", [*EXPORT, "--min_agreement=1.5"], "--min_agreement=1.5"),
    ("export", [*EXPORT, "--min_agreement=0"], "--min_agreement=0"),
    ("export", [*EXPORT, "--verify=maybe"], "--verify=maybe"),
    ("export", [*EXPORT, "--quantization=int8"], "--quantization=int8"),
    ("export", [*EXPORT, "--int8_layout=tiny"], "--int8_layout=tiny"),
    (
        "export",
        [*EXPORT, "--quantization=float16", "--int8_layout=compact"],
        "needs --quantization=int8 and --nofold_batchnorm",
    ),
    # convert
    ("convert", ["model.t7"], "CKPT"),
    ("convert", ["missing.t7", "out.keras"], "CKPT"),
    ("convert", ["a_dir", "out.keras"], "CKPT"),
    ("convert", ["model.t7", "out.h5"], "OUT"),
    ("convert", ["model.t7", "no_dir/out.keras"], "OUT"),
    ("convert", [*CONVERT, "--no_such_flag"], "no_such_flag"),
    # data
    ("data", [], "prepare NAME"),
    ("data", ["prepare"], "NAME"),
    ("data", ["prepare", "cifar9", "--from=a_dir"], "NAME=cifar9"),
    ("data", ["prepare", "fashion_mnist"], "--from"),
    ("data", ["prepare", "fashion_mnist", "--from=missing_dir"], "--from=missing_dir"),
    (
        "data",
        ["prepare", "fashion_mnist", "--from=a_dir", "--data_dir=a_file"],
        "--data_dir=a_file",
    ),
    ("data", ["list", "extra"], "extra"),
    ("data", ["list", "--from=a_dir"], "--from"),
    ("data", ["list", "--data_dir=a_file"], "--data_dir=a_file"),
    ("data", ["frobnicate"], "frobnicate"),
    # summary
    ("summary", ["--model=resnet9"], "--model=resnet9"),
    ("summary", ["--layer_reuse=0"], "layer_reuse"),
    ("summary", ["--layer_reuse=-2"], "layer_reuse"),
    ("summary", ["--num_classes=0"], "num_classes"),
    ("summary", ["--input_shape=a,b,c"], "--input_shape"),
    ("summary", ["--model=sharesnet164", "--layer_reuse=2"], "--layer_reuse=2"),
    ("summary", ["--depth=abc"], "--depth=abc"),
    ("summary", ["extra"], "extra"),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Runs every case in one process, from a directory holding only the inputs."""
    work = tmp_path_factory.mktemp("cli")
    (work / "a_file").write_text("not a directory")
    (work / "a_dir").mkdir()
    (work / "model.keras").write_bytes(b"")  # its flags fail before it is read
    (work / "model.t7").write_bytes(b"")
    cases = work.parent / f"{work.name}-cases.json"
    cases.write_text(json.dumps([[command, args] for command, args, _ in CASES]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "support", "cli_cases.py"), str(cases)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == len(CASES)
    return results


def test_there_are_cases_for_every_subcommand():
    from keras_reuse.cli import _SUBCOMMANDS

    assert {command for command, _, _ in CASES} == set(_SUBCOMMANDS)
    assert len(CASES) >= 40


@pytest.mark.parametrize(
    "index", range(len(CASES)), ids=[f"{c}:{' '.join(a[-1:])}" for c, a, _ in CASES]
)
def test_bad_input_is_a_one_line_usage_error_and_writes_nothing(outcomes, index):
    command, _, named = CASES[index]
    outcome = outcomes[index]
    lines = outcome["stderr"].strip().splitlines()
    assert outcome["code"] == 2, outcome["stderr"][-2000:]
    errors = [line for line in lines if line.startswith(f"keras-reuse {command}: error: ")]
    assert len(errors) == 1, lines
    assert named in errors[0]
    assert outcome["written"] == []
