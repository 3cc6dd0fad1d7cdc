from keras_sdgm.datasets.corpora import CORPORA
from keras_sdgm.datasets.corpora import cache_dir
from keras_sdgm.datasets.corpora import corpus_path
from keras_sdgm.datasets.corpora import file_sha256
from keras_sdgm.datasets.corpora import load_lines
from keras_sdgm.datasets.pipeline import language_model_dataset
from keras_sdgm.datasets.pipeline import token_windows
from keras_sdgm.datasets.pipeline import tokenize_corpus
from keras_sdgm.datasets.text_files import load_text_splits

__all__ = [
    "CORPORA",
    "cache_dir",
    "corpus_path",
    "file_sha256",
    "load_lines",
    "load_text_splits",
    "language_model_dataset",
    "token_windows",
    "tokenize_corpus",
]
