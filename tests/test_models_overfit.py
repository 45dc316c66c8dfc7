"""Each network overfits one small synthetic batch: its supervised loss drops by at least 10x.

Init and data seeds are offset by `learning_seed`; docs/testing.md has the measured spread of
the loss ratios (scripts/measure_test_spread.py).
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.losses import depth as depth_losses
from tf_depthseg.models import hourglass, pose, suw

NUM_BINS, MIN_DEPTH, MAX_DEPTH = 16, 1.0, 80.0


def _scene(batch, height, width, seed=0):
    """Road-like depth (far at the top), a near box, and an image that shows both."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None] * np.ones((1, width))
    depth = np.stack([4.0 + 50.0 * (1.0 - rows) ** 2 * (1 + 0.3 * i) for i in range(batch)])
    depth[:, height // 3:height // 2, width // 4:width // 2] = 3.0
    depth = depth[..., None].astype(np.float32)
    image = np.concatenate([np.log(depth) / 4.0, np.cos(depth / 5.0),
                            rng.uniform(size=depth.shape)], axis=-1).astype(np.float32)
    return image, depth


@contextlib.contextmanager
def _without_graph_rewrites():
    """Skips Grappler while these one-off graphs are built: its passes cost several times more
    than the 100-step runs they would speed up. Restores the previous settings."""
    previous = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": previous.get("disable_meta_optimizer", False)})


def _overfit(model, inputs, loss_fn, steps, learning_rate):
    """Adam on one batch in a tf.function; returns the first loss and the mean of the last 5.

    `loss_fn` may return several losses (a vector): their sum is minimised, and each is
    reported.

    One fused ResourceApplyAdam op per variable keeps tracing cheap (a Keras optimizer traces
    ~10 ops per variable, which triples this test's compile time on CPU).
    """
    variables = model.trainable_variables
    first_moments = [tf.Variable(tf.zeros(v.shape)) for v in variables]
    second_moments = [tf.Variable(tf.zeros(v.shape)) for v in variables]
    step_count = tf.Variable(0.0)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(model(inputs, training=True))
            total = tf.reduce_sum(loss)
        gradients = tape.gradient(total, variables)
        step_count.assign_add(1.0)
        for variable, m, v, gradient in zip(variables, first_moments, second_moments,
                                            gradients):
            tf.raw_ops.ResourceApplyAdam(
                var=variable.value.handle, m=m.handle, v=v.handle,
                beta1_power=tf.pow(0.9, step_count), beta2_power=tf.pow(0.999, step_count),
                lr=learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-7, grad=gradient)
        return loss

    with _without_graph_rewrites():
        losses = np.array([train_step().numpy() for _ in range(steps)])
    return losses[0], losses[-5:].mean(axis=0)


def test_suw_encoder_decoder_overfits_with_soft_classification(learning_seed, record_measure):
    keras.utils.set_random_seed(learning_seed)
    model = suw.build_suw_encoder_decoder(num_bins=NUM_BINS, min_depth=MIN_DEPTH,
                                          max_depth=MAX_DEPTH, sam_dilations=(1, 2, 2))
    image, depth = _scene(2, 32, 64, seed=learning_seed)
    target = depth_losses.downsample_sparse_depth(depth, suw.OUTPUT_STRIDE)

    def loss_fn(outputs):
        # KL form of the soft cross-entropy: same gradient, 0 at a perfect fit.
        return depth_losses.soft_classification_loss(
            outputs[common.OUT_DEPTH_BIN_LOGITS], target, NUM_BINS, MIN_DEPTH, MAX_DEPTH,
            kl=True)

    first, last = _overfit(model, image, loss_fn, steps=80, learning_rate=1e-2)
    record_measure("last/first loss", last / first, below=0.1)
    assert last < first / 10, (first, last)


def test_hourglass_overfits_with_l1_log_loss(learning_seed, record_measure):
    keras.utils.set_random_seed(1 + learning_seed)
    model = hourglass.build_hourglass(head="log_depth")
    image, depth = _scene(2, 16, 32, seed=1 + learning_seed)
    first, last = _overfit(model, image,
                           lambda out: depth_losses.l1_log_loss(out[common.OUT_DEPTH], depth),
                           steps=50, learning_rate=1e-3)
    record_measure("last/first loss", last / first, below=0.1)
    assert last < first / 10, (first, last)


def test_pose_and_object_motion_nets_overfit_known_motions_together(learning_seed,
                                                                   record_measure):
    """Both nets train at once through their shared encoder, as in SUW training."""
    keras.utils.set_random_seed(2 + learning_seed)
    depth_model = suw.build_suw_encoder_decoder(num_bins=NUM_BINS)
    pose_net = pose.build_pose_net(depth_model, num_sources=2)
    motion_net = pose.build_object_motion_net(depth_model, num_sources=2)
    rng = np.random.default_rng(2 + learning_seed)
    # Samples that differ globally (a pooled pose net cannot tell iid noise images apart).
    frames = np.concatenate([_scene(2, 16, 32, seed=learning_seed + seed)[0]
                             for seed in range(3)], axis=-1)
    frames += np.array([0.0, 0.5], np.float32)[:, None, None, None]
    masks = np.zeros((2, 16, 32, 3), np.float32)
    masks[:, 2:14, 4:28] = 1.0
    masked = pose.mask_frames(frames, masks)
    # Frame-to-frame magnitudes: rotations of ~0.01 rad, translations of ~0.1 m (up to scale).
    def motions():
        return np.concatenate([rng.uniform(-0.01, 0.01, (2, 2, 3)),
                               rng.uniform(-0.1, 0.1, (2, 2, 3))], -1).astype(np.float32)
    pose_target, motion_target = motions(), motions()

    pose_ids = {id(v) for v in pose_net.trainable_variables}

    class Both:
        """Both nets as one callable with one (deduplicated) variable list."""
        trainable_variables = pose_net.trainable_variables + [
            v for v in motion_net.trainable_variables if id(v) not in pose_ids]

        def __call__(self, _, training):
            return (pose_net(frames, training=training)[common.OUT_POSE],
                    motion_net(masked, training=training)[common.OUT_OBJECT_MOTION])

    def loss_fn(outputs):
        return tf.stack([tf.reduce_mean(tf.square(outputs[0] - pose_target)),
                         tf.reduce_mean(tf.square(outputs[1] - motion_target))])

    first, last = _overfit(Both(), frames, loss_fn, steps=200, learning_rate=1e-2)
    record_measure("last/first pose loss", last[0] / first[0], below=0.1)
    record_measure("last/first object-motion loss", last[1] / first[1], below=0.1)
    assert np.all(last < first / 10), (first, last)
