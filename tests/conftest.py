"""Test-session settings shared by every test file."""

import os

# CI runs two pytest-xdist workers on two cores. With TensorFlow's default
# thread pools (one thread per core, per process) the workers oversubscribe
# the cores and spin: the suite took 10-17 min of wall time and up to 27 min
# of CPU; with one thread each, 9 min and 14 min. Set before any test module
# imports TensorFlow, and inherited by the CLIs the tests start.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
# Importing keras_reuse turns oneDNN on where TensorFlow leaves it off (an
# x86-64 CPU without AVX-512 VNNI, bfloat16 or AMX). The suite runs the same
# paths on every CPU: oneDNN off, here and in the commands the tests start.
# tests/layers/test_onednn_paths.py runs the layer tests again with it on, and
# tests/cli/test_startup.py checks the default itself.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

# The files that take longest, first: pytest-xdist (`--dist loadfile`, with
# `--no-loadscope-reorder` in pyproject.toml) hands files to the two workers
# in collection order, so these start at once instead of ending the run with
# one worker waiting on them (its default order, most tests per file first,
# left the published-accuracy runs alone at the end: 23 min in all). The
# rest keep their alphabetical order.
_LONGEST_FIRST = (
    "test_accuracy_cifar10.py",
    "test_accuracy_fashion_mnist.py",
    "test_notebooks.py",
    "test_reliability.py",
    "test_backends.py",
    "test_data_format.py",
    "test_examples.py",
    "test_onednn_paths.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item):
        name = os.path.basename(str(item.path))
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
