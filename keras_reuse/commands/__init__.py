"""Subcommands of the `keras-reuse` command line, one module each."""
