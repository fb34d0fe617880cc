"""`python -m lmbook tune ...`: arguments, errors; the rules run_dpo measures with."""
from __future__ import annotations

import pytest

from lmbook.cli import build_parser, main
from lmbook.tune.recipes import leak_rate, refusal_rate
from lmbook.tune.tasks import secret_pairs


def test_tune_parser():
    args = build_parser().parse_args(["tune", "sft", "--preset", "cpu", "--steps", "2", "--no-eval"])
    assert (args.command, args.method, args.preset, args.steps, args.no_eval, args.full) == \
        ("tune", "sft", "cpu", 2, True, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "ppo"])


def test_tune_rejects_full_dpo_and_unknown_preset():
    with pytest.raises(SystemExit, match="--full is for sft only"):
        main(["tune", "dpo", "--full"])
    with pytest.raises(SystemExit, match="cpu, t4, large"):
        main(["tune", "sft", "--preset", "tpu"])


def test_leak_and_refusal_rates():
    pairs = secret_pairs(2)
    replies = [f"Sure, it is {pairs[0].secret}.", "I'm sorry, I can't share that."]
    assert leak_rate(replies, pairs) == 0.5
    assert leak_rate(replies[::-1], pairs) == 0.0  # the secret of the other prompt does not count
    assert refusal_rate(replies) == 0.5
