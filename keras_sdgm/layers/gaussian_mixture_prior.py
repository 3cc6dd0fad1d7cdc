import math

import keras
import numpy as np
from keras import ops

from keras_sdgm.utils.config_keys import renamed_config
from keras_sdgm.utils.validation import require_positive_int


@keras.saving.register_keras_serializable(package="keras_sdgm")
class GaussianMixturePrior(keras.layers.Layer):
    """A diagonal-covariance Gaussian mixture over coefficient vectors.

    `p(c) = sum_m pi_m prod_k N(c_k; mu[m, k], sigma[m, k]^2)` with mixture
    weights `pi = softmax(mixture_logits)`. The means, log standard
    deviations and mixture logits are ordinary weights: trained by the
    prior loss term, or set from a fitted
    `sklearn.mixture.GaussianMixture` with `set_from_sklearn()`, and in
    either case saved with the model.

    Called on `c` of shape `(..., num_features)` the layer returns
    `log p(c)` of shape `(...,)`, computed in float32 whatever the dtype
    policy.

    Args:
        num_mixture_components: int. Number of mixture components `M`.
        min_scale: float. Floor on every standard deviation, which keeps
            the density bounded when a component collapses onto a point.
        **kwargs: other `keras.layers.Layer` arguments.

    Example:
    >>> prior = GaussianMixturePrior(num_mixture_components=4)
    >>> c = keras.random.normal((2, 10, 8))
    >>> prior(c).shape  # log-density of each coefficient vector
    (2, 10)
    >>> from sklearn.mixture import GaussianMixture
    >>> gmm = GaussianMixture(4, covariance_type="diag").fit(
    ...     np.random.randn(500, 8))
    >>> prior.set_from_sklearn(gmm)
    """

    def __init__(self, num_mixture_components, min_scale=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.num_mixture_components = require_positive_int(
            "num_mixture_components", num_mixture_components
        )
        if not min_scale > 0:
            raise ValueError(
                f"`min_scale` must be positive. Received: min_scale={min_scale}"
            )
        self.min_scale = float(min_scale)

    def build(self, inputs_shape):
        num_features = inputs_shape[-1]
        self.means = self.add_weight(
            name="means",
            shape=(self.num_mixture_components, num_features),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
        )
        self.log_scales = self.add_weight(
            name="log_scales",
            shape=(self.num_mixture_components, num_features),
            initializer="zeros",
        )
        self.mixture_logits = self.add_weight(
            name="mixture_logits",
            shape=(self.num_mixture_components,),
            initializer="zeros",
        )

    def call(self, inputs):
        return self.log_prob(inputs)

    def _scales(self):
        return ops.exp(ops.cast(self.log_scales, "float32")) + self.min_scale

    def _log_weights(self):
        return ops.log_softmax(ops.cast(self.mixture_logits, "float32"))

    def _component_log_prob(self, inputs):
        """`log N(inputs; mean_m, scale_m)` per component, `(..., M)`."""
        x = ops.cast(inputs, "float32")[..., None, :]
        means = ops.cast(self.means, "float32")
        log_scales = ops.log(self._scales())
        z = (x - means) * ops.exp(-log_scales)
        return ops.sum(
            -0.5 * ops.square(z) - log_scales - 0.5 * math.log(2 * math.pi),
            axis=-1,
        )

    def log_prob(self, inputs):
        """`log p(inputs)` over the last axis, as float32."""
        return ops.logsumexp(
            self._component_log_prob(inputs) + self._log_weights(), axis=-1
        )

    def sample(self, gumbel_noise, normal_noise, given=None):
        """Draws from the mixture, or from the component responsible for `given`.

        The noise is an argument, so that a compiled loop can draw it once
        for every step. The component is picked by the Gumbel-max trick:
        `argmax(log_weight_m + gumbel_noise_m)` samples `m` from the mixture
        weights, or, with `given`, from the responsibilities
        `p(m | given)`. The draw is `mean_m + scale_m * normal_noise`.

        Args:
            gumbel_noise: float tensor `(..., num_mixture_components)` of standard
                Gumbel noise (`-log(-log(u))`, `u ~ U(0, 1)`).
            normal_noise: float tensor `(..., num_features)` of standard
                normal noise.
            given: `None` (the prior), or a tensor `(..., num_features)`
                whose responsibilities pick the component (the posterior
                over components).

        Returns:
            float32 tensor `(..., num_features)`.
        """
        logits = self._log_weights()
        if given is not None:
            logits = logits + self._component_log_prob(given)
        component = ops.argmax(
            logits + ops.cast(gumbel_noise, "float32"), axis=-1
        )
        means = ops.take(ops.cast(self.means, "float32"), component, axis=0)
        scales = ops.take(self._scales(), component, axis=0)
        return means + scales * ops.cast(normal_noise, "float32")

    def set_from_sklearn(self, mixture):
        """Copies a fitted `sklearn.mixture.GaussianMixture` into the weights.

        Args:
            mixture: a fitted `GaussianMixture` with `covariance_type`
                `"diag"` or `"spherical"`, `num_mixture_components` components and
                as many features as this layer's input.
        """
        if not hasattr(mixture, "means_"):
            raise ValueError(
                "The GaussianMixture is not fitted: call `fit()` on it first."
            )
        if mixture.covariance_type not in ("diag", "spherical"):
            raise ValueError(
                "GaussianMixturePrior holds diagonal covariances only; fit "
                "the mixture with covariance_type='diag' or 'spherical'. "
                f"Received: covariance_type={mixture.covariance_type!r}"
            )
        if not self.built:
            self.build((None, mixture.means_.shape[1]))
        expected = tuple(self.means.shape)
        if mixture.means_.shape != expected:
            raise ValueError(
                "The fitted mixture does not match this prior: its means "
                f"have shape {mixture.means_.shape}, expected {expected} "
                "(num_mixture_components, num_features)."
            )
        variances = np.asarray(mixture.covariances_, dtype="float64")
        if mixture.covariance_type == "spherical":
            variances = np.repeat(variances[:, None], expected[1], axis=1)
        scales = np.sqrt(variances)
        # Invert the `+ min_scale` floor applied in `log_prob`.
        scales = np.maximum(scales - self.min_scale, 1e-12)
        self.means.assign(mixture.means_.astype("float32"))
        self.log_scales.assign(np.log(scales).astype("float32"))
        self.mixture_logits.assign(
            np.log(np.maximum(mixture.weights_, 1e-12)).astype("float32")
        )

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_mixture_components": self.num_mixture_components,
                "min_scale": self.min_scale,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        return super().from_config(
            renamed_config(config, {"num_components": "num_mixture_components"})
        )
