"""Experiments over many runs: the layer-reuse study (`study`) and hyperparameter search."""
