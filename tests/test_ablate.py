"""The ablation runner's bookkeeping: which runs it starts, what it tabulates.

The runs themselves are recipe runs (tests/test_recipes.py); here they are
replaced by `metrics.json` files written by the fake `run_variant`.
"""

import argparse
import contextlib
import io
import json
import os
from unittest import mock

from keras_sdgm.training import recipe
from recipes import ablate
from tests.testing import TestCase

# The flags after `--` of every test command: 4 windows of 8 tokens a step.
SHARED = ["--max-steps", "5", "--batch-size", "4", "--sequence-length", "8"]

# Validation perplexity of each (variant, seed) the fake runs produce.
PERPLEXITY = {
    ("base", 0): 100.0,
    ("base", 1): 104.0,
    ("no-feedforward", 0): 103.0,
    ("no-feedforward", 1): 99.0,
    ("gpt2", 0): 150.0,
}


def fake_run(corpus, name, seed, shared, output_dir, own=()):
    folder = ablate.run_dir(output_dir, name, seed)
    os.makedirs(folder)
    ppl = PERPLEXITY[name, seed]
    entry = {"perplexity": ppl}
    # The config the recipe would record for the run's flags.
    config = recipe.parse_args(
        corpus,
        ablate.recipe_arguments(corpus, name, seed, shared, output_dir, own),
    ).saved_config()
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(
            {
                "config": config,
                "parameters": {"total": 3_000_000, "non_embedding": 1_000_000},
                "training_tokens_per_second": 320.0,
                "epochs_logged": 3,
                "wall_time_seconds": 120.0 + 60 * seed,
                "perplexity": {
                    "valid": {"non_overlapping": entry, "sliding": entry},
                    "test": {"non_overlapping": entry, "sliding": entry},
                },
            },
            f,
        )
    with open(os.path.join(folder, "log.csv"), "w") as f:
        f.write(
            "epoch,loss,val_perplexity\n0,6.0,150.0\n1,5.0,120.0\n2,4.0,130.0\n"
        )


def rewrite_metrics(output_dir, name, change):
    """Applies `change` to the `metrics.json` of `name`'s seed 0."""
    path = os.path.join(ablate.run_dir(output_dir, name, 0), "metrics.json")
    with open(path) as f:
        metrics = json.load(f)
    change(metrics)
    with open(path, "w") as f:
        json.dump(metrics, f)


