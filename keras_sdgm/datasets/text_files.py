"""A corpus of your own: plain-text files split into train, valid and test."""

import os

from keras_sdgm.datasets.corpora import SPLITS
from keras_sdgm.datasets.corpora import file_sha256


def load_text_splits(
    train_file, valid_file=None, test_file=None, holdout_fraction=0.1
):
    """The lines of a plain-text corpus, as train, valid and test splits.

    Each file is UTF-8 text, one sentence or paragraph per line, its words
    separated by white space (as `SDGMTokenizer` splits them: punctuation
    touching a word is part of it, so tokenize the text first if you want
    it apart). A split without a file is cut from the end of the train
    file: the test split is its last `holdout_fraction` of lines, the
    valid split the `holdout_fraction` before them, in the file's order.

    Args:
        train_file: path of the training text.
        valid_file: path of the validation text, or `None` to hold out
            the end of `train_file`.
        test_file: path of the test text, or `None` to hold out the end of
            `train_file`.
        holdout_fraction: float in (0, 0.5). The share of `train_file`'s
            lines that each held-out split takes.

    Returns:
        `({"train": lines, "valid": lines, "test": lines}, sources)`:
        the lines of each split, and where each came from (`{split:
        {"path": ..., "sha256": ..., "lines": [first, end]}}`, with
        `"lines"` only for a split cut from the train file).

    Raises:
        FileNotFoundError: a file that does not exist.
        ValueError: a file that is not UTF-8 text or has no words, or a
            `holdout_fraction` out of range or leaving a split empty.

    Example:

    ```python
    splits, sources = keras_sdgm.datasets.load_text_splits("my.txt")
    vocabulary = keras_sdgm.models.SDGMTokenizer.build_vocabulary(
        splits["train"], max_size=10000, min_count=2
    )
    ```
    """
    files = {"train": train_file, "valid": valid_file, "test": test_file}
    held_out = [split for split in ("valid", "test") if files[split] is None]
    if held_out and not 0 < holdout_fraction < 0.5:
        raise ValueError(
            "`holdout_fraction` must be between 0 and 0.5 (the share of the "
            f"train file's lines each held-out split takes); received "
            f"{holdout_fraction}."
        )
    splits, sources = {}, {}
    for split, path in files.items():
        if path is not None:
            splits[split] = _read_lines(f"{split}_file", path)
            sources[split] = {"path": path, "sha256": file_sha256(path)}
    train = splits["train"]
    size = int(len(train) * holdout_fraction)
    if held_out and size == 0:
        raise ValueError(
            f"{train_file} has {len(train)} lines: a holdout_fraction of "
            f"{holdout_fraction} of them is no line at all. Give "
            f"{' and '.join(f'{s}_file' for s in held_out)}, or a larger "
            "holdout_fraction."
        )
    end = len(train)
    for split in reversed(held_out):  # test from the very end, then valid
        splits[split] = train[end - size : end]
        sources[split] = {**sources["train"], "lines": [end - size, end]}
        end -= size
    splits["train"] = train[:end]
    if held_out:
        sources["train"] = {**sources["train"], "lines": [0, end]}
    for split in SPLITS:
        if not any(line.split() for line in splits[split]):
            raise ValueError(
                f"The {split} split ({_describe(sources[split])}) has no words."
            )
    return {split: splits[split] for split in SPLITS}, sources


def _read_lines(argument, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"`{argument}` {path} does not exist or is not a file."
        )
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"`{argument}` {path} is not UTF-8 text ({error}). Convert it "
            "to UTF-8 first (e.g. `iconv -t utf-8`)."
        ) from error


def _describe(source):
    if "lines" in source:
        first, end = source["lines"]
        return f"lines {first + 1}-{end} of {source['path']}"
    return source["path"]
