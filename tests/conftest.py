"""Fixtures shared by every test folder (subfolders add their own conftest files).

- ``embedder``: one warmed MiniLM ``Embedder`` per session (loading it costs ~25 s here);
  pass it to ``Index(settings, embedder=embedder)``. Its ONNX graphs are kept in
  ``ONNX_CACHE`` across sessions.
- ``tmp_settings``: ``Settings`` from the default config with ``data_dir`` under ``tmp_path``.
- ``rag_cli``: runs the real ``rag`` command in a subprocess against a given data dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from rag.core.config import DEFAULT_CONFIG, Settings, load_settings
from rag.indexing.embedding import Embedder

RAG_BIN = Path(sys.executable).with_name("rag")


# One torch thread: with several agents sharing 2 cores, more threads spin against each
# other (measured: a 6-text batch took 0.7 s with 2 threads, 0.05 s with 1).
TEST_TORCH_THREADS = "1"


# Where the session embedder keeps its ONNX export and int8 quantization (one folder per weights
# fingerprint inside): built by the first test session of this user, reused by the next ones
# (export ~1.5 s, quantization ~2.5 s here). Tests of the export itself use their own folders.
ONNX_CACHE = Path(tempfile.gettempdir()) / f"rag-tests-onnx-{os.getuid()}"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    settings = load_settings(DEFAULT_CONFIG).embedding.model_copy(
        update={"threads": int(TEST_TORCH_THREADS)}
    )
    model = Embedder(settings, cache_dir=ONNX_CACHE)
    model.warm_up()
    return model


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, Mapping) and isinstance(out.get(key), dict)
            else value
        )
    return out


SettingsFactory = Callable[..., Settings]


@pytest.fixture()
def tmp_settings(tmp_path: Path) -> SettingsFactory:
    """``tmp_settings(name="data", **overrides)``: nested overrides as dicts, e.g.
    ``tmp_settings(ingestion={"max_file_mb": 0.01})``. Each ``name`` is its own data dir."""

    def make(name: str = "data", **overrides: Any) -> Settings:
        return load_settings(DEFAULT_CONFIG, _merge({"data_dir": str(tmp_path / name)}, overrides))

    return make


class RagCli:
    """The installed ``rag`` entry point, run as a child process with a clean ``RAG_*`` environment."""

    bin = RAG_BIN

    def env(self, data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        # Only what the test sets: a developer's own RAG_* variables must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env.update(
            {
                "RAG_DATA_DIR": str(data_dir),
                "RAG_EMBEDDING__THREADS": TEST_TORCH_THREADS,
                # The session's ONNX graphs: no child exports and quantizes them again.
                "RAG_EMBEDDING__ONNX_CACHE_DIR": str(ONNX_CACHE),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
            }
        )
        env.update(extra or {})
        return env

    def run(
        self,
        *args: str,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        timeout: float = 180.0,
        check: bool = True,
        **popen_kwargs: Any,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin), *args],
            env=self.env(data_dir, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            **popen_kwargs,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"`rag {' '.join(args)}` exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def json(self, *args: str, data_dir: Path, **kwargs: Any) -> Any:
        return json.loads(self.run(*args, data_dir=data_dir, **kwargs).stdout)

    def export(self, data_dir: Path, **kwargs: Any) -> list[dict[str, Any]]:
        out = self.run("export", data_dir=data_dir, **kwargs).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def rag_cli() -> RagCli:
    if not RAG_BIN.exists():
        pytest.fail(f"{RAG_BIN} is missing: run `make dev` first")
    return RagCli()
