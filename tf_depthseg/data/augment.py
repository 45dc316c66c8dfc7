"""Joint geometric and photometric augmentation of parsed examples (tf.data and eager).

Every op takes and returns the batch-key dict of `schema.parse_example` (one example, no batch
dimension) and transforms all the keys it finds *together*: the target image, its neighbour
frames, depth, semantic labels, instance maps, pseudo disparity, the intrinsics, the poses and
the weak pairs. Keys an op does not know (e.g. SOURCE_ID) pass through unchanged.

Geometry follows the half-pixel convention of `tf_depthseg.geometry.intrinsics`: pixel (x, y)
has its centre at integer coordinates, so resizing by s maps x to s (x + 0.5) - 0.5. Images are
resized bilinearly (half-pixel centres, no antialiasing: a geometrically exact resample);
labels and instance ids with nearest neighbour; depth with a *valid-aware* nearest neighbour
(`resize_sparse_depth`): each output pixel takes the valid sample nearest to its centre within
its footprint. On dense depth that is plain nearest neighbour; on sparse LiDAR depth plain
nearest would drop whole scan rows when downsampling (64 rows on a 128-row image resized to 64
rows kept only the odd image rows: no ground truth in the upper half), while this keeps every
footprint that holds a sample. No value is ever a blend of two depths or two classes, and the
invalid depth 0 never bleeds into its neighbours. Pseudo disparity is a dense network output
without an invalid value, so it is resized bilinearly like an image.

Weak pairs (`common.WEAK_PAIRS`, rows `(y_a, x_a, y_b, x_b, half_size, relation)`) are moved
with the pixels: coordinates stay continuous (not rounded; the ranking loss picks the nearest
pixel), `half_size` scales with the image, and a pair with either point outside a crop is
dropped, so the number of pairs per example varies. `pad_weak_pairs` turns them into a
fixed-size tensor `[max_pairs, 6]` plus a count (`common.NUM_WEAK_PAIRS`) so examples can be
batched.

Randomness is stateless: each random op takes an explicit `seed` (int32/int64 `[2]`) and draws
with `tf.random.stateless_*`, so the same seed gives the same result eagerly and inside
`tf.data`, and a pipeline that derives seeds from an element counter is reproducible and
resumable (see `tf_depthseg.data.pipeline`).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.geometry import intrinsics as intrinsics_lib

# Batch key added by `pad_weak_pairs`: int32 [] number of valid rows in WEAK_PAIRS.
# (The lead may move this into common.py.)

Size = Union[Tuple[int, int], Sequence[int], tf.Tensor]

# Keys holding per-pixel maps, with the axis of their width and how they are resized.
_BILINEAR_KEYS = (common.IMAGE, common.CONTEXT, common.PSEUDO_DISPARITY)
_NEAREST_KEYS = (common.DEPTH, common.SEMANTIC, common.INSTANCES)  # DEPTH: valid-aware
# Width axis of each map (CONTEXT and INSTANCES carry a leading frame axis).
_WIDTH_AXIS = {common.IMAGE: 1, common.CONTEXT: 2, common.PSEUDO_DISPARITY: 1,
               common.DEPTH: 1, common.SEMANTIC: 1, common.INSTANCES: 2}


def image_size(example: dict) -> Tuple[tf.Tensor, tf.Tensor]:
    """(height, width) of the example's target image as int32 scalar tensors."""
    shape = tf.shape(example[common.IMAGE])
    return shape[0], shape[1]


