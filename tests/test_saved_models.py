"""Every release in saved_models/ loads and scores what its metadata says."""

import glob
import json
import os

import keras
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
