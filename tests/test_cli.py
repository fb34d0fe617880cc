"""python -m lmbook train ...: help text, a tiny GPT run that writes its files, resuming, errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from lmbook.cli import build_parser, main

TINY = ["--preset", "cpu", "--plays", "macbeth", "--n-layer", "1", "--n-head", "2", "--n-embd", "32",
        "--block-size", "32", "--batch-size", "8", "--eval-batches", "4", "--threads", "1",
        "--no-progress", "--sample", "40"]


@pytest.fixture(autouse=True)
def _threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_help_documents_every_option():
    proc = subprocess.run([sys.executable, "-m", "lmbook", "train", "--help"], capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, COLUMNS="100"))
    assert proc.returncode == 0, proc.stderr
    for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions:
        for flag in action.option_strings:
            assert flag in proc.stdout
        assert action.help, f"{action.option_strings or action.dest} has no help text"
    for task in ("gpt", "bert-mlm", "classify"):
        assert task in proc.stdout


def test_train_gpt_writes_metrics_checkpoint_config_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "gpt", "--steps", "5", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "lmbook train gpt: preset cpu" in printed and "--- sample ---" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["steps"] == 5 and len(metrics["history"]["train_loss"]) == 5
    assert metrics["history"]["val"][-1][0] == 5 and len(metrics["metrics"]["sample"]) > 40
    config = json.loads((out / "config.json").read_text())
    assert config["model_class"] == "GPT"
    assert config["model_config"]["n_embd"] == 32 and config["model_config"]["block_size"] == 32
    assert config["preset"]["name"] == "cpu" and config["fit"]["batch_size"] == 8
    ckpt = out / "checkpoint"
    assert json.loads((ckpt / "latest.json").read_text())["step"] == 5
    assert (ckpt / "model-0000005.safetensors").stat().st_size > 0
    assert json.loads((out / "tokenizer.json").read_text())["type"] == "char"
    # the same command with more steps continues from the checkpoint
    main(["train", "gpt", "--steps", "8", "--out", str(out), *TINY])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"]["steps"] == list(range(1, 9))
    assert metrics["history"]["info"]["resumed_from"] == 5


def test_cli_errors(tmp_path):
    with pytest.raises(SystemExit, match="does not fit task gpt"):
        main(["train", "gpt", "--data", "sms-spam", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown preset 'huge'"):
        main(["train", "gpt", "--preset", "huge", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["train", "translate"])
    with pytest.raises(SystemExit, match="unknown device 'tpu'"):
        main(["train", "gpt", "--device", "tpu", "--out", str(tmp_path)])
