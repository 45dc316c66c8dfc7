"""Object-mask alignment across t-1, t, t+1: IoU rule, classes, errors, tool, true tracks."""

import numpy as np
import pytest

from tf_depthseg.data import datasets
from tf_depthseg.data import image_io
from tf_depthseg.data import object_alignment as oa

PERSON, RIDER, CAR, TRUCK = (datasets.cityscapes_label_id(n)
                             for n in ("person", "rider", "car", "truck"))


def _strip(start, length=13, width=40, object_id=CAR * 1000 + 1):
    """A 1x`length` object starting at column `start` on a 3x`width` map."""
    frame = np.zeros((3, width), np.int32)
    frame[1, start:start + length] = object_id
    return frame


def test_iou_exactly_threshold_is_not_aligned():
    target = _strip(0)
    # 13-pixel strips offset by 7 overlap in 6 pixels: IoU = 6 / 20 = 0.3 exactly.
    at_threshold = _strip(7)
    above = _strip(6)  # 7 / 19 = 0.368
    ids, _, iou = oa.iou_matrix(target, at_threshold)
    assert iou[0, 0] == pytest.approx(0.3)
    maps, aligned = oa.align_objects([target, at_threshold, above])
    assert aligned == [] and all((m == 0).all() for m in maps)
    maps, aligned = oa.align_objects([target, above, above])
    assert len(aligned) == 1 and aligned[0].ious[1] == pytest.approx(7 / 19)
    # Both neighbours must pass: IoU(t-1, t) fine but IoU(t, t+1) = 0.3 is not.
    _, aligned = oa.align_objects([above, target, at_threshold], target_index=1)
    assert aligned == []


def test_aligned_objects_keep_the_target_id_and_others_are_removed():
    prev = np.zeros((20, 30), np.int32)
    curr = np.zeros_like(prev)
    nxt = np.zeros_like(prev)
    prev[2:8, 2:8] = CAR * 1000 + 5
    curr[2:8, 3:9] = CAR * 1000 + 1
    nxt[2:8, 4:10] = CAR * 1000 + 9
    prev[10:18, 10:14] = PERSON * 1000 + 2  # person in all three frames ...
    curr[10:18, 11:15] = PERSON * 1000 + 7
    nxt[10:18, 20:24] = PERSON * 1000 + 3  # ... but jumps away in t+1: not aligned
    prev[12:16, 24:28] = RIDER * 1000 + 1  # riders and trucks are not kept
    curr[12:16, 24:28] = RIDER * 1000 + 1
    nxt[12:16, 24:28] = RIDER * 1000 + 1
    curr[0:2, 20:30] = TRUCK * 1000 + 1
    curr[19, :] = 7  # a plain label id (no instance)
    maps, aligned = oa.align_objects([curr, prev, nxt], target_index=0)
    assert [(o.aligned_id, o.label_id, o.source_ids) for o in aligned] == [
        (CAR * 1000 + 1, CAR, (CAR * 1000 + 1, CAR * 1000 + 5, CAR * 1000 + 9))]
    for frame, out, source_id in zip((curr, prev, nxt), maps, aligned[0].source_ids):
        assert out.dtype == np.uint16 and out.shape == frame.shape
        assert set(np.unique(out).tolist()) == {0, CAR * 1000 + 1}
        np.testing.assert_array_equal(out != 0, frame == source_id)
    np.testing.assert_array_equal(maps[1] != 0, prev == CAR * 1000 + 5)
    np.testing.assert_array_equal(maps[2] != 0, nxt == CAR * 1000 + 9)


def test_class_must_match_across_frames():
    car = _strip(0, object_id=CAR * 1000 + 1)
    person = _strip(1, object_id=PERSON * 1000 + 1)
    _, aligned = oa.align_objects([car, person, car])
    assert aligned == []


