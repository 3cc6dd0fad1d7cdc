"""How much each model gains from context: perplexity by position in the window.

    KERAS_BACKEND=jax python scripts/context_use.py \\
        runs/ptb-sdgm/best.keras runs/ptb-gpt2/best.keras \\
        --labels sdgm gpt2 --corpus ptb --split valid --output-dir runs/context-use

Scores the split in non-overlapping windows of `--window` tokens (SPEC
section 6; default: the first model's window) with
`keras_sdgm.evaluate_perplexity(..., by_position=True)`. Prints, per model,
the perplexity over all positions and over buckets of positions by how many
tokens of context the prediction has (1, 2-4, 5-16, ...; a bucket's is the
exponential of its positions' mean NLL), and writes `context_use.json`
(every position's mean NLL) and `context_use.png` to `--output-dir`. An
output that exists is replaced only with `--overwrite`, checked before any
model is loaded.
"""

import argparse
import os

import keras
import numpy as np

import keras_sdgm  # noqa: F401 (registers the SDGM classes with Keras)
from keras_sdgm import evaluate_perplexity
from keras_sdgm.datasets import load_lines
from keras_sdgm.evaluation import model_window
from keras_sdgm.training import reporting
from keras_sdgm.utils.arguments import positive_int
from keras_sdgm.utils.arguments import run_command

OUTPUTS = ("context_use.json", "context_use.png")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "models", nargs="+", help="Saved causal LMs (`.keras`) to compare."
    )
    parser.add_argument(
        "--labels",
        nargs="+",
        default=None,
        help="One name per model (default: the paths).",
    )
    parser.add_argument("--corpus", choices=["ptb", "wikitext2"], default="ptb")
    parser.add_argument(
        "--split", choices=["train", "valid", "test"], default="valid"
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--window",
        type=positive_int,
        default=None,
        help="Window length (default: the first model's).",
    )
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--overwrite", action="store_true")
    return parser


def context_buckets(window):
    """`(first, last)` positions (0-based) of the buckets 1, 2-4, 5-16,
    17-32, ... tokens of context, the last ending at the window."""
    edges = [0, 1, 4] + [16 * 2**i for i in range(window.bit_length())]
    edges = sorted({min(edge, window) for edge in edges})
    return list(zip(edges[:-1], edges[1:]))


def bucket_perplexities(nll_by_position, buckets):
    return [float(np.exp(np.mean(nll_by_position[a:b]))) for a, b in buckets]


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    labels = args.labels or args.models
    if len(labels) != len(args.models):
        parser.error(
            f"--labels: give one per model ({len(args.models)}); "
            f"received {len(labels)}."
        )
    for path in args.models:
        if not os.path.isfile(path):
            parser.error(f"models: {path} does not exist.")
    paths = [os.path.join(args.output_dir, name) for name in OUTPUTS]
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not args.overwrite:
        parser.error(
            f"{', '.join(existing)} exists; pass --overwrite to replace it."
        )
    lines = load_lines(args.corpus, args.split, args.data_dir)

    results = {}
    window = args.window
    for label, path in zip(labels, args.models):
        lm = keras.saving.load_model(path, compile=False)
        if window is None:
            try:
                window = model_window(lm)
            except ValueError:
                raise SystemExit(
                    f"--window: {path} has no window of its own (e.g. "
                    "RWKV-7); give --window or list a model with one first."
                ) from None
        results[label] = evaluate_perplexity(
            lm, lines, sequence_length=window, verbose=0, by_position=True
        )
    buckets = context_buckets(window)
    header = ["model", "all"] + [
        f"{a + 1}" if b == a + 1 else f"{a + 1}-{b}" for a, b in buckets
    ]
    rows = [
        [label, f"{result['perplexity']:.1f}"]
        + [
            f"{value:.1f}"
            for value in bucket_perplexities(result["nll_by_position"], buckets)
        ]
        for label, result in results.items()
    ]
    print(
        f"Perplexity on {args.corpus} {args.split}, non-overlapping windows "
        f"of {window}, by tokens of context:"
    )
    print(reporting.markdown_table(header, rows))

    os.makedirs(args.output_dir, exist_ok=True)
    reporting.write_json(
        paths[0],
        {
            "corpus": args.corpus,
            "split": args.split,
            "window": window,
            "models": dict(zip(labels, args.models)),
            "results": results,
        },
    )
    _plot(results, paths[1], f"{args.corpus} {args.split}, window {window}")


def _plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, result in results.items():
        nll = np.asarray(result["nll_by_position"])
        axes.plot(np.arange(1, len(nll) + 1), np.exp(nll), label=label)
    axes.set_xscale("log")
    axes.set_xlabel("tokens of context (position in the window + 1)")
    axes.set_ylabel("perplexity at that position")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    run_command(main)
