"""The papers' training augmentation, as one vectorised op per batch.

Köpüklü et al. train with torchvision's `RandomCrop(size, padding=4)`,
`RandomRotation(10)` and `RandomHorizontalFlip()`. All three are affine maps
of the pixel grid with zero fill, so `augment_images` composes them into one
per-image transform and applies the whole batch with a single
`ImageProjectiveTransformV3` (the op behind `keras.layers.RandomRotation`).
Random numbers come from stateless ops, so a seed gives identical batches.
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

_INTERPOLATIONS = ("nearest", "bilinear")


def _check_args(padding: Any, max_rotation: Any, flip: Any, interpolation: Any) -> None:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"`padding` must be a non-negative integer. Received: padding={padding!r}")
    if (
        isinstance(max_rotation, bool)
        or not isinstance(max_rotation, (int, float))
        or not 0 <= max_rotation <= 180
    ):
        raise ValueError(
            "`max_rotation` must be a number of degrees in [0, 180]. "
            f"Received: max_rotation={max_rotation!r}"
        )
    if not isinstance(flip, bool):
        raise ValueError(f"`flip` must be True or False. Received: flip={flip!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            f"`interpolation` must be one of {_INTERPOLATIONS}. "
            f"Received: interpolation={interpolation!r}"
        )


def augment_images(
    images: tf.Tensor,
    seed: tf.Tensor,
    padding: int = 4,
    max_rotation: float = 10.0,
    flip: bool = True,
    interpolation: str = "nearest",
) -> tf.Tensor:
    """Randomly crops, rotates and flips a batch of images, each differently.

    Per image: a random crop back to the input size after `padding` pixels
    of zero padding on every side (a shift by a whole number of pixels in
    [-padding, padding]), a rotation about the centre by an angle drawn
    uniformly from [-max_rotation, max_rotation] degrees, and a horizontal
    flip with probability 1/2. Pixels that come from outside the image are 0.
    The default `"nearest"` interpolation is what torchvision's
    `RandomRotation` used for the published checkpoints; it also keeps every
    output pixel one of the input's values.

    Args:
        images: Float tensor of shape `(batch, height, width, channels)`.
        seed: Shape `(2,)` integer tensor, the stateless random seed.
        padding: Zero padding, in pixels, before the random crop.
        max_rotation: Largest rotation, in degrees.
        flip: Whether to flip horizontally with probability 1/2.
        interpolation: `"nearest"` or `"bilinear"`.

    Returns:
        The augmented batch, same shape and dtype as `images`.

    Raises:
        ValueError: if an argument is out of range.
    """
    _check_args(padding, max_rotation, flip, interpolation)
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    batch = shape[0]
    height = tf.cast(shape[1], tf.float32)
    width = tf.cast(shape[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(seed, num=3)

    shift = tf.random.stateless_uniform(
        (batch, 2), seeds[0], minval=-padding, maxval=padding + 1, dtype=tf.int32
    )
    shift_x = tf.cast(shift[:, 0], tf.float32)
    shift_y = tf.cast(shift[:, 1], tf.float32)
    limit = max_rotation * math.pi / 180.0
    angle = tf.random.stateless_uniform((batch,), seeds[1], minval=-limit, maxval=limit)
    if flip:
        coin = tf.random.stateless_uniform((batch,), seeds[2])
        mirror = tf.where(coin < 0.5, -1.0, 1.0)
    else:
        mirror = tf.ones((batch,))

    # The op maps each output pixel p to the input pixel M p + offset. With
    # F the flip, R the rotation about the centre c and t the crop shift,
    # output(p) = input(R F (p - c) + c + t), so M = R F and
    # offset = c + t - M c.
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0, a1 = cos * mirror, -sin
    b0, b1 = sin * mirror, cos
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2 = cx + shift_x - (a0 * cx + a1 * cy)
    b2 = cy + shift_y - (b0 * cx + b1 * cy)
    zeros = tf.zeros((batch,))
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation=interpolation.upper(),
        fill_mode="CONSTANT",
    )
