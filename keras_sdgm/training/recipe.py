"""The WikiText-2 / Penn Treebank experiment, shared by `recipes/*.py`.

Trains SDGM (or the same-size keras-hub GPT-2 baseline) on a word-level
corpus with the paper's settings, early-stops on validation perplexity,
and writes to the output folder. The corpus is PTB or WikiText-2 by name
(`recipes/ptb.py`, `recipes/wt2.py`) or plain-text files of your own
(`recipes/train.py --train-file`, corpus `"text"`). It writes:

- `best.keras`: the best model, with its tokenizer vocabulary;
- `preset/`: the same model as a keras-hub preset directory (config,
  weights, tokenizer vocabulary, preprocessor): `SDGMCausalLM.from_preset`
  and `keras_hub.models.CausalLM.from_preset` load it, ready to generate;
- `metrics.json`: validation and test perplexity under both protocols of
  SPEC section 6 (and on longer validation windows with
  `--long-eval-lengths`), parameter counts, training tokens/s, wall time, backend,
  library versions and the full config;
- `log.csv`: per-epoch metrics; `steps.csv`: the training loss about 20
  times an epoch; `curves.png`: both against the step;
- with `--tensorboard`, `tensorboard/`: the same metrics, the learning
  rate and the training tokens/s, for TensorBoard;
- `config.json`: the arguments, checked again when a run is resumed.

Running the same command again resumes an interrupted run from its last
checkpoint (`keras.callbacks.BackupAndRestore`); a finished run is never
overwritten without `--overwrite`, and with it is kept aside
(`<output-dir>.previous`) until the new run finishes (restored if the new
run fails). Every flag is checked before anything is read or written, and
`config.json` is written only once the data and the model are ready.

`main(corpus, argv, callbacks)` is the whole run, one step per function,
each usable alone: `parse_args` (flags to a `RecipeConfig`), `check_output_dir`,
`prepare_output_dir`,
`load_data`, `build_model`, `make_callbacks`, `fit_resumable`,
`write_preset`, `evaluate` and `write_report`.
"""

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import time

import keras
import keras_hub

from keras_sdgm.datasets import CORPORA
from keras_sdgm.datasets import file_sha256
from keras_sdgm.datasets import language_model_dataset
from keras_sdgm.datasets import load_lines
from keras_sdgm.datasets import load_text_splits
from keras_sdgm.datasets import token_windows
from keras_sdgm.datasets import tokenize_corpus
from keras_sdgm.evaluation import evaluate_perplexity
from keras_sdgm.export.export_utils import load_keras_file
from keras_sdgm.models import SDGMCausalLMPreprocessor
from keras_sdgm.models import SDGMTokenizer
from keras_sdgm.models.sdgm.sdgm_presets import backbone_presets
from keras_sdgm.models.sdgm.spectral_dictionary_block import DICTIONARY_TYPES
from keras_sdgm.models.sdgm.spectral_dictionary_block import ENCODER_TYPES
from keras_sdgm.training import callbacks as callbacks_lib
from keras_sdgm.training import distribution
from keras_sdgm.training import model_builders
from keras_sdgm.training import reporting
from keras_sdgm.utils import arguments

CONFIG_FILE = "config.json"
PRESET_DIR = "preset"
STEPS_LOG = "steps.csv"
METRICS_FILE = reporting.METRICS_FILE
SPLITS = ("train", "valid", "test")
MODELS = ("sdgm", "gpt2", "rwkv7")
LR_SCHEDULES = ("constant", "cosine", "plateau")
# The corpus of `recipes/train.py`: text files named by flags.
TEXT_CORPUS = "text"
# Sizes that, when not given, come from the preset (for GPT-2 too: the
# baseline has the same size).
# Recipe field -> preset key: the training window is the dictionary's L0.
PRESET_SIZES = {
    "hidden_dim": "hidden_dim",
    "num_atoms": "num_atoms",
    "sequence_length": "window_length",
    "num_layers": "num_layers",
}
# SDGM's own flags: its overrides but those every model reads (sizes,
# dropout), and its loss weights. A flag added to SDGM's overrides is
# SDGM's alone.
SDGM_ONLY = (
    *(
        name
        for name in model_builders.SDGM_OVERRIDES
        if name
        not in ("hidden_dim", "num_layers", "intermediate_dim", "dropout")
    ),
    *model_builders.LOSS_WEIGHTS,
)
# The flags only some models read (destination: those models). Given for
# another model they are refused: that model would ignore them.
MODEL_FLAGS = {
    **dict.fromkeys(SDGM_ONLY, ("sdgm",)),
    "num_heads": ("gpt2", "rwkv7"),
    "rwkv_head_size": ("rwkv7",),
    # GPT-2's learned positions end at its window.
    "long_eval_lengths": ("sdgm", "rwkv7"),
}
# Flags spelled otherwise than their destination.
FLAG_NAMES = {"dictionary_type": "--dictionary"}
# Fields of a `RecipeConfig` that say how to run, not what: left out of
# `config.json`, so changing them does not stop a run from resuming.
RUN_ONLY_FIELDS = ("output_dir", "overwrite", "verbose", "tensorboard")


