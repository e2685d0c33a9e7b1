"""CoupledSGD reproduces torch.optim.SGD(momentum, weight_decay) exactly."""

import keras
import numpy as np
import pytest
import torch

from keras_reuse.training.optimizers import CoupledSGD


@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_torch_sgd_across_a_learning_rate_drop(nesterov):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((5, 3)).astype(np.float32)
    grads = rng.standard_normal((6, 5, 3)).astype(np.float32)
    lrs = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001]  # the step schedule's drops

    tw = torch.nn.Parameter(torch.tensor(w0))
    topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    kw = keras.Variable(w0)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2, 4], [0.1, 0.01, 0.001])
    kopt = CoupledSGD(schedule, momentum=0.9, l2=5e-4, nesterov=nesterov)
    for g, lr in zip(grads, lrs, strict=True):
        for group in topt.param_groups:
            group["lr"] = lr
        tw.grad = torch.tensor(g)
        topt.step()
        kopt.apply_gradients([(keras.ops.convert_to_tensor(g), kw)])
    np.testing.assert_allclose(kw.numpy(), tw.detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_kernel_equals_the_keras_ops_update_in_a_traced_fit(nesterov):
    # The TensorFlow fast path (ResourceApplyMomentum) against the
    # backend-agnostic update, inside model.fit's traced train step.
    def trained(fused):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(3)])
        opt = CoupledSGD(0.05, momentum=0.9, l2=1e-3, nesterov=nesterov, fused=fused)
        model.compile(optimizer=opt, loss="mse")
        rng = np.random.default_rng(1)
        x, y = rng.standard_normal((32, 6)), rng.standard_normal((32, 3))
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return [w.numpy() for w in model.weights] + [m.numpy() for m in opt.momentums]

    fused, generic = trained(None), trained(False)
    assert len(fused) == 8
    for a, b in zip(fused, generic, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_fused_value():
    with pytest.raises(ValueError, match=r"fused='yes'"):
        CoupledSGD(0.1, fused="yes")


def test_differs_from_keras_decoupled_decay():
    # The reason this optimizer exists: Keras's SGD(weight_decay) is not
    # PyTorch's coupled L2 under momentum.
    w0 = np.ones((4,), np.float32)
    g = np.full((4,), 0.5, np.float32)
    ours, theirs = keras.Variable(w0), keras.Variable(w0)
    a = CoupledSGD(0.1, momentum=0.9, l2=0.1)
    b = keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1)
    for _ in range(3):
        a.apply_gradients([(keras.ops.convert_to_tensor(g), ours)])
        b.apply_gradients([(keras.ops.convert_to_tensor(g), theirs)])
    assert not np.allclose(ours.numpy(), theirs.numpy(), rtol=1e-4)


def test_serializes():
    opt = CoupledSGD(0.05, momentum=0.8, l2=1e-4, nesterov=True, fused=False)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(restored, CoupledSGD)
    assert (restored.momentum, restored.l2, restored.nesterov) == (0.8, 1e-4, True)
    assert restored.fused is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(momentum=1.0), r"momentum=1.0"),
        (dict(momentum=-0.1), r"momentum=-0.1"),
        (dict(l2=-1e-4), r"l2=-0.0001"),
        (dict(weight_decay=1e-4), r"weight_decay=0.0001"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CoupledSGD(0.1, **kwargs)
