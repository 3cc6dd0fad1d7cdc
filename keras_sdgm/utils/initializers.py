import keras
import numpy as np


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


def decay_for_time_scales(time_scales):
    """The decay weights `rho` whose time scales `1 / softplus(rho)` are
    `time_scales` (in positions): `r = exp(-softplus(rho))` shrinks a
    state by `1/e` over each time scale."""
    return np.log(np.expm1(1.0 / np.asarray(time_scales, "float64")))
