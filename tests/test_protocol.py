"""The convergence protocols: the commands they run, and that every run's
flags are ones the recipe accepts (no data read, no training)."""

import contextlib
import io
import os
from unittest import mock

from keras_sdgm.training import recipe
from recipes import ablate
from recipes import protocol
from tests.testing import TestCase


class ProtocolTest(TestCase):
    def test_one_ablation_table_per_corpus(self):
        out = os.path.join("runs", "p")
        cpu = protocol.commands("cpu", protocol.CORPORA, out, ["--seed", "3"])
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
            # The caller's flags come last: they override the protocol's.
            self.assertEqual(command[split + 1 :][-2:], ["--seed", "3"])
        gpu = protocol.commands("gpu", ["ptb"], out)
        self.assertIn("gpt2-small", gpu[0])
        self.assertNotIn("gpt2-small", cpu[0])

    def row_config(self, name, row):
        """The recipe config of `row` of protocol `name`, as ablate runs it."""
        flags = protocol.PROTOCOLS[name]["flags"]
        return recipe.parse_args(
            "ptb", flags + ablate.BASE_FLAGS + ablate.VARIANTS[row][1]
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
        printed = io.StringIO()
        with (
            mock.patch.object(protocol.subprocess, "run") as run,
            contextlib.redirect_stdout(printed),
        ):
            protocol.main(
                ["--protocol", "cpu", "--corpora", "ptb", "--dry-run"]
            )
        run.assert_not_called()
        self.assertIn("--corpus ptb", printed.getvalue())
        self.assertIn(
            os.path.join("runs", "protocol-cpu", "ptb"), printed.getvalue()
        )
        with mock.patch.object(protocol.subprocess, "run") as run:
            with contextlib.redirect_stdout(io.StringIO()):
                protocol.main(["--protocol", "gpu", "--", "--max-steps", "2"])
        self.assertEqual(run.call_count, 2)
        self.assertEqual(run.call_args.args[0][-2:], ["--max-steps", "2"])
