"""Penn Treebank (Mikolov): SDGM or the GPT-2 baseline, the paper's settings.

    KERAS_BACKEND=jax python recipes/ptb.py [--model gpt2] [--max-steps 50]

`python recipes/ptb.py --help` lists every flag.
"""

from keras_sdgm.training.recipe import main
from keras_sdgm.utils.arguments import run_command

if __name__ == "__main__":
    run_command(main, "ptb")