def _resize_map(key: str, value: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Resizes one per-pixel map to `size` ([2] int32) with the interpolation its key needs."""
    if key in _BILINEAR_KEYS:
        # Plain half-pixel bilinear, no antialias: TF's antialias kernel is sampled at discrete
        # taps and moves content by up to ~0.07 px at scales like 0.83, which would break the
        # exact agreement with the updated intrinsics that view synthesis relies on.
        return tf.image.resize(value, size, method="bilinear")
    if key == common.INSTANCES:  # [N+1, H, W] has no channel axis.
        return tf.image.resize(value[..., None], size, method="nearest")[..., 0]
    if key == common.DEPTH:
        return resize_sparse_depth(value, size)
    return tf.image.resize(value, size, method="nearest")


def _nearest_valid_1d(values: tf.Tensor, valid: tf.Tensor, out_size: tf.Tensor, axis: int):
    """Along `axis`: each output index takes the valid input nearest to its centre.

    Output index i (half-pixel centres) has its centre at c = (i + 0.5) s - 0.5, s = in / out.
    Candidates: when downsampling (s > 1) the footprint [floor(i s), ceil((i + 1) s)); when
    upsampling the one input that holds the centre, floor((i + 0.5) s), as plain nearest
    neighbour (sparse samples are not grown). Ties go to the later input, as TF's nearest.

    Args:
      values: float `[..., N, ...]`; valid: bool, same shape.
      out_size: int32 scalar M.
    Returns:
      (values, valid) with axis `axis` of size M.
    """
    size_in = tf.shape(values)[axis]
    scale = tf.cast(size_in, tf.float32) / tf.cast(out_size, tf.float32)
    index = tf.range(out_size, dtype=tf.float32)
    centre = (index + 0.5) * scale - 0.5
    down = scale > 1.0
    start = tf.where(down, tf.floor(index * scale), tf.floor((index + 0.5) * scale))
    stop = tf.where(down, tf.math.ceil((index + 1.0) * scale), start + 1.0)
    width = tf.cast(tf.math.ceil(tf.maximum(scale, 1.0)), tf.int32) + 1
    offsets = tf.range(width, dtype=tf.float32)
    candidates = start[:, None] + offsets[None, :]                       # [M, k]
    in_range = (candidates < stop[:, None]) & (candidates < tf.cast(size_in, tf.float32))
    source = tf.cast(tf.minimum(candidates, tf.cast(size_in - 1, tf.float32)), tf.int32)
    # Distance to the centre, slightly smaller for later candidates (TF's tie-break).
    distance = tf.abs(candidates - centre[:, None]) - offsets[None, :] * 1e-4
    gathered_values = tf.gather(values, source, axis=axis)               # [..., M, k, ...]
    gathered_valid = tf.gather(valid, source, axis=axis)
    rank = len(values.shape)
    shape = [1] * (rank + 1)
    shape[axis], shape[axis + 1] = -1, width
    usable = gathered_valid & tf.reshape(in_range, shape)
    cost = tf.where(usable, tf.reshape(distance, shape), tf.float32.max)
    best = tf.argmin(cost, axis=axis + 1, output_type=tf.int32)
    one_hot = tf.one_hot(best, width, axis=axis + 1, on_value=True, off_value=False)
    out_values = tf.reduce_sum(tf.where(one_hot, gathered_values, tf.zeros_like(gathered_values)),
                               axis=axis + 1)
    out_valid = tf.reduce_any(usable, axis=axis + 1)
    return out_values, out_valid


def resize_sparse_depth(depth: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Valid-aware nearest resize of depth `[H, W, 1]` (0 = invalid) to `size` `[2]`.

    Width first, then height: each output pixel gets the valid sample nearest to its centre
    (along each axis in turn) within its footprint, or 0 when the footprint has none. Values
    are always input samples, never blends. Dense depth: identical to nearest neighbour.
    """
    size = tf.cast(size, tf.int32)
    values, valid = _nearest_valid_1d(depth, depth > 0, size[1], axis=1)
    values, valid = _nearest_valid_1d(values, valid, size[0], axis=0)
    return tf.where(valid, values, tf.zeros_like(values))


def _as_pairs(pairs: tf.Tensor) -> tf.Tensor:
    """WEAK_PAIRS as `[P, 6]` with a static row width (the ops unstack its columns)."""
    return tf.reshape(pairs, [-1, common.WEAK_PAIR_FIELDS])


def _scale_weak_pairs(pairs: tf.Tensor, scale_x: tf.Tensor, scale_y: tf.Tensor) -> tf.Tensor:
    """Moves pair points with a resize; the patch keeps covering the same image content.

    A patch of side 2h+1 pixels becomes s (2h+1) pixels wide, i.e. h' = (s (2h+1) - 1) / 2
    (clipped at 0), with s the geometric mean of the two axis scales.
    """
    y_a, x_a, y_b, x_b, half, relation = tf.unstack(_as_pairs(pairs), axis=-1)
    scale = tf.sqrt(scale_x * scale_y)
    half = tf.maximum((scale * (2.0 * half + 1.0) - 1.0) / 2.0, 0.0)
    return tf.stack([scale_y * (y_a + 0.5) - 0.5, scale_x * (x_a + 0.5) - 0.5,
                     scale_y * (y_b + 0.5) - 0.5, scale_x * (x_b + 0.5) - 0.5,
                     half, relation], axis=-1)


def resize_example(example: dict, size: Size) -> dict:
    """Resizes every per-pixel map of `example` to `size` and updates intrinsics and pairs.

    Args:
      example: batch-key dict of one example (IMAGE `[H, W, 3]`, CONTEXT `[N, H, W, 3]`,
        DEPTH/SEMANTIC/PSEUDO_DISPARITY `[H, W, 1]`, INSTANCES `[N+1, H, W]`, INTRINSICS
        `[3, 3]`, WEAK_PAIRS `[P, 6]`, ...).
      size: (new_height, new_width), Python ints or an int `[2]` tensor.
    Returns:
      A new dict with the maps at `[new_height, new_width]`, K scaled (`scale_intrinsics`),
      weak pairs moved, everything else unchanged. Depth values are not changed: resizing the
      image does not move the scene.
    """
    size = tf.cast(tf.convert_to_tensor(size), tf.int32)
    height, width = image_size(example)
    static_size = tf.get_static_value(size)
    static_input = example[common.IMAGE].shape[:2]
    if static_size is not None and static_input.is_fully_defined():
        if tuple(static_size) == tuple(static_input):
            return dict(example)
        return _resize_example(example, size, height, width)
    unchanged = tf.reduce_all(tf.equal(size, tf.stack([height, width])))
    # Records already stored at the model size (common for preprocessed data) skip the
    # interpolation entirely; tf.cond runs only the branch it needs.
    out = tf.cond(unchanged, lambda: dict(example),
                  lambda: _resize_example(example, size, height, width))
    if static_size is not None:
        _set_spatial_shape(out, int(static_size[0]), int(static_size[1]))
    return out


def _set_spatial_shape(example: dict, height: Optional[int], width: Optional[int]) -> None:
    """Sets the static height and width of every per-pixel map of `example` in place."""
    for key, axis in _WIDTH_AXIS.items():
        if key in example:
            shape = example[key].shape
            example[key].set_shape(shape[:axis - 1].concatenate([height, width])
                                   .concatenate(shape[axis + 1:]))


def _resize_example(example: dict, size: tf.Tensor, height: tf.Tensor,
                    width: tf.Tensor) -> dict:
    """`resize_example` for a size that differs from the example's."""
    scale_y = tf.cast(size[0], tf.float32) / tf.cast(height, tf.float32)
    scale_x = tf.cast(size[1], tf.float32) / tf.cast(width, tf.float32)
    out = dict(example)
    for key in _BILINEAR_KEYS + _NEAREST_KEYS:
        if key in out:
            out[key] = _resize_map(key, out[key], size)
    if common.INTRINSICS in out:
        k = out[common.INTRINSICS]
        out[common.INTRINSICS] = intrinsics_lib.scale_intrinsics(
            k, tf.cast(scale_x, k.dtype), tf.cast(scale_y, k.dtype))
    if common.WEAK_PAIRS in out:
        out[common.WEAK_PAIRS] = _scale_weak_pairs(out[common.WEAK_PAIRS], scale_x, scale_y)
    return out


def crop_example(example: dict, offset_y, offset_x, size: Tuple[int, int]) -> dict:
    """Crops every per-pixel map to `size` at top-left pixel (offset_y, offset_x).

    Args:
      example: batch-key dict of one example (see `resize_example`).
      offset_y, offset_x: int scalars (Python or tensors); the crop must lie inside the image.
      size: (crop_height, crop_width) Python ints, so the output has static shapes.
    Returns:
      A new dict with maps of `[crop_height, crop_width]`, K with the principal point shifted
      (`crop_intrinsics`), weak pairs shifted and those with a point outside the crop dropped.
    """
    crop_h, crop_w = int(size[0]), int(size[1])
    height, width = image_size(example)
    offset_y = tf.cast(offset_y, tf.int32)
    offset_x = tf.cast(offset_x, tf.int32)
    fits = [tf.debugging.assert_less_equal(
                tf.stack([offset_y + crop_h, offset_x + crop_w]), tf.stack([height, width]),
                message=f"crop of {crop_h}x{crop_w} does not fit inside the image"),
            tf.debugging.assert_non_negative(tf.stack([offset_y, offset_x]),
                                             message="crop offsets must be >= 0")]
    with tf.control_dependencies(fits):
        offset_y = tf.identity(offset_y)
    out = dict(example)
    for key, axis in _WIDTH_AXIS.items():
        if key not in out:
            continue
        value = out[key]
        # The height axis is the one before the width axis.
        begin = [0] * (axis - 1) + [offset_y, offset_x] + [0] * (value.shape.rank - axis - 1)
        extent = [-1] * (axis - 1) + [crop_h, crop_w] + [-1] * (value.shape.rank - axis - 1)
        out[key] = tf.slice(value, tf.stack(begin), extent)
    # A dynamic `begin` hides the static sizes from shape inference; restore them.
    _set_spatial_shape(out, crop_h, crop_w)
    if common.INTRINSICS in out:
        k = out[common.INTRINSICS]
        out[common.INTRINSICS] = intrinsics_lib.crop_intrinsics(
            k, tf.cast(offset_x, k.dtype), tf.cast(offset_y, k.dtype))
    if common.WEAK_PAIRS in out:
        pairs = _as_pairs(out[common.WEAK_PAIRS])
        shift = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x, 0, 0]), pairs.dtype)
        pairs = pairs - shift
        # A continuous point belongs to pixel round(x): inside iff -0.5 <= x < size - 0.5.
        ys = tf.stack([pairs[:, 0], pairs[:, 2]], axis=1)
        xs = tf.stack([pairs[:, 1], pairs[:, 3]], axis=1)
        keep = tf.reduce_all((ys >= -0.5) & (ys < crop_h - 0.5) &
                             (xs >= -0.5) & (xs < crop_w - 0.5), axis=1)
        out[common.WEAK_PAIRS] = tf.boolean_mask(pairs, keep)
    return out


