"""Every release in saved_models/ loads and scores what its metadata says."""

import glob
import json
import os

import keras
import keras_hub
import numpy as np
import pytest
from absl.testing import parameterized

import keras_sdgm.presets
from keras_sdgm import evaluate_perplexity
from keras_sdgm.datasets import load_lines
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models.sdgm.sdgm_presets import trained_presets
from tests.conftest import shared_data_dir
from tests.testing import TestCase

SAVED_MODELS = os.path.join(
    os.path.dirname(__file__), os.pardir, "saved_models"
)
RELEASES = sorted(
    os.path.dirname(path)
    for path in glob.glob(os.path.join(SAVED_MODELS, "*", "metadata.json"))
)
PRESETS_DIR = os.path.dirname(keras_sdgm.presets.__file__)
MAX_BYTES = 25 * 1024 * 1024


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
