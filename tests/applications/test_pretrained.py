"""The authors' published LruNet checkpoints in Keras: logits, accuracy, CLI, bad files.

Every converted model is checked against the PyTorch reference network
(torch_reference/lrunet.py) loaded from the same checkpoint, and against
the weights file the package ships for it (its preset). The accuracies
measured with the authors' code are reproduced, by the shipped presets, in
test_accuracy_*.py.
"""

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import torch
from absl import flags
from locations import SHARED as SHARED_PATH

import keras_reuse
from keras_reuse import applications, cli, data
from keras_reuse.applications.lrunet.checkpoint import load_lrunet_checkpoint
from keras_reuse.applications.lrunet.presets import PRESETS
from torch_reference.lrunet import TorchLruNet

CHECKPOINTS = SHARED_PATH / "pretrained" / "lrunet-pytorch"
FMNIST_LRU1 = CHECKPOINTS / "fashionmnist-lru1-ckpt-09117.t7"


@functools.cache
def _converted(filename: str) -> keras.Model:
    # Building LruNet-14 takes seconds; the logit and accuracy tests share models.
    return load_lrunet_checkpoint(CHECKPOINTS / filename)


def _reuse_and_width(model: keras.Model) -> tuple[int, float]:
    reuse = sum(1 for layer in model.layers if layer.name.endswith("_dw_bn"))
    return reuse // 4, model.get_layer("stage1_pw").filters / 64


def _real_images(shape: tuple, count: int) -> np.ndarray:
    name = "fashion_mnist" if shape[-1] == 1 else "cifar10_jpeg"
    images, _ = next(iter(data.load(name, split=f"test[:{count}]", batch_size=count)))
    return images.numpy()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_converted_checkpoint_gives_the_pytorch_logits(name):
    preset = PRESETS[name]
    filename, input_shape = preset.checkpoint, preset.input_shape
    path = CHECKPOINTS / filename
    model = _converted(filename)
    assert model.input_shape[1:] == input_shape
    assert model.output_shape == (None, preset.num_classes)
    assert _reuse_and_width(model) == (preset.layer_reuse, preset.width_multiplier)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == preset.trainable_params

    # The shipped weights file is this conversion, tensor for tensor.
    shipped = applications.create(name, classifier_activation=None)
    assert [w.path for w in shipped.weights] == [w.path for w in model.weights]
    for ours, converted in zip(shipped.weights, model.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), converted.numpy())

    reference = TorchLruNet.from_checkpoint(path)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == sum(
        p.numel() for p in reference.parameters()
    )
    rng = np.random.default_rng(0)
    # CIFAR-100 has no copy here; its models see CIFAR-10 pictures.
    x = np.concatenate(
        [rng.random((16, *input_shape), dtype=np.float32), _real_images(input_shape, 16)]
    )
    with torch.no_grad():
        expected = reference(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
    logits = model.predict(x, batch_size=len(x), verbose=0)
    scale = np.abs(expected).max()
    assert scale > 1.0  # real logits, not a dead network
    # float32 against float32 in another order: measured at most 6.3e-7 of the
    # largest logit (LruNet-14 CIFAR-10; 2.1e-7 to 6.3e-7 over the presets, oneDNN
    # on or off, this AVX2 CPU under load). Bound: 8x that.
    np.testing.assert_array_less(np.abs(logits - expected).max(), 5e-6 * scale)
    np.testing.assert_array_equal(logits.argmax(axis=1), expected.argmax(axis=1))


def test_checkpoint_without_module_prefix_and_with_batch_counters(tmp_path):
    # A state_dict saved by today's PyTorch from a single-device model.
    reference = TorchLruNet.from_checkpoint(FMNIST_LRU1)
    path = tmp_path / "plain.pt"
    torch.save(reference.state_dict(), path)
    assert any(k.endswith("num_batches_tracked") for k in reference.state_dict())
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        load_lrunet_checkpoint(path).predict(x, verbose=0),
        _converted(FMNIST_LRU1.name).predict(x, verbose=0),
    )


# ----------------------------------------------------------------- bad files --


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.t7"
    with pytest.raises(FileNotFoundError, match="not found.*nope.t7"):
        load_lrunet_checkpoint(missing)


@pytest.mark.parametrize("keep", [0, 1000, 200_000, -1])
def test_truncated_file(tmp_path, keep):
    content = FMNIST_LRU1.read_bytes()
    path = tmp_path / "truncated.t7"
    path.write_bytes(content[:keep])
    expected = "is empty" if keep == 0 else "ends early, it is truncated"
    with pytest.raises(ValueError, match=f"truncated.t7.*{expected}"):
        load_lrunet_checkpoint(path)


@pytest.mark.parametrize(
    "offset, junk",
    [
        (0, b"\x00" * 16),  # the pickle header
        (0x90, b"\xff" * 32),  # inside the pickled dict
    ],
)
def test_corrupted_file(tmp_path, offset, junk):
    content = bytearray(FMNIST_LRU1.read_bytes())
    content[offset : offset + len(junk)] = junk
    path = tmp_path / "corrupted.t7"
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="corrupted.t7.*the file is corrupted"):
        load_lrunet_checkpoint(path)