def mirror_poses(poses: tf.Tensor) -> tf.Tensor:
    """Conjugates world_from_camera poses by F = diag(-1, 1, 1, 1): T' = F T F.

    A horizontal flip mirrors the scene (X -> -X in every camera frame). Mirroring the world
    frame too keeps `T'_a^-1 T'_b = F (T_a^-1 T_b) F`, so relative poses between the flipped
    frames are exactly the mirrored relative motions.

    Args:
      poses: `[..., 4, 4]`.
    Returns:
      `[..., 4, 4]`: entries with exactly one index equal to 0 change sign.
    """
    signs = tf.constant([-1.0, 1.0, 1.0, 1.0], poses.dtype)
    return poses * (signs[:, None] * signs[None, :])


def flip_example(example: dict) -> dict:
    """Flips every per-pixel map horizontally; updates K, poses and weak pairs to match.

    Pixel x moves to W - 1 - x. The intrinsics become `flip_intrinsics(K, W)` (cx' = W-1-cx),
    which projects the mirrored 3D point (-X, Y, Z) onto the flipped pixel; poses are
    conjugated (`mirror_poses`); weak pairs' x coordinates map to W - 1 - x.
    """
    _, width = image_size(example)
    out = dict(example)
    for key, axis in _WIDTH_AXIS.items():
        if key in out:
            out[key] = tf.reverse(out[key], axis=[axis])
    if common.INTRINSICS in out:
        out[common.INTRINSICS] = intrinsics_lib.flip_intrinsics(out[common.INTRINSICS], width)
    if common.POSES in out:
        out[common.POSES] = mirror_poses(out[common.POSES])
    if common.WEAK_PAIRS in out:
        pairs = _as_pairs(out[common.WEAK_PAIRS])
        last_x = tf.cast(width, pairs.dtype) - 1.0
        y_a, x_a, y_b, x_b, half, relation = tf.unstack(pairs, axis=-1)
        # Mirroring does not change which point is farther: the relation stays.
        out[common.WEAK_PAIRS] = tf.stack(
            [y_a, last_x - x_a, y_b, last_x - x_b, half, relation], axis=-1)
    return out


