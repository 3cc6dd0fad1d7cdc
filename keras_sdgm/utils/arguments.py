"""`argparse` types of the command lines: a value out of range is a usage
error that names the flag (argparse prefixes the message with it); and the
flags the benchmarks share."""

import argparse
import math
import os
import sys


def int_list(text):
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated integers, e.g. 1,2,4; received {text!r}"
        ) from None


def number(kind, text, accept, accepted):
    """`kind(text)` if `accept` takes it, else an argparse error saying why.

    argparse prefixes the message with the flag's name.
    """
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(
            f"must be {accepted}; received {text!r}"
        )
    return value


def positive_int(text):
    return number(int, text, lambda v: v > 0, "a positive integer")


def non_negative_int(text):
    return number(int, text, lambda v: v >= 0, "a non-negative integer")


def positive_float(text):
    return number(
        float, text, lambda v: 0 < v < math.inf, "a positive finite number"
    )


def non_negative_float(text):
    return number(
        float,
        text,
        lambda v: 0 <= v < math.inf,
        "a non-negative finite number",
    )


def holdout_fraction(text):
    return number(float, text, lambda v: 0 < v < 0.5, "a number in (0, 0.5)")


def dropout_rate(text):
    return number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def add_sdgm_block_flags(parser):
    """The benchmarks' flags for the SDGM block's parts, each `None` (the
    preset's) when left out: `--encoder-type`, `--dictionary-type`,
    `--modes-per-feature` and `--data-dependent-decay`."""
    from keras_sdgm.models.sdgm.spectral_dictionary_block import (
        DICTIONARY_TYPES,
    )
    from keras_sdgm.models.sdgm.spectral_dictionary_block import ENCODER_TYPES

    parser.add_argument(
        "--encoder-type",
        default=None,
        choices=ENCODER_TYPES,
        help="The SDGM block's token mixer; default: the preset's.",
    )
    parser.add_argument(
        "--dictionary-type",
        default=None,
        choices=DICTIONARY_TYPES,
        help="The SDGM block's dictionary; default: the preset's.",
    )
    for flag, what in (
        ("--modes-per-feature", "every feature drives its own modes"),
        ("--data-dependent-decay", "each position's features set the decay"),
    ):
        parser.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=f"The SDGM spectral mixers' option: {what}; default: the "
            "preset's.",
        )


def sdgm_block_overrides(args):
    """The `SDGMBackbone` overrides that `add_sdgm_block_flags`' flags give
    (`None`: the preset's)."""
    return {
        name: getattr(args, name)
        for name in (
            "encoder_type",
            "dictionary_type",
            "modes_per_feature",
            "data_dependent_decay",
        )
    }


def run_command(main, *args):
    """Runs a command line's `main(*args)` as a program.

    The errors a command raises about what it was given (a file that is
    there or not, a value it refuses, a run it will not replace) end it
    with `<program>: error: <message>` and exit status 2, as argparse's
    usage errors do, instead of a traceback. Called from Python, `main`
    raises them as usual.
    """
    try:
        return main(*args)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        program = os.path.basename(sys.argv[0])
        print(f"{program}: error: {error}", file=sys.stderr)
        sys.exit(2)