def test_matching_is_one_to_one():
    curr = np.zeros((4, 40), np.int32)
    curr[1, 0:10] = CAR * 1000 + 1
    curr[1, 10:20] = CAR * 1000 + 2
    neighbour = np.zeros_like(curr)
    neighbour[1, 2:14] = CAR * 1000 + 3  # overlaps 1 (8 px) better than 2 (4 px)
    matches = oa.match_objects(curr, neighbour)
    assert list(matches) == [CAR * 1000 + 1] and matches[CAR * 1000 + 1][0] == CAR * 1000 + 3


def test_empty_masks_and_masks_without_kept_classes():
    empty = np.zeros((8, 8), np.uint16)
    maps, aligned = oa.align_objects([empty, empty, empty])
    assert aligned == [] and all(m.shape == (8, 8) and not m.any() for m in maps)
    trucks = np.full((8, 8), TRUCK * 1000 + 1, np.uint16)
    maps, aligned = oa.align_objects([trucks, trucks, trucks])
    assert aligned == [] and not any(m.any() for m in maps)
    maps, aligned = oa.align_objects([np.zeros((0, 0), np.int32)] * 3)
    assert aligned == []


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(image_io.BadInputError, match="differ in size"):
        oa.align_objects([np.zeros((4, 4), int), np.zeros((4, 5), int), np.zeros((4, 4), int)],
                         name="clip_7")
    with pytest.raises(image_io.BadInputError, match="integer"):
        oa.align_objects([np.zeros((4, 4), np.float32)] * 3)
    with pytest.raises(ValueError, match="at least one neighbour"):
        oa.align_objects([np.zeros((4, 4), int)])


def test_perturbation_helpers():
    ids = np.zeros((9, 9), np.int64)
    ids[2:7, 2:7] = CAR * 1000 + 1
    eroded = oa.erode_instances(ids, 1)
    assert (eroded != 0).sum() == 9 and (eroded[3:6, 3:6] == CAR * 1000 + 1).all()
    dilated = oa.dilate_instances(ids, 1)
    assert (dilated != 0).sum() == 25 + 4 * 5
    perturbed, mapping = oa.perturb_instances(ids, np.random.default_rng(0), renumber=True)
    assert len(mapping) == 1 and list(mapping.values()) == [CAR * 1000 + 1]
    new_id = next(iter(mapping))
    assert new_id // 1000 == CAR
    np.testing.assert_array_equal(perturbed == new_id, ids == CAR * 1000 + 1)
    dropped, mapping = oa.perturb_instances(ids, np.random.default_rng(0), drop_probability=1.0)
    assert not dropped.any() and mapping == {}


# --------------------------------------------------------------------------------------------
# The tool: records in, aligned instance maps out.
# --------------------------------------------------------------------------------------------
def _clip(shift=1):
    """Target, t-1, t+1 instance maps: a car moving right, a person that vanishes at t+1."""
    frames = []
    for t in (0, -1, 1):
        ids = np.zeros((24, 40), np.uint16)
        ids[4:12, 10 + shift * t:20 + shift * t] = CAR * 1000 + 3 + t % 3
        if t != 1:
            ids[14:22, 30:34] = PERSON * 1000 + 1
        frames.append(ids)
    return frames


def _write_clip_records(folder, num=2, with_context=True):
    from tf_depthseg.data import records, schema
    rng = np.random.default_rng(0)
    samples = []
    for i in range(num):
        frames = _clip()
        image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
        samples.append(schema.Sample(
            image=image, source_id=f"clip/{i}", context=[image, image] if with_context else [],
            instances=frames if with_context else frames[:1]))
    records.write_split(str(folder), "train", (schema.encode_example(s) for s in samples))
    return samples


