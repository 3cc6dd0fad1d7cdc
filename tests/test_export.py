"""SavedModel (TF Serving) and ONNX export, from models trained under each backend."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_sdgm import export_onnx
from keras_sdgm import export_saved_model
from keras_sdgm.export.cli import main as export_main
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from tests.fixtures import SMALL_BACKBONE
from tests.serving import rest_predict
from tests.testing import TestCase

# Under torch the SavedModel is written by the TensorFlow export in a child
# process (`export_under_tensorflow`): what it contains is checked by the
# TensorFlow run; the torch run checks the route (the torch model's answers,
# overwrite protection).
SAME_ARTIFACT_AS_TENSORFLOW = pytest.mark.skipif(
    keras.config.backend() == "torch",
    reason="under torch the TensorFlow export writes the same artifact",
)

VOCABULARY_SIZE = SMALL_BACKBONE["vocabulary_size"]
RELEASE = os.path.join(
    os.path.dirname(__file__), os.pardir, "saved_models", "ptb_sdgm_small"
)


def trained_tiny_lm():
    """A tiny SDGM trained for a few steps under the current backend."""
    backbone = SDGMBackbone(**SMALL_BACKBONE)
    lm = SDGMCausalLM(backbone)
    lm.compile(optimizer=keras.optimizers.Adam(1e-2))
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(0, VOCABULARY_SIZE, (16, 16)).astype("int32"),
        "padding_mask": np.ones((16, 16), "int32"),
    }
    lm.fit(
        x,
        rng.integers(0, VOCABULARY_SIZE, (16, 16)).astype("int32"),
        batch_size=8,
        epochs=2,
        verbose=0,
    )
    return lm


def right_padded(batch, length, seed):
    """Token ids and a mask whose rows hold 1..length tokens."""
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(0, VOCABULARY_SIZE, (batch, length)).astype(
        "int32"
    )
    lengths = rng.integers(1, length + 1, batch)
    lengths[0] = length
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    return token_ids, mask


def keras_logits(lm, token_ids, mask):
    return ops.convert_to_numpy(
        lm({"token_ids": token_ids, "padding_mask": mask})
    )


def keras_next_token(logits, mask):
    last = logits[np.arange(len(mask)), mask.sum(axis=1) - 1]
    shifted = last - last.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# Two batch sizes and two lengths, one of them beyond the training window.
SHAPES = ((1, 5), (3, 40))

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    for name in ("keras", "keras_sdgm", "keras_hub", "tf_keras", "jax",
                 "torch"):
        sys.modules[name] = None  # importing any of these now fails
    import numpy as np
    import tensorflow as tf
    request = json.load(open(sys.argv[2]))
    model = tf.saved_model.load(sys.argv[1])
    answer = {}
    for name in ("serving_default", "next_token"):
        outputs = model.signatures[name](
            token_ids=tf.constant(request["token_ids"], tf.int32),
            padding_mask=tf.constant(request["padding_mask"], tf.int32))
        answer.update({k: v.numpy().tolist() for k, v in outputs.items()})
    print(json.dumps(answer))
    """
)