def check_size(size, name: str) -> Tuple[int, int]:
    """Validates a (height, width) argument; ValueError naming `name` otherwise."""
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f"{name} must be (height, width) with positive values, got {size}")
    return int(size[0]), int(size[1])


def random_resize_crop_flip(example: dict, seed, crop_size: Tuple[int, int],
                            scale_range: Tuple[float, float] = (1.0, 1.0),
                            flip_prob: float = 0.5,
                            base_size: Optional[Tuple[int, int]] = None) -> dict:
    """Random scale, random crop and random horizontal flip, applied jointly to all keys.

    The example is resized once, from its stored size straight to `round(base_size * s)` with
    s ~ Uniform(scale_range) (one interpolation, not two), then cropped to `crop_size` at a
    uniformly random offset, then flipped with probability `flip_prob`. If `base_size * s` is
    smaller than the crop, s is raised to the smallest scale that covers it, so crops never
    contain padding (no padded image borders for view synthesis, no fake invalid depth).

    Args:
      example: batch-key dict of one example (see `resize_example`).
      seed: int32/int64 `[2]` stateless seed; the same seed gives the same result eagerly
        and inside tf.data.
      crop_size: (height, width) of the output (static).
      scale_range: (min, max) of s relative to `base_size`.
      flip_prob: probability of a horizontal flip.
      base_size: (height, width) that s = 1 means, e.g. the model's input size; None = the
        example's own size.
    Returns:
      A new dict with maps of `crop_size`, K, poses and weak pairs updated.
    Raises:
      ValueError: for a bad crop size, scale range or probability.
    """
    crop_h, crop_w = check_size(crop_size, "crop_size")
    low, high = float(scale_range[0]), float(scale_range[1])
    if not 0.0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
    if not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), 4)
    if base_size is None:
        base_h, base_w = (tf.cast(v, tf.float32) for v in image_size(example))
    else:
        base_h, base_w = (float(v) for v in check_size(base_size, "base_size"))
    scale = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=high)
    scale = tf.maximum(scale, tf.maximum(crop_h / base_h, crop_w / base_w))
    new_h = tf.maximum(tf.cast(tf.round(base_h * scale), tf.int32), crop_h)
    new_w = tf.maximum(tf.cast(tf.round(base_w * scale), tf.int32), crop_w)
    out = resize_example(example, tf.stack([new_h, new_w]))
    offset_y = tf.random.stateless_uniform([], seeds[1], 0, new_h - crop_h + 1, tf.int32)
    offset_x = tf.random.stateless_uniform([], seeds[2], 0, new_w - crop_w + 1, tf.int32)
    out = crop_example(out, offset_y, offset_x, (crop_h, crop_w))
    return random_flip(out, seeds[3], flip_prob)


