"""Mean teacher: an exponential moving average of the student, and its pseudo-labels.

Update (reference `train.py`, `update_ema_variables`, called after every optimizer step with
its 1-based iteration counter and `alpha_teacher=0.99`):

    alpha = min(1 - 1 / (step + 1), 0.99)
    teacher = alpha * teacher + (1 - alpha) * student

At step 0 alpha is 0 (the teacher becomes the student); the reference's first call has step 1
(alpha 0.5), which is what the training engine passes to `Task.after_apply` (the number of
applied updates, 1 after the first), so wiring `update_teacher(pairs, step)` there matches it.
The early steps give the true running mean of the students so far ("use the true average until
the exponential average is more correct").

Which variables: the reference averages `model.parameters()` only - in PyTorch the trainable
weights including the batch-norm scale and offset, but *not* the batch-norm running statistics
(buffers) - and runs the teacher in training mode (`self.ema_model.train()`), so the teacher's
batch norm normalises with the statistics of the batch it labels and its moving statistics are
never used. `teacher_variable_pairs` follows it by default (trainable variables only); pass
`include_moving_statistics=True` for a teacher run in inference mode, whose moving statistics
must then follow the student's (non-trainable variables are averaged too).

Pseudo-labels (reference `calc_pseudo_label_loss`): label = argmax of the teacher's
probabilities; pixels whose maximum probability is 0 (a mixed-in ignored pixel of one-hot
ground truth) get the ignore label; the unlabelled loss is weighted by the fraction of pixels
whose maximum probability is >= 0.968, counted over the whole batch (one weight per batch, the
reference's `torch.sum(max_probs.ge(0.968)) / np.prod(pseudo_label.shape)`; ignored pixels count
as not confident). `confidence_weight(..., per_image=True)` gives one weight per image instead.

All functions run eagerly and inside a `tf.function` (also under XLA); `update_teacher`
belongs in the cross-replica part of a distributed step (`Task.after_apply`), where assigning a
mirrored variable updates every replica.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import tensorflow as tf

from tf_depthseg import common
from tf_depthseg.semisup import mix as mix_lib

MAX_ALPHA = 0.99  # train.py: alpha_teacher=0.99
CONFIDENCE_THRESHOLD = 0.968  # train.py: calc_pseudo_label_loss

VariablePairs = List[Tuple[tf.Variable, tf.Variable]]


def ema_alpha(step, max_alpha: float = MAX_ALPHA) -> tf.Tensor:
    """float32 `[]`: `min(1 - 1 / (step + 1), max_alpha)` for an int or tensor `step` >= 0."""
    step = tf.cast(step, tf.float32)
    return tf.minimum(1.0 - 1.0 / (step + 1.0), tf.constant(max_alpha, tf.float32))


def _variables(model, include_moving_statistics: bool) -> list:
    return list(model.variables if include_moving_statistics else model.trainable_variables)


def teacher_variable_pairs(student, teacher,
                           include_moving_statistics: bool = False) -> VariablePairs:
    """(teacher variable, student variable) pairs of two models of the same architecture.

    Variables pair up in the models' variable order (the same builder creates both); the
    shapes and dtypes must agree.

    Args:
      student, teacher: Keras models (or anything with `trainable_variables`/`variables`).
      include_moving_statistics: also pair the non-trainable variables (batch-norm moving
        mean and variance); see the module doc for when.
    Raises:
      ValueError: when the two models' variables differ in number, shape or dtype.
    """
    students = _variables(student, include_moving_statistics)
    teachers = _variables(teacher, include_moving_statistics)
    if len(students) != len(teachers):
        raise ValueError(f"teacher has {len(teachers)} variables, the student {len(students)}: "
                         "build both with the same architecture")
    for t, s in zip(teachers, students):
        if tuple(t.shape) != tuple(s.shape) or t.dtype != s.dtype:
            raise ValueError(f"teacher variable {_name(t)} {tuple(t.shape)} {t.dtype} does not "
                             f"match student variable {_name(s)} {tuple(s.shape)} {s.dtype}")
    return list(zip(teachers, students))


def _name(variable) -> str:
    return getattr(variable, "path", None) or variable.name


def copy_to_teacher(pairs: Sequence[Tuple[tf.Variable, tf.Variable]]) -> None:
    """Teacher = student (the reference's `create_ema_model`), e.g. before the first step."""
    for teacher, student in pairs:
        teacher.assign(student)


def update_teacher(pairs: Sequence[Tuple[tf.Variable, tf.Variable]], step,
                   max_alpha: float = MAX_ALPHA) -> tf.Tensor:
    """One EMA update of every teacher variable; returns the alpha used (float32 `[]`).

    Args:
      pairs: from `teacher_variable_pairs`.
      step: int or int tensor, the number of applied optimizer updates (see module doc).
      max_alpha: the alpha cap (0.99).
    """
    alpha = ema_alpha(step, max_alpha)
    for teacher, student in pairs:
        a = tf.cast(alpha, teacher.dtype)
        teacher.assign(a * teacher + (1 - a) * tf.cast(student, teacher.dtype))
    return alpha


def soft_targets(teacher_probs: tf.Tensor, labels: tf.Tensor,
                 is_labelled: tf.Tensor) -> tf.Tensor:
    """What gets mixed as the label of each image: one-hot ground truth for labelled images,
    the teacher's probabilities for the others (the reference's `mix_use_gt`, used by its
    DepthMix runs, whose mixing batch holds labelled and unlabelled images).

    Args:
      teacher_probs: float `[B, H, W, C]`.
      labels: integer `[B, H, W]` or `[B, H, W, 1]` ground truth (any value where unlabelled;
        the ignore label becomes an all-zero vector, see `mix.one_hot_labels`).
      is_labelled: bool `[B]`.
    Returns:
      float32 `[B, H, W, C]`.
    """
    teacher_probs = tf.cast(teacher_probs, tf.float32)
    one_hot = mix_lib.one_hot_labels(labels, teacher_probs.shape[-1])
    is_labelled = tf.reshape(tf.cast(is_labelled, tf.bool), [-1, 1, 1, 1])
    return tf.where(is_labelled, one_hot, teacher_probs)


def pseudo_labels(teacher_probs: tf.Tensor,
                  ignore_label: int = common.IGNORE_LABEL) -> Tuple[tf.Tensor, tf.Tensor]:
    """Hard pseudo-labels from teacher probabilities.

    Args:
      teacher_probs: float `[B, H, W, C]` (softmax of the teacher's logits, possibly mixed with
        one-hot ground truth, whose ignored pixels are all-zero vectors).
    Returns:
      (labels int32 `[B, H, W]`: the argmax, `ignore_label` where the maximum is 0;
       max_prob float32 `[B, H, W]`).
    """
    teacher_probs = tf.cast(teacher_probs, tf.float32)
    max_prob = tf.reduce_max(teacher_probs, axis=-1)
    labels = tf.argmax(teacher_probs, axis=-1, output_type=tf.int32)
    return tf.where(max_prob > 0, labels, ignore_label), max_prob


def confidence_weight(max_prob: tf.Tensor, threshold: float = CONFIDENCE_THRESHOLD,
                      per_image: bool = False) -> tf.Tensor:
    """Fraction of pixels whose maximum teacher probability is >= `threshold`.

    Args:
      max_prob: float `[B, H, W]` (from `pseudo_labels`).
      per_image: False (the reference): one float32 `[]` over the whole batch; True: `[B]`.
    """
    confident = tf.cast(tf.cast(max_prob, tf.float32) >= threshold, tf.float32)
    if per_image:
        return tf.reduce_mean(confident, axis=[1, 2])
    return tf.reduce_mean(confident)
