"""Weak depth labels from semantic masks: rules on hand-made masks, checks, tool, accuracy."""

import glob

import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg.data import datasets
from tf_depthseg.data import image_io
from tf_depthseg.data import records
from tf_depthseg.data import schema
from tf_depthseg.labels import weak_label_records as wl_records
from tf_depthseg.labels import weak_labels as wl
from tf_depthseg import errors
from test_bad_input_battery import run_tool

T = datasets.cityscapes_train_id
SKY, ROAD, SIDEWALK, BUILDING = T("sky"), T("road"), T("sidewalk"), T("building")
VEGETATION, TERRAIN, CAR, POLE = T("vegetation"), T("terrain"), T("car"), T("pole")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _street(height=40, width=80):
    """Upright street mask: sky, a left building, road, left terrain, a car on the road."""
    sem = np.full((height, width), SKY, np.uint8)
    sem[20:] = ROAD
    sem[4:26, :16] = BUILDING
    sem[28:, :10] = TERRAIN
    sem[14:27, 40:56] = CAR
    return sem


def _patch_classes(sem, y, x, half):
    return sem[int(y) - half:int(y) + half + 1, int(x) - half:int(x) + half + 1]


def _check_pure(sem, pairs, class_a, class_b):
    """Every patch lies inside the image and entirely inside its rule's classes."""
    for y_a, x_a, y_b, x_b, half, _ in pairs:
        half = int(half)
        a = _patch_classes(sem, y_a, x_a, half)
        b = _patch_classes(sem, y_b, x_b, half)
        assert a.shape == b.shape == (2 * half + 1, 2 * half + 1)
        assert np.isin(a, class_a).all() and np.isin(b, class_b).all()


def test_pure_patch_centers_matches_brute_force():
    mask = _rng(1).random((17, 23)) < 0.8
    for half in range(4):
        expected = np.zeros_like(mask)
        for y in range(half, 17 - half):
            for x in range(half, 23 - half):
                expected[y, x] = mask[y - half:y + half + 1, x - half:x + half + 1].all()
        np.testing.assert_array_equal(wl.pure_patch_centers(mask, half), expected)


def test_sky_rule_pairs_are_pure_sky_against_other_classes():
    sem = _street()
    sem[0:2, 70:] = 255  # ignore pixels are never used
    config = wl.WeakLabelConfig(strategy="diff", pairs_per_rule=50)
    pairs = wl.generate_weak_pairs(sem, config, _rng())[wl.RULE_SKY]
    assert pairs.shape == (50, 6)
    assert set(pairs[:, 4].tolist()) <= {1, 2, 3, 4}
    assert (pairs[:, 5] == common.RELATION_FARTHER).all()
    _check_pure(sem, pairs, [SKY], [c for c in range(19) if c != SKY])


def test_background_ground_rule_geometry():
    sem = _street()
    config = wl.WeakLabelConfig(strategy="diff", pairs_per_rule=40, half_sizes=(0, 1))
    pairs = wl.generate_weak_pairs(sem, config, _rng())[wl.RULE_BACKGROUND_GROUND]
    assert len(pairs) == 40
    _check_pure(sem, pairs, [BUILDING, VEGETATION], [ROAD, T("fence"), TERRAIN])
    y_a, x_a, y_b, x_b, half = pairs[:, 0], pairs[:, 1], pairs[:, 2], pairs[:, 3], pairs[:, 4]
    assert (y_b - half > y_a + half).all()  # B below A
    assert (x_b <= x_a).all()  # building in the left half: B further left
    assert (y_b >= 0.5 * (sem.shape[0] - 1)).all()  # B in the bottom part
    assert (pairs[:, 5] == common.RELATION_FARTHER).all()


def test_background_ground_rule_needs_ground_outward_of_the_facade():
    sem = np.full((40, 80), SKY, np.uint8)
    sem[5:25, :16] = BUILDING  # left building ...
    sem[25:, 20:] = ROAD  # ... but ground only to its right (towards the centre)
    sem[25:, :20] = POLE
    config = wl.WeakLabelConfig(strategy="diff", pairs_per_rule=40)
    assert len(wl.generate_weak_pairs(sem, config, _rng())[wl.RULE_BACKGROUND_GROUND]) == 0
    # Mirrored: a right building with ground only towards the centre also gives nothing.
    flipped = sem[:, ::-1].copy()
    assert len(wl.generate_weak_pairs(flipped, config, _rng())[wl.RULE_BACKGROUND_GROUND]) == 0
    # With ground at the outer side of the right building, pairs go right and down.
    flipped[30:, 70:] = TERRAIN
    pairs = wl.generate_weak_pairs(flipped, config, _rng())[wl.RULE_BACKGROUND_GROUND]
    assert len(pairs) > 0 and (pairs[:, 3] >= pairs[:, 1]).all()