@dataclasses.dataclass
class RecipeConfig:
    """One recipe run: the corpus and every flag of `build_parser`.

    Build it with `parse_args`, which fills the sizes left out from the
    preset and the output folder. Its fields are the flags' names with
    underscores (`--hidden-dim`: `hidden_dim`); `saved_config()` is what
    `config.json` and `metrics.json` record. The fields after
    `tensorboard` belong to one kind of recipe and are `None` in the
    other: `data_dir` to a named corpus, the text flags and
    `text_sha256` (the digest of each text file given, filled by
    `parse_args`, so that a run does not resume on changed files) to
    `"text"`.
    """

    corpus: str
    # Model.
    model: str
    preset: str
    hidden_dim: int
    num_atoms: int
    sequence_length: int
    num_layers: int
    kernel_size: int | None
    dilation_rates: list | None
    coefficient_activation: str | None
    intermediate_dim: int | None
    residual: bool | None
    num_mixture_components: int | None
    dictionary_type: str | None
    encoder_type: str | None
    modes_per_feature: bool | None
    data_dependent_decay: bool | None
    max_position_offset: int | None
    num_heads: int
    rwkv_head_size: int | None
    dropout: float
    # Objective and optimizer.
    nll_weight: float
    reconstruction_weight: float
    stft_weight: float
    prior_weight: float
    learning_rate: float
    lr_schedule: str | None
    warmup_steps: int | None
    weight_decay: float
    # Budget.
    batch_size: int
    epochs: int
    patience: int
    steps_per_epoch: int | None
    max_steps: int | None
    # Evaluation.
    eval_stride: int | None
    eval_tokens: int | None
    long_eval_lengths: list
    # How to run.
    jit_compile: str
    distribute: str
    checkpoint_every: int
    seed: int
    output_dir: str
    overwrite: bool
    verbose: int
    tensorboard: bool
    # A named corpus.
    data_dir: str | None = None
    # Text files of your own.
    train_file: str | None = None
    valid_file: str | None = None
    test_file: str | None = None
    holdout_fraction: float | None = None
    max_vocabulary_size: int | None = None
    min_count: int | None = None
    text_sha256: dict | None = None

    def saved_config(self):
        """The config recorded in `config.json` (compared on resume): the
        fields but `RUN_ONLY_FIELDS`, and for SDGM the backbone arguments
        they resolve to today (`architecture`), so that a flag left at its
        default does not pass for today's default if that has changed."""
        config = dataclasses.asdict(self)
        for name in RUN_ONLY_FIELDS:
            del config[name]
        if self.model == "sdgm":
            config["architecture"] = model_builders.sdgm_architecture(
                self.preset, **model_builders.sdgm_overrides(self)
            )
        return config

    def path(self, name):
        """`name` (e.g. `"best.keras"`) in the run's output folder."""
        return os.path.join(self.output_dir, name)

    @property
    def backup_dir(self):
        return self.path("backup")

    @property
    def corpus_name(self):
        """The corpus as people name it: `ptb`, or the train file's name."""
        if self.corpus == TEXT_CORPUS:
            return os.path.basename(self.train_file)
        return self.corpus


