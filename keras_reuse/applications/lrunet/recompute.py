"""One LruNet reuse iteration whose TensorFlow gradient keeps a quarter of the activations.

Autodiff of an iteration (shuffle, depthwise 3x3, BatchNorm, grouped 1x1,
BatchNorm, residual add, ReLU) keeps about 8C of activations per image
position for the backward pass, C the stage's channels: the depthwise
input (2C in the oneDNN form, `keras_reuse.layers.depthwise_conv`), its
output (2C, the first BatchNorm's input), the first BatchNorm's output
(2C, the grouped 1x1 convolution's input), the 1x1 output (C) and the
ReLU output (C). `lean_iteration` keeps 2C: its input, which is the
previous iteration's ReLU output and so kept anyway for that ReLU's
gradient, and the 1x1 output (the second BatchNorm's input). When the
backward pass reaches the iteration it recomputes the rest from its
input: the shuffle and the channel repeat (copies), the depthwise
convolution, and the first BatchNorm's output (one pass, from the batch
statistics the forward computed). The grouped 1x1 convolution is never
recomputed; its gradient takes the form its forward took
(`keras_reuse.layers.grouped_pointwise`: oneDNN's grouped convolution for
narrow groups where oneDNN runs, per-group matmuls otherwise).

The price is time (docs/reports/memory.md), so `LruStage(recompute=True)` is
opt-in. The forward is the same ops as
autodiff's graph, so the outputs and batch statistics are bit-identical;
the backward calls the gradient kernels TensorFlow's
registered gradients call (`nn_grad.py`) on recomputed inputs, so the
gradients agree to float32 rounding (tests/applications/test_lean_iteration.py).
TensorFlow only: `keras_reuse.applications.lrunet.stage.LruStage` uses it in training on
the TensorFlow backend, always channels last (a channels-first stage
transposes its input there once, before the loop).
"""

from __future__ import annotations

from keras_reuse.layers.ops import (
    biased_variance,
    blocked_channel_repeat,
    fused_batch_norm_op,
    grouped_filter,
    grouped_pointwise,
    half_swap_shuffle,
    inverse_half_swap_shuffle,
    repeat_channels,
    trains_grouped_conv2d,
)


