"""The WikiText-2 / Penn Treebank experiment, shared by `recipes/*.py`.

Trains SDGM (or the same-size keras-hub GPT-2 baseline) on a word-level
corpus with the paper's settings, early-stops on validation perplexity,
and writes to the output folder:

- `best.keras`: the best model, with its tokenizer vocabulary;
- `metrics.json`: validation and test perplexity under both protocols of
  SPEC section 6 (and on longer validation windows with
  `--long-eval-lengths`), parameter counts, training tokens/s, wall time, backend,
  library versions and the full config;
- `log.csv` and `curves.png`: per-epoch metrics and their plot;
- `config.json`: the arguments, checked again when a run is resumed.

Running the same command again resumes an interrupted run from its last
checkpoint (`keras.callbacks.BackupAndRestore`); a finished run is never
overwritten without `--overwrite`.
"""

import argparse
import json
import math
import os
import shutil
import time

import keras
import keras_hub

from keras_sdgm.datasets import language_model_dataset
from keras_sdgm.datasets import load_lines
from keras_sdgm.datasets import token_windows
from keras_sdgm.datasets import tokenize_corpus
from keras_sdgm.evaluation import evaluate_perplexity
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from keras_sdgm.models.sdgm.sdgm_presets import backbone_presets
from keras_sdgm.training import callbacks as callbacks_lib
from keras_sdgm.training import distribution
from keras_sdgm.training import model_builders
from keras_sdgm.training import reporting

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def build_parser(corpus):
    parser = argparse.ArgumentParser(
        description=f"Train and evaluate SDGM or GPT-2 on {corpus}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model", choices=["sdgm", "gpt2"], default="sdgm")
    add("--preset", choices=sorted(backbone_presets), default="sdgm_base",
        help="SDGM architecture; the size flags below override it.")
    add("--hidden-dim", type=int, default=None,
        help="Default: the preset's (sdgm_base: 512).")
    add("--num-atoms", type=int, default=None,
        help="SDGM dictionary size K. Default: the preset's (256).")
    add("--sequence-length", type=int, default=None,
        help="Training window L. Default: the preset's (128).")
    add("--num-layers", type=int, default=None,
        help="Blocks or Transformer layers. Default: the preset's.")
    add("--kernel-size", type=int, default=None)
    add("--dilation-rates", type=_int_list, default=None,
        help="Comma-separated, e.g. 1,2,4 (SDGM).")
    add("--coefficient-activation", default=None)
    add("--intermediate-dim", type=int, default=None,
        help="Feed-forward width (0: none, SDGM); default 4 x hidden.")
    add("--residual", action=argparse.BooleanOptionalAction, default=None)
    add("--num-mixture-components", type=int, default=None)
    add("--dictionary", choices=["spectral", "static"], default=None,
        help="static: a position-independent (K, D) matrix (ablation).")
    add("--max-position-offset", type=int, default=None,
        help="Train the dictionaries at positions shifted by a random "
        "offset up to this (SDGM).")
    add("--num-heads", type=int, default=8, help="GPT-2 attention heads.")
    add("--dropout", type=float, default=0.0)
    add("--nll-weight", type=float, default=1.0)
    add("--reconstruction-weight", type=float, default=0.0)
    add("--stft-weight", type=float, default=0.0)
    add("--prior-weight", type=float, default=0.0)
    add("--learning-rate", type=float, default=1e-3)
    add("--weight-decay", type=float, default=1e-5)
    add("--batch-size", type=int, default=32)
    add("--epochs", type=int, default=10)
    add("--patience", type=int, default=2,
        help="Epochs without a better validation perplexity before stopping.")
    add("--steps-per-epoch", type=int, default=None,
        help="Steps between validations (default: one pass over the data).")
    add("--max-steps", type=int, default=None,
        help="Train at most this many steps (whole epochs when larger).")
    add("--eval-stride", type=int, default=None,
        help="Stride of the sliding-window evaluation (default L / 2).")
    add("--long-eval-lengths", type=_int_list, default=[],
        help="Also score the validation split in non-overlapping windows "
        "of these lengths, longer than the training window (SDGM only; "
        "GPT-2's learned positions end at the window).")
    add("--jit-compile", choices=["auto", "true", "false"], default="auto")
    add("--distribute", choices=["none", "data-parallel", "model-parallel"],
        default="none",
        help="data-parallel: split each batch across all devices (JAX's "
        "DataParallel, TensorFlow's MirroredStrategy; --batch-size is the "
        "global batch). model-parallel: split the token embedding by "
        "vocabulary rows across all devices (JAX's ModelParallel).")
    add("--checkpoint-every", type=int, default=200,
        help="Steps between resumable checkpoints.")
    add("--seed", type=int, default=0)
    add("--data-dir", default=None,
        help="Folder with ptb/ and wikitext-2/ (else $KERAS_SDGM_DATA_DIR, "
             "the Keras cache, then a download).")
    add("--output-dir", default=None,
        help=f"Default: runs/{corpus}-<model>.")
    add("--overwrite", action="store_true",
        help="Replace a finished run in --output-dir.")
    add("--verbose", type=int, choices=[0, 1, 2], default=1)
    return parser