def build_parser(corpus):
    """The recipe's flags: the same for every corpus, but where the text
    comes from (`--data-dir` for a named corpus, the text flags for
    `"text"`)."""
    if corpus != TEXT_CORPUS and corpus not in CORPORA:
        raise ValueError(
            f"Unknown corpus {corpus!r}: one of {sorted(CORPORA)} or "
            f"{TEXT_CORPUS!r} (your own text files)."
        )
    named = "your own text" if corpus == TEXT_CORPUS else corpus
    parser = argparse.ArgumentParser(
        description=f"Train and evaluate SDGM, GPT-2 or RWKV-7 on {named}.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if corpus == TEXT_CORPUS:
        add_text_flags(parser)
    add = parser.add_argument
    add(
        "--model",
        choices=list(MODELS),
        default="sdgm",
        help="SDGM, or a keras-hub baseline of the same size: GPT-2 or "
        "RWKV-7 (attention-free).",
    )
    add(
        "--preset",
        choices=sorted(backbone_presets),
        default="sdgm_base",
        help="SDGM architecture; the size flags below override it.",
    )
    add(
        "--hidden-dim",
        type=arguments.positive_int,
        default=None,
        help="Default: the preset's (sdgm_base: 512).",
    )
    add(
        "--num-atoms",
        type=arguments.positive_int,
        default=None,
        help="SDGM dictionary size K. Default: the preset's (sdgm_base: 128).",
    )
    add(
        "--sequence-length",
        type=arguments.positive_int,
        default=None,
        help="Training window L. Default: the preset's (128).",
    )
    add(
        "--num-layers",
        type=arguments.positive_int,
        default=None,
        help="Blocks or Transformer layers. Default: the preset's.",
    )
    add("--kernel-size", type=arguments.positive_int, default=None)
    add(
        "--dilation-rates",
        type=arguments.int_list,
        default=None,
        help="Comma-separated, e.g. 1,2,4 (SDGM).",
    )
    add("--coefficient-activation", default=None)
    add(
        "--intermediate-dim",
        type=arguments.non_negative_int,
        default=None,
        help="Feed-forward width. SDGM: 0 for none, default the preset's "
        "(2 x hidden); GPT-2 and RWKV-7: default 4 x hidden.",
    )
    add("--residual", action=argparse.BooleanOptionalAction, default=None)
    add("--num-mixture-components", type=arguments.positive_int, default=None)
    add(
        "--dictionary",
        dest="dictionary_type",
        choices=list(DICTIONARY_TYPES),
        default=None,
        help="SDGM's dictionary: spectral (the method's atoms), "
        "separable_frequency (frequencies f[k] + g[d], two matmuls), "
        "shared_frequency (one frequency per atom, one matmul), static (a "
        "position-independent (K, D) matrix, ablation); default: the "
        "preset's.",
    )
    add(
        "--encoder-type",
        choices=list(ENCODER_TYPES),
        default=None,
        help="SDGM's token mixer (SPEC section 8); default: the preset's.",
    )
    add(
        "--modes-per-feature",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SDGM's spectral mixers: every feature drives its own copy of "
        "the modes (state num_atoms x hidden_dim) instead of shared modes; "
        "default: the preset's.",
    )
    add(
        "--data-dependent-decay",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SDGM's spectral mixers with shared modes: each position's "
        "features set the modes' decay there; default: the preset's.",
    )
    add(
        "--max-position-offset",
        type=arguments.non_negative_int,
        default=None,
        help="Train the dictionaries at positions shifted by a random "
        "offset up to this (SDGM).",
    )
    add(
        "--num-heads",
        type=arguments.positive_int,
        default=8,
        help="GPT-2 attention heads; RWKV-7's heads when "
        "--rwkv-head-size is not given.",
    )
    add(
        "--rwkv-head-size",
        type=arguments.positive_int,
        default=None,
        help="RWKV-7's head size, a divisor of --hidden-dim; default: "
        "hidden_dim // num_heads.",
    )
    add("--dropout", type=arguments.dropout_rate, default=0.0)
    add("--nll-weight", type=arguments.non_negative_float, default=1.0)
    add(
        "--reconstruction-weight",
        type=arguments.non_negative_float,
        default=0.0,
    )
    add("--stft-weight", type=arguments.non_negative_float, default=0.0)
    add("--prior-weight", type=arguments.non_negative_float, default=0.0)
    add("--learning-rate", type=arguments.positive_float, default=1e-3)
    add(
        "--lr-schedule",
        choices=list(LR_SCHEDULES),
        default=None,
        help="constant (default): --learning-rate throughout; cosine: "
        "cosine decay to 0 over the planned steps (keras' CosineDecay); "
        "plateau: halve the rate after every epoch whose validation "
        "perplexity is not a new best (keras' ReduceLROnPlateau).",
    )
    add(
        "--warmup-steps",
        type=arguments.non_negative_int,
        default=None,
        help="Raise the rate linearly from 0 over this many steps first "
        "(constant and cosine schedules). Default, or 0: no warm-up.",
    )
    add("--weight-decay", type=arguments.non_negative_float, default=1e-5)
    add("--batch-size", type=arguments.positive_int, default=32)
    add("--epochs", type=arguments.positive_int, default=10)
    add(
        "--patience",
        type=arguments.non_negative_int,
        default=2,
        help="Epochs without a better validation perplexity before stopping.",
    )
    add(
        "--steps-per-epoch",
        type=arguments.positive_int,
        default=None,
        help="Steps between validations (default: one pass over the data).",
    )
    add(
        "--max-steps",
        type=arguments.positive_int,
        default=None,
        help="Train at most this many steps (whole epochs when larger).",
    )
    add(
        "--eval-stride",
        type=arguments.positive_int,
        default=None,
        help="Stride of the sliding-window evaluation (default L / 2).",
    )
    add(
        "--eval-tokens",
        type=arguments.positive_int,
        default=None,
        help="Validate and test on the first N tokens of each split only "
        "(a quick check: not comparable with full-split perplexities). "
        "Default: the whole splits.",
    )
    add(
        "--long-eval-lengths",
        type=arguments.int_list,
        default=[],
        help="Also score the validation split in non-overlapping windows "
        "of these lengths, longer than the training window (SDGM and "
        "RWKV-7; GPT-2's learned positions end at the window).",
    )
    add("--jit-compile", choices=["auto", "true", "false"], default="auto")
    add(
        "--distribute",
        choices=["none", "data-parallel", "model-parallel"],
        default="none",
        help="data-parallel: split each batch across all devices (JAX's "
        "DataParallel, TensorFlow's MirroredStrategy; --batch-size is the "
        "global batch). model-parallel: split the token embedding by "
        "vocabulary rows across all devices (JAX's ModelParallel).",
    )
    add(
        "--checkpoint-every",
        type=arguments.positive_int,
        default=200,
        help="Steps between resumable checkpoints.",
    )
    add("--seed", type=arguments.non_negative_int, default=0)
    if corpus != TEXT_CORPUS:
        add(
            "--data-dir",
            default=None,
            help="Folder with ptb/ and wikitext-2/ (else "
            "$KERAS_SDGM_DATA_DIR, the Keras cache, then a download).",
        )
    add(
        "--output-dir",
        default=None,
        help="Default: runs/<train file name>-<model>."
        if corpus == TEXT_CORPUS
        else f"Default: runs/{corpus}-<model>.",
    )
    add(
        "--overwrite",
        action="store_true",
        help="Replace a finished run in --output-dir.",
    )
    add("--verbose", type=int, choices=[0, 1, 2], default=1)
    add(
        "--tensorboard",
        action="store_true",
        help="Also log every epoch's metrics (each loss term, perplexity, "
        "learning rate, training tokens/s) for TensorBoard in "
        "<output-dir>/tensorboard.",
    )
    return parser


def add_text_flags(parser):
    """`recipes/train.py`'s flags: the text files and their vocabulary."""
    text = parser.add_argument_group(
        "your own text",
        "UTF-8 files, one sentence or paragraph per line, words separated "
        "by white space (punctuation touching a word is part of it).",
    )
    text.add_argument(
        "--train-file", required=True, help="The training text (required)."
    )
    text.add_argument(
        "--valid-file",
        default=None,
        help="The validation text. Default: the end of --train-file "
        "(--holdout-fraction of its lines, before the test part).",
    )
    text.add_argument(
        "--test-file",
        default=None,
        help="The test text. Default: the last --holdout-fraction of "
        "--train-file's lines.",
    )
    text.add_argument(
        "--holdout-fraction",
        type=arguments.holdout_fraction,
        default=0.1,
        help="The share of --train-file's lines held out for each of "
        "valid and test when their file is not given.",
    )
    text.add_argument(
        "--max-vocabulary-size",
        type=arguments.positive_int,
        default=None,
        help="At most this many entries, <eos> and <unk> included; rarer "
        "words become <unk>. Default: every word seen --min-count times.",
    )
    text.add_argument(
        "--min-count",
        type=arguments.positive_int,
        default=1,
        help="Words seen fewer times in the training part become <unk>.",
    )


def parse_args(corpus, argv=None, prog=None):
    """The recipe's flags (`argv`, default `sys.argv[1:]`) as a `RecipeConfig`.

    Sizes not given come from `--preset`, and `--output-dir` defaults to
    `runs/<corpus>-<model>`. Flags that do not go together exit with the
    parser's usage message, and so does a flag the chosen `--model` does
    not read (`MODEL_FLAGS`: e.g. `--num-atoms` with `--model gpt2`).
    `prog` names the flags' source in that message (default: the script).
    """
    parser = build_parser(corpus)
    if prog is not None:
        parser.prog = prog
    args = parser.parse_args(argv)
    given = given_flags(parser, argv)
    for dest in given:
        models = MODEL_FLAGS.get(dest, MODELS)
        if args.model not in models:
            parser.error(
                f"{flag_name(dest)} is read only by --model "
                f"{' or '.join(models)}: --model {args.model} would ignore "
                "it. Leave it out."
            )
    if args.model == "rwkv7" and {"num_heads", "rwkv_head_size"} <= set(given):
        parser.error(
            "--num-heads and --rwkv-head-size both set RWKV-7's heads "
            "(--rwkv-head-size wins, --num-heads would be ignored); give one."
        )
    if args.warmup_steps and args.lr_schedule == "plateau":
        parser.error(
            "--warmup-steps goes with --lr-schedule constant or cosine: "
            "the plateau schedule sets the rate itself after each epoch."
        )
    if args.tensorboard and importlib.util.find_spec("tensorboard") is None:
        parser.error(
            "--tensorboard needs the tensorboard package: pip install "
            "tensorboard (or keras-sdgm[tensorboard])."
        )
    if any(length < 2 for length in args.long_eval_lengths):
        parser.error("--long-eval-lengths must be at least 2.")
    if args.dilation_rates is not None and (
        not args.dilation_rates or min(args.dilation_rates) < 1
    ):
        parser.error(
            "--dilation-rates must be positive integers, e.g. 1,2,4; "
            f"received {args.dilation_rates}."
        )
    data_dir = getattr(args, "data_dir", None)  # not a text recipe flag
    if data_dir is not None and not os.path.isdir(data_dir):
        parser.error(
            f"--data-dir {data_dir} is not a folder (it should hold "
            "ptb/ and/or wikitext-2/)."
        )
    preset = backbone_presets[args.preset]["config"]
    for name, key in PRESET_SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, preset[key])
    if args.model == "rwkv7" and not model_builders.rwkv7_head_size(
        args.hidden_dim, args.num_heads, args.rwkv_head_size
    ):
        parser.error(
            "RWKV-7's head size must divide --hidden-dim "
            f"({args.hidden_dim}); pass --rwkv-head-size or another "
            "--num-heads."
        )
    if args.eval_stride is not None and args.eval_stride > args.sequence_length:
        parser.error(
            "--eval-stride must be at most --sequence-length "
            f"({args.sequence_length}); received {args.eval_stride}."
        )
    if (
        args.eval_tokens is not None
        and args.eval_tokens <= args.sequence_length
    ):
        parser.error(
            "--eval-tokens must be more than --sequence-length (one "
            f"window); received {args.eval_tokens}."
        )
    if corpus == TEXT_CORPUS:
        check_text_flags(parser, args)
    if args.output_dir is None:
        name = (
            os.path.splitext(os.path.basename(args.train_file))[0]
            if corpus == TEXT_CORPUS
            else corpus
        )
        args.output_dir = os.path.join("runs", f"{name}-{args.model}")
    return RecipeConfig(corpus=corpus, **vars(args))


