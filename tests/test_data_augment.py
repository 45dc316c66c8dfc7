"""Joint augmentation: geometry consistency, interpolation per key, determinism, colour jitter.

The geometric checks are independent of `augment`'s own bookkeeping: every pixel carries a
unique id (nearest-resized maps) and its continuous source coordinates (a linear ramp image,
which bilinear resizing reproduces exactly in the interior). From those we know where each
output pixel came from, backproject that source pixel with the ORIGINAL depth and K in numpy,
mirror it when the op flipped, project it with the op's NEW K, and require it to land on the
output pixel.
"""

import numpy as np
import pytest
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.data import augment

HEIGHT, WIDTH, NUM_CONTEXT = 24, 80, 2
K = np.array([[61.0, 0.0, 38.3], [0.0, 57.0, 11.6], [0.0, 0.0, 1.0]], np.float32)


def _pose(rng):
    """A random world_from_camera SE(3) (numpy, float64)."""
    axis = rng.normal(size=3)
    angle = rng.uniform(0.05, 0.4)
    a = axis / np.linalg.norm(axis)
    skew = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = rng.normal(size=3)
    return pose


def make_example(seed=0, height=HEIGHT, width=WIDTH, sparse_depth=False):
    """A parsed-example dict whose pixels say where they come from.

    IMAGE channels 0/1 are x/y ramps ((x + 0.5) / W, (y + 0.5) / H), channel 2 a constant per
    frame; INSTANCES hold a unique id per pixel (frame f adds f * H * W); SEMANTIC = id % 19;
    DEPTH a smooth positive surface (or a sparse random one).
    """
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = [np.stack([(xs + 0.5) / width, (ys + 0.5) / height,
                        np.full_like(xs, 0.2 + 0.3 * f)], axis=-1)
              for f in range(NUM_CONTEXT + 1)]
    ids = (ys * width + xs + 1).astype(np.int32)
    depth = (4.0 + 0.05 * xs + 0.2 * ys + rng.uniform(0, 0.5, xs.shape)).astype(np.float32)
    if sparse_depth:
        depth = np.where(rng.uniform(size=xs.shape) < 0.15,
                         rng.uniform(1.0, 80.0, xs.shape), 0.0).astype(np.float32)
    pairs = np.array([[5, 7, 18, 66, 2, 1], [12, 40, 12, 41, 0, -1], [20, 70, 3, 3, 1, 0],
                      [1, 1, 22, 78, 3, 1]], np.float32)
    return {
        common.IMAGE: tf.constant(frames[0]),
        common.CONTEXT: tf.constant(np.stack(frames[1:])),
        common.INTRINSICS: tf.constant(K),
        common.POSES: tf.constant(np.stack([_pose(rng) for _ in range(NUM_CONTEXT + 1)]),
                                  tf.float32),
        common.DEPTH: tf.constant(depth[..., None]),
        common.SEMANTIC: tf.constant((ids % 19)[..., None]),
        common.INSTANCES: tf.constant(np.stack([ids + f * height * width
                                                for f in range(NUM_CONTEXT + 1)])),
        common.PSEUDO_DISPARITY: tf.constant((1.0 / depth.clip(1.0))[..., None]),
        common.WEAK_PAIRS: tf.constant(pairs),
        common.SOURCE_ID: tf.constant("drive_0001/0000000005"),
    }


def _numpy(example):
    return {k: v.numpy() for k, v in example.items()}


def _project(points, k):
    """[..., 3] camera points -> [..., 2] pixels (x, y), numpy."""
    uvw = points @ k.T
    return uvw[..., :2] / uvw[..., 2:3]


def _backproject(xy, depth, k):
    """[..., 2] pixels (x, y) with z-depth [...] -> [..., 3] camera points, numpy."""
    ones = np.ones_like(xy[..., :1])
    rays = np.concatenate([xy, ones], axis=-1) @ np.linalg.inv(k).T
    return rays * depth[..., None]


