import keras


def clone_initializer(initializer):
    """A fresh copy of `initializer`, for one weight.

    A Keras 3 initializer without a seed fixes one at construction, so every
    weight it initializes draws the same values. Each weight gets its own
    copy instead (keras-hub does the same). A string or dict is returned as
    is: Keras builds a new instance from it for every weight. An initializer
    with an explicit seed still draws that seed's values in every copy.

    Args:
        initializer: a `keras.initializers.Initializer`, a string or a dict.
    """
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer
    return initializer.__class__.from_config(initializer.get_config())
