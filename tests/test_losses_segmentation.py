"""losses/segmentation.py against numpy: cross-entropy over labelled pixels, ignore 255."""

import numpy as np
import tensorflow as tf

from tf_depthseg.losses import segmentation


def numpy_cross_entropy(logits, labels, ignore=255):
    """Per-image mean of -log softmax(logits)[label] over pixels with label != ignore."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    out = []
    for image_log_probs, image_labels in zip(log_probs, labels):
        values = [-image_log_probs[y, x, image_labels[y, x]]
                  for y in range(image_labels.shape[0]) for x in range(image_labels.shape[1])
                  if image_labels[y, x] != ignore]
        out.append(np.mean(values) if values else 0.0)
    return np.array(out)


def test_cross_entropy_matches_numpy_with_ignored_pixels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 6, 4)).astype(np.float32) * 3.0
    labels = rng.integers(0, 4, size=(3, 5, 6)).astype(np.int32)
    labels[0, :2] = 255  # partly ignored
    labels[2] = 255  # an image without any labelled pixel
    labels[1, 4, 5] = 255
    got = segmentation.cross_entropy_with_ignore(logits, labels[..., None]).numpy()
    want = numpy_cross_entropy(logits, labels)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[2] == 0.0
    # [B, H, W] labels give the same; changing an ignored pixel's logits changes nothing.
    np.testing.assert_allclose(segmentation.cross_entropy_with_ignore(logits, labels).numpy(),
                               got)
    moved = logits.copy()
    moved[0, :2] += 100.0
    np.testing.assert_allclose(segmentation.cross_entropy_with_ignore(moved, labels).numpy(),
                               got, rtol=1e-6)


def test_ignored_pixels_get_no_gradient():
    rng = np.random.default_rng(1)
    logits = tf.Variable(rng.normal(size=(2, 3, 3, 5)).astype(np.float32))
    labels = np.full((2, 3, 3), 255, np.int32)
    labels[0, 1, 1] = 3
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(segmentation.cross_entropy_with_ignore(logits, labels))
    grad = tape.gradient(loss, logits).numpy()
    mask = np.zeros_like(grad, bool)
    mask[0, 1, 1] = True
    assert np.all(grad[~mask] == 0.0)
    # d CE / d logits = softmax - onehot at the one labelled pixel.
    row = logits.numpy()[0, 1, 1].astype(np.float64)
    softmax = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    np.testing.assert_allclose(grad[0, 1, 1], softmax - np.eye(5)[3], atol=1e-6)
