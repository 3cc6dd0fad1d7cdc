"""Every public entry point against a table of bad inputs (issue 16).

Each row must raise `ValueError` or `TypeError` (the recipes' flags:
argparse's exit with status 2) with a message that names the argument.
Rows marked "before:" gave a wrong answer or a backend's error before
issue 16's fixes; that answer is given beside them.
"""

import contextlib
import io
import os
from unittest import mock

import keras
import numpy as np

import keras_sdgm
from keras_sdgm import evaluate_perplexity
from keras_sdgm import export_onnx
from keras_sdgm import export_saved_model
from keras_sdgm.export.export_utils import STAGING_PREFIX
from keras_sdgm.export.export_utils import load_keras_file
from keras_sdgm.export.export_utils import write_replacing
from keras_sdgm.training import recipe
from tests.fixtures import tiny_lm
from tests.fixtures import tiny_preprocessor
from tests.testing import TestCase

IDS = np.arange(40, dtype="int32") % 11
MASK = np.ones((2, 8), "int32")


def ids(*shape, value=None):
    if value is not None:
        return np.full(shape, value, "int32")
    return (np.arange(np.prod(shape)) % 11).reshape(shape).astype("int32")


# (entry point, bad input, call of (lm, temporary folder), exception,
# what the message must contain).
BAD_INPUTS = [
    # predict: before, a dict was stringified (shape (1, 8, 11), no error).
    (
        "predict",
        "id outside the vocabulary",
        lambda lm, d: lm.predict(
            {"token_ids": ids(2, 8, value=11), "padding_mask": MASK}
        ),
        ValueError,
        "`token_ids`",
    ),
    (
        "predict",
        "float ids",
        lambda lm, d: lm.predict(
            {"token_ids": ids(2, 8) * 1.0, "padding_mask": MASK}
        ),
        ValueError,
        "`token_ids`",
    ),
    (
        "predict",
        "a dict with other keys",
        lambda lm, d: lm.predict({"text": ids(2, 8), "padding_mask": MASK}),
        ValueError,
        "'token_ids'",
    ),
    (
        "predict",
        "a mask of another shape",
        lambda lm, d: lm.predict(
            {"token_ids": ids(2, 8), "padding_mask": MASK[:, :4]}
        ),
        ValueError,
        "`padding_mask`",
    ),
    (
        "predict",
        "numbers that are not text",
        lambda lm, d: lm.predict([[1.5, 2.5]]),
        TypeError,
        "`inputs`",
    ),
    # generate.
    (
        "generate",
        "max_length=0 (before: the default length)",
        lambda lm, d: lm.generate(["the cat"], max_length=0),
        ValueError,
        "`max_length`",
    ),
    (
        "generate",
        "max_length=2.5 (before: TypeError in StartEndPacker)",
        lambda lm, d: lm.generate(["the cat"], max_length=2.5),
        ValueError,
        "`max_length`",
    ),
    (
        "generate",
        "no prompts (before: ValueError from a Pad layer)",
        lambda lm, d: lm.generate([]),
        ValueError,
        "`inputs`",
    ),
    (
        "generate",
        "a list of numbers (before: read as the words '1', '2')",
        lambda lm, d: lm.generate([[1, 2]], max_length=8),
        TypeError,
        "`inputs`",
    ),
    (
        "generate",
        "ids outside the vocabulary",
        lambda lm, d: lm.generate(ids(1, 3, value=20), max_length=8),
        ValueError,
        "`token_ids`",
    ),
    (
        "generate",
        "a packed dict and another max_length",
        lambda lm, d: lm.generate(
            {"token_ids": ids(2, 8), "padding_mask": MASK}, max_length=4
        ),
        ValueError,
        "max_length",
    ),
    # evaluate_perplexity.
    (
        "evaluate_perplexity",
        "rank-3 ids (before: flattened, a perplexity)",
        lambda lm, d: evaluate_perplexity(lm, ids(2, 2, 10), verbose=0),
        ValueError,
        "`tokens`",
    ),
    (
        "evaluate_perplexity",
        "an id outside the vocabulary (before: nan under JAX, "
        "InvalidArgumentError under TensorFlow)",
        lambda lm, d: evaluate_perplexity(
            lm, np.append(IDS, 11).astype("int32"), verbose=0
        ),
        ValueError,
        "`tokens`",
    ),
    (
        "evaluate_perplexity",
        "a negative id",
        lambda lm, d: evaluate_perplexity(
            lm, np.append(IDS, -1).astype("int32"), verbose=0
        ),
        ValueError,
        "`tokens`",
    ),
    (
        "evaluate_perplexity",
        "float ids",
        lambda lm, d: evaluate_perplexity(lm, IDS * 1.0, verbose=0),
        ValueError,
        "`tokens`",
    ),
    (
        "evaluate_perplexity",
        "no lines",
        lambda lm, d: evaluate_perplexity(lm, [], verbose=0),
        ValueError,
        "`tokens`",
    ),
    (
        "evaluate_perplexity",
        "one token",
        lambda lm, d: evaluate_perplexity(lm, IDS[:1], verbose=0),
        ValueError,
        "`tokens`",
    ),
    (
        "evaluate_perplexity",
        "stride=0 (before: taken as the default)",
        lambda lm, d: evaluate_perplexity(lm, IDS, stride=0, verbose=0),
        ValueError,
        "`stride`",
    ),
    (
        "evaluate_perplexity",
        "stride=2.5",
        lambda lm, d: evaluate_perplexity(lm, IDS, stride=2.5, verbose=0),
        ValueError,
        "`stride`",
    ),
    (
        "evaluate_perplexity",
        "sequence_length=0 (before: taken as the default)",
        lambda lm, d: evaluate_perplexity(
            lm, IDS, sequence_length=0, verbose=0
        ),
        ValueError,
        "`sequence_length`",
    ),
    (
        "evaluate_perplexity",
        "batch_size=0",
        lambda lm, d: evaluate_perplexity(lm, IDS, batch_size=0, verbose=0),
        ValueError,
        "`batch_size`",
    ),
    # Export.
    (
        "export_saved_model",
        "version=0",
        lambda lm, d: export_saved_model(lm, d, version=0),
        ValueError,
        "`version`",
    ),
    (
        "export_saved_model",
        "export_dir=None",
        lambda lm, d: export_saved_model(lm, None),
        TypeError,
        "`export_dir`",
    ),
    (
        "export_saved_model",
        "a number for the model",
        lambda lm, d: export_saved_model(42, d),
        ValueError,
        "`model_or_path`",
    ),
    (
        "export_onnx",
        "filepath=None",
        lambda lm, d: export_onnx(lm, None),
        TypeError,
        "`filepath`",
    ),
    (
        "export_onnx",
        "opset=0",
        lambda lm, d: export_onnx(lm, os.path.join(d, "m.onnx"), opset=0),
        ValueError,
        "`opset`",
    ),
    # fit_coefficient_gmm.
    (
        "fit_coefficient_gmm",
        "not an SDGM model",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm("lm", [ids(2, 8)]),
        TypeError,
        "`lm`",
    ),
    (
        "fit_coefficient_gmm",
        "no dataset",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm(lm, None),
        TypeError,
        "`dataset`",
    ),
    (
        "fit_coefficient_gmm",
        "float batches (before: cast to ids)",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm(
            lm, [ids(2, 8) * 1.5], verbose=0
        ),
        ValueError,
        "`dataset`",
    ),
    (
        "fit_coefficient_gmm",
        "ids outside the vocabulary",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm(
            lm, [ids(2, 8, value=11)], verbose=0
        ),
        ValueError,
        "`token_ids`",
    ),
    (
        "fit_coefficient_gmm",
        "num_mixture_components=0 (before: taken as the default)",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm(
            lm, [ids(2, 8)], num_mixture_components=0
        ),
        ValueError,
        "`num_mixture_components`",
    ),
    (
        "fit_coefficient_gmm",
        "covariance_type='full'",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm(
            lm, [ids(2, 8)], covariance_type="full"
        ),
        ValueError,
        "covariance_type",
    ),
    (
        "fit_coefficient_gmm",
        "max_samples=0",
        lambda lm, d: keras_sdgm.fit_coefficient_gmm(
            lm, [ids(2, 8)], max_samples=0
        ),
        ValueError,
        "`max_samples`",
    ),
]

