"""Prints a markdown table of finished recipe runs from their metrics.json.

    python scripts/results_table.py runs/ptb-paper-full runs/ptb-gpt2 ...

One row per run folder: model and loss weights, parameters (embedding /
non-embedding), steps and epochs trained, validation and test perplexity
under both protocols of SPEC section 6, training tokens/s and wall time.
"""

import argparse
import csv
import json
import os


def describe(config):
    if config["model"] == "gpt2":
        return f"GPT-2, {config['num_layers']} layers"
    weights = "/".join(
        f"{config[k]:g}" for k in ("reconstruction_weight", "stft_weight",
                                   "nll_weight", "prior_weight")
    )
    return f"SDGM `{config['preset']}`, α/β/γ/δ = {weights}"


def row(run_dir):
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(run_dir, "log.csv")) as f:
        log = list(csv.DictReader(f))
    config = metrics["config"]
    ppl = metrics["perplexity"]
    params = metrics["parameters"]
    best_epoch = 1 + min(
        range(len(log)), key=lambda i: float(log[i]["val_perplexity"])
    )
    cells = [
        f"`{os.path.basename(os.path.normpath(run_dir))}`",
        describe(config),
        f"{params['embedding'] / 1e6:.2f}M / {params['non_embedding'] / 1e6:.2f}M",
        f"{len(log)} (best {best_epoch})",
        f"{ppl['valid']['non_overlapping']['perplexity']:.1f} / "
        f"{ppl['valid']['sliding']['perplexity']:.1f}",
        f"{ppl['test']['non_overlapping']['perplexity']:.1f} / "
        f"{ppl['test']['sliding']['perplexity']:.1f}",
        f"{metrics['training_tokens_per_second']:.0f}",
        f"{metrics['wall_time_seconds'] / 60:.0f} min",
    ]
    return "| " + " | ".join(cells) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args()
    header = [
        "run", "model", "params (emb / non-emb)", "epochs",
        "valid ppl (non-overlap / sliding)", "test ppl (non-overlap / sliding)",
        "train tok/s", "wall",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for run_dir in args.run_dirs:
        print(row(run_dir))


if __name__ == "__main__":
    main()
