"""Every release in saved_models/ loads and scores what its metadata says."""

import glob
import json
import os
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

import keras_sdgm.presets
from keras_sdgm import evaluate_perplexity
from keras_sdgm.datasets import corpus_path
from keras_sdgm.datasets import load_lines
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models.sdgm.sdgm_presets import trained_presets
from keras_sdgm.training.recipe import sliding_stride
from tests.conftest import shared_data_dir
from tests.testing import TestCase
from tests.testing import only_under

SAVED_MODELS = os.path.join(
    os.path.dirname(__file__), os.pardir, "saved_models"
)
RELEASES = sorted(
    os.path.dirname(path)
    for path in glob.glob(os.path.join(SAVED_MODELS, "*", "metadata.json"))
)
PRESETS_DIR = os.path.dirname(keras_sdgm.presets.__file__)
MAX_BYTES = 25 * 1024 * 1024
INDEPENDENT_EVALUATOR = os.path.join(
    os.path.dirname(__file__), "independent_perplexity.py"
)


class SavedModelsTest(TestCase):
    def test_there_is_a_ptb_release(self):
        corpora = []
        for release in RELEASES:
            with open(os.path.join(release, "metadata.json")) as f:
                corpora.append(json.load(f)["corpus"])
        self.assertIn("ptb", corpora)

    def test_every_trained_preset_is_a_release_and_listed(self):
        named = []
        for release in RELEASES:
            with open(os.path.join(release, "metadata.json")) as f:
                named.append(json.load(f)["preset"])
        on_disk = sorted(
            name
            for name in os.listdir(PRESETS_DIR)
            if os.path.isdir(os.path.join(PRESETS_DIR, name))
            and name != "__pycache__"
        )
        self.assertEqual(sorted(named), on_disk)
        self.assertEqual(sorted(trained_presets), on_disk)

    @parameterized.named_parameters(
        (os.path.basename(release), release) for release in RELEASES
    )
    def test_release_preset_is_its_model(self, release):
        with open(os.path.join(release, "metadata.json")) as f:
            name = json.load(f)["preset"]
        directory = SDGMCausalLM.presets[name]["directory"]
        self.assertEqual(directory, os.path.join(PRESETS_DIR, name))
        size = sum(
            os.path.getsize(os.path.join(folder, file))
            for folder, _, files in os.walk(directory)
            for file in files
        )
        self.assertLessEqual(size, MAX_BYTES)
        lm = keras.saving.load_model(
            os.path.join(release, "model.keras"), compile=False
        )
        x = {
            "token_ids": np.arange(128, dtype="int32").reshape(2, 64),
            "padding_mask": np.ones((2, 64), "int32"),
        }
        expected = lm.predict(x, verbose=0)
        # By name, and by directory through keras-hub's generic class: one
        # line, no other file (the vocabulary is in the directory).
        for from_preset in (
            SDGMCausalLM.from_preset(name),
            keras_hub.models.CausalLM.from_preset(directory),
        ):
            self.assertAllClose(
                from_preset.predict(x, verbose=0), expected, atol=0
            )
        self.assertTrue(
            from_preset.generate("the company said", max_length=12).startswith(
                "the company said"
            )
        )

    # Marks go below `named_parameters`: above it they would mark the
    # generator, and the generated tests would lose them.
    @parameterized.named_parameters(
        (os.path.basename(release), release) for release in RELEASES
    )
    @pytest.mark.slow
    def test_release_reproduces_its_recorded_perplexity(self, release):
        with open(os.path.join(release, "metadata.json")) as f:
            metadata = json.load(f)
        path = os.path.join(release, metadata["model_file"])
        self.assertLessEqual(os.path.getsize(path), MAX_BYTES)

        lm = keras.saving.load_model(path, compile=False)
        self.assertIsNotNone(lm.preprocessor)  # the vocabulary travels along
        lines = load_lines(
            metadata["corpus"], metadata["split"], data_dir=shared_data_dir()
        )
        recorded = metadata["perplexity"]
        sliding = sliding_stride(
            metadata["run_metrics"]["config"]["eval_stride"],
            lm.backbone.window_length,
        )
        for name, stride in (("non_overlapping", None), ("sliding", sliding)):
            result = evaluate_perplexity(lm, lines, stride=stride, verbose=0)
            self.assertEqual(result["protocol"], recorded[name]["protocol"])
            self.assertEqual(
                result["num_predicted"], recorded[name]["num_predicted"]
            )
            self.assertAllClose(
                result["perplexity"],
                recorded[name]["perplexity"],
                rtol=0.01,
                atol=0,
            )

    @parameterized.named_parameters(
        (os.path.basename(release), release) for release in RELEASES
    )
    @pytest.mark.slow
    @only_under(
        "tensorflow",
        "the evaluator runs the TF Serving export in a process of its own, "
        "without Keras",
    )
    def test_an_independent_evaluator_gets_the_recorded_perplexity(
        self, release
    ):
        with open(os.path.join(release, "metadata.json")) as f:
            metadata = json.load(f)
        with open(
            os.path.join(PRESETS_DIR, metadata["preset"], "config.json")
        ) as f:
            window = json.load(f)["config"]["window_length"]
        text_file = corpus_path(
            metadata["corpus"], metadata["split"], data_dir=shared_data_dir()
        )
        result = subprocess.run(
            [
                sys.executable,
                INDEPENDENT_EVALUATOR,
                os.path.join(release, "1"),
                text_file,
                str(window),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        recorded = metadata["perplexity"]["non_overlapping"]
        self.assertEqual(answer["num_predicted"], recorded["num_predicted"])
        self.assertAllClose(
            answer["perplexity"], recorded["perplexity"], rtol=0.01, atol=0
        )