def test_object_road_rule_takes_road_below_the_object_in_its_column():
    sem = _street()
    config = wl.WeakLabelConfig(strategy="diff", pairs_per_rule=60, min_gap_rows=3,
                                object_gap_fraction=0.0)
    pairs = wl.generate_weak_pairs(sem, config, _rng())[wl.RULE_OBJECT_ROAD]
    assert len(pairs) == 60
    _check_pure(sem, pairs, [CAR], [ROAD])
    np.testing.assert_array_equal(pairs[:, 1], pairs[:, 3])  # same column
    car_bottom = 26
    assert (pairs[:, 2] - pairs[:, 4] >= car_bottom + 1 + 3).all()  # gap below the car
    assert (pairs[:, 5] == common.RELATION_FARTHER).all()


def test_object_road_rule_skips_objects_without_road_below():
    sem = _street()
    sem[27:, 36:60] = SIDEWALK  # the car stands on sidewalk: no road below it
    config = wl.WeakLabelConfig(strategy="diff", pairs_per_rule=60)
    assert len(wl.generate_weak_pairs(sem, config, _rng())[wl.RULE_OBJECT_ROAD]) == 0


def test_same_ground_rule_upper_patch_is_farther_within_one_stretch():
    sem = _street()
    config = wl.WeakLabelConfig(strategy="same", pairs_per_rule=80)
    result = wl.generate_weak_pairs(sem, config, _rng())
    assert set(result) == {wl.RULE_SAME_GROUND}
    pairs = result[wl.RULE_SAME_GROUND]
    assert 40 <= len(pairs) <= 80  # 9x9 pairs rarely fit in 20 road rows: fewer, not wrong
    np.testing.assert_array_equal(pairs[:, 1], pairs[:, 3])
    assert (pairs[:, 2] - pairs[:, 4] > pairs[:, 0] + pairs[:, 4]).all()
    for y_a, x_a, y_b, x_b, half, _ in pairs:
        column = sem[int(y_a) - int(half):int(y_b) + int(half) + 1, int(x_a)]
        assert (column == column[0]).all()  # one uninterrupted stretch of one class
        assert column[0] in (ROAD, SIDEWALK, TERRAIN)
    # Road above and below the car are different stretches: no pair crosses the car.
    in_car_columns = (pairs[:, 1] >= 40) & (pairs[:, 1] < 56)
    assert (pairs[in_car_columns, 0] > 26).all()


def test_empty_and_classless_masks_give_no_pairs():
    config = wl.WeakLabelConfig(strategy="same+diff")
    for sem in (np.full((30, 40), 255, np.uint8), np.full((30, 40), POLE, np.uint8),
                np.zeros((0, 0), np.uint8), np.full((2, 2), ROAD, np.uint8)):
        result = wl.generate_weak_pairs(sem, config, _rng())
        assert set(result) == set(wl.STRATEGIES["same+diff"])
        assert all(p.shape == (0, 6) for p in result.values())
        assert wl.concat_pairs(result).shape == (0, 6)


def test_upside_down_mask_is_skipped():
    sem = _street()[::-1].copy()
    result = wl.generate_weak_pairs(sem, wl.WeakLabelConfig(), _rng())
    assert all(len(p) == 0 for p in result.values())


