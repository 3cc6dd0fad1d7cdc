"""Your own text: SDGM or the GPT-2 baseline on plain-text files.

    KERAS_BACKEND=jax python recipes/train.py --train-file my.txt \\
        [--valid-file valid.txt] [--test-file test.txt] [--max-steps 50]

Without --valid-file and --test-file, each is cut from the end of
--train-file (--holdout-fraction of its lines). Every other flag is
recipes/ptb.py's; `python recipes/train.py --help` lists them.
"""

from keras_sdgm.training.recipe import TEXT_CORPUS
from keras_sdgm.training.recipe import main
from keras_sdgm.utils.arguments import run_command

if __name__ == "__main__":
    run_command(main, TEXT_CORPUS)