def random_flip(example: dict, seed, flip_prob: float = 0.5) -> dict:
    """`flip_example` with probability `flip_prob` (stateless `seed`, int `[2]`)."""
    if not 0.0 <= flip_prob <= 1.0:
        raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
    if flip_prob == 0.0:
        return dict(example)
    flip = tf.random.stateless_uniform([], tf.convert_to_tensor(seed)) < flip_prob
    return tf.cond(flip, lambda: flip_example(example), lambda: dict(example))


def color_jitter(example: dict, seed, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.05, prob: float = 1.0) -> dict:
    """Random colour change with ONE set of factors for the target and all its neighbours.

    View synthesis compares the target with warped neighbours, so the neighbours must receive
    the identical photometric change. Applied in a fixed order (torchvision-style factors):
    brightness x b, b ~ U[1-brightness, 1+brightness]; contrast factor c ~ U[1-contrast,
    1+contrast] around each frame's mean (`tf.image.adjust_contrast`); saturation factor
    ~ U[1-saturation, 1+saturation]; hue shift ~ U[-hue, hue] (fraction of the hue circle);
    then clipped to [0, 1]. Only IMAGE and CONTEXT change.

    Args:
      example: batch-key dict with IMAGE `[H, W, 3]` in [0, 1] and optionally CONTEXT
        `[N, H, W, 3]`.
      seed: int32/int64 `[2]` stateless seed.
      brightness, contrast, saturation: strengths >= 0 (0 disables that part).
      hue: strength in [0, 0.5].
      prob: probability that the jitter is applied at all (one draw per example).
    Returns:
      A new dict with jittered IMAGE and CONTEXT.
    Raises:
      ValueError: for negative strengths, hue > 0.5 or prob outside [0, 1].
    """
    for name, value in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation), ("hue", hue)):
        if value < 0:
            raise ValueError(f"color_jitter {name} must be >= 0, got {value}")
    if hue > 0.5:
        raise ValueError(f"color_jitter hue must be <= 0.5 (half the hue circle), got {hue}")
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"color_jitter prob must be in [0, 1], got {prob}")
    if prob == 0.0 or brightness == contrast == saturation == hue == 0.0:
        return dict(example)
    seeds = tf.random.experimental.stateless_split(tf.convert_to_tensor(seed), 5)

    def factor(index, strength):
        return tf.random.stateless_uniform([], seeds[index], 1.0 - strength, 1.0 + strength)

    b_factor = factor(1, brightness)
    c_factor = factor(2, contrast)
    s_factor = factor(3, saturation)
    h_delta = tf.random.stateless_uniform([], seeds[4], -hue, hue)

    def jitter(frames):
        # Same factors for every frame; adjust_* treat the last three axes as one image.
        if brightness > 0:
            frames = frames * b_factor
        if contrast > 0:
            frames = tf.image.adjust_contrast(frames, c_factor)
        if saturation > 0:
            frames = tf.image.adjust_saturation(frames, s_factor)
        if hue > 0:
            frames = tf.image.adjust_hue(frames, h_delta)
        return tf.clip_by_value(frames, 0.0, 1.0)

    keys = [k for k in (common.IMAGE, common.CONTEXT) if k in example]
    apply = tf.random.stateless_uniform([], seeds[0]) < prob
    jittered = tf.cond(apply, lambda: [jitter(example[k]) for k in keys],
                       lambda: [tf.identity(example[k]) for k in keys])
    out = dict(example)
    out.update(zip(keys, jittered))
    return out