def test_corrupted_tensor_values(tmp_path):
    checkpoint = torch.load(FMNIST_LRU1, map_location="cpu", weights_only=True)
    checkpoint["net"]["module.stage2.dw.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.t7"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"nan.t7.*corrupted.*'stage2.dw.weight'.*NaN"):
        load_lrunet_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.t7"
    path.write_text("this is not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.t7.*corrupted or not a PyTorch checkpoint"):
        load_lrunet_checkpoint(path)


def test_checkpoint_of_another_architecture(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    path = tmp_path / "other.t7"
    torch.save({"net": other.state_dict(), "acc": 50.0}, path)
    with pytest.raises(ValueError, match="other.t7.*not an LruNet checkpoint.*'features.0.weight'"):
        load_lrunet_checkpoint(path)


def _edited_checkpoint(tmp_path, edit) -> Path:
    checkpoint = torch.load(FMNIST_LRU1, map_location="cpu", weights_only=True)
    edit(checkpoint["net"])
    path = tmp_path / "edited.t7"
    torch.save(checkpoint, path)
    return path


def test_checkpoint_with_an_extra_tensor(tmp_path):
    path = _edited_checkpoint(
        tmp_path, lambda net: net.__setitem__("module.stage5.dw.weight", torch.zeros(3))
    )
    with pytest.raises(ValueError, match=r"edited.t7.*unexpected tensors: stage5.dw.weight"):
        load_lrunet_checkpoint(path)


def test_checkpoint_with_a_missing_tensor(tmp_path):
    path = _edited_checkpoint(tmp_path, lambda net: net.pop("module.stage3.pw_bn_list.0.bias"))
    with pytest.raises(ValueError, match=r"edited.t7.*missing tensors: stage3.pw_bn_list.0.bias"):
        load_lrunet_checkpoint(path)


def test_checkpoint_with_a_wrongly_shaped_tensor(tmp_path):
    # Groups of 4 instead of 8 in stage 2's pointwise conv: same key, other net.
    path = _edited_checkpoint(
        tmp_path, lambda net: net.__setitem__("module.stage2.pw.weight", torch.zeros(128, 64, 1, 1))
    )
    with pytest.raises(
        ValueError, match=r"edited.t7.*'stage2.pw.weight' has shape \(128, 64, 1, 1\), expected"
    ):
        load_lrunet_checkpoint(path)


def test_checkpoint_of_unsupported_input_channels(tmp_path):
    path = _edited_checkpoint(
        tmp_path, lambda net: net.__setitem__("module.features.0.weight", torch.zeros(64, 4, 3, 3))
    )
    with pytest.raises(ValueError, match="edited.t7.*stem takes 4 input channels"):
        load_lrunet_checkpoint(path)


def test_torch_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    with pytest.raises(ImportError, match=r'pip install "keras-reuse\[torch\]"'):
        load_lrunet_checkpoint(FMNIST_LRU1)


def test_package_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import keras_reuse\n"
        "try:\n"
        f"    keras_reuse.load_lrunet_checkpoint({str(FMNIST_LRU1)!r})\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert 'pip install "keras-reuse[torch]"' in result.stdout
    assert "torch==2.13.0" in result.stdout


# ----------------------------------------------------------------------- CLI --


def _convert(capsys, *args):
    """Runs `keras-reuse convert ARGS` through the console script's entry point."""
    flags.FLAGS.unparse_flags()  # absl keeps flag values between parses
    with pytest.raises(SystemExit) as exit_info:
        cli.run(["keras-reuse", "convert", *map(str, args)])
    output = capsys.readouterr()
    return exit_info.value.code or 0, output.out, output.err


def test_convert_cli_writes_a_keras_model(tmp_path, capsys):
    out = tmp_path / "lrunet.keras"
    code, stdout, _ = _convert(capsys, FMNIST_LRU1, out)
    assert code == 0
    assert f"wrote {out}" in stdout
    assert os.listdir(tmp_path) == ["lrunet.keras"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    loaded = keras.models.load_model(out)
    x = np.random.default_rng(2).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), _converted(FMNIST_LRU1.name).predict(x, verbose=0)
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (lambda tmp: [FMNIST_LRU1], "expected 2 arguments, received 1"),
        (lambda tmp: [tmp / "absent.t7", tmp / "out.keras"], "CKPT: no such file"),
        (lambda tmp: [FMNIST_LRU1, tmp / "out.h5"], "OUT must end in .keras"),
        (lambda tmp: [FMNIST_LRU1, tmp / "no_dir" / "out.keras"], "directory does not exist"),
        (lambda tmp: [tmp / "bad.t7", tmp / "out.keras"], "bad.t7.*the file is corrupted"),
    ],
)
def test_convert_cli_bad_input(tmp_path, capsys, args, message):
    (tmp_path / "bad.t7").write_bytes(FMNIST_LRU1.read_bytes()[:16] + b"\x00" * 64)
    code, _, stderr = _convert(capsys, *args(tmp_path))
    assert code == 2
    # One line: `keras-reuse convert: error: ...`.
    assert any(re.search(message, line) for line in stderr.splitlines()), stderr
    assert sorted(os.listdir(tmp_path)) == ["bad.t7"]  # nothing written


def test_load_lrunet_checkpoint_is_exported():
    assert keras_reuse.load_lrunet_checkpoint is load_lrunet_checkpoint
