"""Callbacks of the recipes: resumable backups and a throughput meter."""

import json
import os
import time

import keras
import numpy as np


class StepAndEpochBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that saves every `save_freq` steps and each epoch.

    Keras's callback with an integer `save_freq` records the epoch a backup
    belongs to only when a step-triggered save happens, so a run killed
    after an epoch ended repeats that epoch when resumed. Saving at the end
    of each epoch as well makes the resume start at the next one. Put it
    last among the callbacks, so the epoch's log row and best model are
    written before the backup says the epoch is done.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()

    @staticmethod
    def restored_epoch(backup_dir):
        """The epoch a resumed run will start at (0 without a backup)."""
        path = os.path.join(backup_dir, "training_metadata.json")
        try:
            with open(path) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError):
            return 0


class ThroughputMeter(keras.callbacks.Callback):
    """Median seconds per training step, after `warmup_steps` steps.

    Args:
        tokens_per_step: int. Tokens in one training batch.
        warmup_steps: int. Steps left out (compilation, caches).
    """

    def __init__(self, tokens_per_step, warmup_steps=5):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.warmup_steps = warmup_steps
        self.step_seconds = []
        self._seen = 0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._seen += 1
        if self._seen > self.warmup_steps:
            self.step_seconds.append(time.perf_counter() - self._start)

    def tokens_per_second(self):
        if not self.step_seconds:
            return None
        return self.tokens_per_step / float(np.median(self.step_seconds))
