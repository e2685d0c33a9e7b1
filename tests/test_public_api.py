"""The public API: every name the package exported before its layout changed imports
from the same place, `.keras` files saved before still load, and `import keras_reuse`
starts nothing."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from locations import FIXTURES

import keras_reuse
from keras_reuse import applications

DATA = str(FIXTURES)

# `keras_reuse.__all__` and `keras_reuse.applications.__all__` before the
# package was split into subpackages.
PACKAGE_NAMES = [
    "AtomicWriteError",
    "ChannelShuffle",
    "CoupledSGD",
    "GroupedPointwiseConv",
    "LayerReuse",
    "LruNet",
    "ReuseSummary",
    "__version__",
    "applications",
    "build_optimizer",
    "compile_for_training",
    "create",
    "feature_extractor",
    "data",
    "get",
    "layers",
    "list_models",
    "optimizers",
    "load_lrunet_checkpoint",
    "reuse_summary",
    "share",
    "sharing",
    "to_tflite",
    "unshare",
]
APPLICATION_NAMES = (
    "LruNet ShaResNet18 ShaResNet34 ShaResNet50 ShaResNet101 ShaResNet152 ShaResNet164 "
    "WideShaResNet create feature_extractor get list_models register_model"
).split()


@pytest.mark.parametrize("name", PACKAGE_NAMES)
def test_every_package_name_still_imports(name):
    assert name in keras_reuse.__all__
    namespace: dict = {}
    exec(f"from keras_reuse import {name}", namespace)
    assert namespace[name] is getattr(keras_reuse, name)


@pytest.mark.parametrize("name", APPLICATION_NAMES)
def test_every_application_name_still_imports(name):
    assert name in applications.__all__
    namespace: dict = {}
    exec(f"from keras_reuse.applications import {name}", namespace)
    assert callable(namespace[name])


def test_the_public_names_are_the_documented_objects():
    assert keras_reuse.LruNet is applications.LruNet
    assert keras_reuse.share is keras_reuse.sharing.share
    assert keras_reuse.CoupledSGD is keras_reuse.optimizers.CoupledSGD
    assert keras_reuse.__version__ == "0.1.0"
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        keras_reuse.no_such_name  # noqa: B018


@pytest.mark.parametrize("name", ["lrunet2_unrolled", "lrunet2_looped"])
def test_keras_files_saved_before_the_layout_change_load_and_predict_the_same(name):
    # Saved by the package as it was before the split (an LruNet-2 trained
    # one step with CoupledSGD, so the optimizer and BN statistics are in it).
    saved = np.load(os.path.join(DATA, "pre_layout_models.npz"))
    model = keras.saving.load_model(os.path.join(DATA, f"{name}.keras"))
    assert type(model.optimizer).__name__ == "CoupledSGD"
    np.testing.assert_allclose(
        model.predict(saved["images"], verbose=0), saved[name], rtol=1e-5, atol=1e-5
    )


def test_importing_the_package_starts_neither_keras_nor_tensorflow():
    code = (
        "import sys, keras_reuse\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'tensorflow_datasets') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"


def test_keras_imported_first_registers_the_layers_at_package_import():
    # A user who imports Keras first and the package second can load our
    # `.keras` files without touching any of the package's names.
    code = (
        "import keras, keras_reuse, sys\n"
        f"m = keras.saving.load_model({os.path.join(DATA, 'lrunet2_looped.keras')!r})\n"
        "print(type(m.optimizer).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "CoupledSGD"
