"""Test-session settings shared by every test file."""

import os

# CI runs two pytest-xdist workers on two cores. With TensorFlow's default
# thread pools (one thread per core, per process) the workers oversubscribe
# the cores and spin: the suite took 10-17 min of wall time and up to 27 min
# of CPU; with one thread each, 9 min and 14 min. Set before any test module
# imports TensorFlow, and inherited by the CLIs the tests start.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