def pad_weak_pairs(example: dict, max_pairs: int, seed=None) -> dict:
    """Makes WEAK_PAIRS a fixed-size `[max_pairs, 6]` tensor and adds common.NUM_WEAK_PAIRS.

    Rows `[:count]` are valid, the rest are zeros. With more than `max_pairs` pairs,
    a random subset is kept when `seed` is given (training: no bias towards the pairs written
    first), else the first `max_pairs` (evaluation).

    Args:
      example: batch-key dict with WEAK_PAIRS `[P, 6]`.
      max_pairs: number of rows of the output (> 0).
      seed: optional int32/int64 `[2]` stateless seed.
    Returns:
      A new dict with WEAK_PAIRS float32 `[max_pairs, 6]` and common.NUM_WEAK_PAIRS int32 `[]`.
    """
    if max_pairs <= 0:
        raise ValueError(f"max_pairs must be positive, got {max_pairs}")
    pairs = _as_pairs(example[common.WEAK_PAIRS])
    if seed is not None:
        pairs = tf.random.experimental.stateless_shuffle(pairs, tf.convert_to_tensor(seed))
    pairs = pairs[:max_pairs]
    count = tf.shape(pairs)[0]
    pairs = tf.pad(pairs, [[0, max_pairs - count], [0, 0]])
    out = dict(example)
    out[common.WEAK_PAIRS] = tf.ensure_shape(pairs, [max_pairs, common.WEAK_PAIR_FIELDS])
    out[common.NUM_WEAK_PAIRS] = count
    return out
