"""The recipe never loses a finished run and a failed start leaves nothing
behind (issue 16). The flags' ranges are in `tests/test_bad_input.py`."""

import contextlib
import io
import json
import os
import sys
from unittest import mock

import pytest

from keras_sdgm.training import recipe
from keras_sdgm.training.recipe import main
from keras_sdgm.utils.arguments import run_command
from tests.fixtures import recipe_args
from tests.testing import END_TO_END
from tests.testing import TestCase

FINISHED_RUN = {
    "best.keras": b"the trained model",
    "metrics.json": b'{"perplexity": 123}',
    "log.csv": b"epoch,loss\n0,5.0\n",
    "curves.png": b"png",
    "config.json": b'{"corpus": "ptb"}',
}


def write_finished_run(folder):
    os.makedirs(folder)
    for name, content in FINISHED_RUN.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)


def read_folder(folder):
    contents = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            contents[name] = f.read()
    return contents


class CommandLineErrorsTest(TestCase):
    def test_a_refused_input_is_an_error_line_not_a_traceback(self):
        out = os.path.join(self.get_temp_dir(), "run")
        write_finished_run(out)
        stderr = io.StringIO()
        with (
            mock.patch.object(sys, "argv", ["recipes/ptb.py"]),
            contextlib.redirect_stderr(stderr),
            self.assertRaises(SystemExit) as exit_,
        ):
            run_command(main, "ptb", recipe_args(out))
        self.assertEqual(exit_.exception.code, 2)
        self.assertEqual(
            stderr.getvalue(),
            f"ptb.py: error: {out} holds a finished run. Pass --overwrite "
            "to replace it, or choose another --output-dir.\n",
        )
        self.assertEqual(read_folder(out), FINISHED_RUN)

        # Anything else is not about the input: it keeps its traceback.
        def broken():
            raise RuntimeError("a bug")

        with self.assertRaisesRegex(RuntimeError, "a bug"):
            run_command(broken)


class OverwriteKeepsTheFinishedRunTest(TestCase):
    """--overwrite replaces a finished run only once the new one is done."""

    def setUp(self):
        super().setUp()
        self.out = os.path.join(self.get_temp_dir(), "run")
        write_finished_run(self.out)

    def assert_finished_run_intact(self):
        self.assertEqual(read_folder(self.out), FINISHED_RUN)
        self.assertFalse(os.path.exists(recipe.previous_run_dir(self.out)))

    def test_a_bad_flag_with_overwrite_keeps_it(self):
        # Before: the parser's exit came first here too, but a bad value
        # that argparse accepted (e.g. --batch-size 0) failed after the
        # run had been deleted.
        for flag, value in (("--batch-size", "0"), ("--max-steps", "-1")):
            with self.assertRaises(SystemExit):
                main("ptb", recipe_args(self.out, flag, value, "--overwrite"))
            self.assert_finished_run_intact()

    def test_missing_data_with_overwrite_keeps_it(self):
        # Before: the finished run was deleted, then the data failed to
        # load: the trained model was gone.
        missing = os.path.join(self.get_temp_dir(), "no_corpora")
        os.makedirs(missing)
        with self.assertRaises(FileNotFoundError):
            main(
                "ptb",
                recipe_args(self.out, "--overwrite", "--data-dir", missing),
            )
        self.assert_finished_run_intact()

    def test_a_run_that_fails_after_starting_restores_it(self):
        # The new run starts (the old one moved aside), then fails.
        def failing_fit(lm, data, *args, **kwargs):
            self.assertFalse(
                os.path.exists(os.path.join(self.out, "metrics.json"))
            )
            self.assertEqual(
                read_folder(recipe.previous_run_dir(self.out)), FINISHED_RUN
            )
            raise KeyboardInterrupt

        with (
            mock.patch.object(recipe, "load_data", fake_load_data),
            mock.patch.object(recipe, "build_model", fake_build_model),
            mock.patch.object(recipe, "fit_resumable", failing_fit),
        ):
            with self.assertRaises(KeyboardInterrupt):
                main("ptb", recipe_args(self.out, "--overwrite"))
        self.assert_finished_run_intact()

    def test_without_overwrite_it_is_refused(self):
        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            main("ptb", recipe_args(self.out))
        self.assert_finished_run_intact()

    def test_a_leftover_replaced_run_is_never_overwritten(self):
        previous = recipe.previous_run_dir(self.out)
        write_finished_run(previous)
        with self.assertRaisesRegex(FileExistsError, "never finished"):
            main("ptb", recipe_args(self.out, "--overwrite"))
        self.assertEqual(read_folder(previous), FINISHED_RUN)
        self.assertEqual(read_folder(self.out), FINISHED_RUN)