def test_bad_masks_raise_clear_errors():
    config = wl.WeakLabelConfig()
    with pytest.raises(errors.BadInputError, match="mask_ids=label"):
        wl.generate_weak_pairs(np.full((10, 10), 26, np.uint8), config, _rng(), name="m.png")
    with pytest.raises(errors.BadInputError, match="differ in size"):
        wl.generate_weak_pairs(_street(), config, _rng(), depth=np.ones((20, 20)), name="x")
    with pytest.raises(errors.BadInputError, match=r"\[H, W\]"):
        wl.generate_weak_pairs(np.zeros((4, 4, 3), np.uint8), config, _rng())
    with pytest.raises(ValueError, match="strategy"):
        wl.WeakLabelConfig(strategy="both")
    with pytest.raises(errors.BadInputError, match="random_gt"):
        wl.generate_weak_pairs(_street(), wl.WeakLabelConfig(strategy="random_gt"), _rng())


def test_pairs_are_reproducible_per_source_id():
    config = wl.WeakLabelConfig()
    first = wl.concat_pairs(wl.generate_weak_pairs(_street(), config, wl.image_rng(3, "a/1")))
    second = wl.concat_pairs(wl.generate_weak_pairs(_street(), config, wl.image_rng(3, "a/1")))
    other = wl.concat_pairs(wl.generate_weak_pairs(_street(), config, wl.image_rng(3, "a/2")))
    np.testing.assert_array_equal(first, second)
    assert first.shape != other.shape or not np.array_equal(first, other)
    wl.validate_pairs(first, *_street().shape)