def test_tool_writes_aligned_instances(tmp_path):
    from tf_depthseg.data import records, schema
    from tools import align_object_masks as tool
    _write_clip_records(tmp_path / "in")
    counts, stats = tool.align(str(tmp_path / "in" / "train-*"), str(tmp_path / "out"))
    assert counts == {"records": 2, "target_objects": 4, "aligned_objects": 2}
    assert stats["train"]["num_examples"] == 2
    for serialized in records.iterate_records(records.split_pattern(str(tmp_path / "out"),
                                                                    "train")):
        sample = schema.decode_example(serialized)
        clip = _clip()
        assert len(sample.instances) == 3
        for out, original in zip(sample.instances, clip):
            assert set(np.unique(out).tolist()) == {0, CAR * 1000 + 3}  # target id everywhere
            np.testing.assert_array_equal(out != 0, original // 1000 == CAR)


def test_tool_reads_instance_pngs_and_reports_bad_records(tmp_path):
    from tools import align_object_masks as tool
    from tf_depthseg.data import image_io as io_
    samples = _write_clip_records(tmp_path / "in")
    folder = tmp_path / "masks"
    for sample in samples:
        for k, frame in enumerate(_clip(shift=2)):
            io_.write_png(str(folder / f"{sample.source_id}_frame{k}.png"), frame)
    counts, _ = tool.align(str(tmp_path / "in" / "train-*"), str(tmp_path / "out"),
                           instances_dir=str(folder))
    assert counts["aligned_objects"] == 2
    io_.write_png(str(folder / "clip/1_frame2.png"), np.zeros((5, 5), np.uint16))
    with pytest.raises(image_io.BadInputError, match="clip/1_frame2.png"):
        tool.align(str(tmp_path / "in" / "train-*"), str(tmp_path / "out2"),
                   instances_dir=str(folder))
    counts, stats = tool.align(str(tmp_path / "in" / "train-*"), str(tmp_path / "out3"),
                               instances_dir=str(folder), skip_bad=True)
    assert counts["records"] == 1 and [s for s, _ in stats["train"]["skipped"]] == ["clip/1"]
    _write_clip_records(tmp_path / "single", with_context=False)
    with pytest.raises(image_io.BadInputError, match="no context frames"):
        tool.align(str(tmp_path / "single" / "train-*"), str(tmp_path / "out4"))


def test_tool_command_line(tmp_path, capsys):
    """The absl program's flags and main (in-process, with private flag values)."""
    from absl import flags
    from tf_depthseg import cli
    from tools import align_object_masks as tool
    _write_clip_records(tmp_path / "in")
    flag_values = flags.FlagValues()
    tool.define_flags(flag_values)
    flag_values(["align_object_masks", f"--input={tmp_path / 'in' / 'train-*'}",
                 f"--output_dir={tmp_path / 'out'}"])
    tool.main([], flag_values)
    assert "2 records, 2 of 4 target-frame objects aligned, 0 skipped" in capsys.readouterr().out
    flag_values["classes"].parse("person,spaceship")
    with pytest.raises(cli.UserError, match="spaceship"):
        tool.main([], flag_values)


# --------------------------------------------------------------------------------------------
# Against the synthetic generator's true tracks (masks renumbered per frame, as a segmenter's).
# --------------------------------------------------------------------------------------------
def test_alignment_matches_true_tracks_on_synthetic_drive():
    from tf_depthseg.data import synthetic
    drive = synthetic.generate_drive(synthetic.SceneConfig(frames_per_drive=5), seed=12)
    rng = np.random.default_rng(0)
    totals = {"clean": np.zeros(4, int), "perturbed": np.zeros(4, int)}
    for t in range(1, 4):
        clip = [drive.frames[i].instance_ids for i in (t, t - 1, t + 1)]
        trackable = oa.true_trackable_ids(clip, min_area=20)
        for case, kwargs in (("clean", {}), ("perturbed", {"erode": 1, "dilate": 1,
                                                           "max_shift": 1})):
            perturbed, mappings = zip(*(oa.perturb_instances(f, rng, **kwargs) for f in clip))
            _, aligned = oa.align_objects(perturbed, min_area=20)
            totals[case] += oa.alignment_counts(aligned, mappings, trackable)
    correct, num_aligned, found, num_true = totals["clean"]
    assert num_true >= 5
    assert correct / num_aligned >= 0.95 and found / num_true >= 0.95
    correct, num_aligned, found, num_true = totals["perturbed"]
    assert correct / num_aligned >= 0.95  # perturbed masks lose objects, never swap them
    assert found / num_true >= 0.5