class FailedStartLeavesNoConfigTest(TestCase):
    """Before: a failed start wrote config.json, and the corrected command
    then refused to start ("holds an unfinished run with another
    config")."""

    def test_missing_data_dir_then_the_corrected_command(self):
        out = os.path.join(self.get_temp_dir(), "run")
        empty = os.path.join(self.get_temp_dir(), "empty")
        os.makedirs(empty)
        with self.assertRaises(FileNotFoundError):
            main("ptb", recipe_args(out, "--data-dir", empty))
        self.assertFalse(os.path.exists(os.path.join(out, "config.json")))
        self.assertFalse(os.path.exists(out))

    def test_a_data_dir_that_does_not_exist(self):
        out = os.path.join(self.get_temp_dir(), "run")
        with self.assertRaises(SystemExit):
            main("ptb", recipe_args(out, "--data-dir", "/no/such/folder"))
        self.assertFalse(os.path.exists(out))

    def test_a_bad_size(self):
        out = os.path.join(self.get_temp_dir(), "run")
        with self.assertRaises(SystemExit):
            main("ptb", recipe_args(out, "--hidden-dim", "0"))
        self.assertFalse(os.path.exists(out))

    def test_a_model_that_cannot_be_built(self):
        out = os.path.join(self.get_temp_dir(), "run")
        with (
            mock.patch.object(recipe, "load_data", fake_load_data),
            mock.patch.object(
                recipe, "build_model", side_effect=ValueError("bad model")
            ),
        ):
            with self.assertRaisesRegex(ValueError, "bad model"):
                main("ptb", recipe_args(out))
        self.assertFalse(os.path.exists(out))

    def test_config_json_is_written_once_started(self):
        out = os.path.join(self.get_temp_dir(), "run")

        def stop_at_fit(lm, data, *args, **kwargs):
            raise KeyboardInterrupt

        with (
            mock.patch.object(recipe, "load_data", fake_load_data),
            mock.patch.object(recipe, "build_model", fake_build_model),
            mock.patch.object(recipe, "fit_resumable", stop_at_fit),
        ):
            with self.assertRaises(KeyboardInterrupt):
                main("ptb", recipe_args(out, "--max-steps", "2"))
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(json.load(f)["max_steps"], 2)


def fake_load_data(config):
    """Stands in for the corpus: these tests stop before training."""
    return mock.Mock(steps_per_epoch=1, epochs=1)


def fake_build_model(config, data):
    return mock.Mock(count_params=lambda: 10), 1


@pytest.mark.slow
@END_TO_END
class OverwriteEndToEndTest(TestCase):
    def test_overwrite_replaces_the_run_only_when_the_new_one_finishes(self):
        out = os.path.join(self.get_temp_dir(), "run")
        main("ptb", recipe_args(out, "--max-steps", "2"))
        with open(os.path.join(out, "metrics.json")) as f:
            first = json.load(f)
        # The new run fails in its evaluation, after training: the old run
        # comes back whole.
        with mock.patch.object(
            recipe, "evaluate", side_effect=RuntimeError("evaluation died")
        ):
            with self.assertRaisesRegex(RuntimeError, "evaluation died"):
                main("ptb", recipe_args(out, "--max-steps", "3", "--overwrite"))
        with open(os.path.join(out, "metrics.json")) as f:
            self.assertEqual(json.load(f), first)
        for name in ("best.keras", "log.csv", "curves.png", "config.json"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        self.assertFalse(os.path.exists(recipe.previous_run_dir(out)))
        # A finished run is kept unless --overwrite is given ...
        with self.assertRaisesRegex(FileExistsError, "--overwrite"):
            main("ptb", recipe_args(out, "--max-steps", "3"))
        # ... and a successful --overwrite replaces it, and removes the
        # replaced run.
        main("ptb", recipe_args(out, "--max-steps", "3", "--overwrite"))
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(json.load(f)["max_steps"], 3)
        self.assertFalse(os.path.exists(recipe.previous_run_dir(out)))
