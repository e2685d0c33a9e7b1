"""`python -m keras_reuse SUBCOMMAND [flags]`: the `keras-reuse` command.

Importing the package has set TensorFlow's start-up defaults
(`keras_reuse.startup`) before anything starts TensorFlow.
"""

from keras_reuse.cli import run

if __name__ == "__main__":
    run()
