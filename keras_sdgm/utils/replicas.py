"""How many replicas share a training step, for dividing loss terms."""

import keras


def replica_count():
    """The replicas of the current `tf.distribute` strategy, else 1.

    Keras divides a compiled loss by this number under `tf.distribute` (the
    replicas' gradients are summed); loss terms added outside the compiled
    loss must be divided the same way. Other backends distribute without
    per-replica losses: 1.
    """
    if keras.config.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync
