"""WikiText-2 (tokenized): SDGM or the GPT-2 baseline, the paper's settings.

    KERAS_BACKEND=jax python recipes/wt2.py [--model gpt2] [--max-steps 50]

`python recipes/wt2.py --help` lists every flag.
"""

from keras_sdgm.training.recipe import main
from keras_sdgm.utils.arguments import run_command

if __name__ == "__main__":
    run_command(main, "wikitext2")