def _pointwise_grad(y, dz, kernel, native: bool):
    """`(dy, dkernel)` of `grouped_pointwise(y, kernel, training=True)` for upstream `dz`.

    `native`: the forward ran as oneDNN's grouped conv2d, and so do these
    (the ops TensorFlow's registered gradient calls); otherwise per-group
    matmuls on channel slices.
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    groups, cin_g, cout_g = kernel.shape
    if native:
        conv = {"strides": [1, 1, 1, 1], "padding": "VALID"}
        filters = grouped_filter(tf.cast(kernel, y.dtype))
        dy = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(y), filter=filters, out_backprop=dz, **conv
        )
        dfilters = tf.raw_ops.Conv2DBackpropFilter(
            input=y, filter_sizes=tf.shape(filters), out_backprop=dz, **conv
        )
        # `grouped_filter`'s layout back to (groups, cin_g, cout_g).
        return dy, tf.transpose(tf.reshape(dfilters, (cin_g, groups, cout_g)), (1, 0, 2))
    pw = tf.unstack(kernel, num=groups, axis=0)
    flat_y = tf.split(tf.reshape(y, (-1, y.shape[-1])), groups, axis=-1)
    flat_dz = tf.split(tf.reshape(dz, (-1, dz.shape[-1])), groups, axis=-1)
    dy = tf.concat(
        [tf.matmul(g, k, transpose_b=True) for g, k in zip(flat_dz, pw, strict=True)], axis=-1
    )
    dkernel = tf.stack(
        [tf.matmul(a, g, transpose_a=True) for a, g in zip(flat_y, flat_dz, strict=True)]
    )
    return tf.reshape(dy, tf.shape(y)), dkernel


def _batch_norm_grad(dy, x, gamma, norm, epsilon: float):
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    dx, dgamma, dbeta, _, _ = tf.raw_ops.FusedBatchNormGradV3(
        y_backprop=dy,
        x=x,
        scale=gamma,
        reserve_space_1=norm[3],
        reserve_space_2=norm[4],
        reserve_space_3=norm[5],
        epsilon=epsilon,
        data_format="NHWC",
        is_training=True,
    )
    return dx, dgamma, dbeta


def lean_iteration(
    p,
    depthwise_kernel,
    pointwise_kernel,
    gamma1,
    beta1,
    gamma2,
    beta2,
    epsilon: float,
    repeat: bool,
    blocked: bool = False,
):
    """One training-mode LruNet iteration on TensorFlow, with a lean gradient.

    Computes `relu(bn2(pw(bn1(dw(x)))) + x)` with `x = shuffle(p)`, the
    half-swap channel shuffle, and the BatchNorms in training mode.

    Args:
        p: `(N, H, W, C)`: the previous iteration's ReLU output (or the
            stage input).
        depthwise_kernel: `(3, 3, C, M)`, in `p`'s dtype.
        pointwise_kernel: `(groups, M*C/groups, C/groups)`, in `p`'s dtype.
        gamma1, beta1: `(M*C,)` float32, the depthwise BatchNorm's.
        gamma2, beta2: `(C,)` float32, the pointwise BatchNorm's.
        epsilon: Both BatchNorms' epsilon.
        repeat: Run the depthwise convolution in the oneDNN form (channels
            repeated M times, multiplier 1), as `layers.depthwise_conv`.
        blocked: The depthwise convolution runs on
            `layers.ops.blocked_channel_repeat`'s channels, as `LruStage`
            runs it where oneDNN does: `depthwise_kernel` is then its
            multiplier-1 kernel `(3, 3, M*C, 1)`, and `gamma1`, `beta1` and
            `pointwise_kernel`'s rows are in that channel order (so are
            `mean1` and `var1`).

    Returns:
        `(out, mean1, var1, mean2, var2)`: the ReLU output in `p`'s dtype
        and each BatchNorm's batch mean and biased batch variance, float32
        (what Keras's moving statistics average; no gradient flows through
        them).
    """
    # Optional: TensorFlow, imported on its backend's path only.
    import tensorflow as tf

    kh, kw = depthwise_kernel.shape[:2]
    channels, groups = p.shape[-1], pointwise_kernel.shape[0]
    # M: the kernel is (3, 3, C, M), or (3, 3, M*C, 1) when `blocked`.
    multiplier = depthwise_kernel.shape[2] * depthwise_kernel.shape[3] // channels
    conv = {"strides": [1, 1, 1, 1], "padding": "SAME"}

    def conv_input(p):
        x = half_swap_shuffle(p, training=True)
        if blocked:
            return x, blocked_channel_repeat(x, groups, multiplier)
        if repeat and multiplier > 1:
            return x, repeat_channels(x, multiplier, training=True)
        return x, x

    def conv_kernel(kernel):
        if repeat and multiplier > 1 and not blocked:
            return tf.reshape(kernel, (kh, kw, channels * multiplier, 1))
        return kernel

    @tf.custom_gradient
    def iteration(p, dw_kernel, pw_kernel, gamma1, beta1, gamma2, beta2):
        x, r = conv_input(p)
        kernel = conv_kernel(dw_kernel)
        d = tf.raw_ops.DepthwiseConv2dNative(input=r, filter=kernel, **conv)
        norm1 = fused_batch_norm_op(d, gamma1, beta1, epsilon)
        z = grouped_pointwise(norm1[0], pw_kernel, training=True)
        # The form the forward took: its gradient is computed the same way.
        native = trains_grouped_conv2d(norm1[0], pw_kernel.shape[1])
        norm2 = fused_batch_norm_op(z, gamma2, beta2, epsilon)
        out = tf.nn.relu(norm2[0] + x)

        var1 = biased_variance(norm1[2], d)

        def grad(d_out, *_unused_stats):
            ds = tf.raw_ops.ReluGrad(gradients=d_out, features=out)
            dz, dgamma2, dbeta2 = _batch_norm_grad(ds, z, gamma2, norm2, epsilon)
            # Recomputed once the backward pass reaches this iteration (not
            # before: nothing else orders these ops after the forward pass).
            with tf.control_dependencies([dz]):
                _, r = conv_input(p)
                # The same op on the same input as forward: the same values.
                d = tf.raw_ops.DepthwiseConv2dNative(input=r, filter=kernel, **conv)
                # The first BatchNorm's output from its batch statistics, in
                # one pass (the training-mode op takes three): equal to the
                # forward's to float32 rounding.
                y = tf.raw_ops.FusedBatchNormV3(
                    x=d,
                    scale=gamma1,
                    offset=beta1,
                    mean=norm1[1],
                    variance=var1,
                    epsilon=epsilon,
                    exponential_avg_factor=1.0,
                    data_format="NHWC",
                    is_training=False,
                )[0]
            dy, dpw = _pointwise_grad(y, dz, pw_kernel, native)
            dd, dgamma1, dbeta1 = _batch_norm_grad(dy, d, gamma1, norm1, epsilon)
            dr = tf.raw_ops.DepthwiseConv2dNativeBackpropInput(
                input_sizes=tf.shape(r), filter=kernel, out_backprop=dd, **conv
            )
            dkernel = tf.raw_ops.DepthwiseConv2dNativeBackpropFilter(
                input=r, filter_sizes=tf.shape(kernel), out_backprop=dd, **conv
            )
            if blocked:
                # The blocked repeat's gradient: each block's M copies summed.
                shape = tf.concat([tf.shape(p)[:3], [groups, multiplier, channels // groups]], 0)
                dr = tf.reshape(tf.reduce_sum(tf.reshape(dr, shape), axis=4), tf.shape(p))
            elif repeat and multiplier > 1:
                # The repeat's gradient: each input channel's M copies summed.
                pairs = tf.reshape(dr, tf.concat([tf.shape(p), [multiplier]], 0))
                dr = tf.reduce_sum(pairs, axis=-1)
                dkernel = tf.reshape(dkernel, (kh, kw, channels, multiplier))
            dx = dr + ds
            return inverse_half_swap_shuffle(dx), dkernel, dpw, dgamma1, dbeta1, dgamma2, dbeta2

        stats = (norm1[1], var1, norm2[1], biased_variance(norm2[2], z))
        return (out, *stats), grad

    return iteration(p, depthwise_kernel, pointwise_kernel, gamma1, beta1, gamma2, beta2)
