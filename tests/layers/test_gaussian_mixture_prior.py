import keras
import numpy as np
from keras import ops
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from keras_sdgm.layers import GaussianMixturePrior
from tests.testing import TestCase


class GaussianMixturePriorTest(TestCase):
    def test_config_of_the_older_key_loads(self):
        config = GaussianMixturePrior(num_mixture_components=3).get_config()
        config["num_components"] = config.pop("num_mixture_components")
        prior = GaussianMixturePrior.from_config(config)
        self.assertEqual(prior.num_mixture_components, 3)

    def test_layer_basics(self):
        self.run_layer_test(
            cls=GaussianMixturePrior,
            init_kwargs={"num_mixture_components": 3},
            input_data=keras.random.normal((2, 5, 4)),
            expected_output_shape=(2, 5),
            expected_num_trainable_weights=3,
            # The log-density is float32 under every policy, by design.
            run_precision_checks=False,
        )

    def test_log_prob_matches_scipy(self):
        prior = GaussianMixturePrior(num_mixture_components=2)
        prior.build((None, 3))
        rng = np.random.RandomState(0)
        means = rng.randn(2, 3).astype("float32")
        log_scales = (0.3 * rng.randn(2, 3)).astype("float32")
        logits = np.array([0.2, -0.5], "float32")
        prior.means.assign(means)
        prior.log_scales.assign(log_scales)
        prior.mixture_logits.assign(logits)
        x = rng.randn(7, 3).astype("float32")

        scales = np.exp(log_scales) + prior.min_scale
        weights = np.exp(logits) / np.exp(logits).sum()
        density = sum(
            weights[m] * np.prod(norm.pdf(x, means[m], scales[m]), axis=-1)
            for m in range(2)
        )
        self.assertAllClose(prior(x), np.log(density), atol=1e-5, rtol=1e-5)

    def test_set_from_sklearn_reproduces_its_density(self):
        rng = np.random.RandomState(1)
        data = np.concatenate(
            [rng.randn(300, 4) - 2, 0.5 * rng.randn(300, 4) + 2]
        )
        for covariance_type in ("diag", "spherical"):
            gmm = GaussianMixture(
                2, covariance_type=covariance_type, random_state=0
            ).fit(data)
            prior = GaussianMixturePrior(num_mixture_components=2)
            prior.set_from_sklearn(gmm)
            self.assertAllClose(
                prior(data.astype("float32")),
                gmm.score_samples(data),
                atol=1e-4,
                rtol=1e-4,
            )

    def test_float32_under_mixed_precision(self):
        prior = GaussianMixturePrior(2, dtype="mixed_bfloat16")
        out = prior(keras.random.normal((2, 3, 4)))
        self.assertDTypeEqual(out, "float32")

    def test_sklearn_errors(self):
        data = np.random.RandomState(0).randn(50, 3)
        prior = GaussianMixturePrior(num_mixture_components=2)
        with self.assertRaisesRegex(ValueError, "not fitted"):
            prior.set_from_sklearn(GaussianMixture(2))
        with self.assertRaisesRegex(ValueError, "covariance_type"):
            prior.set_from_sklearn(
                GaussianMixture(2, covariance_type="full").fit(data)
            )
        prior.build((None, 4))
        with self.assertRaisesRegex(ValueError, "does not match"):
            # Three features against a prior over four.
            prior.set_from_sklearn(
                GaussianMixture(2, covariance_type="diag").fit(data)
            )

    def test_gradient_is_finite(self):
        prior = GaussianMixturePrior(2)
        x = keras.random.normal((4, 3)) * 100.0
        prior.build(x.shape)
        value = ops.sum(prior(x))
        self.assertTrue(np.isfinite(ops.convert_to_numpy(value)))

    def _separated_prior(self, weights):
        """Three components far apart (means 0, 10, 20) with tiny scales."""
        prior = GaussianMixturePrior(num_mixture_components=3, min_scale=1e-4)
        prior.build((None, 2))
        prior.means.assign(np.array([[0, 0], [10, 10], [20, 20]], "float32"))
        prior.log_scales.assign(np.full((3, 2), np.log(1e-3), "float32"))
        prior.mixture_logits.assign(np.log(np.asarray(weights, "float32")))
        return prior

    def _noise(self, count, seed=0):
        rng = np.random.default_rng(seed)
        gumbel = -np.log(-np.log(rng.uniform(1e-7, 1.0, (count, 3))))
        return gumbel.astype("float32"), rng.normal(size=(count, 2)).astype(
            "float32"
        )

    def test_prior_sample_follows_the_mixture_weights(self):
        prior = self._separated_prior([0.2, 0.5, 0.3])
        draws = ops.convert_to_numpy(prior.sample(*self._noise(4000)))
        component = np.rint(draws[:, 0] / 10).astype(int)
        # Each draw is its component's mean up to the tiny scale ...
        self.assertAllClose(
            draws, 10.0 * component[:, None] * np.ones((1, 2)), atol=0.01
        )
        # ... and components come with the mixture weights (4000 draws:
        # standard error under 0.008).
        self.assertAllClose(
            np.bincount(component, minlength=3) / 4000,
            [0.2, 0.5, 0.3],
            atol=0.03,
        )

    def test_posterior_sample_uses_the_responsible_component(self):
        prior = self._separated_prior([0.98, 0.01, 0.01])
        given = np.tile(np.array([[19.9, 20.1]], "float32"), (500, 1))
        draws = ops.convert_to_numpy(
            prior.sample(*self._noise(500), given=given)
        )
        # Despite a weight of 0.01, the component at 20 explains `given`.
        self.assertAllClose(draws, np.full((500, 2), 20.0), atol=0.01)
