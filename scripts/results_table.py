"""Prints a markdown table of finished recipe runs from their metrics.json.

    python scripts/results_table.py runs/ptb-paper-full runs/ptb-gpt2 ...

One row per run folder: model and loss weights, parameters (embedding /
non-embedding), steps and epochs trained, validation and test perplexity
under both protocols of SPEC section 6, training tokens/s and wall time.
"""

import argparse
import os

from keras_sdgm.training import reporting
from keras_sdgm.utils.arguments import run_command

HEADER = [
    "run",
    "model",
    "params (emb / non-emb)",
    "epochs",
    "valid ppl (non-overlap / sliding)",
    "test ppl (non-overlap / sliding)",
    "train tok/s",
    "wall",
]


def describe(config):
    if config["model"] == "gpt2":
        return f"GPT-2, {config['num_layers']} layers"
    weights = "/".join(
        f"{config[k]:g}"
        for k in (
            "reconstruction_weight",
            "stft_weight",
            "nll_weight",
            "prior_weight",
        )
    )
    return f"SDGM `{config['preset']}`, α/β/γ/δ = {weights}"


def cells(run_dir):
    """The table row of one finished run, as a list of cells."""
    metrics = reporting.read_metrics(run_dir)
    if metrics is None:
        raise FileNotFoundError(
            f"{run_dir} has no {reporting.METRICS_FILE}: not a finished run."
        )
    log = reporting.read_csv_log(os.path.join(run_dir, "log.csv"))
    ppl = metrics["perplexity"]
    params = metrics["parameters"]
    best_epoch = 1 + min(
        range(len(log)), key=lambda i: log[i]["val_perplexity"]
    )
    return [
        f"`{os.path.basename(os.path.normpath(run_dir))}`",
        describe(metrics["config"]),
        f"{reporting.millions(params['embedding'])} / "
        f"{reporting.millions(params['non_embedding'])}",
        f"{len(log)} (best {best_epoch})",
        f"{ppl['valid']['non_overlapping']['perplexity']:.1f} / "
        f"{ppl['valid']['sliding']['perplexity']:.1f}",
        f"{ppl['test']['non_overlapping']['perplexity']:.1f} / "
        f"{ppl['test']['sliding']['perplexity']:.1f}",
        f"{metrics['training_tokens_per_second']:.0f}",
        f"{metrics['wall_time_seconds'] / 60:.0f} min",
    ]


def results_table(run_dirs):
    """The markdown table of the finished runs in `run_dirs`."""
    return reporting.markdown_table(HEADER, [cells(d) for d in run_dirs])


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args(argv)
    print(results_table(args.run_dirs))


if __name__ == "__main__":
    run_command(main)