# Recipe flags: (flag, bad value); argparse names the flag. Before, e.g.
# --max-steps 0 trained forever, --batch-size 0 raised ZeroDivisionError
# and --epochs -1 failed after loading the data.
BAD_FLAGS = [
    ("--hidden-dim", "0"),
    ("--num-atoms", "-3"),
    ("--sequence-length", "0"),
    ("--num-layers", "0"),
    ("--kernel-size", "0"),
    ("--dilation-rates", "1,x"),
    ("--dilation-rates", "0,2"),
    ("--intermediate-dim", "-1"),
    ("--num-mixture-components", "0"),
    ("--max-position-offset", "-1"),
    ("--num-heads", "0"),
    ("--dropout", "1.5"),
    ("--nll-weight", "-1"),
    ("--stft-weight", "nan"),
    ("--learning-rate", "0"),
    ("--weight-decay", "-0.1"),
    ("--batch-size", "0"),
    ("--epochs", "-1"),
    ("--patience", "-1"),
    ("--steps-per-epoch", "0"),
    ("--max-steps", "0"),
    ("--max-steps", "2.5"),
    ("--eval-stride", "0"),
    ("--eval-stride", "64"),  # more than the window, 32
    ("--eval-tokens", "0"),
    ("--checkpoint-every", "0"),
    ("--seed", "-1"),
    ("--data-dir", "/no/such/folder"),
]
# recipes/train.py's own flags, beside a real --train-file.
BAD_TEXT_FLAGS = [
    ("--train-file", "/no/such/file.txt"),
    ("--valid-file", "/no/such/file.txt"),
    ("--test-file", "/no/such/folder/"),
    ("--holdout-fraction", "0.5"),
    ("--holdout-fraction", "0"),
    ("--max-vocabulary-size", "2"),
    ("--min-count", "0"),
]


