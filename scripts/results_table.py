"""Prints a markdown table of finished recipe runs from their metrics.json.

    python scripts/results_table.py runs/ptb-paper-full runs/ptb-gpt2 ...

One row per run folder: model (with the sizes and overrides its run gave the
preset, and its loss weights), dropout / weight decay / schedule, parameters
(embedding / non-embedding), steps and epochs trained, validation and test
perplexity under both protocols of SPEC section 6, training tokens/s and wall
time.
"""

import argparse
import os

from keras_sdgm.training import model_builders
from keras_sdgm.training import reporting
from keras_sdgm.utils.arguments import run_command

HEADER = [
    "run",
    "model",
    "training",
    "params (emb / non-emb)",
    "epochs",
    "valid ppl (non-overlap / sliding)",
    "test ppl (non-overlap / sliding)",
    "train tok/s",
    "wall",
]
BASELINES = {"gpt2": "keras-hub GPT-2", "rwkv7": "keras-hub RWKV-7"}
# The loss weights in the order of the objective's alpha, beta, gamma, delta.
LOSS_WEIGHTS = (
    "reconstruction_weight",
    "stft_weight",
    "nll_weight",
    "prior_weight",
)


def describe(config):
    """The model of a run: the baseline, or the SDGM preset with the sizes
    and overrides its run gave it (dropout is `training`'s) and its loss
    weights."""
    if config["model"] in BASELINES:
        return f"{BASELINES[config['model']]}, {config['num_layers']} layers"
    overrides = "".join(
        f", {flag}={config[flag]}"
        for flag in model_builders.SDGM_OVERRIDES
        if flag != "dropout" and config.get(flag) is not None
    )
    weights = "/".join(f"{config[k]:g}" for k in LOSS_WEIGHTS)
    return f"SDGM `{config['preset']}`{overrides}, α/β/γ/δ = {weights}"


def training(config):
    """The run's regularization and schedule, e.g. `dropout 0.1, weight
    decay 0.1, cosine (warm-up 200)`."""
    if "dropout" not in config:  # Runs from before the recipe's --dropout.
        return "—"
    return (
        f"dropout {config['dropout']:g}, weight decay "
        f"{config['weight_decay']:g}, {config['lr_schedule'] or 'constant'} "
        f"(warm-up {config['warmup_steps'] or 0})"
    )


def label(run_dir):
    """The run's name: its folder, with the row's folder for `seedN`."""
    path = os.path.normpath(run_dir)
    name = os.path.basename(path)
    if name.startswith("seed"):
        name = f"{os.path.basename(os.path.dirname(path))}/{name}"
    return f"`{name}`"


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
        label(run_dir),
        describe(metrics["config"]),
        training(metrics["config"]),
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