def test_ground_truth_relations_by_hand():
    depth = np.zeros((10, 10), np.float32)
    depth[:, :5] = 10.0
    depth[:, 5:] = 20.0
    depth[0, 9] = 0.0  # invalid pixel
    depth[5:, 5:] = 10.4  # within 5 % of 10
    infinite = np.zeros_like(depth, bool)
    infinite[0:3, 0:3] = True
    depth[0:3, 0:3] = 0.0
    pairs = np.array([
        [2, 7, 5, 2, 1, 1],  # 20 vs 10: farther, correct
        [5, 2, 2, 7, 1, 1],  # 10 vs 20: closer, label wrong
        [7, 7, 7, 2, 1, 1],  # 10.4 vs 10: equal within 5 %, label wrong
        [7, 7, 7, 2, 1, 0],  # equal, correct
        [1, 1, 7, 2, 1, 1],  # infinite sky vs 10: farther, correct
        [1, 8, 7, 2, 1, 1],  # touches the invalid pixel: not usable
        [1, 1, 1, 1, 0, 0],  # infinite vs infinite: equal
        [3, 3, 7, 7, 1, 1],  # mixes sky and depth: not usable
    ], np.float32)
    relation, usable = wl.ground_truth_relations(pairs, depth, infinite, tolerance=0.05)
    np.testing.assert_array_equal(usable, [1, 1, 1, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(relation[usable], [1, -1, 0, 0, 1, 0])
    assert wl.pair_accuracy(pairs, depth, infinite) == (4, 6)


def test_random_gt_pairs_follow_sparse_depth():
    rng = _rng(2)
    depth = np.where(rng.random((30, 50)) < 0.1, rng.uniform(2, 80, (30, 50)), 0.0)
    config = wl.WeakLabelConfig(strategy="random_gt", pairs_per_rule=100)
    pairs = wl.generate_weak_pairs(None, config, rng, depth=depth)[wl.RULE_RANDOM_GT]
    assert len(pairs) == 100 and (pairs[:, 4] == 0).all()
    y_a, x_a = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
    y_b, x_b = pairs[:, 2].astype(int), pairs[:, 3].astype(int)
    d_a, d_b = depth[y_a, x_a], depth[y_b, x_b]
    assert (d_a > 0).all() and (d_b > 0).all()
    np.testing.assert_array_equal(pairs[:, 5], np.where(d_a > d_b, 1.0, -1.0))
    assert (np.abs(d_a - d_b) > 0.05 * np.minimum(d_a, d_b)).all()


def test_megadepth_ordinal_pairs():
    foreground = np.zeros((20, 30), bool)
    foreground[5:15, 10:20] = True
    background = np.zeros_like(foreground)
    background[:5] = True
    pairs = wl.ordinal_pairs_from_masks(foreground, background, 64, _rng())
    assert pairs.shape == (64, 6) and (pairs[:, 5] == common.RELATION_CLOSER).all()
    assert foreground[pairs[:, 0].astype(int), pairs[:, 1].astype(int)].all()
    assert background[pairs[:, 2].astype(int), pairs[:, 3].astype(int)].all()
    assert wl.ordinal_pairs_from_masks(foreground, np.zeros_like(foreground), 8,
                                       _rng()).shape == (0, 6)
    with pytest.raises(errors.BadInputError, match="both foreground and background"):
        wl.ordinal_pairs_from_masks(foreground, foreground, 8, _rng())
    with pytest.raises(errors.BadInputError, match="one size"):
        wl.ordinal_pairs_from_masks(foreground, background[:10], 8, _rng())


# --------------------------------------------------------------------------------------------
# The tool: rewrite of record shards, side file, masks folder, bad records.
# --------------------------------------------------------------------------------------------
def _write_records(folder, num=3, size=(40, 80)):
    rng = _rng(5)
    samples = []
    for i in range(num):
        sem = _street(*size)
        depth = rng.uniform(1, 50, size).astype(np.float32)
        samples.append(schema.Sample(
            image=rng.integers(0, 256, size + (3,), dtype=np.uint8), source_id=f"drive/{i:04d}",
            semantic=sem, depth=depth))
    records.write_split(str(folder), "train", (schema.encode_example(s) for s in samples),
                        num_shards=2)
    return samples


def test_tool_rewrites_shards_and_writes_side_file(tmp_path):
    samples = _write_records(tmp_path / "in")
    before = {p: open(p, "rb").read() for p in glob.glob(str(tmp_path / "in" / "*"))}
    config = wl.WeakLabelConfig(pairs_per_rule=16)
    side = str(tmp_path / "pairs.npz")
    collected, stats = wl_records.generate(str(tmp_path / "in" / "train-*"), str(tmp_path / "out"),
                                           side, config, seed=1)
    assert stats["train"]["num_examples"] == 3 and len(collected) == 3
    assert {p: open(p, "rb").read() for p in before} == before  # input untouched
    assert records.verify_split(str(tmp_path / "out"), "train") == 3
    side_pairs = wl.read_side_file(side)
    out = [schema.decode_example(r) for r in records.iterate_records(
        records.split_pattern(str(tmp_path / "out"), "train"))]
    by_id = {s.source_id: s for s in samples}
    for sample in out:
        original = by_id[sample.source_id]
        np.testing.assert_array_equal(sample.image, original.image)
        np.testing.assert_array_equal(sample.semantic, original.semantic)
        np.testing.assert_allclose(sample.depth, original.depth, atol=1 / 256)
        assert sample.weak_pairs.shape[0] >= 16  # every rule finds pairs in the street mask
        np.testing.assert_array_equal(sample.weak_pairs, side_pairs[sample.source_id])
        wl.validate_pairs(sample.weak_pairs, 40, 80)
    with pytest.raises(ValueError, match="input"):
        wl_records.generate(str(tmp_path / "in" / "train-*"), str(tmp_path / "in"), None, config)


def test_tool_previews_show_the_pairs_next_to_the_mask(tmp_path):
    from tf_depthseg import visualize
    samples = _write_records(tmp_path / "in")
    collected, _ = wl_records.generate(str(tmp_path / "in" / "train-*"), None, None,
                                       wl.WeakLabelConfig(pairs_per_rule=4), seed=1,
                                       preview_dir=str(tmp_path / "previews"), num_previews=2)
    files = sorted((tmp_path / "previews").iterdir())
    assert len(files) == 2 and all(f.name.startswith("drive__") for f in files)
    by_id = {s.source_id: s for s in samples}
    for path in files:
        source_id = path.name[:-len(".png")].replace("__", "/")
        picture = image_io.read_image(str(path))
        height, width = by_id[source_id].semantic.shape
        assert picture.shape == (height, 2 * width + 4, 3)
        np.testing.assert_array_equal(
            picture[:, :width], visualize.draw_weak_pairs(by_id[source_id].image,
                                                          collected[source_id]))
        np.testing.assert_array_equal(
            picture[:, width + 4:], datasets.colorize(by_id[source_id].semantic,
                                                      datasets.CITYSCAPES_TRAIN_PALETTE))


def test_tool_reads_label_id_masks_and_quarantines_bad_ones(tmp_path):
    samples = _write_records(tmp_path / "in")
    masks = tmp_path / "masks"
    for sample in samples:
        label_ids = datasets.CITYSCAPES_TRAIN_TO_LABEL[sample.semantic]
        image_io.write_png(str(masks / f"{sample.source_id}.png"), label_ids)
    config = wl.WeakLabelConfig(pairs_per_rule=16)
    pattern = str(tmp_path / "in" / "train-*")
    from_records, _ = wl_records.generate(pattern, None, str(tmp_path / "a.npz"), config, seed=2)
    from_pngs, _ = wl_records.generate(pattern, None, str(tmp_path / "b.npz"), config, seed=2,
                                       masks_dir=str(masks), mask_ids="label")
    for source_id, pairs in from_records.items():
        np.testing.assert_array_equal(pairs, from_pngs[source_id])
    # Label ids read as train ids: a clear error naming the file.
    with pytest.raises(errors.BadInputError, match="mask_ids=label"):
        wl_records.generate(pattern, None, str(tmp_path / "c.npz"), config, masks_dir=str(masks))
    # A mask of the wrong size: error, or quarantined with --skip_bad.
    image_io.write_png(str(masks / "drive/0001.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(errors.BadInputError, match="drive/0001.png.*stored image size"):
        wl_records.generate(pattern, None, str(tmp_path / "d.npz"), config, masks_dir=str(masks),
                            mask_ids="label")
    collected, stats = wl_records.generate(pattern, str(tmp_path / "out"), None, config,
                                           masks_dir=str(masks), mask_ids="label", skip_bad=True)
    assert sorted(collected) == ["drive/0000", "drive/0002"]
    assert [s for s, _ in stats["train"]["skipped"]] == ["drive/0001"]
    manifest = records.read_manifest(str(tmp_path / "out"))["splits"]["train"]
    assert manifest["num_examples"] == 2
    assert [s["source_id"] for s in manifest["skipped"]] == ["drive/0001"]


def test_tool_command_line(tmp_path):
    """tools/generate_weak_labels as a program: flags in, summary line out; --half_sizes
    outside 0..16 is one error line (exit 2), not a traceback."""
    _write_records(tmp_path / "in", num=2)
    args = [f"--input={tmp_path / 'in' / 'train-*'}", "--strategy=diff", "--pairs_per_rule=8"]
    done = run_tool("tools.generate_weak_labels", args + [
        f"--output_dir={tmp_path / 'out'}", "--half_sizes=0",
        f"--preview_dir={tmp_path / 'previews'}", "--num_previews=1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 images, 48 pairs" in done.stdout
    assert f"previews: {tmp_path / 'previews'}" in done.stdout
    assert len(list((tmp_path / "previews").iterdir())) == 1
    pairs = [schema.decode_example(r).weak_pairs for r in records.iterate_records(
        records.split_pattern(str(tmp_path / "out"), "train"))]
    assert all(p.shape == (24, 6) and (p[:, 4] == 0).all() for p in pairs)
    bad = run_tool("tools.generate_weak_labels", args + [
        f"--output_dir={tmp_path / 'out2'}", "--half_sizes=9,17"], tmp_path)
    assert bad.returncode == 2 and "half_sizes" in bad.stderr, bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr


# --------------------------------------------------------------------------------------------
# Accuracy against the synthetic generator's ground-truth depth.
# --------------------------------------------------------------------------------------------
def test_rules_are_correct_on_synthetic_drives():
    from tf_depthseg import synthetic
    drive = synthetic.generate_drive(synthetic.SceneConfig(frames_per_drive=3), seed=11)
    for half_sizes in ((0,), (1, 2, 3, 4)):
        config = wl.WeakLabelConfig(strategy="same+diff", pairs_per_rule=64,
                                    half_sizes=half_sizes)
        tally = {rule: [0, 0] for rule in config.rules}
        for index, frame in enumerate(drive.frames):
            by_rule = wl.generate_weak_pairs(frame.train_ids, config, _rng(index))
            for rule, pairs in by_rule.items():
                # Sky has depth 0 in the generator: infinitely far, not invalid.
                correct, usable = wl.pair_accuracy(pairs, frame.depth, frame.train_ids == SKY)
                tally[rule][0] += correct
                tally[rule][1] += usable
        for rule, (correct, usable) in tally.items():
            assert usable >= 60, (half_sizes, rule, usable)  # every rule finds pairs
            assert correct / usable >= 0.95, (half_sizes, rule, correct, usable)
