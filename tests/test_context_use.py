"""scripts/context_use.py: perplexity by tokens of context, on the shipped model."""

import contextlib
import io
import json
import os
from unittest import mock

import numpy as np
import pytest

from keras_sdgm.training import model_builders
from scripts import context_use
from tests.conftest import shared_data_dir
from tests.testing import END_TO_END
from tests.testing import TestCase

RELEASE = os.path.join(
    os.path.dirname(__file__), os.pardir, "saved_models", "ptb_sdgm_small"
)


class ContextUseTest(TestCase):
    def test_buckets_cover_the_window_once(self):
        self.assertEqual(
            context_use.context_buckets(128),
            [(0, 1), (1, 4), (4, 16), (16, 32), (32, 64), (64, 128)],
        )
        self.assertEqual(
            context_use.context_buckets(6), [(0, 1), (1, 4), (4, 6)]
        )

    @pytest.mark.slow
    @END_TO_END
    def test_the_shipped_model_by_position(self):
        with open(os.path.join(RELEASE, "metadata.json")) as f:
            recorded = json.load(f)["perplexity"]["non_overlapping"]
        out = self.get_temp_dir()
        argv = [
            os.path.join(RELEASE, "model.keras"),
            "--labels",
            "small",
            "--split",
            "test",
            "--data-dir",
            shared_data_dir(),
            "--output-dir",
            out,
        ]
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            context_use.main(argv)
        with open(os.path.join(out, "context_use.json")) as f:
            result = json.load(f)["results"]["small"]
        # The same scoring as the release's metadata, position by position.
        self.assertAllClose(
            result["perplexity"], recorded["perplexity"], rtol=1e-4
        )
        nll = np.array(result["nll_by_position"])
        self.assertEqual(nll.shape, (128,))
        self.assertAllClose(nll.mean(), result["nll"], rtol=1e-3)
        # More context helps: the first position is the worst bucket.
        self.assertGreater(nll[0], nll[64:].mean())
        self.assertTrue(os.path.isfile(os.path.join(out, "context_use.png")))
        self.assertIn(
            f"| small | {recorded['perplexity']:.1f} |", printed.getvalue()
        )

        # Run again: refused before any model is loaded, without --overwrite.
        with mock.patch.object(context_use.keras.saving, "load_model") as load:
            with contextlib.redirect_stderr(io.StringIO()) as stderr:
                with self.assertRaises(SystemExit):
                    context_use.main(argv)
        load.assert_not_called()
        self.assertIn("--overwrite", stderr.getvalue())

    def test_bad_arguments_are_named(self):
        for argv, message in [
            (["a.keras", "b.keras", "--labels", "a"], "--labels: give one"),
            (["no-such.keras"], "no-such.keras does not exist"),
        ]:
            with self.subTest(argv=argv):
                stderr = io.StringIO()
                with contextlib.redirect_stderr(stderr):
                    with self.assertRaises(SystemExit):
                        context_use.main(
                            argv + ["--output-dir", self.get_temp_dir()]
                        )
                self.assertIn(message, stderr.getvalue())

    def test_a_model_without_a_window_needs_window(self):
        path = os.path.join(self.get_temp_dir(), "rwkv7.keras")
        model_builders.rwkv7_causal_lm(
            vocabulary_size=12, num_layers=1, hidden_dim=8, head_size=4
        ).save(path)
        argv = [path, "--data-dir", shared_data_dir()]
        with self.assertRaisesRegex(SystemExit, "--window: .*no window"):
            context_use.main(argv + ["--output-dir", self.get_temp_dir()])
