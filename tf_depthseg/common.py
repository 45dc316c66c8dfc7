"""Every string key used across tf_depthseg, defined once.

Three families:

* TFRecord feature keys (the on-disk schema, see `tf_depthseg/data/schema.py`),
* batch keys (what the tf.data pipelines yield, what losses and tasks read),
* model output keys (what every Keras model returns in its output dict).

Keeping them here means a converter, a reader, a loss and an exporter can never disagree on a
spelling. Import the module, not the names: `from tf_depthseg import common; common.DEPTH`.
"""

# --------------------------------------------------------------------------------------------
# TFRecord features: one tf.train.Example per target frame (deeplab2 / Model Garden tradition).
# --------------------------------------------------------------------------------------------
SCHEMA_VERSION = 1

KEY_IMAGE_ENCODED = "image/encoded"  # bytes: target frame, PNG or JPEG
KEY_IMAGE_FORMAT = "image/format"  # bytes: b"png" | b"jpeg"
KEY_IMAGE_HEIGHT = "image/height"  # int64
KEY_IMAGE_WIDTH = "image/width"  # int64
KEY_CONTEXT_ENCODED = "image/context/encoded"  # bytes list: neighbours in order (t-1, t+1)
KEY_INTRINSICS = "camera/intrinsics"  # float[9], row-major K for the stored size
KEY_POSES = "camera/poses"  # float[16*n]: world_from_camera of target then each context frame
KEY_DEPTH_ENCODED = "depth/encoded"  # bytes: uint16 PNG, metres*256, 0 = invalid
KEY_SEG_CLASS_ENCODED = "segmentation/class/encoded"  # bytes: uint8 PNG train ids, 255 = ignore
KEY_SEG_INSTANCE_ENCODED = "segmentation/instance/encoded"  # bytes list: uint16 PNG per frame
KEY_DEPTH_PSEUDO_ENCODED = "depth/pseudo/encoded"  # bytes: uint16 PNG disparity from an SDE
KEY_WEAK_PAIRS = "weak/pairs"  # float list: rows (y_a, x_a, y_b, x_b, half_size, relation)
KEY_SOURCE_ID = "image/source_id"  # bytes: stable sample id

# Encoding constants of the schema.
DEPTH_PNG_SCALE = 256.0  # KITTI depth benchmark: uint16 value = metres * 256, 0 = invalid
PSEUDO_DISPARITY_PNG_SCALE = 65535.0  # normalised disparity in [0, 1] stored as uint16
IGNORE_LABEL = 255  # train id meaning "not labelled"
WEAK_PAIR_FIELDS = 6  # (y_a, x_a, y_b, x_b, half_size, relation)
# Weak pair relation r: +1 A farther than B, -1 A closer than B, 0 equal depth.
RELATION_FARTHER = 1.0
RELATION_CLOSER = -1.0
RELATION_EQUAL = 0.0

# --------------------------------------------------------------------------------------------
# Batch keys: what parse/augment pipelines yield (shapes without the batch dimension).
# --------------------------------------------------------------------------------------------
IMAGE = "image"  # float32 [H, W, 3] in [0, 1]
CONTEXT = "context"  # float32 [N, H, W, 3] in [0, 1], neighbours in record order
INTRINSICS = "intrinsics"  # float32 [3, 3]
POSES = "poses"  # float32 [N+1, 4, 4] world_from_camera (target first)
HAS_POSES = "has_poses"  # bool []: the record carried poses
DEPTH = "depth"  # float32 [H, W, 1] metres, 0 = invalid
SEMANTIC = "semantic"  # int32 [H, W, 1] train ids, IGNORE_LABEL = unlabelled
INSTANCES = "instances"  # int32 [N+1, H, W] instance ids (target first), 0 = none
PSEUDO_DISPARITY = "pseudo_disparity"  # float32 [H, W, 1] normalised disparity in [0, 1]
WEAK_PAIRS = "weak_pairs"  # float32 [P, 6] pairs in pixel coordinates of the batch image
NUM_WEAK_PAIRS = "num_weak_pairs"  # int32 []: valid rows of WEAK_PAIRS (the rest is padding)
SOURCE_ID = "source_id"  # string []

# --------------------------------------------------------------------------------------------
# Model outputs: every Keras model returns a dict with some of these keys.
# --------------------------------------------------------------------------------------------
OUT_DEPTH = "depth"  # [B, H, W, 1] metres, full input resolution
OUT_DEPTH_LOW = "depth_low"  # [B, H/4, W/4, 1] metres, the SUW head's native resolution
OUT_DEPTH_BIN_LOGITS = "depth_bin_logits"  # [B, h, w, num_bins]
OUT_DEPTH_BIN_PROBS = "depth_bin_probs"  # [B, h, w, num_bins], softmax of the logits
OUT_UNCERTAINTY = "uncertainty"  # [B, H, W, 1] std of the bin distribution in log10 depth
OUT_DISPARITY_PREFIX = "disparity_s"  # disparity_s0..s3: [B, H/2^s, W/2^s, 1], sigmoid output
OUT_POSE = "pose"  # [B, num_sources, 6]: axis-angle (3) then translation (3)
OUT_OBJECT_MOTION = "object_motion"  # [B, num_sources, 6] one object's motion per source frame
OUT_SEMANTIC_LOGITS = "semantic_logits"  # [B, H, W, num_classes]
OUT_SEMANTIC_SIDE_LOGITS = "semantic_side_logits"  # [B, H/4, W/4, num_classes]
OUT_FEATURES = "features"  # [B, h, w, C] pooled-able features (data selection diversity)
OUT_ENCODER_FEATURES = "encoder_features"  # [B, h, w, C] the backbone's deepest feature map


def disparity_key(scale: int) -> str:
    """Output key of the disparity at `scale` (0 = full resolution, s = 1/2^s)."""
    return f"{OUT_DISPARITY_PREFIX}{scale}"

# --------------------------------------------------------------------------------------------
# Loss terms (what `Task.compute_losses` returns; TensorBoard and history.json use them) and
# the roles of a task's models (the keys of `Task.build`'s dict, also used when restoring).
# --------------------------------------------------------------------------------------------
LOSS_TOTAL = "total"  # the entry the Trainer minimises
LOSS_SUPERVISED = "supervised"
LOSS_UNSUPERVISED = "unsupervised"  # view synthesis: photometric + smoothness
LOSS_PHOTOMETRIC = "photometric"
LOSS_SMOOTHNESS = "smoothness"
LOSS_WEAK = "weak"
AUTOMASK = "automask"  # [B, H, W, 1] auto-masking of the view-synthesis loss (pictures)

MODEL_DEPTH = "depth"
MODEL_POSE = "pose"
MODEL_OBJECT_MOTION = "object_motion"
