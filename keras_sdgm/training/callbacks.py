"""Callbacks of the recipes: resumable backups, early stopping and
learning-rate reduction that survive a resume, a NaN stop, a throughput
meter, a per-step log."""

import csv
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
    of each epoch as well makes the resume start at the next one. Each
    backup also records `"step"`, the optimizer steps its weights have
    taken, so a run killed mid-epoch can resume at that step
    (`restored_step`) instead of repeating the epoch, and
    `"elapsed_seconds"`, the run's time until then over all its processes
    (`restored_seconds`; each process counts from `started`, default its
    `on_train_begin`). Put it last among the callbacks, so the epoch's log
    row and best model are written before the backup says the epoch is
    done.
    """

    def __init__(self, backup_dir, started=None, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.started = started

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self.save_freq != "epoch":
            self._save_model()

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)  # restores the weights and the epoch
        metadata = _read_json(self._training_metadata_path)
        self._previous_seconds = float(
            (metadata or {}).get("elapsed_seconds", 0.0)
        )
        if self.started is None:
            self.started = time.time()
        variables = _seed_states(self.model)
        states = (metadata or {}).get("seed_states", [])
        if isinstance(states, dict):
            # A backup written before the states were kept in order, keyed
            # by path (which holds only in a process that names its layers
            # the same way).
            states = [states.get(v.path) for v in variables]
        if states and len(states) != len(variables):
            raise ValueError(
                f"The backup in {self.backup_dir} holds {len(states)} random "
                f"generator states, but the model has {len(variables)}: it "
                "was written by another model. Resume with the run's own "
                "arguments, or start the run in another folder."
            )
        for variable, state in zip(variables, states):
            if state is not None:
                variable.assign(np.asarray(state, "uint32"))
        if (metadata or {}).get("torch_rng_state") is not None:
            import torch

            torch.set_rng_state(
                torch.tensor(metadata["torch_rng_state"], dtype=torch.uint8)
            )

    def _save_model(self):
        super()._save_model()
        # Keras saves the weights and (epoch, batch). Add the optimizer step
        # and the random generators' states (dropout), which the weights
        # file leaves out, so that a resumed run continues the same random
        # streams.
        metadata = _read_json(self._training_metadata_path)
        metadata["step"] = int(
            keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        )
        metadata["elapsed_seconds"] = (
            self._previous_seconds + time.time() - self.started
        )
        # In the model's order, not by path: the paths hold layer names
        # that Keras numbers per process (`seed_generator_4` in a second
        # model built in the same process), so a run resumed in the
        # process that ran it (a notebook) would match none of them.
        metadata["seed_states"] = [
            keras.ops.convert_to_numpy(variable).tolist()
            for variable in _seed_states(self.model)
        ]
        if keras.config.backend() == "torch":
            # Keras's torch dropout without a fixed seed draws from torch's
            # global generator instead of the layer's seed state.
            import torch

            metadata["torch_rng_state"] = torch.get_rng_state().tolist()
        with open(self._training_metadata_path, "w") as f:
            json.dump(metadata, f)

    @staticmethod
    def restored_epoch(backup_dir):
        """The epoch a resumed run will start at (0 without a backup)."""
        metadata = _read_json(
            os.path.join(backup_dir, "training_metadata.json")
        )
        return int((metadata or {}).get("epoch", 0))

    @staticmethod
    def restored_seconds(backup_dir):
        """The run's time in the processes before this one, up to the
        backup (0 without a backup, or for one that did not record it)."""
        metadata = _read_json(
            os.path.join(backup_dir, "training_metadata.json")
        )
        return float((metadata or {}).get("elapsed_seconds", 0.0))

    @staticmethod
    def restored_step(backup_dir):
        """The optimizer steps the backup's weights have taken.

        `None` without a backup, or for one written before steps were
        recorded.
        """
        metadata = _read_json(
            os.path.join(backup_dir, "training_metadata.json")
        )
        step = (metadata or {}).get("step")
        return None if step is None else int(step)


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _seed_states(model):
    """The states of the model's random generators: variables, not weights."""
    weights = {id(weight) for weight in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class ThroughputMeter(keras.callbacks.Callback):
    """Median seconds per training step, after `warmup_steps` steps.

    At the end of each epoch it adds the training `tokens_per_second` so
    far to the epoch's logs, which the callbacks after it see.

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

    def on_epoch_end(self, epoch, logs=None):
        """Adds `tokens_per_second` so far to the epoch's logs (once known)."""
        if logs is not None and self.step_seconds:
            logs["tokens_per_second"] = self.tokens_per_second()

    def tokens_per_second(self):
        if not self.step_seconds:
            return None
        return self.tokens_per_step / float(np.median(self.step_seconds))


class StepLog(keras.callbacks.Callback):
    """Appends the training loss every `every` steps to a CSV file.

    Each row is `step` (the optimizer's, counted over the whole run),
    `epoch` (from 0) and, for each of `names` in the logs, its mean over the
    steps since the previous row. Keras's batch logs are the means since the
    epoch began; the mean over the last `n` steps is taken from two of them
    (`(b * mean_b - a * mean_a) / (b - a)`), so it is exact and costs
    nothing. A row is written at the end of each epoch too, so no step is
    left out.

    Args:
        path: the CSV file, appended to (cut it back to the resumed step
            with `reporting.truncate_csv_log` before resuming a run).
        every: int. Steps between rows.
        names: the logged quantities to record (those absent are skipped).
    """

    def __init__(self, path, every, names=("loss", "nll")):
        super().__init__()
        self.path = path
        self.every = every
        self.names = tuple(names)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._batches = 0
        self._last = (0, {})  # batches at the last row, and their means

    def on_train_batch_end(self, batch, logs=None):
        self._batches = batch + 1
        if self._batches % self.every == 0:
            self._write(self._batches, logs)

    def on_epoch_end(self, epoch, logs=None):
        # The epoch's training logs are the means over all its batches,
        # those of its last batch.
        if self._batches > self._last[0]:
            self._write(self._batches, logs)

    def _write(self, batches, logs):
        previous_batches, previous_means = self._last
        row = {
            "step": int(
                keras.ops.convert_to_numpy(self.model.optimizer.iterations)
            ),
            "epoch": self._epoch,
        }
        means = {}
        for name in self.names:
            if name not in (logs or {}):
                continue
            means[name] = float(logs[name])
            total = batches * means[name]
            before = previous_batches * previous_means.get(name, 0.0)
            row[name] = (total - before) / (batches - previous_batches)
        self._last = (batches, means)
        new_file = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss, with a message.

    Unlike `keras.callbacks.TerminateOnNaN`, which only prints, it raises
    `FloatingPointError` naming the step and the last good checkpoint in
    `backup_dir`. It raises from `on_train_batch_end`, before the callbacks
    after it see that batch, so put it first: the backup callback then never
    saves the broken weights.

    Args:
        backup_dir: folder of the run's `StepAndEpochBackup`.
    """

    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir = backup_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(loss):
            return
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        raise FloatingPointError(
            f"The training loss became {loss} at step {step} (epoch "
            f"{self._epoch + 1}, batch {batch + 1}); training stopped. "
            f"{self._last_checkpoint()} Running the same command again "
            "resumes from it and will likely diverge again: lower "
            "--learning-rate, or check the data and the loss weights."
        )

    def _last_checkpoint(self):
        path = os.path.join(self.backup_dir, "training_metadata.json")
        try:
            with open(path) as f:
                metadata = json.load(f)
        except (OSError, ValueError):
            return f"No checkpoint was written yet (in {self.backup_dir})."
        return (
            f"The last good checkpoint is in {self.backup_dir} (Keras's "
            f"backup metadata: epoch index {metadata.get('epoch')}, batch "
            f"index {metadata.get('batch')}), untouched."
        )


class SynchronousBatchEnd(keras.callbacks.Callback):
    """Makes Keras run the batch-end hooks in order, on the calling thread.

    When no callback overrides a batch-end hook, Keras runs it on a thread
    pool, and each worker copies that step's logs to NumPy. Across several
    devices (JAX `DataParallel`) each copy is a small program with a
    collective, and copies launched from several threads at once can reach
    the devices in different orders: each device then waits in a different
    collective, forever. We saw it on host CPU devices as an all-gather
    that never completed during validation. Overriding the hooks (with
    no-ops) keeps Keras from using the pool. Add it when training on more
    than one device.
    """

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


def monitor_state(values, reset_after=None):
    """`(best, wait)` of a callback that has seen `values`, lower is better.

    `best` is the lowest value (`None` if there is none), `wait` the epochs
    since it; with `reset_after`, `wait` starts again from 0 each time it
    reaches `reset_after` (`ReduceLROnPlateau` does, after each reduction).
    """
    best, wait = None, 0
    for value in values:
        if best is None or value < best:
            best, wait = value, 0
        else:
            wait += 1
            if reset_after is not None and wait >= reset_after:
                wait = 0
    return best, wait


class _MonitorStateAcrossFits:
    """Keeps a monitor's count across the `fit()` calls of one run.

    Keras's `EarlyStopping` and `ReduceLROnPlateau` start counting again
    at every `fit()`, so a resumed run (one `fit()` for the rest of an
    epoch, another for the epochs after it) would wait longer than an
    uninterrupted one. This mixin starts from the monitored values of the
    epochs done before the resume (`past_values`) and resets only at the
    run's first `fit()`.
    """

    def __init__(self, past_values=(), **kwargs):
        super().__init__(**kwargs)
        self.past_values = tuple(past_values)
        self._begun = False

    def on_train_begin(self, logs=None):
        if self._begun:
            return
        self._begun = True
        super().on_train_begin(logs)
        self.best, self.wait = monitor_state(
            self.past_values, self._reset_after()
        )


class ResumableEarlyStopping(
    _MonitorStateAcrossFits, keras.callbacks.EarlyStopping
):
    """`keras.callbacks.EarlyStopping` (lower is better) across a resume.

    Args:
        past_values: the monitored values of the epochs done before this
            process (from the run's log), oldest first.
        **kwargs: `EarlyStopping` arguments (`mode="min"`, no `baseline`,
            no `min_delta`).
    """

    def _reset_after(self):
        return None


class ResumableReduceLROnPlateau(
    _MonitorStateAcrossFits, keras.callbacks.ReduceLROnPlateau
):
    """`keras.callbacks.ReduceLROnPlateau` (lower is better) across a resume.

    The learning rate itself is an optimizer variable, restored with the
    backup; this keeps the count of epochs without a new best.

    Args:
        past_values: the monitored values of the epochs done before this
            process (from the run's log), oldest first.
        **kwargs: `ReduceLROnPlateau` arguments (`mode="min"`, no
            `cooldown`, no `min_delta`).
    """

    def _reset_after(self):
        return max(self.patience, 1)
