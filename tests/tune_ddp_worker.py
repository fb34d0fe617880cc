"""One rank of tests/test_tune_cli.py::test_train_sft_under_torchrun: LoRA SFT of a tiny random
Llama with lmbook.tune.sft.train_sft, under torchrun (2 CPU processes, gloo). Writes what this rank
ended with to <out>/rank<r>.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def main(out: Path) -> None:
    from lmbook.tune.lora import lora_config
    from lmbook.tune.model import load_chat_tokenizer, tiny_llama
    from lmbook.tune.sft import train_sft
    from lmbook.tune.tasks import spam_task

    torch.set_num_threads(1)
    tok = load_chat_tokenizer()
    task = spam_task(n_train=16, n_eval=2, tokenizer=tok, max_message_tokens=8)
    model = tiny_llama(len(tok), seed=0)
    res = train_sft(model, tok, task.train, steps=2, batch_size=2, lr=1e-2, lora=lora_config(r=4),
                    output_dir=str(out / "run"), progress=False)
    args = res.trainer.args
    lora_b = {n: p.detach().double().abs().sum().item()
              for n, p in res.trainer.model.named_parameters() if "lora_B" in n}
    (out / f"rank{args.process_index}.json").write_text(json.dumps({
        "world_size": args.world_size, "backend": str(torch.distributed.get_backend()),
        "global_step": res.trainer.state.global_step, "lora_b": lora_b}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
