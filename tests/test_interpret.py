import contextlib
import io
import os

import keras
import numpy as np
from keras import ops

from keras_sdgm import interpret
from keras_sdgm.interpret.plots import plot_atom_waveforms
from keras_sdgm.interpret.report import main
from keras_sdgm.interpret.report import write_report
from keras_sdgm.models import SDGMBackbone
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from tests.fixtures import TINY_BACKBONE
from tests.testing import TestCase

LINES = [
    "the cat sat on the mat",
    "a dog ran to the park and the cat ran too",
    "the park was green and the mat was red",
] * 10


def tiny_lm(dictionary_type="static"):
    tokenizer = SDGMTokenizer(SDGMTokenizer.build_vocabulary(LINES))
    backbone = SDGMBackbone(
        **{
            **TINY_BACKBONE,
            "vocabulary_size": tokenizer.vocabulary_size(),
            "num_atoms": 6,
            "dictionary_type": dictionary_type,
        }
    )
    preprocessor = SDGMCausalLMPreprocessor(tokenizer, sequence_length=8)
    return SDGMCausalLM(backbone, preprocessor=preprocessor)


class InterpretTest(TestCase):
    def test_atom_table_summarizes_the_weights(self):
        lm = tiny_lm("separable_frequency")
        table = interpret.atom_table(lm, block=1)
        dictionary = lm.backbone.blocks[1].dictionary
        # Atom k, feature d has frequency f[k] + g[d].
        frequency = np.abs(
            ops.convert_to_numpy(dictionary.frequency)[:, None]
            + ops.convert_to_numpy(dictionary.feature_frequency)[None]
        )
        amplitude = ops.convert_to_numpy(dictionary.amplitude)
        self.assertLen(table, 6)
        self.assertAllClose(table[2]["frequency_mean"], frequency[2].mean())
        self.assertAllClose(table[2]["frequency_min"], frequency[2].min())
        self.assertAllClose(table[2]["frequency_max"], frequency[2].max())
        self.assertAllClose(
            table[2]["amplitude_rms"], np.sqrt(np.mean(amplitude[2] ** 2))
        )
        for row in table:
            self.assertBetween(row["phase_concentration"], 0.0, 1.0)

    def test_static_atoms_are_the_rows_of_its_matrix(self):
        lm = tiny_lm()
        table = interpret.atom_table(lm.backbone, block=1)
        kernel = ops.convert_to_numpy(lm.backbone.blocks[1].dictionary.kernel)
        self.assertLen(table, 6)
        self.assertEqual(
            table[2],
            {
                "atom": 2,
                "amplitude_rms": float(np.sqrt(np.mean(kernel[2] ** 2))),
                "amplitude_max": float(np.abs(kernel[2]).max()),
            },
        )
        # No waveform to plot.
        with self.assertRaisesRegex(ValueError, "no waveforms"):
            plot_atom_waveforms(lm, [0], os.path.join(self.get_temp_dir(), "w"))

    def test_top_tokens_are_the_largest_mean_coefficients(self):
        lm = tiny_lm()
        tokenizer = lm.preprocessor.tokenizer
        token_ids = np.concatenate([tokenizer(line) for line in LINES])
        top = interpret.top_activating_tokens(lm, token_ids, top=3, min_count=1)
        self.assertLen(top, 6)
        # Recompute atom 4's means from the coefficients directly.
        windows = token_ids[: (len(token_ids) - 1) // 8 * 8].reshape(-1, 8)
        terms = lm.backbone(
            {"token_ids": windows, "padding_mask": np.ones_like(windows)},
            return_auxiliary_outputs=True,
        )["auxiliary_outputs"]
        c = ops.convert_to_numpy(terms[0]["coefficients"])[..., 4].reshape(-1)
        ids = windows.reshape(-1)
        means = {t: c[ids == t].mean() for t in np.unique(ids)}
        expected = sorted(means, key=lambda t: -means[t])[:3]
        self.assertEqual([t for t, _, _ in top[4]], expected)
        self.assertAllClose(
            [m for _, m, _ in top[4]], [means[t] for t in expected], atol=1e-5
        )

    def test_reconstruction_similarity_is_the_mean_cosine(self):
        lm = tiny_lm()
        tokenizer = lm.preprocessor.tokenizer
        token_ids = np.concatenate([tokenizer(line) for line in LINES])
        similarity = interpret.reconstruction_similarity(lm, token_ids)
        windows = token_ids[: (len(token_ids) - 1) // 8 * 8].reshape(-1, 8)
        terms = lm.backbone(
            {"token_ids": windows, "padding_mask": np.ones_like(windows)},
            return_auxiliary_outputs=True,
        )["auxiliary_outputs"]
        for block, value in enumerate(similarity):
            x = ops.convert_to_numpy(terms[block]["target"]).reshape(-1, 8)
            y = ops.convert_to_numpy(terms[block]["reconstruction"]).reshape(
                -1, 8
            )
            cosine = (
                (x * y).sum(-1)
                / np.linalg.norm(x, axis=-1)
                / np.linalg.norm(y, axis=-1)
            )
            self.assertAllClose(value, cosine.mean(), atol=1e-5)

    def test_cli_reports_errors_plainly(self):
        out = os.path.join(self.get_temp_dir(), "report")

        def cli_error(*argv):
            stderr = io.StringIO()
            with (
                contextlib.redirect_stderr(stderr),
                self.assertRaises(SystemExit) as exit_,
            ):
                main(list(argv))
            self.assertEqual(exit_.exception.code, 2)
            return stderr.getvalue()

        missing = os.path.join(self.get_temp_dir(), "missing.keras")
        message = cli_error(missing, "--output-dir", out)
        self.assertIn("error: No saved model at", message)
        self.assertNotIn("Traceback", message)
        self.assertIn(
            "--max-windows",
            cli_error(missing, "--output-dir", out, "--max-windows", "0"),
        )
        self.assertIn(
            "--text-file",
            cli_error(missing, "--out", out, "--text-file", missing),
        )
        self.assertIn("--output-dir", cli_error(missing))  # required
        # Not an SDGM model: said so, not an AttributeError.
        path = os.path.join(self.get_temp_dir(), "dense.keras")
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
        self.assertIn("`SDGMCausalLM`", cli_error(path, "--output-dir", out))
        self.assertFalse(os.path.exists(out))

    def test_sinusoidal_atoms_get_their_spectrum_and_waveforms(self):
        out = os.path.join(self.get_temp_dir(), "report")
        write_report(tiny_lm("separable_frequency"), out, lines=LINES)
        for block in (0, 1):
            for name in ("spectrum.png", "waveforms.png", "heatmap.png"):
                path = os.path.join(out, f"block_{block}_{name}")
                self.assertGreater(os.path.getsize(path), 100, path)
        with open(os.path.join(out, "report.md")) as f:
            report = f.read()
        self.assertEqual(report.count("\n| "), 2 * (1 + 6))
        self.assertIn(
            "| atom | mean freq | period (median) | RMS amp | phase conc. | "
            "top tokens |",
            report,
        )

    def test_cli_writes_the_report_and_plots(self):
        lm = tiny_lm()
        model_path = os.path.join(self.get_temp_dir(), "lm.keras")
        lm.save(model_path)
        text_path = os.path.join(self.get_temp_dir(), "text.txt")
        with open(text_path, "w") as f:
            f.write("\n".join(LINES))
        out = os.path.join(self.get_temp_dir(), "report")
        main(
            [
                model_path,
                "--output-dir",
                out,
                "--text-file",
                text_path,
                "--sentence",
                "the cat ran to the park",
            ]
        )
        # The default static dictionary: atoms and coefficients, no
        # waveforms.
        for block in (0, 1):
            for name in ("atoms.csv", "heatmap.png"):
                path = os.path.join(out, f"block_{block}_{name}")
                self.assertGreater(os.path.getsize(path), 100, path)
            for name in ("spectrum.png", "waveforms.png"):
                path = os.path.join(out, f"block_{block}_{name}")
                self.assertFalse(os.path.exists(path), path)
        with open(os.path.join(out, "report.md")) as f:
            report = f.read()
        self.assertIn("block_1_heatmap.png", report)
        self.assertIn("the same at every position", report)
        self.assertIn("reconstruction", report)
        # Six atoms per block, all in the strongest-atoms table rows.
        self.assertEqual(report.count("\n| "), 2 * (1 + 6))
        self.assertIn("| atom | RMS amp | top tokens |", report)

        # A second run into the same folder: refused before any work, the
        # report kept; replaced with --overwrite.
        stderr = io.StringIO()
        with (
            contextlib.redirect_stderr(stderr),
            self.assertRaises(SystemExit) as exit_,
        ):
            main([model_path, "--output-dir", out])
        self.assertEqual(exit_.exception.code, 2)
        self.assertIn("--overwrite", stderr.getvalue())
        with open(os.path.join(out, "report.md")) as f:
            self.assertEqual(f.read(), report)
        with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
            write_report(lm, out)
        main([model_path, "--output-dir", out, "--overwrite"])
        with open(os.path.join(out, "report.md")) as f:
            self.assertNotIn("reconstruction", f.read())  # no --text-file