def main(corpus, argv=None):
    """Runs the recipe for `corpus` (`"ptb"` or `"wikitext2"`)."""
    parser = build_parser(corpus)
    args = parser.parse_args(argv)
    if args.long_eval_lengths and args.model == "gpt2":
        parser.error("--long-eval-lengths is for SDGM: GPT-2's learned "
                     "positions end at its window.")
    if any(length < 2 for length in args.long_eval_lengths):
        parser.error("--long-eval-lengths must be at least 2.")
    # Sizes not given come from the preset, for GPT-2 too (same size).
    preset = backbone_presets[args.preset]["config"]
    for name in ("hidden_dim", "num_atoms", "sequence_length", "num_layers"):
        if getattr(args, name) is None:
            setattr(args, name, preset[name])
    output_dir = args.output_dir or os.path.join("runs", f"{corpus}-{args.model}")
    config = {"corpus": corpus, **vars(args)}
    del config["overwrite"], config["verbose"], config["output_dir"]
    resuming = prepare_output_dir(output_dir, config, args.overwrite)
    keras.utils.set_random_seed(args.seed)
    started = time.time()

    lines = {s: load_lines(corpus, s, args.data_dir) for s in ("train", "valid", "test")}
    tokenizer = SDGMTokenizer(SDGMTokenizer.build_vocabulary(lines["train"]))
    tokens = {s: tokenize_corpus(tokenizer, lines[s]) for s in lines}
    preprocessor = SDGMCausalLMPreprocessor(
        tokenizer, sequence_length=args.sequence_length
    )
    steps_per_epoch = args.steps_per_epoch or math.ceil(
        len(token_windows(tokens["train"], args.sequence_length))
        / args.batch_size
    )
    epochs = args.epochs
    if args.max_steps is not None:
        if args.max_steps < steps_per_epoch:
            steps_per_epoch, epochs = args.max_steps, 1
        else:
            epochs = min(epochs, math.ceil(args.max_steps / steps_per_epoch))
    train = language_model_dataset(
        tokens["train"], args.sequence_length, args.batch_size, seed=args.seed
    ).repeat()
    validation = language_model_dataset(
        tokens["valid"], args.sequence_length, args.batch_size, shuffle=False
    )

    num_devices, scope = distribution.configure_distribution(
        args.distribute, args.batch_size
    )
    # Seeded again here, so that the initial weights depend on --seed alone,
    # not on what this process drew before (e.g. the first-time imports
    # above, or earlier runs in a notebook).
    keras.utils.set_random_seed(args.seed)
    with scope:
        lm = model_builders.build_causal_lm(args, preprocessor)
        lm.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=args.learning_rate,
                weight_decay=args.weight_decay,
            ),
            weighted_metrics=[keras_hub.metrics.Perplexity(from_logits=True)],
            jit_compile={"auto": "auto", "true": True, "false": False}[
                args.jit_compile
            ],
        )
        distribution.prepare_for_strategy(lm, validation)
    require_free_space(output_dir, lm)

    best_path = os.path.join(output_dir, "best.keras")
    csv_path = os.path.join(output_dir, "log.csv")
    backup_dir = os.path.join(output_dir, "backup")
    start_epoch = callbacks_lib.StepAndEpochBackup.restored_epoch(backup_dir)
    past = reporting.truncate_csv_log(csv_path, start_epoch)
    throughput = callbacks_lib.ThroughputMeter(args.batch_size * args.sequence_length)
    callbacks = [
        # First: a NaN step raises before any callback below saves it.
        callbacks_lib.StopOnNonFiniteLoss(backup_dir),
        keras.callbacks.ModelCheckpoint(
            best_path, monitor="val_perplexity", mode="min",
            save_best_only=True,
            initial_value_threshold=min(
                (r["val_perplexity"] for r in past if "val_perplexity" in r),
                default=None,
            ),
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_perplexity", mode="min", patience=args.patience
        ),
        keras.callbacks.CSVLogger(csv_path, append=True),
        throughput,
        callbacks_lib.StepAndEpochBackup(
            backup_dir,
            save_freq=args.checkpoint_every,
            double_checkpoint=True,
            # Kept until metrics.json is written: a run killed while it is
            # evaluated resumes after its last epoch, not from scratch.
            delete_checkpoint=False,
        ),
    ]
    if num_devices > 1:
        callbacks.append(callbacks_lib.SynchronousBatchEnd())
    # The training batches are one seeded stream; a resumed run skips the
    # batches its backup has seen, so every batch is trained on once, in
    # the order of an uninterrupted run.
    done_steps = callbacks_lib.StepAndEpochBackup.restored_step(backup_dir)
    if done_steps is None:
        done_steps = start_epoch * steps_per_epoch
    done_in_epoch = done_steps - start_epoch * steps_per_epoch
    if resuming:
        print(f"Resuming the run in {output_dir} at epoch {start_epoch + 1}"
              + (f", step {done_in_epoch + 1}." if done_in_epoch else "."))
    fit_arguments = dict(validation_data=validation, callbacks=callbacks,
                         verbose=args.verbose)
    if 0 < done_in_epoch < steps_per_epoch:
        # Killed mid-epoch: first the rest of that epoch (Keras's
        # `BackupAndRestore` restores the weights and the epoch, and would
        # repeat the whole epoch).
        lm.fit(train.skip(done_steps), epochs=start_epoch + 1,
               steps_per_epoch=steps_per_epoch - done_in_epoch,
               **fit_arguments)
        done_steps = (start_epoch + 1) * steps_per_epoch
    if not lm.stop_training:
        lm.fit(train.skip(done_steps), epochs=epochs,
               steps_per_epoch=steps_per_epoch, **fit_arguments)
    if not os.path.exists(best_path):
        raise RuntimeError(
            f"No finite validation perplexity was reached, so there is no "
            f"best model in {output_dir}; see {csv_path}."
        )

    best = keras.models.load_model(best_path)
    stride = args.eval_stride or args.sequence_length // 2
    metrics = {
        split: {
            "non_overlapping": evaluate_perplexity(
                best, tokens[split], verbose=min(args.verbose, 1)
            ),
            "sliding": evaluate_perplexity(
                best, tokens[split], stride=stride, verbose=min(args.verbose, 1)
            ),
        }
        for split in ("valid", "test")
    }
    if args.model == "sdgm":
        metrics["valid"]["long_windows"] = {
            str(length): evaluate_perplexity(
                best, tokens["valid"], sequence_length=length,
                batch_size=max(1, 64 * args.sequence_length // length),
                verbose=min(args.verbose, 1),
            )
            for length in args.long_eval_lengths
        }
    reporting.plot_training_curves(
        csv_path, os.path.join(output_dir, "curves.png"),
        f"{args.model} on {corpus}",
    )
    result = {
        "corpus": corpus,
        "model": args.model,
        "perplexity": metrics,
        "parameters": model_builders.parameter_counts(best),
        "vocabulary_size": tokenizer.vocabulary_size(),
        "training_tokens_per_second": throughput.tokens_per_second(),
        "epochs_logged": len(reporting.read_csv_log(csv_path)),
        "wall_time_seconds": time.time() - started,
        "backend": keras.config.backend(),
        "devices": num_devices,
        "versions": reporting.library_versions(),
        "config": config,
    }
    reporting.write_json(os.path.join(output_dir, METRICS_FILE), result)
    shutil.rmtree(os.path.join(output_dir, "backup"), ignore_errors=True)
    print(json.dumps(result["perplexity"], indent=2))
    print(f"Wrote {output_dir}/{METRICS_FILE}")
    return result


def prepare_output_dir(output_dir, config, overwrite):
    """Checks the output folder before any work; returns True to resume.

    A finished run (with `metrics.json`) is replaced only with `overwrite`;
    an unfinished one is resumed if its config matches. The folder must be
    writable, which is checked now rather than after hours of training.
    """
    config_path = os.path.join(output_dir, CONFIG_FILE)
    if os.path.exists(os.path.join(output_dir, METRICS_FILE)):
        if not overwrite:
            raise FileExistsError(
                f"{output_dir} holds a finished run. Pass --overwrite to "
                "replace it, or choose another --output-dir."
            )
        shutil.rmtree(output_dir)
    resuming = os.path.exists(config_path)
    if resuming:
        with open(config_path) as f:
            previous = json.load(f)
        if previous != config:
            changed = sorted(
                k for k in set(previous) | set(config)
                if previous.get(k) != config.get(k)
            )
            raise ValueError(
                f"{output_dir} holds an unfinished run with another config "
                f"(differs in {changed}). Rerun it with the same arguments "
                "to resume it, or choose another --output-dir."
            )
    try:
        os.makedirs(output_dir, exist_ok=True)
        reporting.write_json(config_path, config)
    except OSError as error:
        raise OSError(
            f"Cannot write to the output folder {output_dir}: {error}"
        ) from error
    return resuming


def require_free_space(output_dir, lm):
    """Fails now, not hours later, if the checkpoints cannot fit on disk.

    A run keeps up to four copies of the weights with the optimizer's two
    Adam moments: the best model and three backup files.
    """
    needed = 4 * 3 * 4 * lm.count_params()
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        raise OSError(
            f"{output_dir} has {free / 2**20:.0f} MiB free, but this run's "
            f"checkpoints need about {needed / 2**20:.0f} MiB. Free some "
            "space or choose another --output-dir."
        )


def _int_list(text):
    return [int(x) for x in text.split(",") if x.strip()]
