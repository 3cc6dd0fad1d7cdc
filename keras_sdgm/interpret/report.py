"""The interpretability report: `python -m keras_sdgm.interpret MODEL --output-dir DIR`."""

import argparse
import csv
import json
import os

import numpy as np

from keras_sdgm.datasets import CORPORA
from keras_sdgm.datasets import load_lines
from keras_sdgm.datasets import tokenize_corpus
from keras_sdgm.interpret import analysis
from keras_sdgm.interpret import plots
from keras_sdgm.models import SDGMCausalLM
from keras_sdgm.utils import arguments

DEFAULT_SENTENCE = (
    "the company said it expects sales to rise in the third quarter"
)


def write_report(
    lm,
    out_dir,
    lines=None,
    sentence=DEFAULT_SENTENCE,
    max_windows=200,
    top=8,
    num_waveforms=8,
    overwrite=False,
):
    """Writes `report.md`, its PNG figures, `atoms.csv` and `summary.json`.

    Args:
        lm: an `SDGMCausalLM` with its preprocessor (for words).
        out_dir: folder to write into (created if missing).
        lines: text lines (e.g. a validation split) for the top-activating
            tokens and the reconstruction similarity, or `None` to skip them.
        sentence: text for the coefficient heat maps.
        max_windows: int. Windows of `lines` to run through the model.
        top: int. Tokens listed per atom.
        num_waveforms: int. Atoms listed per block, and whose waveforms
            are plotted for a sinusoidal dictionary (the largest
            amplitudes).
        overwrite: bool. Replace the report of a folder that has one;
            without it, such a folder raises `FileExistsError` before
            anything is computed or written.

    Returns:
        dict with what `summary.json` holds.
    """
    if not isinstance(lm, SDGMCausalLM):
        raise ValueError(
            "The report is for an `SDGMCausalLM` (its atoms and "
            f"coefficients); received a {type(lm).__name__}."
        )
    if lm.preprocessor is None:
        raise ValueError(
            "The report needs the model's tokenizer: load a model saved with "
            "its preprocessor (as the recipes save it)."
        )
    check_report_destination(out_dir, overwrite)
    tokenizer = lm.preprocessor.tokenizer
    os.makedirs(out_dir, exist_ok=True)
    backbone = lm.backbone
    sections = [
        "# SDGM interpretability report\n",
        f"{backbone.num_layers} block(s), K={backbone.num_atoms} atoms, "
        f"D={backbone.hidden_dim}, training window L0={backbone.window_length}. "
        "Frequencies are in cycles per training window.\n",
    ]
    summary = {"blocks": []}

    token_ids = None
    if lines is not None:
        token_ids = tokenize_corpus(tokenizer, lines)
        similarity = analysis.reconstruction_similarity(
            lm, token_ids, max_windows=max_windows
        )
        summary["reconstruction_cosine_similarity"] = similarity
        sections.append(
            "## Embedding reconstruction\n\nMean cosine similarity between "
            "each block's normalized input and its dictionary reconstruction "
            f"(the paper reports 0.92), over {max_windows} windows at most: "
            + ", ".join(f"block {i}: {s:.3f}" for i, s in enumerate(similarity))
            + ".\n"
        )

    sentence_ids = np.asarray(tokenizer(sentence), "int32")
    words = [tokenizer.id_to_token(int(i)) for i in sentence_ids]
    sentence_coefficients = analysis.sentence_coefficients(lm, sentence_ids)

    for block in range(backbone.num_layers):
        table = analysis.atom_table(lm, block)
        sinusoidal = analysis.has_sinusoidal_atoms(lm, block)
        prefix = f"block_{block}"
        with open(
            os.path.join(out_dir, f"{prefix}_atoms.csv"), "w", newline=""
        ) as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        strongest = sorted(table, key=lambda r: -r["amplitude_rms"])[
            :num_waveforms
        ]
        strongest_atoms = [r["atom"] for r in strongest]
        plots.plot_coefficient_heatmap(
            words,
            sentence_coefficients[block],
            os.path.join(out_dir, f"{prefix}_heatmap.png"),
            f"Block {block} coefficients",
        )
        sections.append(f"## Block {block}\n")
        if sinusoidal:
            plots.plot_atom_spectrum(
                table, os.path.join(out_dir, f"{prefix}_spectrum.png")
            )
            plots.plot_atom_waveforms(
                lm,
                strongest_atoms,
                os.path.join(out_dir, f"{prefix}_waveforms.png"),
                block=block,
            )
            sections.append(
                f"![spectrum]({prefix}_spectrum.png)\n\n"
                f"![waveforms]({prefix}_waveforms.png)\n"
            )
            columns = ["mean freq", "period (median)", "RMS amp", "phase conc."]
        else:
            sections.append(
                f"A {backbone.blocks[block].dictionary_type!r} dictionary: "
                "each atom is one vector, the same at every position (no "
                "waveform, frequency or phase).\n"
            )
            columns = ["RMS amp"]
        sections.append(
            f'Coefficients for "{sentence}":\n\n![heat map]({prefix}_heatmap.png)\n'
        )
        if token_ids is not None:
            columns.append("top tokens")
        table_lines = [
            f"All atoms: [{prefix}_atoms.csv]({prefix}_atoms.csv). The "
            f"{len(strongest)} strongest (by RMS amplitude):\n",
            "| atom | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        top_tokens = None
        if token_ids is not None:
            top_tokens = analysis.top_activating_tokens(
                lm, token_ids, block=block, top=top, max_windows=max_windows
            )
        for row in strongest:
            cells = [str(row["atom"])]
            if sinusoidal:
                cells += [
                    f"{row['frequency_mean']:.2f}",
                    f"{row['period_median']:.1f}",
                ]
            cells.append(f"{row['amplitude_rms']:.4f}")
            if sinusoidal:
                cells.append(f"{row['phase_concentration']:.2f}")
            if top_tokens is not None:
                cells.append(
                    " ".join(
                        f"`{tokenizer.id_to_token(t)}`"
                        for t, _, _ in top_tokens[row["atom"]]
                    )
                )
            table_lines.append("| " + " | ".join(cells) + " |")
        summary["blocks"].append(
            {
                "strongest_atoms": strongest_atoms,
                "top_tokens": None
                if top_tokens is None
                else {
                    k: [tokenizer.id_to_token(t) for t, _, _ in top_tokens[k]]
                    for k in strongest_atoms
                },
            }
        )
        sections.append("\n".join(table_lines) + "\n")

    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(sections))
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def check_report_destination(out_dir, overwrite):
    """Refuses a folder that holds a report unless asked to replace it."""
    report = os.path.join(out_dir, "report.md")
    if os.path.exists(report) and not overwrite:
        raise FileExistsError(
            f"{report} exists; nothing was written. Pass `overwrite=True` "
            "(`--overwrite`) to replace the report, or choose another "
            "output folder."
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_sdgm.interpret",
        description="Write an interpretability report for a saved SDGM model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model", help="A saved SDGMCausalLM (.keras).")
    parser.add_argument(
        "--output-dir",
        "--out",
        dest="output_dir",
        required=True,
        help="Folder to write the report into (created if missing; --out "
        "is its older name).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace the report of an output folder that has one.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--corpus",
        choices=sorted(CORPORA),
        help="Corpus whose --split gives the token statistics.",
    )
    source.add_argument("--text-file", help="Text file, one line per sequence.")
    parser.add_argument(
        "--split", choices=["train", "valid", "test"], default="valid"
    )
    parser.add_argument(
        "--data-dir", default=None, help="Folder with ptb/ and wikitext-2/."
    )
    parser.add_argument(
        "--sentence",
        default=DEFAULT_SENTENCE,
        help="Text for the coefficient heat maps.",
    )
    parser.add_argument(
        "--max-windows",
        type=arguments.positive_int,
        default=200,
        help="Windows of the text run through the model.",
    )
    args = parser.parse_args(argv)
    if args.text_file is not None and not os.path.isfile(args.text_file):
        parser.error(f"--text-file {args.text_file} is not a file.")
    try:
        check_report_destination(args.output_dir, args.overwrite)
    except FileExistsError as error:
        parser.error(f"--output-dir: {error}")

    import keras_sdgm  # noqa: F401  (registers the classes for loading)
    from keras_sdgm.export.export_utils import load_keras_file

    try:
        lm = load_keras_file(args.model, compile=False)
        lines = None
        if args.corpus:
            lines = load_lines(args.corpus, args.split, args.data_dir)
        elif args.text_file:
            with open(args.text_file, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
        write_report(
            lm,
            args.output_dir,
            lines=lines,
            sentence=args.sentence,
            max_windows=args.max_windows,
            overwrite=args.overwrite,
        )
    except (FileNotFoundError, ValueError) as error:  # UnicodeDecodeError too
        parser.exit(2, f"error: {error}\n")
    print(f"Wrote {os.path.join(args.output_dir, 'report.md')}")
