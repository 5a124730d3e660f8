"""Ingestion benchmark: our sync engine vs raw ``model.encode`` vs LlamaIndex's IngestionPipeline.

    .venv/bin/python benchmarks/ingest.py DIR_OR_CORPUS_JSONL [--limit N] [--store edge|qdrant]

DIR is a folder of documents; a BEIR ``corpus.jsonl`` is written out as one .txt file per
document (title, blank line, text) into a temp folder first. Each phase runs in its own
subprocess (same model, same splitter settings) so peak memory is per phase, and all the
figures below come from this one run:

- cold ingest chunks/s (model already loaded; load time reported separately)
- ratio to raw ``SentenceTransformer.encode`` of the same chunk texts   (goal >= 0.90)
- ratio to LlamaIndex ``IngestionPipeline`` (same model, SentenceSplitter settings, and a
  Qdrant store: qdrant-client local mode for both when --store qdrant)  (goal >= 2.0)
- unchanged re-ingest time as a fraction of cold, and chunks embedded   (goal >= 100x, 0)
- peak RSS of each phase
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(data_dir: Path, store: str):  # type: ignore[no-untyped-def]
    from rag.config import load_settings

    overrides: dict[str, object] = {"data_dir": str(data_dir), "store": {"backend": store}}
    return load_settings(overrides=overrides)


def phase_ours(folder: Path, data_dir: Path, store: str) -> dict[str, object]:
    from rag.index import Index
    from rag.ingest import Ingestor

    settings = _settings(data_dir, store)
    index = Index(settings)
    t0 = time.perf_counter()
    index.warm_up()
    load_s = time.perf_counter() - t0
    index.open()
    t0 = time.perf_counter()
    cold = Ingestor(index).sync_folder(folder)
    cold_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = Ingestor(index).sync_folder(folder)
    again_s = time.perf_counter() - t0
    texts = [p.payload["text"] for p in index.store.scroll(index.collection or "")]
    (data_dir / "texts.json").write_text(json.dumps(texts))
    index.close()
    return {
        "load_s": load_s,
        "cold_s": cold_s,
        "chunks": cold.chunks_written,
        "embedded": cold.embedded,
        "reingest_s": again_s,
        "reingest_embedded": again.embedded,
        "reingest_unchanged": again.unchanged,
        "failed": cold.failed,
        "peak_mb": _peak_mb(),
    }


def phase_raw(data_dir: Path) -> dict[str, object]:
    from rag.config import EmbeddingSettings
    from rag.embedding import Embedder

    texts = json.loads((data_dir / "texts.json").read_text())
    emb = Embedder(EmbeddingSettings())
    emb.warm_up()
    model = emb._model
    t0 = time.perf_counter()
    model.encode(texts, batch_size=EmbeddingSettings().batch_size, normalize_embeddings=True)
    return {"encode_s": time.perf_counter() - t0, "texts": len(texts), "peak_mb": _peak_mb()}


def phase_llamaindex(folder: Path, data_dir: Path) -> dict[str, object]:
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from rag.config import load_settings
    from rag.embedding import default_model_path
    from rag.tokens import load_tokenizer

    s = load_settings()
    model_dir = default_model_path()
    embed = HuggingFaceEmbedding(
        model_name=str(model_dir), device="cpu", embed_batch_size=s.embedding.batch_size
    )
    embed.get_text_embedding("warm up")
    splitter = SentenceSplitter(
        chunk_size=s.chunking.chunk_tokens,
        chunk_overlap=s.chunking.overlap_tokens,
        tokenizer=load_tokenizer(model_dir),
    )
    client = QdrantClient(path=str(data_dir / "llamaindex-qdrant"))
    store = QdrantVectorStore(client=client, collection_name="bench")
    pipeline = IngestionPipeline(transformations=[splitter, embed], vector_store=store)
    t0 = time.perf_counter()
    docs = SimpleDirectoryReader(str(folder), recursive=True).load_data()
    nodes = pipeline.run(documents=docs)
    return {"cold_s": time.perf_counter() - t0, "chunks": len(nodes), "peak_mb": _peak_mb()}


def write_corpus(corpus: Path, out: Path, limit: int | None) -> int:
    n = 0
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            if limit is not None and n >= limit:
                break
            doc = json.loads(line)
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(doc["_id"]))
            (out / f"{safe}.txt").write_text(
                f"{doc.get('title', '')}\n\n{doc['text']}\n", encoding="utf-8"
            )
            n += 1
    return n


def _run_phase(args: list[str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[0]} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source", type=Path, nargs="?")
    ap.add_argument("--limit", type=int, default=None, help="only the first N corpus documents")
    ap.add_argument("--store", choices=["edge", "qdrant"], default="edge", help="our store backend")
    ap.add_argument("--skip-llamaindex", action="store_true")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.phase:  # child process
        if a.phase == "ours":
            out = phase_ours(a.folder, a.data, a.store)
        elif a.phase == "raw":
            out = phase_raw(a.data)
        else:
            out = phase_llamaindex(a.folder, a.data)
        print(json.dumps(out))
        return

    if a.source is None:
        ap.error("give a folder of documents or a BEIR corpus.jsonl")
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    folder = a.source
    if a.source.suffix == ".jsonl":
        folder = work / "docs"
        folder.mkdir()
        n = write_corpus(a.source, folder, a.limit)
        print(f"wrote {n} documents from {a.source} to {folder}", file=sys.stderr)
    data = work / "data"
    data.mkdir()
    print("phase 1/3: our ingest (cold, then unchanged)…", file=sys.stderr)
    ours = _run_phase(
        ["--phase", "ours", "--folder", str(folder), "--data", str(data), "--store", a.store]
    )
    print("phase 2/3: raw model.encode of the same chunk texts…", file=sys.stderr)
    raw = _run_phase(["--phase", "raw", "--data", str(data)])
    li: dict[str, object] | None = None
    if not a.skip_llamaindex:
        print("phase 3/3: LlamaIndex IngestionPipeline…", file=sys.stderr)
        li = _run_phase(["--phase", "llamaindex", "--folder", str(folder), "--data", str(data)])

    chunks = float(ours["chunks"])  # type: ignore[arg-type]
    cold_s = float(ours["cold_s"])  # type: ignore[arg-type]
    ours_cps = chunks / cold_s
    raw_cps = float(raw["texts"]) / float(raw["encode_s"])  # type: ignore[arg-type]
    report: dict[str, object] = {
        "documents_dir": str(folder),
        "store": a.store,
        "chunks": int(chunks),
        "model_load_s": round(float(ours["load_s"]), 2),  # type: ignore[arg-type]
        "cold_ingest_s": round(cold_s, 2),
        "cold_chunks_per_s": round(ours_cps, 2),
        "raw_encode_chunks_per_s": round(raw_cps, 2),
        "ratio_vs_raw_encode": round(ours_cps / raw_cps, 3),
        "unchanged_reingest_s": round(float(ours["reingest_s"]), 3),  # type: ignore[arg-type]
        "unchanged_speedup": round(cold_s / float(ours["reingest_s"]), 1),  # type: ignore[arg-type]
        "unchanged_embedded": ours["reingest_embedded"],
        "peak_rss_mb": {
            "ours": round(float(ours["peak_mb"]), 1),
            "raw_encode": round(float(raw["peak_mb"]), 1),
        },  # type: ignore[arg-type]
    }
    if li is not None:
        li_cps = float(li["chunks"]) / float(li["cold_s"])  # type: ignore[arg-type]
        report["llamaindex_chunks"] = li["chunks"]
        report["llamaindex_chunks_per_s"] = round(li_cps, 2)
        report["ratio_vs_llamaindex"] = round(ours_cps / li_cps, 3)
        report["peak_rss_mb"]["llamaindex"] = round(float(li["peak_mb"]), 1)  # type: ignore[index, arg-type]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
