"""Knowledge-distillation loss (Hinton et al. 2015, "Distilling the Knowledge in a Neural Network").

loss = alpha * CE(hard labels, smoothed) + (1 - alpha) * T^2 * KL(teacher_T || student_T)

The T^2 factor keeps the soft term's gradient scale independent of the
temperature, so alpha means the same thing at any T. Teachers use the same
function with alpha = 1 (hard labels only).
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax


def distillation_loss(logits, hard_labels, soft_targets, *, alpha: float, temperature: float, label_smoothing: float = 0.0):
    """Mean loss over the batch.

    ``logits`` (B, C) student logits; ``hard_labels`` (B,) int class indices;
    ``soft_targets`` (B, C) teacher probabilities already at temperature T
    (ignored when alpha == 1).
    """
    import tensorflow as tf

    logits = tf.cast(logits, tf.float32)
    num_classes = tf.shape(logits)[-1]
    onehot = tf.one_hot(tf.cast(hard_labels, tf.int32), num_classes)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / tf.cast(num_classes, tf.float32)
    hard = -tf.reduce_sum(onehot * tf.nn.log_softmax(logits), axis=-1)
    if alpha >= 1.0:
        return tf.reduce_mean(hard)
    soft_targets = tf.cast(soft_targets, tf.float32)
    log_student = tf.nn.log_softmax(logits / temperature)
    safe_targets = tf.where(soft_targets > 0, soft_targets, tf.ones_like(soft_targets))
    kl = tf.reduce_sum(soft_targets * (tf.math.log(safe_targets) - log_student), axis=-1)
    return tf.reduce_mean(alpha * hard + (1.0 - alpha) * temperature**2 * kl)


def distillation_loss_numpy(logits, hard_labels, soft_targets, *, alpha, temperature, label_smoothing=0.0) -> float:
    """Reference implementation for tests."""
    logits = np.asarray(logits, np.float64)
    c = logits.shape[1]
    onehot = np.eye(c)[np.asarray(hard_labels)] * (1 - label_smoothing) + label_smoothing / c
    hard = -(onehot * log_softmax(logits, axis=1)).sum(axis=1)
    if alpha >= 1.0:
        return float(hard.mean())
    p = np.asarray(soft_targets, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - log_softmax(logits / temperature, axis=1)), 0.0).sum(axis=1)
    return float((alpha * hard + (1 - alpha) * temperature**2 * kl).mean())
