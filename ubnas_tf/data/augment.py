"""Image preprocessing and augmentation ops, all stateless so that a seed fixes every batch.

Every random op takes an explicit ``seed`` (a ``[2]`` integer tensor) and uses TensorFlow's
``stateless_*`` ops: the same seed gives the same crop, flip and cutout on any machine and under
parallel `tf.data` maps, which a stateful generator would not.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from ubnas_tf.errors import UserError

__all__ = [
    "AUGMENT_KEYS",
    "AugmentConfig",
    "resolve_augment",
    "to_channels",
    "resize_uint8",
    "pad_and_random_crop",
    "random_flip",
    "cutout",
    "random_resized_crop",
    "resize_and_center_crop",
    "normalize",
]

# The keys a user may put in the `augment` dict, and the Python type each one takes.
AUGMENT_KEYS = {"crop_padding": int, "flip": bool, "cutout": int, "imagenet_style": bool}


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The training augmentation of one dataset (the test pipeline never augments).

    Attributes:
      crop_padding: pad by this many zero pixels, then crop back at random (0: off).
      flip: random horizontal flip.
      cutout: side of the square zeroed at random after normalisation (0: off).
      imagenet_style: random resized crop for training, resize + centre crop for test.
    """

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    imagenet_style: bool = False


def _check_type(key, value):
    wanted = AUGMENT_KEYS[key]
    # bool is a subclass of int: `crop_padding=True` is a typo, not 1.
    if wanted is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"augment {key} must be an integer number of pixels, got {value!r}")
    if wanted is bool and not isinstance(value, bool):
        raise UserError(f"augment {key} must be true or false, got {value!r}")
    if wanted is int and value < 0:
        raise UserError(f"augment {key} must be 0 or more, got {value}")


def resolve_augment(
    options: dict | None,
    *,
    image_size: tuple[int, int],
    flip_default: bool,
    imagenet_style_default: bool,
) -> AugmentConfig:
    """Merges the user's `augment` dict with the dataset's defaults.

    The default padding is 1/8 of the image side (4 px for CIFAR's 32 px and Fashion-MNIST's
    28 px, as in DARTS, Liu et al. 2019); ImageNet-style training crops instead of padding.
    """
    options = dict(options or {})
    unknown = sorted(set(options) - set(AUGMENT_KEYS))
    if unknown:
        raise UserError(
            f"unknown augment key(s) {', '.join(unknown)}; use {', '.join(AUGMENT_KEYS)}"
        )
    for key, value in options.items():
        _check_type(key, value)
    imagenet_style = options.get("imagenet_style", imagenet_style_default)
    if imagenet_style and options.get("crop_padding"):
        raise UserError(
            "augment crop_padding and imagenet_style exclude each other; "
            "set crop_padding=0 or imagenet_style=false"
        )
    default_padding = 0 if imagenet_style else max(1, round(max(image_size) / 8))
    config = AugmentConfig(
        crop_padding=options.get("crop_padding", default_padding),
        flip=options.get("flip", flip_default),
        cutout=options.get("cutout", 0),
        imagenet_style=imagenet_style,
    )
    if config.cutout > max(image_size):
        raise UserError(
            f"augment cutout {config.cutout} is larger than the {image_size} images; "
            "use a smaller cutout"
        )
    return config


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Converts images (``[..., H, W, c]``, c in 1..4) to 1 or 3 channels; alpha is dropped."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have is not None:
        if channels == 1:
            return tf.image.rgb_to_grayscale(image[..., :3]) if have >= 3 else image[..., :1]
        return image[..., :3] if have >= 3 else tf.image.grayscale_to_rgb(image[..., :1])
    # Files decoded without a channel count: decide at run time.
    count = tf.shape(image)[-1]
    if channels == 1:
        converted = tf.cond(
            count >= 3,
            lambda: tf.image.rgb_to_grayscale(image[..., :3]),
            lambda: image[..., :1],
        )
    else:
        converted = tf.cond(
            count >= 3, lambda: image[..., :3], lambda: tf.image.grayscale_to_rgb(image[..., :1])
        )
    converted.set_shape(image.shape[:-1].concatenate([channels]))
    return converted


