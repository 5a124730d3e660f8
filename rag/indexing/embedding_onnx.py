"""ONNX Runtime encoder for short inputs (queries, answer sentences) of a sentence-transformers model.

Why: on a small CPU one query through sentence-transformers + PyTorch costs ~15 ms, most of it
per-call overhead; the same graph in ONNX Runtime takes ~5 ms (``benchmarks/query.py``). For
large document batches PyTorch is as fast, so ingestion keeps using it.

The graph is exported from the already loaded model (same weights, so the index's version lock
is unchanged) and cached by weight fingerprint. It is only used if it agrees with PyTorch on
probe texts (``Embedder.warm_up`` checks); otherwise the embedder stays on PyTorch.

``precision="int8"``: ONNX Runtime's dynamic quantization of that export (QInt8 weights per
output channel; activations quantized per run), built once beside it (``model-int8.onnx``).
Its activation scale is taken over the whole input tensor, so a text's vector would depend on
the texts batched with it (cosine 0.986 in the worst case on SciFact claims, padded or not):
the int8 encoder runs one text at a time, and a vector is a function of its text alone.
Results still differ slightly between CPUs (with or without AVX-512 VNNI).
"""

from __future__ import annotations

import copy
import errno
import inspect
import logging
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PRECISIONS", "OnnxEncoder", "QuantizationUnavailable", "onnx_unsupported_reason"]

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# precision -> file name of its graph under the fingerprint's folder.
PRECISIONS = {"fp32": "model.onnx", "int8": "model-int8.onnx"}


class QuantizationUnavailable(RuntimeError):
    """ONNX Runtime's quantization tools (``onnxruntime.quantization``, which needs ``onnx``)
    cannot be imported."""


