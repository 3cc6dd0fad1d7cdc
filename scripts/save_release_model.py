"""Copies a finished recipe run into `saved_models/` as a small release.

    KERAS_BACKEND=jax python scripts/save_release_model.py \
        runs/ptb-sdgm_small saved_models/ptb_sdgm_small --command "..."

Writes `OUT_DIR/model.keras` (the run's best model with its vocabulary,
without the optimizer state), the same model as the package's trained
preset `keras_sdgm/presets/NAME/` (a keras-hub preset directory; NAME is
`--preset-name`, by default the name of OUT_DIR) and `OUT_DIR/metadata.json`:
the test perplexity of that file under both protocols of SPEC section 6
(non-overlapping windows of the model's window, and sliding windows)
measured after saving it, the run's own metrics, the command that trained
it, its size and SHA-256. A new preset name also needs its entry in
`trained_presets` (`keras_sdgm/models/sdgm/sdgm_presets.py`);
`tests/test_saved_models.py` checks both and re-evaluates every release
against its metadata. Everything is written and evaluated first, then moved
into place: an existing release is replaced only with `--overwrite`, and
only by a complete one.
"""

import argparse
import json
import os
import shutil
import tempfile

import keras

import keras_sdgm.presets
from keras_sdgm import evaluate_perplexity
from keras_sdgm.datasets import file_sha256
from keras_sdgm.datasets import load_lines
from keras_sdgm.export.export_utils import check_destination
from keras_sdgm.export.export_utils import write_replacing
from keras_sdgm.training import recipe
from keras_sdgm.training import reporting
from keras_sdgm.utils.arguments import run_command

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
PRESETS_DIR = os.path.dirname(keras_sdgm.presets.__file__)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", help="A finished recipe run folder.")
    parser.add_argument("out_dir", help="e.g. saved_models/ptb_sdgm_small")
    parser.add_argument(
        "--command", required=True, help="The command that trained the run."
    )
    parser.add_argument(
        "--preset-name",
        default=None,
        help="The trained preset's name (default: the name of out_dir).",
    )
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    preset_name = args.preset_name or os.path.basename(
        os.path.normpath(args.out_dir)
    )
    if not preset_name.isidentifier():
        parser.error(
            f"--preset-name: {preset_name!r} is not a valid preset name "
            "(letters, digits and underscores)."
        )

    run_metrics = reporting.read_metrics(args.run_dir)
    if run_metrics is None:
        raise FileNotFoundError(
            f"{args.run_dir} has no {reporting.METRICS_FILE}: not a finished "
            "recipe run."
        )
    best_path = os.path.join(args.run_dir, "best.keras")
    if not os.path.isfile(best_path):
        raise FileNotFoundError(f"{best_path} does not exist.")
    model_path = os.path.join(args.out_dir, MODEL_FILE)
    metadata_path = os.path.join(args.out_dir, METADATA_FILE)
    preset_path = os.path.join(PRESETS_DIR, preset_name)
    for path in (model_path, metadata_path, preset_path):
        check_destination(path, args.overwrite)

    staging = tempfile.mkdtemp(prefix=".release-")
    try:
        staged_model = os.path.join(staging, MODEL_FILE)
        # compile=False leaves the optimizer state out of the saved file.
        keras.saving.load_model(best_path, compile=False).save(staged_model)
        lm = keras.saving.load_model(staged_model, compile=False)
        corpus = run_metrics["corpus"]
        test = test_perplexity(
            lm, load_lines(corpus, "test", args.data_dir), run_metrics
        )
        metadata = release_metadata(
            args, run_metrics, corpus, test, staged_model, preset_name
        )
        write_replacing(
            model_path,
            lambda path: shutil.copyfile(staged_model, path),
            args.overwrite,
        )
        write_replacing(preset_path, lm.save_to_preset, args.overwrite)
        write_replacing(
            metadata_path,
            lambda path: reporting.write_json(path, metadata),
            args.overwrite,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(
        json.dumps(
            {k: metadata[k] for k in ("perplexity", "model_bytes")},
            indent=2,
        )
    )


def test_perplexity(lm, lines, run_metrics):
    """The saved model's test perplexity under both protocols of SPEC
    section 6, as the recipe measures them: non-overlapping windows of the
    model's window, and sliding windows of the run's `--eval-stride`
    (default half the window)."""
    stride = recipe.sliding_stride(
        run_metrics["config"]["eval_stride"], lm.backbone.window_length
    )
    return {
        "non_overlapping": evaluate_perplexity(lm, lines),
        "sliding": evaluate_perplexity(lm, lines, stride=stride),
    }


def release_metadata(args, run_metrics, corpus, test, model_path, preset):
    """What `metadata.json` records of a release."""
    return {
        "corpus": corpus,
        "split": "test",
        "perplexity": test,
        "model_file": MODEL_FILE,
        "model_bytes": os.path.getsize(model_path),
        "model_sha256": file_sha256(model_path),
        "preset": preset,
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


if __name__ == "__main__":
    run_command(main)