def parse_flag(flag, value, corpus="ptb", *other):
    """`recipe.parse_args` on a tiny config, `other` flags and `flag value`;
    the exit code and stderr."""
    argv = ["--sequence-length", "32", *other, flag, value]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            recipe.parse_args(corpus, argv)
        except SystemExit as exit_:
            return exit_.code, stderr.getvalue()
    return None, stderr.getvalue()


class BadInputTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        preprocessor = tiny_preprocessor()
        cls.lm = tiny_lm(
            preprocessor=preprocessor,
            backbone={
                "vocabulary_size": preprocessor.tokenizer.vocabulary_size()
            },
        )
        cls.lm.compile(sampler="greedy")

    def test_every_entry_point_names_the_bad_argument(self):
        for entry, case, call, error, message in BAD_INPUTS:
            with self.subTest(entry=entry, case=case):
                folder = self.get_temp_dir()
                with self.assertRaisesRegex(error, message):
                    call(self.lm, folder)

    def test_every_recipe_flag_is_checked_before_any_work(self):
        for flag, value in BAD_FLAGS:
            with self.subTest(flag=flag, value=value):
                code, stderr = parse_flag(flag, value)
                self.assertEqual(code, 2, stderr)
                self.assertIn(flag, stderr)
        train = os.path.join(self.get_temp_dir(), "train.txt")
        with open(train, "w") as f:
            f.write("a b c\n")
        for flag, value in BAD_TEXT_FLAGS:
            with self.subTest(flag=flag, value=value):
                code, stderr = parse_flag(
                    flag, value, "text", "--train-file", train
                )
                self.assertEqual(code, 2, stderr)
                self.assertIn(flag, stderr)
        code, stderr = parse_flag("--seed", "1", "text")
        self.assertEqual(code, 2, stderr)
        self.assertIn("--train-file", stderr)  # required

    def test_good_flags_still_parse(self):
        config = recipe.parse_args(
            "ptb",
            ["--intermediate-dim", "0", "--dropout", "0.1", "--patience", "0"],
        )
        self.assertEqual(
            (config.intermediate_dim, config.dropout, config.patience),
            (0, 0.1, 0),
        )


class ExportStagingTest(TestCase):
    """A killed export must leave nothing where TF Serving scans."""

    def test_a_saved_model_is_staged_outside_its_base_path(self):
        base = os.path.join(self.get_temp_dir(), "model")
        seen = []

        def killed_while_writing(path):
            os.makedirs(path)
            seen.append(path)
            # What a killed process leaves: the staging folder, not removed.
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            write_replacing(
                os.path.join(base, "1"),
                killed_while_writing,
                overwrite=False,
                staging_parent=os.path.dirname(base),
            )
        # Before: staged in `base/.export-XXXX/1`.
        self.assertFalse(seen[0].startswith(base + os.sep), seen[0])
        self.assertFalse(os.path.exists(os.path.join(base, "1")))

    def test_the_next_export_removes_stale_staging_folders(self):
        base = os.path.join(self.get_temp_dir(), "served")
        stale = os.path.join(base, STAGING_PREFIX + "abc123", "1")
        os.makedirs(stale)
        kept = os.path.join(base, "1")
        os.makedirs(kept)
        # The writers faked: what is tested is the folder handling.
        with (
            mock.patch(
                "keras_sdgm.export.saved_model._write_saved_model",
                lambda lm, path: os.makedirs(path),
            ),
            mock.patch("keras_sdgm.export.saved_model.export_under_tensorflow"),
        ):
            export_saved_model(built_tiny_lm(), base, version=2)
        # Before: the stale folder stayed among the versions.
        self.assertEqual(
            sorted(os.listdir(base)),
            ["1", "2"] if keras.config.backend() != "torch" else ["1"],
        )
        self.assertTrue(os.path.isdir(kept))


def built_tiny_lm():
    lm = tiny_lm()
    lm(tiny_inputs())
    return lm


def tiny_inputs():
    return {"token_ids": ids(1, 8) % 10, "padding_mask": MASK[:1]}


class TruncatedModelFileTest(TestCase):
    def test_a_truncated_keras_file_is_called_truncated(self):
        lm = built_tiny_lm()
        path = os.path.join(self.get_temp_dir(), "model.keras")
        lm.save(path)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        # Before: Keras's "File not found: filepath=...".
        with self.assertRaisesRegex(ValueError, "truncated or corrupt"):
            load_keras_file(path)
        with self.assertRaisesRegex(ValueError, "truncated or corrupt"):
            export_saved_model(path, os.path.join(self.get_temp_dir(), "s"))
        with self.assertRaisesRegex(FileNotFoundError, "No saved model"):
            load_keras_file(path + ".missing")
        self.assertIsInstance(
            load_keras_file(_saved(lm, self.get_temp_dir())), keras.Model
        )


def _saved(lm, folder):
    path = os.path.join(folder, "whole.keras")
    lm.save(path)
    return path