class AblateTest(TestCase):
    def run_ablations(self, *variants, options=()):
        out = self.get_temp_dir()
        with mock.patch.object(
            ablate, "run_variant", side_effect=fake_run
        ) as run:
            ablate.main(
                [
                    "--output-dir",
                    out,
                    "--variants",
                    *variants,
                    *options,
                    "--",
                    *SHARED,
                ]
            )
        with open(os.path.join(out, "ablations.json")) as f:
            return run, json.load(f), out

    def test_close_variants_get_more_seeds(self):
        run, table, out = self.run_ablations("no-feedforward", "gpt2")
        started = sorted((c.args[1], c.args[2]) for c in run.call_args_list)
        # no-feedforward (103) is within 5% of base (100): both get seed 1;
        # gpt2 (150) is not.
        self.assertEqual(
            started,
            [
                ("base", 0),
                ("base", 1),
                ("gpt2", 0),
                ("no-feedforward", 0),
                ("no-feedforward", 1),
            ],
        )
        self.assertEqual(run.call_args_list[0].args[3], SHARED)
        rows = table["variants"]
        self.assertEqual(rows["base"]["seeds"], [0, 1])
        self.assertEqual(
            rows["base"]["valid_non_overlapping"],
            {"mean": 102.0, "spread": 2.0},
        )
        self.assertEqual(
            rows["gpt2"]["valid_sliding"], {"mean": 150.0, "spread": 0.0}
        )
        # 4 x 8 tokens a step at 320 tokens/s.
        self.assertEqual(rows["gpt2"]["ms_per_step"]["mean"], 100.0)
        with open(os.path.join(out, "ablations.md")) as f:
            markdown = f.read()
        self.assertIn("| `gpt2` |", markdown)
        self.assertIn("+47.1%", markdown)  # 150 / 102
        self.assertIn("102.0 ± 2.0", markdown)
        # Epochs run (the best one from the log), wall minutes: base's
        # two seeds took 2 and 3 minutes.
        self.assertEqual(
            rows["base"]["best_epoch"], {"mean": 2.0, "spread": 0.0}
        )
        self.assertIn("| 100 | 3 (2) | 2.0 |", markdown)  # gpt2
        self.assertIn("| 3 (2) | 2.5 ± 0.5 |", markdown)  # base

    def test_a_run_too_short_to_time_has_no_ms_per_step(self):
        out = self.get_temp_dir()
        fake_run("ptb", "base", 0, SHARED, out)
        rewrite_metrics(
            out, "base", lambda m: m.update(training_tokens_per_second=None)
        )
        with mock.patch.object(ablate, "subprocess"):
            ablate.main(
                ["--output-dir", out, "--variants", "base", "--", *SHARED]
            )
        with open(os.path.join(out, "ablations.json")) as f:
            self.assertIsNone(json.load(f)["variants"]["base"]["ms_per_step"])
        with open(os.path.join(out, "ablations.md")) as f:
            self.assertIn("| 3.00M / 1.00M | — | 3 (2) |", f.read())

    def test_finished_runs_are_reused(self):
        out = self.get_temp_dir()
        fake_run("ptb", "base", 0, SHARED, out)
        fake_run("ptb", "gpt2", 0, SHARED, out)
        with mock.patch.object(ablate, "subprocess") as subprocess:
            ablate.main(
                ["--output-dir", out, "--variants", "gpt2", "--", *SHARED]
            )
        subprocess.run.assert_not_called()

    def refusal(self, out, variant):
        """ablate's message refusing to run `variant` in `out`; no run
        starts."""
        with (
            mock.patch.object(ablate, "subprocess") as subprocess,
            self.assertRaises(SystemExit) as exit_,
        ):
            ablate.main(
                ["--output-dir", out, "--variants", variant, "--", *SHARED]
            )
        subprocess.run.assert_not_called()
        return str(exit_.exception)

    def test_finished_runs_made_with_other_flags_are_refused(self):
        # A run finished under other flags (here another batch size; or
        # a variant whose flags changed since) would give its row another
        # model's numbers: refused before any run starts, naming the folder
        # and what differs.
        out = self.get_temp_dir()
        fake_run("ptb", "base", 0, SHARED, out)
        fake_run("ptb", "gpt2", 0, [*SHARED, "--batch-size", "2"], out)
        message = self.refusal(out, "gpt2")
        self.assertIn(ablate.run_dir(out, "gpt2", 0), message)
        self.assertIn("differs in ['batch_size']", message)
        self.assertNotIn("resolved to", message)
        self.assertNotIn(ablate.run_dir(out, "base", 0), message)

    def test_flags_its_model_does_not_read_leave_a_run_current(self):
        # Earlier recipes recorded SDGM flags for GPT-2 runs, unused.
        out = self.get_temp_dir()
        fake_run("ptb", "gpt2", 0, SHARED, out)
        args = argparse.Namespace(
            corpus="ptb", variants=["gpt2"], variant_flags={}
        )
        for field, value, stale in (
            ("max_position_offset", 0, False),
            ("learning_rate", 0.5, True),
        ):
            rewrite_metrics(
                out, "gpt2", lambda m: m["config"].update({field: value})
            )
            self.assertEqual(
                bool(ablate.stale_runs(args, out, SHARED)), stale, field
            )

    def test_a_run_made_under_another_default_is_refused(self):
        # `base` sets no mixer flag: its flags are the same before and
        # after a default changes, and only what they resolved to (the
        # recorded `architecture`) tells the runs apart. Here a run made
        # when the default mixer was the gated spectral one, and one from
        # before the architecture was recorded.
        out = self.get_temp_dir()
        fake_run("ptb", "base", 0, SHARED, out)
        args = argparse.Namespace(
            corpus="ptb", variants=["base"], variant_flags={}
        )
        self.assertEqual(ablate.stale_runs(args, out, SHARED), [])
        rewrite_metrics(
            out,
            "base",
            lambda m: m["config"]["architecture"].update(
                {"encoder_type": "gated_spectral"}
            ),
        )
        folder = ablate.run_dir(out, "base", 0)
        self.assertEqual(
            ablate.stale_runs(args, out, SHARED),
            [f"{folder} (differs in ['architecture'])"],
        )
        rewrite_metrics(out, "base", lambda m: m["config"].pop("architecture"))
        message = self.refusal(out, "base")
        self.assertIn(f"{folder} (differs in ['architecture'])", message)
        self.assertIn("resolved to", message)

    def test_variant_flags_go_to_their_variant_only(self):
        run, table, out = self.run_ablations(
            "gpt2",
            options=[
                "--variant-flags",
                "gpt2=--dropout 0.1 --weight-decay '0.01'",
            ],
        )
        own = {c.args[1]: c.args[5] for c in run.call_args_list}
        self.assertEqual(
            own,
            {
                "base": [],
                "gpt2": ["--dropout", "0.1", "--weight-decay", "0.01"],
            },
        )
        self.assertEqual(table["shared_arguments"], SHARED)
        self.assertEqual(table["variant_arguments"], {"gpt2": own["gpt2"]})
        with open(os.path.join(out, "ablations.md")) as f:
            self.assertIn("(`--dropout 0.1 --weight-decay 0.01`)", f.read())

    def test_variant_flags_come_last_in_the_recipe_arguments(self):
        with mock.patch.object(ablate.subprocess, "run") as run:
            ablate.run_variant(
                "ptb",
                "gpt2",
                0,
                ["--dropout", "0.3"],
                "out",
                ["--dropout", "0"],
            )
        argv = run.call_args.args[0]
        dropout = [argv[i + 1] for i, a in enumerate(argv) if a == "--dropout"]
        # The recipe's argparse keeps the last value: the variant's.
        self.assertEqual(dropout, ["0.3", "0"])
        # In the recipe's child environment (huge pages where they help).
        self.assertEqual(
            run.call_args.kwargs["env"], recipe.child_environment()
        )

    def test_shared_flags_reach_the_models_that_read_them(self):
        shared = ["--num-atoms=8", "--hidden-dim", "16", "--num-heads", "2"]
        arguments = {
            name: ablate.run_arguments("ptb", name, shared)
            for name in ("base", "gpt2", "rwkv7", "paper")
        }
        self.assertEqual(
            arguments["base"],
            (
                ["--num-atoms=8", "--hidden-dim", "16", *ablate.LONG_WINDOWS],
                ["--num-heads", "2"],
            ),
        )
        # GPT-2 does not get the atoms.
        self.assertEqual(
            arguments["gpt2"],
            (
                ["--hidden-dim", "16", "--num-heads", "2", "--model", "gpt2"],
                ["--num-atoms=8"],
            ),
        )
        self.assertEqual(arguments["rwkv7"][1], ["--num-atoms=8"])
        # Every run's flags pass the recipe's own check.
        for name, (flags, _) in arguments.items():
            self.assertEqual(
                ablate.recipe.parse_args("ptb", flags).model,
                "sdgm" if name in ("base", "paper") else name,
            )
        # The table says which rows went without which flags.
        out = self.get_temp_dir()
        with mock.patch.object(ablate, "run_variant", side_effect=fake_run):
            ablate.main(
                ["--output-dir", out, "--variants", "gpt2", "--", *shared]
            )
        with open(os.path.join(out, "ablations.json")) as f:
            self.assertEqual(
                json.load(f)["shared_arguments_not_given"],
                {"base": ["--num-heads", "2"], "gpt2": ["--num-atoms=8"]},
            )
        with open(os.path.join(out, "ablations.md")) as f:
            self.assertIn(
                "that `gpt2`'s model does not read, not given to it: "
                "`--num-atoms=8`",
                f.read(),
            )

    def test_a_variant_flag_its_model_would_ignore_fails_before_any_run(self):
        stderr = io.StringIO()
        with (
            mock.patch.object(ablate, "run_variant") as run,
            contextlib.redirect_stderr(stderr),
            self.assertRaises(SystemExit),
        ):
            ablate.main(
                [
                    "--output-dir",
                    self.get_temp_dir(),
                    "--variants",
                    "gpt2",
                    "--variant-flags",
                    "gpt2=--encoder-type gated",
                ]
            )
        run.assert_not_called()
        self.assertIn("the run of gpt2 (the recipe's flags)", stderr.getvalue())
        self.assertIn("--encoder-type is read only by", stderr.getvalue())

    def test_another_reference(self):
        run, table, out = self.run_ablations(
            "no-feedforward", options=["--reference", "gpt2"]
        )
        # base is not run; no-feedforward (103) is not within 5% of gpt2.
        self.assertEqual(
            sorted((c.args[1], c.args[2]) for c in run.call_args_list),
            [("gpt2", 0), ("no-feedforward", 0)],
        )
        self.assertEqual(table["reference"], "gpt2")
        with open(os.path.join(out, "ablations.md")) as f:
            markdown = f.read()
        self.assertIn("| vs gpt2 (valid) |", markdown)
        self.assertIn("-31.3%", markdown)  # 103 / 150

    def test_bad_variant_flags(self):
        for entry, message in [
            ("gpt2 --dropout 0.1", "NAME=FLAGS"),
            ("rwkv7=--dropout 0.1", "variants run"),
        ]:
            with self.assertRaisesRegex(SystemExit, message):
                ablate.main(["--variants", "gpt2", "--variant-flags", entry])
        with self.assertRaisesRegex(SystemExit, "twice"):
            ablate.main(
                [
                    "--variants",
                    "gpt2",
                    "--variant-flags",
                    "gpt2=--dropout 0.1",
                    "gpt2=--dropout 0.2",
                ]
            )

    def test_flags_ablate_sets_itself_are_refused_before_any_run(self):
        out = self.get_temp_dir()
        for shared, own, message in [
            (["--seed", "3"], [], "after `--` sets --seed.*own --seed"),
            (["--seed=3"], [], "after `--` sets --seed"),
            (["--output", out], [], "sets --output-dir.*own --output-dir"),
            (["--verbose", "1"], [], "sets --verbose.*--verbose 2"),
            ([], ["gpt2=--seed 1"], "--variant-flags gpt2 sets --seed"),
        ]:
            with self.subTest(shared=shared, own=own):
                with mock.patch.object(ablate, "run_variant") as run:
                    with self.assertRaisesRegex(SystemExit, message):
                        ablate.main(
                            [
                                "--output-dir",
                                out,
                                "--variants",
                                "gpt2",
                                *(["--variant-flags", *own] if own else []),
                                "--",
                                *shared,
                            ]
                        )
                run.assert_not_called()

    def test_a_bad_recipe_flag_fails_before_any_run(self):
        for shared, named in (
            (["--hidden-dim", "0"], "argument --hidden-dim"),
            (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        ):
            with self.subTest(shared=shared):
                stderr = io.StringIO()
                with mock.patch.object(ablate, "run_variant") as run:
                    with contextlib.redirect_stderr(stderr):
                        with self.assertRaises(SystemExit):
                            ablate.main(
                                [
                                    "--output-dir",
                                    self.get_temp_dir(),
                                    "--",
                                    *shared,
                                ]
                            )
                run.assert_not_called()
                self.assertIn(named, stderr.getvalue())
                self.assertIn("the flags after `--`", stderr.getvalue())

    def test_unknown_variant(self):
        with self.assertRaisesRegex(SystemExit, "Unknown variants"):
            ablate.main(["--variants", "no-such-thing"])