def check_geometry(before, after, flipped, max_scale, height=HEIGHT, width=WIDTH):
    """Asserts that `after` is a consistent resize/crop/flip of `before` (see module doc)."""
    out_h, out_w = after[common.IMAGE].shape[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w]
    out_xy = np.stack([xs, ys], axis=-1).astype(np.float64)
    new_k = after[common.INTRINSICS].astype(np.float64)
    old_k = before[common.INTRINSICS].astype(np.float64)
    mirror = np.array([-1.0, 1.0, 1.0]) if flipped else np.ones(3)

    # 1) Nearest-resized maps: the unique id names the source pixel; its ground-truth 3D point
    #    projects with the new K onto this output pixel (within half a source pixel, scaled).
    ids = after[common.INSTANCES][0] - 1
    src_y, src_x = ids // width, ids % width
    src_depth = before[common.DEPTH][src_y, src_x, 0]
    points = _backproject(np.stack([src_x, src_y], -1).astype(np.float64), src_depth, old_k)
    landed = _project(points * mirror, new_k)
    np.testing.assert_array_less(np.abs(landed - out_xy), 0.5 * max(max_scale, 1.0) + 1e-3)
    # Depth travelled with its pixel (unblended, unchanged: the scene did not move).
    np.testing.assert_array_equal(after[common.DEPTH][..., 0], src_depth)
    np.testing.assert_array_equal(after[common.SEMANTIC][..., 0], (ids + 1) % 19)
    for f in range(1, NUM_CONTEXT + 1):  # every frame's instances moved identically
        np.testing.assert_array_equal(after[common.INSTANCES][f] - f * height * width, ids + 1)

    # 2) Bilinear images: the ramps give the continuous source coordinate; exact in the
    #    interior (away from the clamped borders).
    source_xy = np.stack([after[common.IMAGE][..., 0] * width - 0.5,
                          after[common.IMAGE][..., 1] * height - 0.5], -1).astype(np.float64)
    margin = 1.5
    interior = ((source_xy[..., 0] > margin) & (source_xy[..., 0] < width - 1 - margin) &
                (source_xy[..., 1] > margin) & (source_xy[..., 1] < height - 1 - margin))
    assert interior.sum() > 0.3 * out_h * out_w
    points = _backproject(source_xy, np.full(source_xy.shape[:2], 7.5), old_k)
    landed = _project(points * mirror, new_k)
    np.testing.assert_allclose(landed[interior], out_xy[interior], atol=2e-3)
    for f in range(NUM_CONTEXT):  # neighbours moved exactly like the target
        np.testing.assert_allclose(after[common.CONTEXT][f, ..., :2],
                                   after[common.IMAGE][..., :2], atol=1e-6)

    # 3) Poses: relative motion stays consistent with the mirrored scene. A world point seen
    #    by camera 0 and 1 lands, after the op, where the same op moves its pixels.
    old_poses = before[common.POSES].astype(np.float64)
    new_poses = after[common.POSES].astype(np.float64)
    flip4 = np.diag([*mirror, 1.0])
    world = np.array([0.7, -0.3, 9.0, 1.0])
    for frame in range(NUM_CONTEXT + 1):
        cam_old = np.linalg.inv(old_poses[frame]) @ world
        cam_new = np.linalg.inv(new_poses[frame]) @ (flip4 @ world)
        np.testing.assert_allclose(cam_new[:3], cam_old[:3] * mirror, atol=1e-4)
    relative_old = np.linalg.inv(old_poses[0]) @ old_poses[1]
    relative_new = np.linalg.inv(new_poses[0]) @ new_poses[1]
    np.testing.assert_allclose(relative_new, flip4 @ relative_old @ flip4, atol=1e-5)


def check_pairs(before, after, scale):
    """Each pair point sits on an output pixel whose source (ramp image) is the original point.

    For ops that keep every pair in order (resize, flip); the tolerance is half an output
    pixel measured in source pixels.
    """
    source_x = after[common.IMAGE][..., 0] * WIDTH - 0.5
    source_y = after[common.IMAGE][..., 1] * HEIGHT - 0.5
    assert after[common.WEAK_PAIRS].shape == before[common.WEAK_PAIRS].shape
    for new, old in zip(after[common.WEAK_PAIRS], before[common.WEAK_PAIRS]):
        assert new[5] == old[5]  # the depth relation never changes
        for new_yx, old_yx in ((new[0:2], old[0:2]), (new[2:4], old[2:4])):
            iy, ix = (int(np.floor(v + 0.5)) for v in new_yx)
            assert abs(source_y[iy, ix] - old_yx[0]) <= 0.5 / scale + 1e-3
            assert abs(source_x[iy, ix] - old_yx[1]) <= 0.5 / scale + 1e-3


