"""The PyTorch reference networks: test oracles and the benchmarks' baselines.

`torch_reference.lrunet.TorchLruNet` runs the authors' published LruNet
checkpoints exactly; `torch_reference.sharesnet.TorchShaResNet164` is
ShaResNet-164 in PyTorch. The tests compare keras_reuse with them, the
benchmarks time them against it. Needs torch (the `torch` extra);
keras_reuse itself never imports this package.
"""
