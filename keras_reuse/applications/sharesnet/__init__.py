"""The ShaResNet family: ResNets whose 3x3 convolutions are shared within a stage.

The constructors (`model`) are exported by `keras_reuse.applications`.
"""
