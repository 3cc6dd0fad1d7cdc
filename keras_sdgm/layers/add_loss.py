import keras


@keras.saving.register_keras_serializable(package="keras_sdgm")
class AddLoss(keras.layers.Layer):
    """Records its input with `add_loss` and returns it unchanged.

    Keras's functional models cannot call `add_loss` themselves; a model
    that computes a loss tensor in its `call` hands it to this sublayer, and
    `model.losses` then lists it, under every backend's training step
    (including JAX's stateless one) and under `tf.distribute`.

    Call arguments:
        loss: a tensor.

    Example:
    >>> layer = AddLoss()
    >>> _ = layer(keras.ops.ones((3,)))
    >>> len(layer.losses)
    1
    """

    def call(self, loss):
        self.add_loss(loss)
        return loss

    def compute_output_shape(self, loss_shape):
        return loss_shape
