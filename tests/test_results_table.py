"""Tests for `scripts/results_table.py`: each row names what was trained."""

import json
import os

import pytest

from scripts import results_table


def write_run(run_dir, **config):
    """A finished run's records: `metrics.json` and a two-epoch `log.csv`."""
    os.makedirs(run_dir)
    config = {
        "model": "sdgm",
        "preset": "sdgm_base",
        "hidden_dim": 256,
        "num_atoms": 128,
        "num_layers": 2,
        "encoder_type": None,
        "dictionary_type": None,
        "reconstruction_weight": 0.0,
        "stft_weight": 0.0,
        "nll_weight": 1.0,
        "prior_weight": 0.0,
        "dropout": 0.1,
        "weight_decay": 0.1,
        "lr_schedule": "cosine",
        "warmup_steps": 200,
        **config,
    }
    protocols = {"non_overlapping": {"perplexity": 110.0}}
    protocols["sliding"] = {"perplexity": 105.0}
    metrics = {
        "config": config,
        "parameters": {"embedding": 2_560_000, "non_embedding": 1_190_000},
        "perplexity": {"valid": protocols, "test": protocols},
        "training_tokens_per_second": 5424.4,
        "wall_time_seconds": 1920.0,
    }
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f)
    with open(os.path.join(run_dir, "log.csv"), "w") as f:
        f.write("epoch,val_perplexity\n0,120.0\n1,110.0\n")
    return run_dir


def test_sdgm_row_names_its_overrides_weights_and_training(tmp_path):
    run = write_run(
        str(tmp_path / "previous-default" / "seed0"),
        encoder_type="gated_spectral",
    )
    row = results_table.cells(run)
    assert row[:3] == [
        "`previous-default/seed0`",
        "SDGM `sdgm_base`, hidden_dim=256, num_atoms=128, num_layers=2, "
        "encoder_type=gated_spectral, α/β/γ/δ = 0/0/1/0",
        "dropout 0.1, weight decay 0.1, cosine (warm-up 200)",
    ]
    assert row[3:] == [
        "2.56M / 1.19M",
        "2 (best 2)",
        "110.0 / 105.0",
        "110.0 / 105.0",
        "5424",
        "32 min",
    ]


@pytest.mark.parametrize(
    "model, name", [("gpt2", "keras-hub GPT-2"), ("rwkv7", "keras-hub RWKV-7")]
)
def test_baseline_rows_name_the_baseline_not_the_preset(tmp_path, model, name):
    run = write_run(str(tmp_path / model), model=model, lr_schedule=None)
    row = results_table.cells(run)
    assert row[0] == f"`{model}`"
    assert row[1] == f"{name}, 2 layers"
    assert row[2] == "dropout 0.1, weight decay 0.1, constant (warm-up 200)"


def test_unfinished_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        results_table.cells(str(tmp_path))