def saved_model_cli_show_all(path):
    """TensorFlow's `saved_model_cli show --all` (every signature), in a
    subprocess."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tensorflow.python.tools.saved_model_cli",
            "show",
            "--dir",
            path,
            "--all",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
class ExportSavedModelTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lm = trained_tiny_lm()
        cls.base = tempfile.mkdtemp(prefix="sdgm-export-test-")
        cls.path = export_saved_model(cls.lm, os.path.join(cls.base, "tiny"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base, ignore_errors=True)
        super().tearDownClass()

    def load(self):
        import tensorflow as tf

        return tf.saved_model.load(self.path)

    @SAME_ARTIFACT_AS_TENSORFLOW
    def test_layout_is_tf_servings(self):
        self.assertEqual(self.path, os.path.join(self.base, "tiny", "1"))
        self.assertTrue(
            os.path.isfile(os.path.join(self.path, "saved_model.pb"))
        )
        self.assertTrue(os.path.isdir(os.path.join(self.path, "variables")))

    @SAME_ARTIFACT_AS_TENSORFLOW
    def test_every_weight_is_stored_once(self):
        import tensorflow as tf

        reader = tf.train.load_checkpoint(
            os.path.join(self.path, "variables", "variables")
        )
        stored = sum(
            int(np.prod(shape))
            for name, shape in reader.get_variable_to_shape_map().items()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
        )
        # The prior is a training loss: the endpoints do not use it, and only
        # JAX's export (which tracks the model) stores it.
        used = sum(
            int(np.prod(w.shape))
            for w in self.lm.weights
            if "/prior/" not in w.path
        )
        self.assertBetween(stored, used, self.lm.count_params())

    def test_signatures_give_the_keras_answers(self):
        model = self.load()
        import tensorflow as tf

        for batch, length in SHAPES:
            token_ids, mask = right_padded(batch, length, seed=batch)
            expected = keras_logits(self.lm, token_ids, mask)
            inputs = {
                "token_ids": tf.constant(token_ids),
                "padding_mask": tf.constant(mask),
            }
            logits = model.signatures["serving_default"](**inputs)["logits"]
            self.assertEqual(logits.dtype, tf.float32)
            self.assertLessEqual(np.abs(logits.numpy() - expected).max(), 1e-5)
            log_probs = model.signatures["next_token"](**inputs)["log_probs"]
            self.assertEqual(log_probs.shape, (batch, VOCABULARY_SIZE))
            self.assertLessEqual(
                np.abs(
                    log_probs.numpy() - keras_next_token(expected, mask)
                ).max(),
                1e-5,
            )

    @SAME_ARTIFACT_AS_TENSORFLOW
    def test_a_row_of_padding_has_no_next_token(self):
        import tensorflow as tf

        token_ids, mask = right_padded(2, 6, seed=0)
        mask[1] = 0
        log_probs = (
            self.load()
            .signatures["next_token"](
                token_ids=tf.constant(token_ids), padding_mask=tf.constant(mask)
            )["log_probs"]
            .numpy()
        )
        self.assertTrue(np.isfinite(log_probs[0]).all())
        self.assertTrue(np.isnan(log_probs[1]).all())

    @SAME_ARTIFACT_AS_TENSORFLOW
    def test_runs_in_a_process_without_keras(self):
        token_ids, mask = right_padded(3, 12, seed=5)
        request = os.path.join(self.base, "request.json")
        with open(request, "w") as f:
            json.dump(
                {
                    "token_ids": token_ids.tolist(),
                    "padding_mask": mask.tolist(),
                },
                f,
            )
        result = subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS, self.path, request],
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        expected = keras_logits(self.lm, token_ids, mask)
        self.assertLessEqual(
            np.abs(np.array(answer["logits"]) - expected).max(), 1e-5
        )
        self.assertLessEqual(
            np.abs(
                np.array(answer["log_probs"]) - keras_next_token(expected, mask)
            ).max(),
            1e-5,
        )

    @SAME_ARTIFACT_AS_TENSORFLOW
    def test_saved_model_cli_lists_both_signatures(self):
        # One process for both signatures: each start imports TensorFlow.
        result = saved_model_cli_show_all(self.path)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        shown = {}
        for block in result.stdout.split("signature_def['")[1:]:
            name, body = block.split("']", 1)
            shown[name] = " ".join(body.split())
        for name in ("next_token", "serving_default"):
            for tensor in ("token_ids", "padding_mask"):
                self.assertIn(
                    f"inputs['{tensor}'] tensor_info: dtype: DT_INT32 "
                    "shape: (-1, -1)",
                    shown[name],
                )
        self.assertIn(
            "outputs['log_probs'] tensor_info: dtype: DT_FLOAT "
            f"shape: (-1, {VOCABULARY_SIZE})",
            shown["next_token"],
        )
        self.assertIn(
            "outputs['logits'] tensor_info: dtype: DT_FLOAT "
            f"shape: (-1, -1, {VOCABULARY_SIZE})",
            shown["serving_default"],
        )

    @SAME_ARTIFACT_AS_TENSORFLOW
    def test_rest_request_gives_the_models_answer(self):
        token_ids, mask = right_padded(2, 9, seed=7)
        body = json.loads(
            json.dumps(
                {
                    "signature_name": "next_token",
                    "inputs": {
                        "token_ids": token_ids.tolist(),
                        "padding_mask": mask.tolist(),
                    },
                }
            )
        )
        response = rest_predict(self.load(), body)
        expected = keras_next_token(
            keras_logits(self.lm, token_ids, mask), mask
        )
        self.assertLessEqual(
            np.abs(np.array(response["outputs"]) - expected).max(), 1e-5
        )

    def test_an_existing_version_is_never_overwritten_unasked(self):
        base = os.path.join(self.base, "versions")
        first = export_saved_model(self.lm, base, version=3)
        marker = os.path.join(first, "keep.txt")
        with open(marker, "w") as f:
            f.write("mine")
        with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
            export_saved_model(self.lm, base, version=3)
        self.assertTrue(os.path.exists(marker))
        export_saved_model(self.lm, base, version=3, overwrite=True)
        self.assertFalse(os.path.exists(marker))
        self.assertTrue(os.path.isfile(os.path.join(first, "saved_model.pb")))
        self.assertEqual(sorted(os.listdir(base)), ["3"])  # no leftovers


@pytest.mark.slow
class ExportOnnxTest(TestCase):
    def test_onnxruntime_gives_the_keras_logits(self):
        import onnxruntime

        lm = trained_tiny_lm()
        path = export_onnx(lm, os.path.join(self.get_temp_dir(), "tiny.onnx"))
        session = onnxruntime.InferenceSession(path)
        self.assertEqual(
            [i.name for i in session.get_inputs()],
            ["token_ids", "padding_mask"],
        )
        for batch, length in SHAPES:
            token_ids, mask = right_padded(batch, length, seed=batch)
            (logits,) = session.run(
                None, {"token_ids": token_ids, "padding_mask": mask}
            )
            self.assertLessEqual(
                np.abs(logits - keras_logits(lm, token_ids, mask)).max(), 1e-4
            )
        with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
            export_onnx(lm, path)

    @pytest.mark.skipif(
        keras.config.backend() != "tensorflow",
        reason="the graph is converted from TensorFlow under every backend",
    )
    def test_the_long_range_mixers_export(self):
        # The default retention mixer and the spectral mixers' options
        # (with the previous default's separable-frequency dictionary):
        # their ops reach the ONNX graph (the data-dependent decay's on
        # activations, not folded into constants), over several chunks.
        import onnxruntime

        token_ids, mask = right_padded(2, 300, seed=0)
        spectral = {
            "encoder_type": "gated_spectral",
            "dictionary_type": "separable_frequency",
        }
        for name, options in (
            ("modes_per_feature", {**spectral, "modes_per_feature": True}),
            (
                "data_dependent_decay",
                {**spectral, "data_dependent_decay": True},
            ),
            ("default", {}),
        ):
            keras.utils.set_random_seed(0)
            lm = SDGMCausalLM(SDGMBackbone(**SMALL_BACKBONE, **options))
            path = os.path.join(self.get_temp_dir(), f"{name}.onnx")
            (logits,) = onnxruntime.InferenceSession(export_onnx(lm, path)).run(
                None, {"token_ids": token_ids, "padding_mask": mask}
            )
            self.assertLessEqual(
                np.abs(logits - keras_logits(lm, token_ids, mask)).max(),
                1e-4,
                name,
            )


class ExportErrorsTest(TestCase):
    def test_a_missing_file(self):
        with self.assertRaisesRegex(FileNotFoundError, "No saved model"):
            export_saved_model(
                os.path.join(self.get_temp_dir(), "none.keras"),
                self.get_temp_dir(),
            )

    def test_a_file_that_is_not_a_keras_model(self):
        path = os.path.join(self.get_temp_dir(), "broken.keras")
        with open(path, "wb") as f:
            f.write(b"not a zip archive")
        with self.assertRaisesRegex(ValueError, "corrupt"):
            export_onnx(path, os.path.join(self.get_temp_dir(), "x.onnx"))

    def test_a_model_that_is_not_sdgm(self):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        path = os.path.join(self.get_temp_dir(), "dense.keras")
        model.save(path)
        with self.assertRaisesRegex(ValueError, "takes an `SDGMCausalLM`"):
            export_saved_model(path, os.path.join(self.get_temp_dir(), "d"))

    def test_an_unbuilt_model(self):
        with self.assertRaisesRegex(ValueError, "not built"):
            export_saved_model(
                keras.Sequential([keras.layers.Dense(2)]),
                os.path.join(self.get_temp_dir(), "u"),
            )

    def test_a_bad_version(self):
        with self.assertRaisesRegex(ValueError, "version"):
            export_saved_model(
                os.path.join(RELEASE, "model.keras"),
                self.get_temp_dir(),
                version=0,
            )

    def test_the_cli_reports_errors_plainly(self):
        with self.assertRaises(SystemExit) as exit_:
            export_main(
                [
                    os.path.join(self.get_temp_dir(), "none.keras"),
                    self.get_temp_dir(),
                ]
            )
        self.assertEqual(exit_.exception.code, 2)


@pytest.mark.slow
class ReleaseExportTest(TestCase):
    """saved_models/ptb_sdgm_small/1 is the export of its model.keras."""

    def test_the_committed_saved_model_matches_the_keras_model(self):
        import tensorflow as tf

        lm = keras.saving.load_model(
            os.path.join(RELEASE, "model.keras"), compile=False
        )
        model = tf.saved_model.load(os.path.join(RELEASE, "1"))
        rng = np.random.default_rng(0)
        for batch, length in ((1, 8), (3, 64)):
            token_ids = rng.integers(
                0, lm.backbone.vocabulary_size, (batch, length)
            ).astype("int32")
            mask = np.ones_like(token_ids)
            expected = keras_logits(lm, token_ids, mask)
            logits = model.signatures["serving_default"](
                token_ids=tf.constant(token_ids), padding_mask=tf.constant(mask)
            )["logits"].numpy()
            # Logits reach ~10 here: allow float32 rounding at that scale.
            scale = max(1.0, np.abs(expected).max())
            self.assertLessEqual(np.abs(logits - expected).max(), 1e-5 * scale)
        with open(
            os.path.join(RELEASE, "1", "assets.extra", "vocabulary.txt")
        ) as f:
            vocabulary = f.read().splitlines()
        self.assertEqual(
            vocabulary, list(lm.preprocessor.tokenizer.get_vocabulary())
        )

    def test_cli_writes_a_new_version_beside_it(self):
        base = os.path.join(self.get_temp_dir(), "release")
        export_main(
            [os.path.join(RELEASE, "model.keras"), base, "--version", "2"]
        )
        self.assertTrue(
            os.path.isfile(os.path.join(base, "2", "saved_model.pb"))
        )