def given_flags(parser, argv):
    """The flags `argv` gives, as `{destination: value}`: those left at
    their default are not in it, whatever their value."""
    parsed = vars(parser.parse_args(argv))
    defaults = {dest: parser.get_default(dest) for dest in parsed}
    unset = object()
    parser.set_defaults(**dict.fromkeys(parsed, unset))
    try:
        given = vars(parser.parse_args(argv))
    finally:
        parser.set_defaults(**defaults)
    return {dest: value for dest, value in given.items() if value is not unset}


def flag_name(dest):
    """The flag of a `RecipeConfig` field: `--hidden-dim` for `hidden_dim`."""
    return FLAG_NAMES.get(dest, "--" + dest.replace("_", "-"))


def check_text_flags(parser, args):
    """Exits with the usage message unless every text file given is a
    file; records each one's digest in `args.text_sha256`."""
    args.text_sha256 = {}
    for split in SPLITS:
        path = getattr(args, f"{split}_file")
        if path is None:
            continue
        if not os.path.isfile(path):
            parser.error(f"--{split}-file {path} is not a file.")
        args.text_sha256[split] = file_sha256(path)
    if args.max_vocabulary_size is not None and args.max_vocabulary_size < 3:
        parser.error(
            "--max-vocabulary-size must be at least 3 (<eos>, <unk> and a "
            f"word); received {args.max_vocabulary_size}."
        )


@dataclasses.dataclass
class RecipeData:
    """The corpus, tokenized, and the training plan it gives.

    `tokens` maps each split to its token ids; `train` is the seeded,
    repeated stream of training batches, `validation` one pass over the
    validation split; `fit()` runs `epochs` epochs of `steps_per_epoch`.
    """

    tokenizer: SDGMTokenizer
    preprocessor: SDGMCausalLMPreprocessor
    tokens: dict
    train: object
    validation: object
    steps_per_epoch: int
    epochs: int


def load_data(config):
    """Reads and tokenizes the corpus (vocabulary from the training split)."""
    lines = read_splits(config)
    tokenizer = SDGMTokenizer(
        SDGMTokenizer.build_vocabulary(
            lines["train"],
            max_size=config.max_vocabulary_size,
            min_count=config.min_count or 1,
        )
    )
    tokens = {s: tokenize_corpus(tokenizer, lines[s]) for s in lines}
    for split in ("valid", "test"):
        tokens[split] = tokens[split][: config.eval_tokens]
    check_split_sizes(config, tokens)
    preprocessor = SDGMCausalLMPreprocessor(
        tokenizer, sequence_length=config.sequence_length
    )
    # Data-parallel steps split every batch evenly across the devices: a
    # smaller last batch of a pass is left out (of training and of the
    # validation in `fit`; the final evaluation scores every window).
    drop_remainder = config.distribute == "data-parallel"
    num_windows = len(token_windows(tokens["train"], config.sequence_length))
    round_batches = math.floor if drop_remainder else math.ceil
    num_batches = round_batches(num_windows / config.batch_size)
    steps_per_epoch, epochs = training_plan(config, num_batches)
    train = language_model_dataset(
        tokens["train"],
        config.sequence_length,
        config.batch_size,
        seed=config.seed,
        drop_remainder=drop_remainder,
    ).repeat()
    validation = language_model_dataset(
        tokens["valid"],
        config.sequence_length,
        config.batch_size,
        shuffle=False,
        drop_remainder=drop_remainder,
    )
    return RecipeData(
        tokenizer,
        preprocessor,
        tokens,
        train,
        validation,
        steps_per_epoch,
        epochs,
    )


