"""Every release in saved_models/ loads and scores what its metadata says."""

import glob
import json
import os

import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

from keras_sdgm import evaluate_perplexity
from keras_sdgm.datasets import load_lines
from tests.conftest import shared_data_dir
from tests.testing import TestCase

SAVED_MODELS = os.path.join(
    os.path.dirname(__file__), os.pardir, "saved_models"
)
RELEASES = sorted(
    os.path.dirname(path)
    for path in glob.glob(os.path.join(SAVED_MODELS, "*", "metadata.json"))
)
MAX_BYTES = 25 * 1024 * 1024


class SavedModelsTest(TestCase):
    def test_there_is_a_ptb_release(self):
        corpora = []
        for release in RELEASES:
            with open(os.path.join(release, "metadata.json")) as f:
                corpora.append(json.load(f)["corpus"])
        self.assertIn("ptb", corpora)

    @parameterized.named_parameters(
        (os.path.basename(release), release) for release in RELEASES
    )
    def test_release_preset_is_its_model(self, release):
        preset = os.path.join(release, "preset")
        size = sum(
            os.path.getsize(os.path.join(folder, name))
            for folder, _, names in os.walk(preset)
            for name in names
        )
        self.assertLessEqual(size, MAX_BYTES)
        # One line, no other file: the vocabulary is in the directory.
        from_preset = keras_hub.models.CausalLM.from_preset(preset)
        lm = keras.saving.load_model(
            os.path.join(release, "model.keras"), compile=False
        )
        x = {
            "token_ids": np.arange(128, dtype="int32").reshape(2, 64),
            "padding_mask": np.ones((2, 64), "int32"),
        }
        self.assertAllClose(
            from_preset.predict(x, verbose=0), lm.predict(x, verbose=0), atol=0
        )
        self.assertTrue(
            from_preset.generate("the company said", max_length=12).startswith(
                "the company said"
            )
        )

    @pytest.mark.slow
    @parameterized.named_parameters(
        (os.path.basename(release), release) for release in RELEASES
    )
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
        self.assertEqual(metadata["protocol"], "non-overlapping")
        result = evaluate_perplexity(lm, lines, verbose=0)
        self.assertEqual(result["num_predicted"], metadata["num_predicted"])
        self.assertAllClose(
            result["perplexity"], metadata["perplexity"], rtol=0.01, atol=0
        )
