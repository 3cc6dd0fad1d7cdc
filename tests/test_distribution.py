"""`--distribute`: data-parallel with JAX over two host devices and with
TensorFlow over two logical CPU devices, model-parallel with JAX, and clear
errors elsewhere."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

from keras_sdgm.training.distribution import configure_distribution
from tests.fixtures import recipe_args
from tests.testing import TestCase
from tests.testing import only_under

# Two fake devices on the host CPU (after the XLA flags already set, such
# as the test script's faster-compiling ones).
TWO_HOST_DEVICES = {
    **os.environ,
    "KERAS_BACKEND": "jax",
    "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=2",
}

# The same training on one device and then distributed over two in each
# mode of the comma-separated second argument, with every term of the
# objective on: the weights must agree. Then, in the same process (each
# start imports TensorFlow and makes the devices), the recipe with the flags
# that follow, if any. (TensorFlow cannot run a second MirroredStrategy's
# collectives in the process after the first: "the group expected shape";
# there the two are run apart.)
EQUIVALENCE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    if sys.argv[1] == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_sdgm.models import SDGMBackbone, SDGMCausalLM
    from keras_sdgm.training.distribution import prepare_for_strategy
    from keras_sdgm.training.distribution import configure_distribution

    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(0, 50, (32, 16)).astype("int32"),
         "padding_mask": np.ones((32, 16), "int32")}
    y = rng.integers(0, 50, (32, 16)).astype("int32")
    if sys.argv[1] == "tensorflow":
        data = dict(x=tf.data.Dataset.from_tensor_slices(
            (x, y, x["padding_mask"])).batch(8))
    else:
        data = dict(x=x, y=y, batch_size=8, shuffle=False)

    def train(initial_weights=None):
        keras.utils.set_random_seed(0)
        backbone = SDGMBackbone(vocabulary_size=50, hidden_dim=16,
            num_atoms=8, window_length=16, num_layers=2,
            intermediate_dim=32)
        lm = SDGMCausalLM(backbone, reconstruction_weight=0.5,
                          stft_weight=0.1, prior_weight=0.01)
        lm.compile(optimizer=keras.optimizers.Adam(1e-3))
        if initial_weights is not None:
            lm.set_weights(initial_weights)
        if sys.argv[1] == "tensorflow":
            prepare_for_strategy(lm, data["x"])
        initial = lm.get_weights()
        # 8 steps of the same global batch of 8, in the same order.
        history = lm.fit(epochs=2, verbose=0, **data)
        return lm, initial, history.history

    # One single-device run, then one run per mode given (JAX's global
    # distribution is set anew by each).
    single, initial, single_log = train()
    reports = {}
    for mode in filter(None, sys.argv[2].split(",")):
        devices, scope = configure_distribution(mode, batch_size=8)
        with scope:
            parallel, _, parallel_log = train(initial)
        if sys.argv[1] == "tensorflow":
            placement = type(parallel.backbone.token_embedding.embeddings.value)
            placement = placement.__name__
        else:
            placement = str(
                parallel.backbone.token_embedding.embeddings.value.sharding)
        difference = max(float(np.abs(a - b).max()) for a, b in
                         zip(single.get_weights(), parallel.get_weights()))
        moved = max(float(np.abs(a - b).max()) for a, b in
                    zip(single.get_weights(), initial))
        logs = {name: [single_log[name][-1], parallel_log[name][-1]]
                for name in ("loss", "nll", "reconstruction_loss",
                             "stft_loss", "prior_loss")}
        reports[mode] = {"devices": devices, "difference": difference,
                         "moved": moved, "placement": placement, "logs": logs}
    print("REPORTS " + json.dumps(reports), flush=True)

    if sys.argv[3:]:
        from keras_sdgm.training.recipe import main
        main("ptb", sys.argv[3:])
    """
)


# Each in a subprocess: the fake devices must exist before the backend
# starts.
ONLY_UNDER_JAX = only_under(
    "jax", "runs JAX subprocesses: once, in the JAX run of the suite"
)
ONLY_UNDER_TENSORFLOW = only_under(
    "tensorflow", "runs TensorFlow subprocesses: once, in the TensorFlow run"
)
TWO_TENSORFLOW_DEVICES = {**os.environ, "KERAS_BACKEND": "tensorflow"}