def test_resize_geometry_up_and_down():
    example = make_example()
    for size, scale in (((36, 120), 1.5), ((12, 40), 0.5), ((30, 60), 1.0)):
        after = _numpy(augment.resize_example(example, size))
        assert after[common.IMAGE].shape == (*size, 3)
        check_geometry(_numpy(example), after, flipped=False,
                       max_scale=max(size[0] / HEIGHT, size[1] / WIDTH))
    after = _numpy(augment.resize_example(example, (48, 160)))
    check_pairs(_numpy(example), after, scale=2.0)
    # Hand check of one pair: x' = s (x + 0.5) - 0.5, half' = (s (2h + 1) - 1) / 2.
    np.testing.assert_allclose(after[common.WEAK_PAIRS][0], [10.5, 14.5, 36.5, 132.5, 4.5, 1])


def test_crop_geometry_and_pair_dropping():
    example = make_example()
    after = _numpy(augment.crop_example(example, 4, 30, (16, 40)))
    assert after[common.INSTANCES].shape == (3, 16, 40)
    check_geometry(_numpy(example), after, flipped=False, max_scale=1.0)
    # Only the pair (12, 40)-(12, 41) lies inside rows 4..19 and columns 30..69.
    np.testing.assert_allclose(after[common.WEAK_PAIRS], [[8, 10, 8, 11, 0, -1]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="does not fit"):
        augment.crop_example(example, 10, 0, (16, 40))


def test_flip_geometry_poses_and_pairs():
    example = make_example()
    after = _numpy(augment.flip_example(example))
    check_geometry(_numpy(example), after, flipped=True, max_scale=1.0)
    check_pairs(_numpy(example), after, scale=1.0)
    np.testing.assert_allclose(after[common.WEAK_PAIRS][0], [5, 72, 18, 13, 2, 1])
    # Flipping twice is the identity on every key.
    twice = _numpy(augment.flip_example(augment.flip_example(example)))
    for key, value in _numpy(example).items():
        np.testing.assert_array_equal(twice[key], value)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_random_resize_crop_flip_composition(flip_prob):
    example = make_example(seed=3)
    for seed in range(3):
        after = _numpy(augment.random_resize_crop_flip(
            example, [seed, 7], crop_size=(20, 56), scale_range=(0.8, 1.6),
            flip_prob=flip_prob, base_size=(HEIGHT, WIDTH)))
        assert after[common.IMAGE].shape == (20, 56, 3)
        assert after[common.CONTEXT].shape == (2, 20, 56, 3)
        check_geometry(_numpy(example), after, flipped=flip_prob == 1.0, max_scale=1.6)


def test_scale_is_raised_to_cover_the_crop():
    example = make_example()
    # scale 0.5 would give 12x40, smaller than the crop: the op must not pad.
    after = _numpy(augment.random_resize_crop_flip(example, [1, 2], (20, 60), (0.5, 0.5), 0.0))
    assert after[common.IMAGE].shape == (20, 60, 3)
    assert np.all(after[common.INSTANCES] > 0)  # every pixel came from the image
    check_geometry(_numpy(example), after, flipped=False, max_scale=1.0)


def _nearest_numpy(array, out_h, out_w):
    """Independent half-pixel nearest resize: source index floor((i + 0.5) * in / out)."""
    in_h, in_w = array.shape[:2]
    rows = np.minimum(np.floor((np.arange(out_h) + 0.5) * in_h / out_h).astype(int), in_h - 1)
    cols = np.minimum(np.floor((np.arange(out_w) + 0.5) * in_w / out_w).astype(int), in_w - 1)
    return array[rows][:, cols]


def _nearest_valid_numpy(depth, out_h, out_w):
    """Independent valid-aware nearest resize (0 = invalid), width then height, loops."""
    def along(values, valid, out, axis):
        values, valid = np.moveaxis(values, axis, 0), np.moveaxis(valid, axis, 0)
        size_in = values.shape[0]
        scale = size_in / out
        out_values = np.zeros((out,) + values.shape[1:], values.dtype)
        out_valid = np.zeros((out,) + values.shape[1:], bool)
        for i in range(out):
            centre = (i + 0.5) * scale - 0.5
            if scale > 1:
                sources = range(int(np.floor(i * scale)),
                                min(int(np.ceil((i + 1) * scale)), size_in))
            else:
                sources = [min(int(np.floor((i + 0.5) * scale)), size_in - 1)]
            for index in np.ndindex(values.shape[1:]):
                best = None
                for j in sources:  # later wins ties: <=
                    if valid[(j,) + index] and (best is None or
                                                abs(j - centre) <= abs(best - centre)):
                        best = j
                if best is not None:
                    out_values[(i,) + index] = values[(best,) + index]
                    out_valid[(i,) + index] = True
        return np.moveaxis(out_values, 0, axis), np.moveaxis(out_valid, 0, axis)

    values, valid = along(depth, depth > 0, out_w, 1)
    values, valid = along(values, valid, out_h, 0)
    return np.where(valid, values, 0)


def test_sparse_depth_keeps_every_scan_row_when_downsampling():
    """LiDAR-like rows (every 2nd row, then odd rows): halving the height with plain nearest
    kept only half the scan rows (none in the upper half); the valid-aware resize keeps a
    sample in every output row whose footprint holds one, and only input values."""
    depth = np.zeros((32, 24, 1), np.float32)
    rows = list(range(0, 16, 2)) + list(range(17, 32, 2))
    depth[rows] = np.random.default_rng(3).uniform(1, 80, (len(rows), 24, 1))
    out = augment.resize_sparse_depth(tf.constant(depth), tf.constant([16, 12])).numpy()
    plain = tf.image.resize(depth, (16, 12), method="nearest").numpy()
    assert (out[..., 0] > 0).all(axis=1).sum() == 16
    assert (plain[..., 0] > 0).any(axis=1).sum() == 8  # the defect this resize fixes
    assert set(np.unique(out)) <= set(np.unique(depth))
    np.testing.assert_array_equal(out[..., 0], _nearest_valid_numpy(depth[..., 0], 16, 12))
    dense = np.random.default_rng(4).uniform(1, 80, (30, 50, 1)).astype(np.float32)
    for size in [(17, 23), (40, 30), (30, 25)]:
        np.testing.assert_array_equal(
            augment.resize_sparse_depth(tf.constant(dense), tf.constant(size)).numpy(),
            tf.image.resize(dense, size, method="nearest").numpy())


def _bilinear_numpy(array, out_h, out_w):
    """Independent half-pixel bilinear resampling (no antialias) with clamped borders."""
    in_h, in_w = array.shape[:2]
    y = np.clip((np.arange(out_h) + 0.5) * in_h / out_h - 0.5, 0, in_h - 1)
    x = np.clip((np.arange(out_w) + 0.5) * in_w / out_w - 0.5, 0, in_w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    wy, wx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = array[y0][:, x0] * (1 - wx) + array[y0][:, x1] * wx
    bottom = array[y1][:, x0] * (1 - wx) + array[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


# Sizes where no output pixel centre falls exactly halfway between two source pixels (there
# float rounding, not the method, decides which neighbour wins).
@pytest.mark.parametrize("size", [(32, 128), (16, 48)])
def test_interpolation_per_key(size):
    example = make_example(sparse_depth=True)
    before = _numpy(example)
    after = _numpy(augment.resize_example(example, size))
    depth_in, depth_out = before[common.DEPTH][..., 0], after[common.DEPTH][..., 0]
    # Valid-aware nearest neighbour: exactly the independent numpy result; sparse stays sparse,
    # no blends, and an invalid 0 never bleeds into (or out of) its neighbours.
    np.testing.assert_array_equal(depth_out, _nearest_valid_numpy(depth_in, *size))
    assert set(np.unique(depth_out)) <= set(np.unique(depth_in))
    # Downsampling keeps every footprint that holds a sample: at least plain nearest's count.
    assert (depth_out > 0).sum() >= (_nearest_numpy(depth_in, *size) > 0).sum()
    np.testing.assert_array_equal(after[common.SEMANTIC][..., 0],
                                  _nearest_numpy(before[common.SEMANTIC][..., 0], *size))
    for f in range(NUM_CONTEXT + 1):
        np.testing.assert_array_equal(after[common.INSTANCES][f],
                                      _nearest_numpy(before[common.INSTANCES][f], *size))
    assert after[common.SEMANTIC].dtype == np.int32 and after[common.INSTANCES].dtype == np.int32
    noise = np.random.default_rng(1).uniform(size=(HEIGHT, WIDTH, 3)).astype(np.float32)
    for target in (size, (HEIGHT + 5, WIDTH - 9)):  # also one axis up, one down
        resized = augment.resize_example({common.IMAGE: tf.constant(noise)}, target)
        np.testing.assert_allclose(resized[common.IMAGE].numpy(),
                                   _bilinear_numpy(noise, *target), atol=1e-5)


def test_same_result_eagerly_and_in_tf_data():
    example = make_example(seed=5)
    ops = {
        "random_resize_crop_flip": lambda e: augment.random_resize_crop_flip(
            e, tf.constant([4, 2]), (18, 50), (0.7, 1.4), 0.5, base_size=(HEIGHT, WIDTH)),
        "color_jitter": lambda e: augment.color_jitter(e, tf.constant([9, 1]), 0.3, 0.3, 0.3,
                                                       0.1, prob=1.0),
        "pad_weak_pairs": lambda e: augment.pad_weak_pairs(e, 3, seed=tf.constant([1, 1])),
        "resize": lambda e: augment.resize_example(e, (31, 97)),
        "crop": lambda e: augment.crop_example(e, 3, 11, (16, 40)),
        "flip": augment.flip_example,
    }
    # One tf.data map runs every op (one pipeline to build keeps the test fast).
    # (As in pipeline.make_dataset: AutoGraph has nothing to convert, skip its slow start.)
    in_data = next(iter(tf.data.Dataset.from_tensors(example).map(
        tf.autograph.experimental.do_not_convert(
            lambda e: {name: op(e) for name, op in ops.items()}))))
    for name, op in ops.items():
        eager = _numpy(op(example))
        for key, value in eager.items():
            np.testing.assert_array_equal(in_data[name][key].numpy(), value,
                                          err_msg=f"{name} {key}")
    # Different seeds really draw different augmentations.
    draws = {augment.random_resize_crop_flip(example, [s, 0], (18, 50), (0.7, 1.4), 0.5)[
        common.INTRINSICS].numpy().tobytes() for s in range(6)}
    assert len(draws) > 3


def test_color_jitter_identical_across_frames():
    rng = np.random.default_rng(0)
    frames = rng.uniform(0.1, 0.9, size=(3, HEIGHT, WIDTH, 3)).astype(np.float32)
    example = {common.IMAGE: tf.constant(frames[0]), common.CONTEXT: tf.constant(frames[1:]),
               common.DEPTH: tf.ones([HEIGHT, WIDTH, 1])}
    seed = tf.constant([3, 4])
    out = _numpy(augment.color_jitter(example, seed, 0.4, 0.4, 0.4, 0.1, prob=1.0))
    assert not np.allclose(out[common.IMAGE], frames[0], atol=1e-2)
    assert out[common.IMAGE].min() >= 0.0 and out[common.IMAGE].max() <= 1.0
    np.testing.assert_array_equal(out[common.DEPTH], 1.0)
    # Each neighbour got exactly what the same seed does to that frame alone as the target.
    for f in range(2):
        alone = augment.color_jitter({common.IMAGE: tf.constant(frames[1 + f])}, seed, 0.4,
                                     0.4, 0.4, 0.1, prob=1.0)[common.IMAGE].numpy()
        np.testing.assert_allclose(out[common.CONTEXT][f], alone, atol=1e-6)
    # Brightness alone is a multiplication by one factor in [0.6, 1.4] for every frame.
    bright = _numpy(augment.color_jitter(example, seed, 0.4, 0.0, 0.0, 0.0, prob=1.0))
    factor = np.median(bright[common.IMAGE] / frames[0])
    assert 0.6 <= factor <= 1.4 and abs(factor - 1.0) > 1e-3
    np.testing.assert_allclose(bright[common.CONTEXT], np.clip(frames[1:] * factor, 0, 1),
                               atol=1e-5)
    # prob = 0 leaves the images alone; prob = 0.5 applies to roughly half of the seeds.
    untouched = augment.color_jitter(example, seed, 0.4, 0.4, 0.4, 0.1, prob=0.0)
    np.testing.assert_array_equal(untouched[common.IMAGE].numpy(), frames[0])
    applied = [not np.array_equal(augment.color_jitter(
        example, [s, 1], 0.4, 0.0, 0.0, 0.0, prob=0.5)[common.IMAGE].numpy(), frames[0])
        for s in range(40)]
    assert 10 <= sum(applied) <= 30
    with pytest.raises(ValueError, match="hue"):
        augment.color_jitter(example, seed, hue=0.7)


def test_pad_weak_pairs():
    pairs = np.arange(30, dtype=np.float32).reshape(5, 6)
    example = {common.WEAK_PAIRS: tf.constant(pairs)}
    padded = augment.pad_weak_pairs(example, 8)
    assert padded[common.NUM_WEAK_PAIRS].numpy() == 5
    np.testing.assert_array_equal(padded[common.WEAK_PAIRS].numpy()[:5], pairs)
    np.testing.assert_array_equal(padded[common.WEAK_PAIRS].numpy()[5:], 0)
    first = augment.pad_weak_pairs(example, 3)
    np.testing.assert_array_equal(first[common.WEAK_PAIRS].numpy(), pairs[:3])
    # With a seed, a random subset of whole rows (not always the first ones).
    subsets = set()
    for s in range(8):
        rows = augment.pad_weak_pairs(example, 3, seed=[s, 0])[common.WEAK_PAIRS].numpy()
        assert all(any(np.array_equal(r, p) for p in pairs) for r in rows)
        subsets.add(tuple(sorted(rows[:, 0])))
    assert len(subsets) > 1
    empty = augment.pad_weak_pairs({common.WEAK_PAIRS: tf.zeros([0, 6])}, 4)
    assert empty[common.NUM_WEAK_PAIRS].numpy() == 0


def test_bad_arguments():
    example = make_example()
    with pytest.raises(ValueError, match="scale_range"):
        augment.random_resize_crop_flip(example, [0, 0], (8, 8), (1.5, 1.0))
    with pytest.raises(ValueError, match="flip_prob"):
        augment.random_resize_crop_flip(example, [0, 0], (8, 8), (1.0, 1.0), flip_prob=2.0)
    with pytest.raises(ValueError, match="crop_size"):
        augment.random_resize_crop_flip(example, [0, 0], (0, 8))


def test_static_shapes_in_graph_mode():
    """Inside tf.function with unknown input sizes, a static output size stays static."""
    example = make_example()
    signature = {k: tf.TensorSpec([None] * v.shape.rank, v.dtype) for k, v in example.items()}

    @tf.function(input_signature=[signature], autograph=False)  # nothing to convert
    def resize_then_crop(e):
        resized = augment.resize_example(e, (30, 100))
        assert resized[common.CONTEXT].shape[1:3] == (30, 100)
        assert resized[common.INSTANCES].shape[1:] == (30, 100)
        cropped = augment.random_resize_crop_flip(e, [1, 1], (16, 40), (0.8, 1.2))
        assert cropped[common.DEPTH].shape[:2] == (16, 40)
        return resized, cropped

    resized, cropped = resize_then_crop(example)
    eager = augment.resize_example(example, (30, 100))
    np.testing.assert_array_equal(resized[common.IMAGE].numpy(), eager[common.IMAGE].numpy())
    same = resize_then_crop.python_function(example)[0]  # static sizes: no tf.cond branch
    np.testing.assert_array_equal(same[common.DEPTH].numpy(), resized[common.DEPTH].numpy())
