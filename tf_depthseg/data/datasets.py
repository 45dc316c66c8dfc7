"""Dataset facts: Cityscapes and CamVid classes, ids, palettes, and the mappings between them.

Everything here is plain numpy (no TensorFlow import), so converters and the synthetic generator
can use it in forked worker processes.

* Cityscapes: the 34 label ids of the official `labels.py` table (plus the two void ids that
  have no trainable class), each with its train id (19 evaluated classes 0..18, 255 = ignore),
  category and colour. Ground-truth `*_labelIds.png` files store label ids; training uses train
  ids; `*_instanceIds.png` store `label_id * 1000 + k` for objects of classes with instances and
  the plain label id elsewhere.
* CamVid: the 11-class version used by SegNet and by Hoyer et al. (Sky, Building, Pole, Road,
  Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist) with class 11 = void.
* `CITYSCAPES_TRAIN_TO_CAMVID`: Cityscapes train id -> CamVid class, following CamVid's own
  grouping of its 32 fine classes into the 11 (e.g. CamVid "Car" includes trucks and buses,
  "Bicyclist" includes motorcycles, "SignSymbol" includes traffic lights).

Mapping functions never map unknown values silently to "ignore": an id outside a table is a sign
of a wrong file (a colour PNG read as ids, a train-id PNG read as label ids, ...), so they raise
`errors.BadInputError` naming the source.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Sequence, Tuple

import numpy as np

from tf_depthseg.errors import BadInputError

IGNORE_ID = 255  # the train id / class id meaning "not labelled" (common.IGNORE_LABEL)


@dataclasses.dataclass(frozen=True)
class CityscapesLabel:
    """One row of the Cityscapes label table.

    Attributes:
      name: class name as in the Cityscapes scripts.
      label_id: id stored in `*_labelIds.png`.
      train_id: 0..18 for the 19 evaluated classes, 255 = ignored in training and evaluation.
      category: coarse group (flat, construction, object, nature, sky, human, vehicle, void).
      has_instances: objects of this class get individual ids in `*_instanceIds.png`.
      color: RGB colour of the official colour visualisation.
    """

    name: str
    label_id: int
    train_id: int
    category: str
    has_instances: bool
    color: Tuple[int, int, int]


# The official Cityscapes table (cityscapesScripts `labels.py`). "license plate" (id -1) is
# left out: it never appears in label PNGs, which store uint8 ids.
CITYSCAPES_LABELS: Tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", False, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", False, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", False, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", False, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", False, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", False, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", False, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", False, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", False, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", False, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", False, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", False, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", False, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", False, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", False, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", False, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", False, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", False, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", False, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", False, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", True, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", True, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", True, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", True, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", True, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", True, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", True, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", True, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", True, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", True, (119, 11, 32)),
)

CITYSCAPES_LABEL_BY_NAME: Dict[str, CityscapesLabel] = {l.name: l for l in CITYSCAPES_LABELS}
CITYSCAPES_LABEL_BY_ID: Dict[int, CityscapesLabel] = {l.label_id: l for l in CITYSCAPES_LABELS}
CITYSCAPES_NUM_LABEL_IDS = len(CITYSCAPES_LABELS)  # 34: ids 0..33

# Instance ids in `*_instanceIds.png` are label_id * INSTANCE_ID_DIVISOR + k.
INSTANCE_ID_DIVISOR = 1000


def _train_classes():
    by_train = sorted((l.train_id, l) for l in CITYSCAPES_LABELS if l.train_id != IGNORE_ID)
    return tuple(l.name for _, l in by_train), np.array([l.color for _, l in by_train], np.uint8)


# The 19 evaluated classes, indexed by train id, and their colours ([19, 3] uint8).
CITYSCAPES_TRAIN_NAMES, CITYSCAPES_TRAIN_PALETTE = _train_classes()
CITYSCAPES_NUM_CLASSES = len(CITYSCAPES_TRAIN_NAMES)  # 19

# Lookup table label id -> train id (uint8[256]). Ids outside the table also read 255 here;
# use `label_ids_to_train_ids`, which rejects them, on data from files.
CITYSCAPES_LABEL_TO_TRAIN = np.full(256, IGNORE_ID, np.uint8)
for _label in CITYSCAPES_LABELS:
    CITYSCAPES_LABEL_TO_TRAIN[_label.label_id] = _label.train_id
# Train id -> label id (uint8[256]); 255 -> 0 ("unlabeled"). Used to write labelIds PNGs.
CITYSCAPES_TRAIN_TO_LABEL = np.zeros(256, np.uint8)
for _label in CITYSCAPES_LABELS:
    if _label.train_id != IGNORE_ID:
        CITYSCAPES_TRAIN_TO_LABEL[_label.train_id] = _label.label_id
del _label

# Colours of every label id ([34, 3] uint8), for visualising labelIds maps.
CITYSCAPES_LABEL_PALETTE = np.array([l.color for l in CITYSCAPES_LABELS], np.uint8)


def cityscapes_label_id(name: str) -> int:
    """Label id of a Cityscapes class name ("car" -> 26). ValueError for unknown names."""
    if name not in CITYSCAPES_LABEL_BY_NAME:
        raise ValueError(f"unknown Cityscapes class {name!r}; known: "
                         f"{sorted(CITYSCAPES_LABEL_BY_NAME)}")
    return CITYSCAPES_LABEL_BY_NAME[name].label_id


def cityscapes_train_id(name: str) -> int:
    """Train id of a Cityscapes class name ("car" -> 13; 255 for non-evaluated classes)."""
    return CITYSCAPES_LABEL_BY_ID[cityscapes_label_id(name)].train_id


def _check_in_table(ids: np.ndarray, valid: np.ndarray, name: str, what: str, fix: str):
    """Raises BadInputError naming `name` when `ids` holds values not flagged in `valid`."""
    ids = np.asarray(ids)
    if ids.size == 0:
        return
    if ids.min() < 0 or ids.max() >= valid.shape[0]:
        bad = np.unique(ids[(ids < 0) | (ids >= valid.shape[0])])
    else:
        bad = np.unique(ids[~valid[ids]])
    if bad.size:
        raise BadInputError(f"{name}: {what} {bad[:10].tolist()} are not in the table. {fix}")


_LABEL_ID_VALID = np.zeros(256, bool)
_LABEL_ID_VALID[[l.label_id for l in CITYSCAPES_LABELS]] = True


def label_ids_to_train_ids(label_ids: np.ndarray, name: str = "<labels>") -> np.ndarray:
    """Maps Cityscapes label ids to train ids (uint8, 255 = ignore).

    Args:
      label_ids: integer array of any shape, e.g. `[H, W]` from a `*_labelIds.png`.
      name: the file or record the ids came from (used in the error message).
    Returns:
      uint8 array of the same shape.
    Raises:
      BadInputError: some ids are not Cityscapes label ids (e.g. the file holds train ids or
        colours, or is from another dataset).
    """
    label_ids = np.asarray(label_ids)
    _check_in_table(label_ids, _LABEL_ID_VALID, name, "label ids",
                    "Expected Cityscapes label ids 0..33 (a *_gtFine_labelIds.png); check that "
                    "the file is not a colour or train-id image.")
    return CITYSCAPES_LABEL_TO_TRAIN[label_ids]


def check_train_ids(semantic: np.ndarray, name: str = "<mask>") -> np.ndarray:
    """Validates a train-id mask and returns it as uint8 `[H, W]`.

    Raises:
      BadInputError naming `name` for a wrong shape or values that are not Cityscapes
        train ids (0..18, 255), e.g. a label-id PNG read as train ids.
    """
    semantic = np.asarray(semantic)
    if semantic.ndim == 3 and semantic.shape[-1] == 1:
        semantic = semantic[..., 0]
    if semantic.ndim != 2:
        raise BadInputError(f"{name}: a semantic mask must be [H, W], got shape "
                                     f"{semantic.shape}.")
    if semantic.size and (semantic.max() > 255 or semantic.min() < 0):
        raise BadInputError(f"{name}: semantic ids outside 0..255.")
    semantic = semantic.astype(np.uint8)
    bad = (semantic >= CITYSCAPES_NUM_CLASSES) & (semantic != IGNORE_ID)
    if bad.any():
        raise BadInputError(
            f"{name}: values {np.unique(semantic[bad])[:10].tolist()} are not Cityscapes train "
            "ids (0..18, 255 = ignore). If the masks hold label ids (e.g. *_labelIds.png), "
            "convert them with label_ids_to_train_ids (tools: --mask_ids=label).")
    return semantic


def instance_ids_to_label_ids(instance_ids: np.ndarray) -> np.ndarray:
    """Label ids of a Cityscapes instanceIds map (ids >= 1000 are label_id * 1000 + k)."""
    instance_ids = np.asarray(instance_ids)
    return np.where(instance_ids >= INSTANCE_ID_DIVISOR, instance_ids // INSTANCE_ID_DIVISOR,
                    instance_ids).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# CamVid, 11 classes (SegNet / Hoyer et al. version); 11 = void.
# --------------------------------------------------------------------------------------------
CAMVID_CLASS_NAMES: Tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist")
CAMVID_NUM_CLASSES = len(CAMVID_CLASS_NAMES)  # 11
CAMVID_VOID_ID = 11  # the SegNet label PNGs mark unlabelled pixels with 11
# Colours of the 11 classes then void ([12, 3] uint8), the SegNet CamVid convention.
CAMVID_PALETTE = np.array([
    (128, 128, 128),  # Sky
    (128, 0, 0),  # Building
    (192, 192, 128),  # Pole
    (128, 64, 128),  # Road
    (60, 40, 222),  # Pavement
    (128, 128, 0),  # Tree
    (192, 128, 128),  # SignSymbol
    (64, 64, 128),  # Fence
    (64, 0, 128),  # Car
    (64, 64, 0),  # Pedestrian
    (0, 128, 192),  # Bicyclist
    (0, 0, 0),  # void
], np.uint8)

# Cityscapes train id -> CamVid class (uint8[256]); IGNORE_ID -> void. Grouping follows CamVid's
# own merge of its 32 classes: Building includes walls, Tree includes low vegetation (terrain),
# SignSymbol includes traffic lights, Car includes trucks/buses/trains, Bicyclist includes
# riders and motorcycles.
_CITYSCAPES_TO_CAMVID_BY_NAME = {
    "road": "Road", "sidewalk": "Pavement", "building": "Building", "wall": "Building",
    "fence": "Fence", "pole": "Pole", "traffic light": "SignSymbol",
    "traffic sign": "SignSymbol", "vegetation": "Tree", "terrain": "Tree", "sky": "Sky",
    "person": "Pedestrian", "rider": "Bicyclist", "car": "Car", "truck": "Car", "bus": "Car",
    "train": "Car", "motorcycle": "Bicyclist", "bicycle": "Bicyclist",
}
CITYSCAPES_TRAIN_TO_CAMVID = np.full(256, CAMVID_VOID_ID, np.uint8)
for _name, _camvid in _CITYSCAPES_TO_CAMVID_BY_NAME.items():
    CITYSCAPES_TRAIN_TO_CAMVID[cityscapes_train_id(_name)] = CAMVID_CLASS_NAMES.index(_camvid)
del _name, _camvid

_CITYSCAPES_TRAIN_VALID = np.zeros(256, bool)
_CITYSCAPES_TRAIN_VALID[:CITYSCAPES_NUM_CLASSES] = True
_CITYSCAPES_TRAIN_VALID[IGNORE_ID] = True


def train_ids_to_camvid(train_ids: np.ndarray, name: str = "<train ids>") -> np.ndarray:
    """Maps Cityscapes train ids (0..18, 255) to CamVid classes (0..10, 11 = void), uint8.

    Raises:
      BadInputError naming `name` for values that are not Cityscapes train ids.
    """
    train_ids = np.asarray(train_ids)
    _check_in_table(train_ids, _CITYSCAPES_TRAIN_VALID, name, "train ids",
                    "Expected Cityscapes train ids 0..18 or 255.")
    return CITYSCAPES_TRAIN_TO_CAMVID[train_ids]


def colorize(ids: np.ndarray, palette: np.ndarray, ignore_color=(0, 0, 0)) -> np.ndarray:
    """Class ids `[H, W]` -> uint8 RGB `[H, W, 3]`; ids beyond the palette get `ignore_color`."""
    ids = np.asarray(ids).astype(np.int64)
    table = np.zeros((256, 3), np.uint8)
    table[:] = ignore_color
    table[:len(palette)] = palette
    return table[np.clip(ids, 0, 255)] if ids.size else np.zeros(ids.shape + (3,), np.uint8)


def colors_to_ids(rgb: np.ndarray, palette: np.ndarray, name: str = "<colour labels>",
                  ids: Sequence[int] | None = None) -> np.ndarray:
    """Colour-coded label image `[H, W, 3]` -> uint8 ids `[H, W]` (exact colour match).

    Args:
      rgb: uint8 `[H, W, 3]`.
      palette: `[N, 3]` colours; colour `palette[i]` maps to `ids[i]` (default `i`). When two
        entries share a colour, the first wins.
      name: file or record name for the error message.
      ids: optional id of each palette entry.
    Raises:
      BadInputError naming `name` when a pixel has a colour that is not in the palette (the
        file uses another dataset's colours, or was saved lossily, e.g. as JPEG).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise BadInputError(f"{name}: colour labels must be [H, W, 3], got {rgb.shape}.")
    palette = np.asarray(palette, np.int64)
    ids = np.arange(len(palette)) if ids is None else np.asarray(ids)
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    # Reverse so the first palette entry of a duplicated colour is the one kept.
    table = dict(zip(keys[::-1].tolist(), ids[::-1].tolist()))
    unique, inverse = np.unique(packed, return_inverse=True)
    unknown = [u for u in unique.tolist() if u not in table]
    if unknown:
        colours = [((u >> 16) & 255, (u >> 8) & 255, u & 255) for u in unknown[:5]]
        raise BadInputError(f"{name}: colours {colours} are not in the label palette; the file "
                            "is from another dataset or was saved lossily (use the PNG labels).")
    return np.array([table[u] for u in unique.tolist()], np.uint8)[inverse].reshape(rgb.shape[:2])
