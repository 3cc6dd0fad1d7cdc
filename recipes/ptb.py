"""Penn Treebank (Mikolov): SDGM or the GPT-2 baseline, the paper's settings.

    KERAS_BACKEND=jax python recipes/ptb.py [--model gpt2] [--max-steps 50]

`python recipes/ptb.py --help` lists every flag.
"""

from keras_sdgm.training.recipe import main

if __name__ == "__main__":
    main("ptb")
