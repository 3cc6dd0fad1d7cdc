"""The convergence protocols: the commands they run, that every run's flags
are ones the recipe accepts, and the sweep's choice of each family's
setting (no data read, no training: finished runs are `metrics.json` files
written here)."""

import contextlib
import io
import json
import os
import subprocess
from unittest import mock

from keras_sdgm.training import recipe
from recipes import ablate
from recipes import protocol
from tests.testing import TestCase


class ProtocolTest(TestCase):
    def test_one_ablation_table_per_corpus(self):
        out = os.path.join("runs", "p")
        cpu = protocol.commands(
            "cpu", protocol.CORPORA, out, ["--learning-rate", "0.002"]
        )
        self.assertLen(cpu, 2)
        for command, corpus in zip(cpu, protocol.CORPORA):
            self.assertTrue(
                command[1].endswith(os.path.join("recipes", "ablate.py"))
            )
            split = command.index("--")
            args = ablate.build_parser().parse_args(command[2:split])
            self.assertEqual(args.corpus, corpus)
            self.assertEqual(args.output_dir, os.path.join(out, corpus))
            self.assertEqual(tuple(args.variants), protocol.ROWS)
            self.assertEqual(args.reference, "base")
            # The caller's flags come last: they override the protocol's.
            self.assertEqual(
                command[split + 1 :][-2:], ["--learning-rate", "0.002"]
            )
        gpu = protocol.commands("gpu", protocol.CORPORA, out)
        self.assertIn("gpt2-small", gpu[0])
        self.assertNotIn("gpt2-small", cpu[0])

        # On the CPU WikiText-2 gets 3 epochs, PTB 10, and otherwise the
        # same flags; the GPU protocol gives both the paper's 10.
        def epochs(commands):
            return [
                recipe.parse_args(corpus, c[c.index("--") + 1 :]).epochs
                for c, corpus in zip(commands, protocol.CORPORA)
            ]

        self.assertEqual(epochs(cpu), [10, 3])
        self.assertEqual(epochs(gpu), [10, 10])
        ptb, wikitext2 = (command[command.index("--") + 1 :] for command in cpu)
        changed = [i for i, (a, b) in enumerate(zip(ptb, wikitext2)) if a != b]
        self.assertEqual(len(ptb), len(wikitext2))
        self.assertEqual([ptb[i - 1] for i in changed], ["--epochs"])

    def row_config(self, name, row):
        """The recipe config of `row` of protocol `name`, as ablate runs it."""
        flags = protocol.PROTOCOLS[name]["flags"]["ptb"]
        return recipe.parse_args(
            "ptb", ablate.run_arguments("ptb", row, flags)[0]
        )

    def test_every_run_is_a_valid_recipe_run(self):
        for name, settings in protocol.PROTOCOLS.items():
            for row in settings["rows"]:
                config = self.row_config(name, row)
                self.assertEqual(config.batch_size, 32, (name, row))
                self.assertEqual(config.sequence_length, 128, (name, row))
        paper = self.row_config("cpu", "paper-no-stft")
        self.assertEqual(
            (paper.preset, paper.hidden_dim, paper.stft_weight),
            ("sdgm_paper", 256, 0.0),
        )
        # The reference is the default SDGM: `sdgm_base` as it ships, the
        # preset's mixer and dictionary.
        default = self.row_config("cpu", protocol.REFERENCE)
        self.assertEqual(
            (
                default.preset,
                default.encoder_type,
                default.dictionary_type,
                default.max_position_offset,
            ),
            ("sdgm_base", None, None, None),
        )
        # Each SDGM row has its preset's atoms.
        self.assertEqual(
            (self.row_config("gpu", "base").num_atoms, paper.num_atoms),
            (128, 256),
        )
        self.assertEqual(paper.lr_schedule, "cosine")
        small = self.row_config("gpu", "gpt2-small")
        self.assertEqual(
            (small.model, small.hidden_dim, small.num_layers), ("gpt2", 768, 12)
        )

    def test_dry_run_prints_and_runs_nothing(self):
        out = self.get_temp_dir()
        printed = io.StringIO()
        with (
            mock.patch.object(protocol.subprocess, "run") as run,
            contextlib.redirect_stdout(printed),
        ):
            protocol.main(
                ["--protocol", "cpu", "--corpora", "ptb", "--dry-run"]
                + ["--output-dir", out]
            )
        run.assert_not_called()
        self.assertEqual(os.listdir(out), [])
        lines = printed.getvalue().splitlines()
        # The sweep's commands; the tables' need its results.
        self.assertLen(lines, len(protocol.SWEEP) + 1)
        self.assertIn(os.path.join(out, "sweep", "ptb"), lines[0])
        self.assertIn("its family's setting", lines[-1])
        with mock.patch.object(protocol.subprocess, "run") as run:
            with contextlib.redirect_stdout(io.StringIO()):
                protocol.main(["--protocol", "gpu", "--", "--max-steps", "2"])
        self.assertEqual(run.call_count, 2)
        self.assertEqual(run.call_args.args[0][-2:], ["--max-steps", "2"])

    def test_runs_keep_their_records_in_the_repository(self):
        # By default the runs go to a folder in the repository, so that a
        # later checkout reuses the finished ones ...
        with mock.patch.object(protocol.subprocess, "run") as run:
            with contextlib.redirect_stdout(io.StringIO()):
                protocol.main(["--protocol", "gpu", "--corpora", "ptb"])
        command = run.call_args.args[0]
        folder = os.path.join("docs", "results", "protocol-gpu")
        self.assertEqual(
            command[command.index("--output-dir") + 1],
            os.path.join(folder, "ptb"),
        )
        # ... and git keeps their records, not their models and checkpoints.
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        if not os.path.isdir(os.path.join(root, ".git")):
            self.skipTest("Not a git checkout.")
        run_dir = os.path.join(folder, "ptb", "base", "seed0")
        kept = ["config.json", "log.csv", "metrics.json"]
        left_out = [
            "best.keras",
            os.path.join("backup", "training_metadata.json"),
            os.path.join("preset", "model.weights.h5"),
            "steps.csv",
            "curves.png",
        ]
        paths = [os.path.join(run_dir, name) for name in kept + left_out]
        paths.append(os.path.join(folder, "ptb", "ablations.md"))
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", *paths],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.split()
        self.assertEqual(
            ignored, [os.path.join(run_dir, name) for name in left_out]
        )

    def test_flags_the_runs_set_themselves_fail_before_anything_runs(self):
        # ablate gives each run its own --seed: before, a caller's was
        # dropped without a word.
        with mock.patch.object(protocol.subprocess, "run") as run:
            with self.assertRaisesRegex(SystemExit, "sets --seed.*own --seed"):
                protocol.main(["--protocol", "cpu", "--", "--seed", "3"])
        run.assert_not_called()

    def test_sweep_commands(self):
        out = os.path.join("runs", "p")
        sweep = protocol.sweep_commands("cpu", out, ["--max-steps", "2"])
        self.assertLen(sweep, len(protocol.SWEEP))
        self.assertEqual(protocol.sweep_commands("gpu", out), [])
        for command, setting in zip(sweep, protocol.SWEEP):
            split = command.index("--")
            args = ablate.build_parser().parse_args(command[2:split])
            self.assertEqual(args.corpus, "ptb")
            self.assertEqual(args.variants, ["base", "gpt2", "rwkv7"])
            self.assertEqual(args.reference, "base")
            self.assertEqual(args.close_seeds, 1)
            self.assertEqual(
                args.output_dir,
                os.path.join(
                    out, "sweep", "ptb", protocol.setting_name(setting)
                ),
            )
            flags = command[split + 1 :]
            self.assertEqual(
                flags,
                protocol.PROTOCOLS["cpu"]["flags"]["ptb"]
                + list(setting)
                + ["--max-steps", "2"],
            )
            # Every family's run of every setting is a valid recipe run.
            for row in args.variants:
                config = recipe.parse_args(
                    "ptb", ablate.run_arguments("ptb", row, flags)[0]
                )
                self.assertEqual(config.dropout, float(setting[1]))
                self.assertEqual(config.weight_decay, float(setting[3]))
        plateau = recipe.parse_args(
            "ptb", sweep[-1][sweep[-1].index("--") + 1 :]
        )
        self.assertEqual(
            (plateau.lr_schedule, plateau.warmup_steps), ("plateau", 0)
        )
        self.assertEqual(
            protocol.setting_name(protocol.SWEEP[0]),
            "dropout-0.0-weight-decay-1e-05",
        )

    def test_families(self):
        self.assertEqual(
            {
                row: protocol.family(row)
                for row in protocol.PROTOCOLS["gpu"]["rows"]
            },
            {
                "base": "sdgm",
                "previous-default": "sdgm",
                "spectral-dictionary": "sdgm",
                "paper": "sdgm",
                "paper-no-stft": "sdgm",
                "paper-no-nll": "sdgm",
                "gpt2": "gpt2",
                "rwkv7": "rwkv7",
                "gpt2-small": "gpt2",
            },
        )

    def write_sweep_run(self, out, setting, row, perplexity, epochs):
        folder = ablate.run_dir(
            os.path.join(
                protocol.sweep_dir(out), protocol.setting_name(setting)
            ),
            row,
            0,
        )
        os.makedirs(folder)
        with open(os.path.join(folder, "metrics.json"), "w") as f:
            json.dump(
                {
                    "epochs_logged": epochs,
                    "perplexity": {
                        "valid": {"non_overlapping": {"perplexity": perplexity}}
                    },
                },
                f,
            )

    def finished_sweep(self):
        """A finished sweep: SDGM best at the 2nd setting, GPT-2 at the
        4th, RWKV-7 at the 1st."""
        out = self.get_temp_dir()
        best = {"base": 1, "gpt2": 3, "rwkv7": 0}
        for i, setting in enumerate(protocol.SWEEP):
            for row, j in best.items():
                self.write_sweep_run(
                    out, setting, row, 100.0 + 10 * abs(i - j), epochs=i + 3
                )
        return out, {
            name: list(protocol.SWEEP[best[row]])
            for name, row in protocol.FAMILIES.items()
        }

    def test_each_family_gets_its_best_setting(self):
        out, expected = self.finished_sweep()
        results = protocol.sweep_results("cpu", out)
        self.assertEqual(
            results["gpt2"][protocol.setting_name(protocol.SWEEP[0])],
            {
                "flags": list(protocol.SWEEP[0]),
                "valid_perplexity": 130.0,
                "epochs": 3,
            },
        )
        chosen = protocol.write_sweep_table("cpu", out, results)
        self.assertEqual(chosen, expected)
        with open(os.path.join(protocol.sweep_dir(out), "sweep.json")) as f:
            self.assertEqual(json.load(f)["chosen"], expected)
        with open(os.path.join(protocol.sweep_dir(out), "sweep.md")) as f:
            markdown = f.read()
        self.assertEqual(markdown.count("**100.0"), 3)
        self.assertIn("| 110.0 (5) | 110.0 (5) | 120.0 (5) |", markdown)
        # A family with no finished run yet has no choice.
        self.assertEqual(
            protocol.chosen_settings({"sdgm": {}, "gpt2": results["gpt2"]}),
            {"gpt2": expected["gpt2"]},
        )

    def test_tables_run_with_each_familys_setting(self):
        out, chosen = self.finished_sweep()
        with (
            mock.patch.object(protocol.subprocess, "run") as run,
            contextlib.redirect_stdout(io.StringIO()),
        ):
            protocol.main(
                [
                    "--protocol",
                    "cpu",
                    "--output-dir",
                    out,
                    "--",
                    "--learning-rate",
                    "0.002",
                ]
            )
        commands = [c.args[0] for c in run.call_args_list]
        self.assertLen(commands, len(protocol.SWEEP) + 2)
        for command, corpus in zip(commands[-2:], protocol.CORPORA):
            split = command.index("--")
            args = ablate.build_parser().parse_args(command[2:split])
            self.assertEqual(args.corpus, corpus)
            own = ablate.parse_variant_flags(args.variant_flags, args.variants)
            for row in protocol.ROWS:
                # The caller's flags come last: they override the setting.
                self.assertEqual(
                    own[row],
                    chosen[protocol.family(row)] + ["--learning-rate", "0.002"],
                )
            self.assertEqual(command[-2:], ["--learning-rate", "0.002"])
        # Each family's chosen PTB run is the PTB table's row, copied.
        for name, row in protocol.FAMILIES.items():
            copied = ablate.run_dir(os.path.join(out, "ptb"), row, 0)
            with open(os.path.join(copied, "metrics.json")) as f:
                self.assertEqual(
                    json.load(f)["perplexity"]["valid"]["non_overlapping"],
                    {"perplexity": 100.0},
                )
        self.assertFalse(os.path.exists(os.path.join(out, "wikitext2")))