def read_splits(config):
    """`{split: lines}`: the named corpus, or the text files of the flags."""
    if config.corpus != TEXT_CORPUS:
        return {
            s: load_lines(config.corpus, s, config.data_dir) for s in SPLITS
        }
    lines, _ = load_text_splits(
        config.train_file,
        config.valid_file,
        config.test_file,
        holdout_fraction=config.holdout_fraction,
    )
    for split, path in (
        ("valid", config.valid_file),
        ("test", config.test_file),
    ):
        if path is None:
            print(
                f"The {split} split: {len(lines[split])} lines held out from "
                f"the end of {config.train_file} (--holdout-fraction "
                f"{config.holdout_fraction})."
            )
    return lines


def check_split_sizes(config, tokens):
    """Every split must hold at least one window of `--sequence-length`."""
    needed = config.sequence_length + 1
    for split in SPLITS:
        if len(tokens[split]) >= needed:
            continue
        if config.corpus != TEXT_CORPUS:
            where = f"{config.corpus}'s {split} split"
        elif getattr(config, f"{split}_file") is not None:
            where = f"--{split}-file {getattr(config, f'{split}_file')}"
        else:
            where = (
                f"the {split} part held out from --train-file (raise "
                f"--holdout-fraction or give --{split}-file)"
            )
        raise ValueError(
            f"{where} has {len(tokens[split])} tokens (each line's words "
            f"and an <eos>), fewer than one window of --sequence-length + 1 "
            f"= {needed}. Give more text or a smaller --sequence-length."
        )


def training_plan(config, num_batches):
    """`(steps_per_epoch, epochs)` for `num_batches` training batches a pass.

    An epoch is `--steps-per-epoch` steps (default: one pass over the
    data). `--max-steps` shorter than an epoch makes one epoch of that
    many steps; a longer one caps the epochs (whole epochs only).
    """
    steps_per_epoch = config.steps_per_epoch or num_batches
    epochs = config.epochs
    if config.max_steps is not None:
        if config.max_steps < steps_per_epoch:
            steps_per_epoch, epochs = config.max_steps, 1
        else:
            epochs = min(epochs, math.ceil(config.max_steps / steps_per_epoch))
    return steps_per_epoch, epochs


def build_model(config, data):
    """The compiled model, on the devices of `--distribute`.

    Returns `(lm, num_devices)`.
    """
    num_devices, scope = distribution.configure_distribution(
        config.distribute, config.batch_size
    )
    # Seeded again here, so that the initial weights depend on --seed alone,
    # not on what this process drew before (e.g. the first-time imports
    # above, or earlier runs in a notebook).
    keras.utils.set_random_seed(config.seed)
    with scope:
        lm = model_builders.build_causal_lm(config, data.preprocessor)
        lm.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=learning_rate(
                    config, data.steps_per_epoch * data.epochs
                ),
                weight_decay=config.weight_decay,
            ),
            weighted_metrics=[keras_hub.metrics.Perplexity(from_logits=True)],
            jit_compile={"auto": "auto", "true": True, "false": False}[
                config.jit_compile
            ],
        )
        distribution.prepare_for_strategy(lm, data.validation)
    return lm, num_devices