def resize_uint8(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Resizes uint8 images (``[..., H, W, C]``) to `size` (bilinear, antialiased when
    shrinking), keeping uint8.

    Rounding back to uint8 lets the resized images be cached at a quarter of float32's memory.
    """
    if tuple(image.shape[-3:-1]) == tuple(size):
        return image
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
    resized.set_shape(image.shape[:-3].concatenate([size[0], size[1], image.shape[-1]]))
    return resized


def _as_batch(op):
    """Lets a batch op (``[B, H, W, C]``) take a single image ``[H, W, C]`` too."""

    def wrapped(images, *args, **kwargs):
        if images.shape.rank == 3:
            return op(images[tf.newaxis], *args, **kwargs)[0]
        return op(images, *args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = op.__name__, op.__doc__
    return wrapped


@_as_batch
def pad_and_random_crop(images: tf.Tensor, padding: int, seed: tf.Tensor) -> tf.Tensor:
    """Zero-pads every image by `padding` pixels, then crops its original size at random.

    The CIFAR augmentation of He et al. 2016 (ResNet, section 4.2), used by DARTS. One offset
    per image, applied to the whole batch by two gathers instead of a per-image loop.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [batch, 2], seed, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[tf.newaxis]
    columns = offsets[:, 1:] + tf.range(width)[tf.newaxis]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    cropped = tf.gather(cropped, columns, axis=2, batch_dims=1)
    cropped.set_shape(images.shape)
    return cropped


@_as_batch
def random_flip(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Flips each image left-right with probability 1/2."""
    # A gather of reversed column indices: on CPU several times faster than a
    # `tf.where` between the batch and its reversed copy.
    flip = tf.random.stateless_uniform(tf.shape(images)[:1], seed) < 0.5
    columns = tf.range(tf.shape(images)[2])[tf.newaxis]
    columns = tf.where(flip[:, tf.newaxis], columns[:, ::-1], columns)
    flipped = tf.gather(images, columns, axis=2, batch_dims=1)
    flipped.set_shape(images.shape)
    return flipped


@_as_batch
def cutout(images: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """Zeroes, in each image, a ``size x size`` square centred on a random pixel, clipped at
    the borders.

    DeVries & Taylor 2017, "Improved Regularization of Convolutional Neural Networks with
    Cutout"; applied after normalisation, as in their code and in DARTS, so the square is the
    dataset mean.
    """
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    seed_y, seed_x = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    top = tf.random.stateless_uniform([batch, 1], seed_y, 0, height, dtype=tf.int32) - size // 2
    left = tf.random.stateless_uniform([batch, 1], seed_x, 0, width, dtype=tf.int32) - size // 2
    rows, columns = tf.range(height)[tf.newaxis], tf.range(width)[tf.newaxis]
    in_rows = (rows >= top) & (rows < top + size)  # [B, H]
    in_columns = (columns >= left) & (columns < left + size)  # [B, W]
    # Multiplying by a [B, H, W, 1] mask is several times faster than `tf.where` on CPU.
    keep = 1 - tf.cast(in_rows[:, :, tf.newaxis] & in_columns[:, tf.newaxis, :], images.dtype)
    return images * keep[..., tf.newaxis]


def random_resized_crop(
    image: tf.Tensor,
    size: tuple[int, int],
    seed: tf.Tensor,
    *,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """Crops a random region (8-100 % of the area, aspect 3/4-4/3) and resizes it to `size`.

    The Inception augmentation (Szegedy et al. 2015, "Going deeper with convolutions",
    section 6), as torchvision's RandomResizedCrop. Returns float32 in [0, 255].
    """
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    resized = tf.image.resize(crop, size, method="bilinear", antialias=True)
    resized.set_shape([size[0], size[1], image.shape[-1]])
    return resized


def resize_and_center_crop(
    image: tf.Tensor, size: tuple[int, int], *, crop_fraction: float = 0.875
) -> tf.Tensor:
    """Resizes so the centre crop of `size` covers `crop_fraction` of the shorter side, crops.

    The standard ImageNet evaluation (resize to 256, centre crop 224: 224/256 = 0.875).
    Returns uint8.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant(size, tf.float32) / shape) / crop_fraction
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), tf.constant(size))
    resized = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    offset = (new_shape - tf.constant(size)) // 2
    crop = tf.slice(resized, [offset[0], offset[1], 0], [size[0], size[1], -1])
    crop = tf.cast(tf.clip_by_value(tf.round(crop), 0.0, 255.0), tf.uint8)
    crop.set_shape([size[0], size[1], image.shape[-1]])
    return crop


def normalize(image: tf.Tensor, mean, std) -> tf.Tensor:
    """``(pixel / 255 - mean) / std`` per channel, float32."""
    image = tf.cast(image, tf.float32) / 255.0
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)
