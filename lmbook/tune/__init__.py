"""Tuning a pretrained chat model: instruction tuning with LoRA (SFT) and preference tuning (DPO).

    lmbook.tune.model     load_chat_model(): the packaged SmolLM2-135M-Instruct as a plain float32
                          LlamaForCausalLM (or a hub SmolLM2 when named); tiny_llama() for tests
    lmbook.tune.tasks     spam_task() (answer "spam"/"ham"), few_shot(), secret_pairs() (DPO pairs
                          by a checkable rule: the secret does not occur in the chosen reply)
    lmbook.tune.evaluate  label_accuracy(), reply_accuracy(), greedy_replies(), mean_kl()
    lmbook.tune.sft       sft_loss() written out; train_sft() with TRL's SFTTrainer (+ peft LoRA)
    lmbook.tune.lora      lora_config(), lora_updates() (rank of ΔW = BA), merge()
    lmbook.tune.dpo       dpo_loss() written out; implicit_rewards(); train_dpo() with TRL's DPOTrainer
    lmbook.tune.presets   TunePreset per hardware preset (cpu, t4, large)

From the command line: ``python -m lmbook tune sft --preset cpu`` (and ``tune dpo``); under
``torchrun``/``accelerate launch`` the same command trains on several processes.
"""
# The submodules, loaded when first used (``lmbook.tune.sft``): ``import lmbook.tune`` loads
# nothing heavy (TRL, peft).
__all__ = ["model", "tasks", "evaluate", "sft", "lora", "dpo", "presets", "recipes"]


def __getattr__(name: str):
    if name in __all__:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