def check_equivalence(test, report, placement):
    """Two devices trained like one device with the same global batch."""
    test.assertEqual(report["devices"], 2)
    test.assertIn(placement, report["placement"])
    test.assertGreater(report["moved"], 1e-3)  # training did something
    test.assertLess(report["difference"], 1e-5)
    # Every term is logged whole, not as one replica's share.
    for name, (single, parallel) in report["logs"].items():
        test.assertAllClose(single, parallel, rtol=1e-5, msg=name)


def run_script(test, backend, env, modes, recipe_flags=()):
    """The equivalence script for `modes`, then the recipe with
    `recipe_flags` if any, in one process; returns `{mode: report}`."""
    result = subprocess.run(
        [sys.executable, "-c", EQUIVALENCE, backend, ",".join(modes)]
        + list(recipe_flags),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    test.assertEqual(result.returncode, 0, result.stderr[-3000:])
    (line,) = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("REPORTS ")
    ]
    return json.loads(line.removeprefix("REPORTS "))


def data_parallel_recipe(test):
    """`(flags, check)`: a data-parallel recipe run, and the check of it."""
    out = os.path.join(test.get_temp_dir(), "data-parallel")

    def check():
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        test.assertEqual(metrics["devices"], 2)
        test.assertEqual(metrics["config"]["distribute"], "data-parallel")

    flags = recipe_args(
        out, "--max-steps", "4", "--distribute", "data-parallel"
    )
    return flags, check


@pytest.mark.slow
@ONLY_UNDER_JAX
class DataParallelTest(TestCase):
    def test_two_devices_match_one_device_and_the_recipe_runs(self):
        # One process: one import for both modes and the recipe.
        flags, check_recipe = data_parallel_recipe(self)
        reports = run_script(
            self,
            "jax",
            TWO_HOST_DEVICES,
            ["data-parallel", "model-parallel"],
            flags,
        )
        # Data-parallel: a 2-device mesh over the batch.
        check_equivalence(self, reports["data-parallel"], placement="batch")
        # Model-parallel: the token embedding split by vocabulary rows over
        # the 2 devices.
        check_equivalence(
            self, reports["model-parallel"], placement="P('model', None)"
        )
        check_recipe()


@pytest.mark.slow
@ONLY_UNDER_TENSORFLOW
class MirroredStrategyTest(TestCase):
    def test_two_replicas_match_one_device_with_the_same_global_batch(self):
        reports = run_script(
            self, "tensorflow", TWO_TENSORFLOW_DEVICES, ["data-parallel"]
        )
        check_equivalence(
            self, reports["data-parallel"], placement="MirroredVariable"
        )

    def test_recipe_runs_data_parallel(self):
        flags, check_recipe = data_parallel_recipe(self)
        self.assertEqual(
            run_script(self, "tensorflow", TWO_TENSORFLOW_DEVICES, [], flags),
            {},
        )
        check_recipe()


class ConfigureDistributionTest(TestCase):
    def test_none_is_one_device(self):
        self.assertEqual(configure_distribution("none", 32)[0], 1)

    def test_errors(self):
        with self.assertRaisesRegex(ValueError, "Unknown --distribute"):
            configure_distribution("pipeline", 32)
        if keras.config.backend() == "torch":
            with self.assertRaisesRegex(ValueError, "KERAS_BACKEND=jax"):
                configure_distribution("data-parallel", 32)
        if keras.config.backend() != "jax":
            with self.assertRaisesRegex(ValueError, "JAX backend only"):
                configure_distribution("model-parallel", 32)

    @ONLY_UNDER_JAX
    def test_uneven_batch_is_refused(self):
        script = (
            "from keras_sdgm.training.distribution import "
            "configure_distribution\nconfigure_distribution('data-parallel', 7)"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=TWO_HOST_DEVICES,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("does not split evenly", result.stderr)
