"""Copies a finished recipe run into `saved_models/` as a small release.

    KERAS_BACKEND=jax python scripts/save_release_model.py \
        runs/ptb-sdgm_tiny saved_models/ptb_sdgm_tiny --command "..."

Writes `OUT_DIR/model.keras` (the run's best model with its vocabulary,
without the optimizer state), the same model as a keras-hub preset
directory `OUT_DIR/preset/` (what `keras_hub.models.CausalLM.from_preset`
loads) and `OUT_DIR/metadata.json`: the test
perplexity of that file (non-overlapping windows, SPEC section 6) measured
after saving it, the run's own metrics, the command that trained it, its
size and SHA-256. `tests/test_saved_models.py` re-evaluates every release
against this metadata. An existing release is replaced only with
`--overwrite`.
"""

import argparse
import json
import os

import keras

from keras_sdgm import evaluate_perplexity
from keras_sdgm.datasets import file_sha256
from keras_sdgm.datasets import load_lines
from keras_sdgm.training import reporting
from keras_sdgm.utils.arguments import run_command

MODEL_FILE = "model.keras"
PRESET_DIR = "preset"
METADATA_FILE = "metadata.json"


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="A finished recipe run folder.")
    parser.add_argument("out_dir", help="e.g. saved_models/ptb_sdgm_tiny")
    parser.add_argument(
        "--command", required=True, help="The command that trained the run."
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    run_metrics = reporting.read_metrics(args.run_dir)
    if run_metrics is None:
        raise FileNotFoundError(
            f"{args.run_dir} has no {reporting.METRICS_FILE}: not a finished "
            "recipe run."
        )
    model_path = os.path.join(args.out_dir, MODEL_FILE)
    if os.path.exists(model_path) and not args.overwrite:
        raise FileExistsError(
            f"{model_path} exists. Pass --overwrite to replace it."
        )
    os.makedirs(args.out_dir, exist_ok=True)

    # compile=False leaves the optimizer state out of the saved file.
    lm = keras.saving.load_model(
        os.path.join(args.run_dir, "best.keras"), compile=False
    )
    lm.save(model_path)
    lm = keras.saving.load_model(model_path, compile=False)
    lm.save_to_preset(os.path.join(args.out_dir, PRESET_DIR))
    corpus = run_metrics["corpus"]
    test = evaluate_perplexity(lm, load_lines(corpus, "test", args.data_dir))
    digest = file_sha256(model_path)
    metadata = {
        "corpus": corpus,
        "split": "test",
        "protocol": test["protocol"],
        "perplexity": test["perplexity"],
        "num_predicted": test["num_predicted"],
        "model_file": MODEL_FILE,
        "model_bytes": os.path.getsize(model_path),
        "model_sha256": digest,
        "training_command": args.command,
        "run_metrics": {
            k: run_metrics[k]
            for k in (
                "perplexity",
                "parameters",
                "vocabulary_size",
                "training_tokens_per_second",
                "epochs_logged",
                "wall_time_seconds",
                "backend",
                "versions",
                "config",
            )
        },
        "evaluated_with": {
            "backend": keras.config.backend(),
            "versions": reporting.library_versions(),
        },
    }
    reporting.write_json(os.path.join(args.out_dir, METADATA_FILE), metadata)
    print(
        json.dumps(
            {k: metadata[k] for k in ("perplexity", "protocol", "model_bytes")},
            indent=2,
        )
    )


if __name__ == "__main__":
    run_command(main)