def _quantize_int8(source: Path, path: Path) -> None:
    """Write the int8 dynamic quantization of ``source`` to ``path`` (atomically)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise QuantizationUnavailable(
            f"onnxruntime.quantization cannot be imported ({exc}): install the `onnx` package "
            "beside onnxruntime"
        ) from exc
    tmp = _private_tmp(path)
    # The quantizer logs a line per tensor, and a "consider pre-processing" WARNING, on the
    # root logger: with int8 queries the default, every new deployment's log would open so.
    quiet = _DropQuantizerNotes()
    logging.getLogger().addFilter(quiet)
    try:
        # Per-channel weights keep SciFact vectors at cosine ~0.994 to fp32 (per tensor: 0.957).
        quantize_dynamic(source, tmp, weight_type=QuantType.QInt8, per_channel=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        logging.getLogger().removeFilter(quiet)
    os.replace(tmp, path)


class _DropQuantizerNotes(logging.Filter):
    """Drops the root-logger records ``onnxruntime.quantization`` writes (other records pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"onnxruntime{os.sep}quantization" not in record.pathname


def _private_tmp(path: Path) -> Path:
    """This process's partial file for ``path``: processes sharing a cache folder (replicas,
    test runs) may build the same graph at once, each then replacing ``path`` whole."""
    return path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")


def onnx_unsupported_reason(model: Any) -> str | None:
    """None if ``model`` (a SentenceTransformer) is Transformer → Pooling(mean|cls) [→ Normalize]."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed"
    names = [type(m).__name__ for m in model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return f"modules {names} (only Transformer, Pooling, Normalize are exported)"
    if getattr(model[1], "pooling_mode", None) not in ("mean", "cls"):
        return f"pooling mode {getattr(model[1], 'pooling_mode', None)!r}"
    return None


EXPORT_MARGIN_BYTES = 64_000_000  # left free beyond the export's own size


def _export(auto_model: Any, path: Path, input_names: list[str]) -> None:
    """Write the transformer (named inputs → last hidden state) to ``path`` as ONNX."""
    import torch

    # SDPA attention bakes the traced sequence length into the graph; eager traces cleanly.
    model = copy.deepcopy(auto_model).eval()
    model.set_attn_implementation("eager")

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(input_names, args, strict=True))).last_hidden_state  # type: ignore[no-any-return]

    sample = {
        "input_ids": torch.tensor(
            [[101, 7592, 2088, 2023, 2003, 1037, 2936, 102], [101, 2460, 102, 0, 0, 0, 0, 0]]
        ),
        "attention_mask": torch.tensor([[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]),
        "token_type_ids": torch.zeros(2, 8, dtype=torch.long),
    }
    tmp = _private_tmp(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The export writes the weights in float32: on a volume without room for them it would
    # fill it (every writer of the data dir failing meanwhile) and leave the partial file.
    needed = sum(p.numel() for p in model.parameters()) * 4 * 3 // 2 + EXPORT_MARGIN_BYTES
    free = shutil.disk_usage(path.parent).free
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"{free // 1_000_000} MB free where the ONNX export needs about {needed // 1_000_000} MB",
        )
    try:
        _export_to(model, tmp, input_names, sample, Wrapped)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def _export_to(model: Any, tmp: Path, input_names: list[str], sample: Any, Wrapped: Any) -> None:
    import torch

    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about shape-dependent Python branches
        torch.onnx.export(
            Wrapped(),
            tuple(sample[n] for n in input_names),
            str(tmp),
            input_names=input_names,
            output_names=["last_hidden_state"],
            dynamic_axes={
                n: {0: "batch", 1: "tokens"} for n in [*input_names, "last_hidden_state"]
            },
            opset_version=17,
            dynamo=False,
        )


class OnnxEncoder:
    def __init__(
        self,
        st_model: Any,
        cache_dir: Path | None,
        fingerprint: str,
        threads: int | None,
        precision: str = "fp32",
    ):
        self._tokenizer = st_model.tokenizer
        self.max_length = int(st_model.max_seq_length or 512)
        self.pooling = str(st_model[1].pooling_mode)
        self.do_lower_case = bool(getattr(st_model[0], "do_lower_case", False))
        auto_model = st_model[0].auto_model
        accepted = set(inspect.signature(auto_model.forward).parameters)
        self.input_names = [
            n
            for n in _INPUTS
            if n in accepted
            and (n != "token_type_ids" or "token_type_ids" in self._tokenizer.model_input_names)
        ]
        if cache_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rag-onnx-")
            cache_dir = Path(self._tmp.name)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
        self.precision = precision
        # int8 activations are quantized over the whole batch: one text per run (see above).
        self.one_text_per_run = precision == "int8"
        fp32_path = Path(cache_dir) / fingerprint / PRECISIONS["fp32"]
        self.path = Path(cache_dir) / fingerprint / PRECISIONS[precision]
        if not self.path.exists():
            if not fp32_path.exists():
                log.info(
                    "exporting the embedding model to ONNX for query encoding (once): %s",
                    fp32_path,
                )
                _export(auto_model, fp32_path, self.input_names)
            if self.path != fp32_path:
                log.info("quantizing the ONNX embedding model to int8 (once): %s", self.path)
                _quantize_int8(fp32_path, self.path)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: on a small box the spinning steals the
        # cores a co-located model server (vLLM, llama.cpp) is prefilling on; costs ~0.4 ms here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str], normalize: bool) -> np.ndarray:
        prepared = [t.strip().lower() if self.do_lower_case else t.strip() for t in texts]
        if self.one_text_per_run and len(prepared) > 1:
            return np.concatenate([self._encode([t], normalize) for t in prepared])
        return self._encode(prepared, normalize)

    def _encode(self, prepared: list[str], normalize: bool) -> np.ndarray:
        enc = self._tokenizer(
            prepared, padding=True, truncation=True, max_length=self.max_length, return_tensors="np"
        )
        feeds = {n: np.asarray(enc[n], dtype=np.int64) for n in self.input_names}
        hidden = self._session.run(None, feeds)[0]
        if self.pooling == "cls":
            vecs = hidden[:, 0]
        else:
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            vecs = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        if normalize:
            vecs = vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
        return np.asarray(vecs, dtype=np.float32)
