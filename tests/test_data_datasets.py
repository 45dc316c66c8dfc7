"""Tests of the dataset facts: Cityscapes/CamVid tables and the mappings between them."""

import numpy as np
import pytest

from tf_depthseg import common
from tf_depthseg.data import datasets
from tf_depthseg.errors import BadInputError


def test_nineteen_train_classes_in_official_order():
    assert datasets.CITYSCAPES_NUM_CLASSES == 19
    assert datasets.CITYSCAPES_TRAIN_NAMES == (
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
        "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus",
        "train", "motorcycle", "bicycle")
    assert datasets.CITYSCAPES_TRAIN_PALETTE.shape == (19, 3)
    assert datasets.CITYSCAPES_TRAIN_PALETTE.dtype == np.uint8
    np.testing.assert_array_equal(datasets.CITYSCAPES_TRAIN_PALETTE[0], (128, 64, 128))
    np.testing.assert_array_equal(datasets.CITYSCAPES_TRAIN_PALETTE[13], (0, 0, 142))
    assert datasets.IGNORE_ID == common.IGNORE_LABEL


def test_label_to_train_mapping():
    table = datasets.CITYSCAPES_LABEL_TO_TRAIN
    assert table.shape == (256,) and table.dtype == np.uint8
    # Every train id 0..18 is reached by exactly one label id.
    reached = table[table != 255]
    np.testing.assert_array_equal(np.sort(reached), np.arange(19))
    expected = {0: 255, 6: 255, 7: 0, 8: 1, 9: 255, 11: 2, 17: 5, 18: 255, 20: 7, 21: 8,
                23: 10, 24: 11, 25: 12, 26: 13, 29: 255, 30: 255, 31: 16, 33: 18}
    labels = np.array(list(expected), np.uint8).reshape(2, -1)
    train = datasets.label_ids_to_train_ids(labels, "x.png")
    np.testing.assert_array_equal(train.ravel(), list(expected.values()))
    assert train.dtype == np.uint8
    # The inverse table round-trips the 19 classes.
    np.testing.assert_array_equal(
        table[datasets.CITYSCAPES_TRAIN_TO_LABEL[np.arange(19)]], np.arange(19))
    assert datasets.cityscapes_label_id("car") == 26
    assert datasets.cityscapes_train_id("bicycle") == 18
    with pytest.raises(ValueError, match="unknown Cityscapes class"):
        datasets.cityscapes_label_id("spaceship")


def test_unknown_label_id_raises_naming_the_source():
    labels = np.array([[7, 8], [34, 200]], np.uint8)
    with pytest.raises(BadInputError, match=r"aachen_000000_labelIds\.png.*\[34, 200\]"):
        datasets.label_ids_to_train_ids(labels, "aachen_000000_labelIds.png")
    with pytest.raises(BadInputError, match="rec-7"):
        datasets.label_ids_to_train_ids(np.array([-1, 7]), "rec-7")


def test_instance_ids_to_label_ids():
    inst = np.array([[26001, 26002, 7], [24000, 0, 23]], np.int32)
    np.testing.assert_array_equal(datasets.instance_ids_to_label_ids(inst),
                                  [[26, 26, 7], [24, 0, 23]])


def test_camvid_mapping_covers_its_eleven_classes():
    assert datasets.CAMVID_NUM_CLASSES == 11
    assert datasets.CAMVID_CLASS_NAMES == (
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
        "Pedestrian", "Bicyclist")
    assert datasets.CAMVID_PALETTE.shape == (12, 3)
    mapped = datasets.train_ids_to_camvid(np.arange(19), "t")
    np.testing.assert_array_equal(np.unique(mapped), np.arange(11))
    names = [datasets.CAMVID_CLASS_NAMES[m] for m in mapped]
    assert names[datasets.cityscapes_train_id("road")] == "Road"
    assert names[datasets.cityscapes_train_id("sidewalk")] == "Pavement"
    assert names[datasets.cityscapes_train_id("person")] == "Pedestrian"
    assert names[datasets.cityscapes_train_id("bus")] == "Car"
    assert names[datasets.cityscapes_train_id("traffic light")] == "SignSymbol"
    assert datasets.train_ids_to_camvid(np.array([255]), "t")[0] == datasets.CAMVID_VOID_ID
    with pytest.raises(BadInputError, match="seq05vd"):
        datasets.train_ids_to_camvid(np.array([19]), "seq05vd")


def test_colorize_and_colors_to_ids_round_trip():
    ids = np.array([[0, 3, 10], [11, 5, 8]], np.uint8)
    rgb = datasets.colorize(ids, datasets.CAMVID_PALETTE)
    np.testing.assert_array_equal(rgb[0, 1], (128, 64, 128))
    np.testing.assert_array_equal(datasets.colors_to_ids(rgb, datasets.CAMVID_PALETTE), ids)
    rgb[1, 1] = (1, 2, 3)
    with pytest.raises(BadInputError, match=r"Seq01\.png.*\(1, 2, 3\)"):
        datasets.colors_to_ids(rgb, datasets.CAMVID_PALETTE, "Seq01.png")