def learning_rate(config, planned_steps):
    """Adam's learning rate: `--learning-rate`, or its `--lr-schedule`.

    `cosine` decays to 0 at the end of the `planned_steps` (after the
    warm-up; a run stopped early ends above 0); `constant` with
    `--warmup-steps` is a cosine schedule with `alpha=1` (no decay). The
    schedules are functions of the optimizer's step, which a resumed run
    restores; `plateau` starts at `--learning-rate` and is lowered by
    `make_callbacks`'s `ResumableReduceLROnPlateau`.

    Raises:
        ValueError: `--warmup-steps` not fewer than `planned_steps`.
    """
    schedule = config.lr_schedule or "constant"
    warmup = config.warmup_steps or 0
    if warmup >= planned_steps:
        raise ValueError(
            f"--warmup-steps ({warmup}) must be fewer than the run's planned "
            f"steps ({planned_steps}: --epochs x steps per epoch); the rate "
            "would never reach --learning-rate."
        )
    if schedule == "plateau" or (schedule == "constant" and not warmup):
        return config.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.learning_rate,
        decay_steps=max(1, planned_steps - warmup),
        alpha=1.0 if schedule == "constant" else 0.0,
        warmup_target=config.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def make_callbacks(
    config,
    num_devices,
    start_epoch,
    done_steps,
    steps_per_epoch,
    extra_callbacks=(),
    started=None,
):
    """The run's callbacks, in the order they must run, and its meter.

    The CSV logs are first cut back to the `start_epoch` epochs and
    `done_steps` steps the backup kept (a resumed run logs the others
    again), and the best model of those epochs is the one to beat.
    `steps.csv` gets a row about 20 times an epoch (`StepLog`).
    `extra_callbacks` (the caller's own) run after the recipe's logging, so
    their `logs` hold every term and `tokens_per_second`, and before the
    backup, which records the run's time since `started` (this process's
    start) on top of the time it restored. Returns `(callbacks,
    throughput_meter)`.
    """
    past = reporting.truncate_csv_log(config.path("log.csv"), start_epoch)
    past_perplexities = [
        row["val_perplexity"] for row in past if "val_perplexity" in row
    ]
    reporting.truncate_csv_log(config.path(STEPS_LOG), done_steps + 1)
    throughput = callbacks_lib.ThroughputMeter(
        config.batch_size * config.sequence_length
    )
    callbacks = [
        # First: a NaN step raises before any callback below saves it.
        callbacks_lib.StopOnNonFiniteLoss(config.backup_dir),
        keras.callbacks.ModelCheckpoint(
            config.path("best.keras"),
            monitor="val_perplexity",
            mode="min",
            save_best_only=True,
            initial_value_threshold=min(past_perplexities, default=None),
        ),
        callbacks_lib.ResumableEarlyStopping(
            past_values=past_perplexities,
            monitor="val_perplexity",
            mode="min",
            patience=config.patience,
        ),
    ]
    if config.lr_schedule == "plateau":
        callbacks.append(
            callbacks_lib.ResumableReduceLROnPlateau(
                past_values=past_perplexities,
                monitor="val_perplexity",
                mode="min",
                factor=0.5,
                patience=0,
                verbose=min(config.verbose, 1),
            )
        )
    callbacks += [
        keras.callbacks.CSVLogger(config.path("log.csv"), append=True),
        # After the CSV log: it adds `tokens_per_second` to the epoch's
        # logs, which TensorBoard and the caller's callbacks see and the
        # CSV does not.
        throughput,
        callbacks_lib.StepLog(
            config.path(STEPS_LOG), every=max(1, steps_per_epoch // 20)
        ),
    ]
    if config.tensorboard:
        callbacks.append(
            keras.callbacks.TensorBoard(config.path("tensorboard"))
        )
    callbacks.extend(extra_callbacks)
    callbacks.append(
        callbacks_lib.StepAndEpochBackup(
            config.backup_dir,
            started=started,
            save_freq=config.checkpoint_every,
            double_checkpoint=True,
            # Kept until metrics.json is written: a run killed while it is
            # evaluated resumes after its last epoch, not from scratch.
            delete_checkpoint=False,
        )
    )
    if num_devices > 1:
        callbacks.append(callbacks_lib.SynchronousBatchEnd())
    return callbacks, throughput


def resume_step(backup_dir, start_epoch, steps_per_epoch):
    """The optimizer steps a resumed run has done (0 for a new run).

    From the backup's own record, else (an older backup) the whole epochs
    it says are done.
    """
    done_steps = callbacks_lib.StepAndEpochBackup.restored_step(backup_dir)
    if done_steps is None:
        done_steps = start_epoch * steps_per_epoch
    return done_steps


def fit_resumable(lm, data, callbacks, start_epoch, done_steps, verbose=1):
    """Trains from step `done_steps` (epoch `start_epoch`) to the plan's end.

    The training batches are one seeded stream; a resumed run skips the
    batches its backup has seen, so every batch is trained on once, in
    the order of an uninterrupted run.
    """
    steps_per_epoch = data.steps_per_epoch
    done_in_epoch = done_steps - start_epoch * steps_per_epoch
    fit_arguments = dict(
        validation_data=data.validation, callbacks=callbacks, verbose=verbose
    )
    if 0 < done_in_epoch < steps_per_epoch:
        # Killed mid-epoch: first the rest of that epoch (Keras's
        # `BackupAndRestore` restores the weights and the epoch, and would
        # repeat the whole epoch).
        lm.fit(
            data.train.skip(done_steps),
            epochs=start_epoch + 1,
            steps_per_epoch=steps_per_epoch - done_in_epoch,
            **fit_arguments,
        )
        done_steps = (start_epoch + 1) * steps_per_epoch
    if not lm.stop_training:
        lm.fit(
            data.train.skip(done_steps),
            epochs=data.epochs,
            steps_per_epoch=steps_per_epoch,
            **fit_arguments,
        )


def load_best_model(config):
    """The best model of the run; raises if no epoch reached one."""
    best_path = config.path("best.keras")
    if not os.path.exists(best_path):
        raise RuntimeError(
            f"No finite validation perplexity was reached, so there is no "
            f"best model in {config.output_dir}; see "
            f"{config.path('log.csv')}."
        )
    return load_keras_file(best_path)


def write_preset(config, lm):
    """Saves `lm` as a keras-hub preset directory, `<output-dir>/preset`.

    Written into a fresh folder beside it and moved into place, so that a
    resumed run that dies while saving leaves no half-written preset.
    """
    final = config.path(PRESET_DIR)
    partial = final + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    lm.save_to_preset(partial)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
    return final


def sliding_stride(eval_stride, sequence_length):
    """The sliding protocol's stride: `--eval-stride`, by default half the
    window."""
    return eval_stride or sequence_length // 2


def evaluate(config, lm, tokens):
    """Validation and test perplexity under both protocols of SPEC section 6.

    Non-overlapping windows of the training window's length and a sliding
    window of stride `--eval-stride` (default half the window); for SDGM
    and RWKV-7 also the validation split in windows of each
    `--long-eval-lengths`.
    """
    verbose = min(config.verbose, 1)
    stride = sliding_stride(config.eval_stride, config.sequence_length)
    metrics = {
        split: {
            "non_overlapping": evaluate_perplexity(
                lm,
                tokens[split],
                sequence_length=config.sequence_length,
                verbose=verbose,
            ),
            "sliding": evaluate_perplexity(
                lm,
                tokens[split],
                stride=stride,
                sequence_length=config.sequence_length,
                verbose=verbose,
            ),
        }
        for split in ("valid", "test")
    }
    if config.model != "gpt2":
        metrics["valid"]["long_windows"] = {
            str(length): evaluate_perplexity(
                lm,
                tokens["valid"],
                sequence_length=length,
                batch_size=max(1, 64 * config.sequence_length // length),
                verbose=verbose,
            )
            for length in config.long_eval_lengths
        }
    return metrics


def write_report(
    config,
    lm,
    perplexity,
    *,
    vocabulary_size,
    tokens_per_second,
    num_devices,
    wall_time_seconds,
    steps_per_epoch,
):
    """Writes `curves.png` and `metrics.json`, then drops the backup.

    `wall_time_seconds`: the run's time over all its processes, each up to
    its last backup (steps redone after a kill count once), the last in
    full.

    Returns what `metrics.json` holds.
    """
    csv_path = config.path("log.csv")
    reporting.plot_training_curves(
        csv_path,
        config.path("curves.png"),
        f"{config.model} on {config.corpus_name}",
        steps_path=config.path(STEPS_LOG),
        steps_per_epoch=steps_per_epoch,
    )
    result = {
        "corpus": config.corpus,
        "model": config.model,
        "perplexity": perplexity,
        "parameters": model_builders.parameter_counts(lm),
        "vocabulary_size": vocabulary_size,
        "training_tokens_per_second": tokens_per_second,
        "epochs_logged": len(reporting.read_csv_log(csv_path)),
        "wall_time_seconds": wall_time_seconds,
        "backend": keras.config.backend(),
        "devices": num_devices,
        "versions": reporting.library_versions(),
        "environment": reporting.speed_settings(),
        "config": config.saved_config(),
    }
    reporting.write_json(config.path(METRICS_FILE), result)
    shutil.rmtree(config.backup_dir, ignore_errors=True)
    print(json.dumps(result["perplexity"], indent=2))
    print(f"Wrote {config.output_dir}/{METRICS_FILE}")
    return result


def main(corpus, argv=None, callbacks=()):
    """Runs the recipe for `corpus` and returns what `metrics.json` holds.

    Nothing is written until the flags, the output folder, the data, the
    model and the free disk space have all been checked: a failed start
    leaves the output folder as it was. A finished run replaced with
    `--overwrite` is kept aside until the new run finishes, and restored
    if it fails (see `prepare_output_dir`).

    Args:
        corpus: `"ptb"`, `"wikitext2"`, or `"text"` (files named by
            `--train-file` and the other text flags).
        argv: list of flags, as on the command line. Default:
            `sys.argv[1:]`.
        callbacks: `keras.callbacks.Callback`s of your own, added to the
            recipe's for `fit` (see `make_callbacks`). They are not part of
            the run's config: a resumed run takes whichever are passed.

    Example:

    ```python
    class PrintPerplexity(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            print(epoch, logs["val_perplexity"], logs["tokens_per_second"])

    main("ptb", ["--max-steps", "50"], callbacks=[PrintPerplexity()])
    ```
    """
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(
                "`callbacks` must be `keras.callbacks.Callback` instances; "
                f"received {callback!r} ({type(callback).__name__})."
            )
    config = parse_args(corpus, argv)
    check_output_dir(config.output_dir, config.saved_config(), config.overwrite)
    hint = huge_pages_hint()
    if hint:
        print(hint)
    keras.utils.set_random_seed(config.seed)
    started = time.time()
    data = load_data(config)
    lm, num_devices = build_model(config, data)
    require_free_space(config.output_dir, lm)

    resuming = prepare_output_dir(
        config.output_dir, config.saved_config(), config.overwrite
    )
    with previous_run_kept_until_done(config.output_dir):
        start_epoch = callbacks_lib.StepAndEpochBackup.restored_epoch(
            config.backup_dir
        )
        done_steps = resume_step(
            config.backup_dir, start_epoch, data.steps_per_epoch
        )
        earlier_seconds = callbacks_lib.StepAndEpochBackup.restored_seconds(
            config.backup_dir
        )
        run_callbacks, throughput = make_callbacks(
            config,
            num_devices,
            start_epoch,
            done_steps,
            data.steps_per_epoch,
            callbacks,
            started=started,
        )
        if resuming:
            done_in_epoch = done_steps - start_epoch * data.steps_per_epoch
            print(
                f"Resuming the run in {config.output_dir} at epoch "
                f"{start_epoch + 1}"
                + (f", step {done_in_epoch + 1}." if done_in_epoch else ".")
            )
        fit_resumable(
            lm,
            data,
            run_callbacks,
            start_epoch,
            done_steps,
            verbose=config.verbose,
        )

        best = load_best_model(config)
        write_preset(config, best)
        return write_report(
            config,
            best,
            evaluate(config, best, data.tokens),
            vocabulary_size=data.tokenizer.vocabulary_size(),
            tokens_per_second=throughput.tokens_per_second(),
            num_devices=num_devices,
            wall_time_seconds=earlier_seconds + time.time() - started,
            steps_per_epoch=data.steps_per_epoch,
        )


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_would_help():
    """Whether glibc's huge-page tunable applies here (JAX) and is not set.

    Under JAX, XLA's CPU runtime allocates the step's large buffers (the
    logits over the vocabulary and their gradient) anew at every step, and
    the kernel maps them 4 KiB page by page: with `GLIBC_TUNABLES=
    glibc.malloc.hugetlb=1` (glibc 2.35 and later, read when a process
    starts), glibc asks for 2 MiB pages instead (the quick start: 52M
    page faults -> 1M, 1.7x the training speed, the same numbers;
    docs/PERFORMANCE.md). TensorFlow keeps its memory in its own allocator
    and faults little either way. The devices are not asked for: that
    would start JAX's backend (and on a GPU take its memory) in a process
    that only starts recipes.
    """
    libc, version = platform.libc_ver()
    if libc != "glibc" or not version:
        return False
    if tuple(int(v) for v in version.split(".")[:2]) < (2, 35):
        return False
    if "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    return keras.config.backend() == "jax"


def huge_pages_hint():
    """A one-line tip where `huge_pages_would_help()` on a CPU, else `None`."""
    if not huge_pages_would_help():
        return None
    if not keras.distribution.list_devices()[0].lower().startswith("cpu"):
        return None
    return (
        f"Tip: on this CPU, `GLIBC_TUNABLES={HUGE_PAGES_TUNABLE}` before "
        "the command trains faster (2 MiB pages for XLA's per-step buffers: "
        "1.7x for the quick start; docs/PERFORMANCE.md)."
    )


def child_environment():
    """This process's environment for a recipe run in a child process.

    With glibc's huge-page tunable added where `huge_pages_would_help()`,
    on any device (beside a GPU it changes only how host memory is
    mapped): the child's `metrics.json` records it (`environment`).
    """
    environ = dict(os.environ)
    if huge_pages_would_help():
        tunables = environ.get("GLIBC_TUNABLES")
        environ["GLIBC_TUNABLES"] = HUGE_PAGES_TUNABLE + (
            f":{tunables}" if tunables else ""
        )
    return environ


def previous_run_dir(output_dir):
    """Where a finished run replaced with `--overwrite` waits: beside it."""
    return os.path.normpath(output_dir) + ".previous"


def config_differences(recorded, config):
    """The keys in which a run's recorded `config.json` and `config` differ.

    A flag added since the run started is absent from its record: at its
    default (`None`) it changes nothing. Flags that `config`'s model does
    not read (`MODEL_FLAGS`) are left out: earlier recipes recorded them
    (e.g. `--max-position-offset` of a GPT-2 run) without using them. An
    SDGM run recorded before its `architecture` was (2026-12-07) differs
    in it: what its flags resolved to then is not known.
    """
    config = json.loads(json.dumps(config))  # As recorded: lists, not tuples.
    return sorted(
        k
        for k in set(recorded) | set(config)
        if recorded.get(k) != config.get(k)
        and config.get("model") in MODEL_FLAGS.get(k, MODELS)
    )


def check_output_dir(output_dir, config, overwrite):
    """Checks the output folder, writing nothing; returns True to resume.

    A finished run (with `metrics.json`) may be replaced only with
    `overwrite`; an unfinished one (with `config.json`) is resumed only if
    its config matches; the folder (or the nearest folder above it that
    exists) must be writable.

    Raises:
        FileExistsError: a finished run without `overwrite`, or a replaced
            run still waiting in `previous_run_dir(output_dir)`.
        ValueError: an unfinished run with another config.
        OSError: the folder cannot be written.
    """
    if os.path.exists(os.path.join(output_dir, METRICS_FILE)):
        if not overwrite:
            raise FileExistsError(
                f"{output_dir} holds a finished run. Pass --overwrite to "
                "replace it, or choose another --output-dir."
            )
        previous = previous_run_dir(output_dir)
        if os.path.exists(previous):
            raise FileExistsError(
                f"{previous} holds an earlier run replaced by --overwrite "
                "whose replacement never finished. Move or delete it "
                "first; nothing was changed."
            )
        return False
    config_path = os.path.join(output_dir, CONFIG_FILE)
    if os.path.exists(config_path):
        with open(config_path) as f:
            previous = json.load(f)
        changed = config_differences(previous, config)
        if changed:
            raise ValueError(
                f"{output_dir} holds an unfinished run with another config "
                f"(differs in {changed}). Rerun it with the same arguments "
                "to resume it, or choose another --output-dir."
            )
    existing = _nearest_existing(output_dir)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK):
        raise OSError(
            f"Cannot write to the output folder {output_dir}: {existing} "
            "is not a writable folder."
        )
    return os.path.exists(config_path)


def prepare_output_dir(output_dir, config, overwrite):
    """Starts the run in the output folder; returns True to resume.

    Checks it as `check_output_dir` does, then moves a finished run being
    replaced (`overwrite`) to `previous_run_dir(output_dir)` (kept there
    until the new run has written `metrics.json`; see
    `previous_run_kept_until_done`) and writes `config.json`. `main` calls
    it only once the data and the model are ready, so a run that cannot
    start leaves no `config.json` behind.
    """
    resuming = check_output_dir(output_dir, config, overwrite)
    if os.path.exists(os.path.join(output_dir, METRICS_FILE)):
        os.replace(output_dir, previous_run_dir(output_dir))
    try:
        os.makedirs(output_dir, exist_ok=True)
        reporting.write_json(os.path.join(output_dir, CONFIG_FILE), config)
    except OSError as error:
        raise OSError(
            f"Cannot write to the output folder {output_dir}: {error}"
        ) from error
    return resuming


@contextlib.contextmanager
def previous_run_kept_until_done(output_dir):
    """Deletes the replaced run once the new one finishes; else restores it.

    If the body raises before the new run has written `metrics.json`, the
    new run's folder is removed and the replaced run (if any, see
    `prepare_output_dir`) moved back, so a failed `--overwrite` loses
    nothing. A process killed outright leaves the replaced run in
    `previous_run_dir(output_dir)`; the same command resumes the new run,
    and deletes it when that one finishes.
    """
    previous = previous_run_dir(output_dir)
    try:
        yield
    except BaseException:
        finished = os.path.exists(os.path.join(output_dir, METRICS_FILE))
        if os.path.isdir(previous) and not finished:
            shutil.rmtree(output_dir, ignore_errors=True)
            os.replace(previous, output_dir)
            print(f"Restored the earlier run in {output_dir}.")
        raise
    shutil.rmtree(previous, ignore_errors=True)


def _nearest_existing(path):
    """`path`, or the nearest folder above it that exists."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def require_free_space(output_dir, lm):
    """Fails now, not hours later, if the checkpoints cannot fit on disk.

    A run keeps up to four copies of the weights with the optimizer's two
    Adam moments (the best model and three backup files) and one without
    them (the preset directory).
    """
    needed = (4 * 3 + 1) * 4 * lm.count_params()
    free = shutil.disk_usage(_nearest_existing(output_dir)).free
    if free < needed:
        raise OSError(
            f"{output_dir} has {free / 2**20:.0f} MiB free, but this run's "
            f"checkpoints need about {needed / 2**20:.0f} MiB. Free some "
            "space or choose another --output-dir."
        )
