"""Ingestion benchmark: our sync engine vs raw ``model.encode`` vs LlamaIndex's IngestionPipeline.

    .venv/bin/python benchmarks/ingest.py DIR_OR_CORPUS_JSONL [--limit N] [--store edge|qdrant]
        [--qdrant-url URL] [--skip-llamaindex] [--compare-env K=V ...] [--json-out FILE]
        [--smoke] [--report-only]

DIR is a folder of documents; a BEIR ``corpus.jsonl`` is written out as one .txt file per
document (title, blank line, text) into a temp folder first. Each phase runs in its own
subprocess (same model, same splitter settings) so peak memory is per phase.

The two pipelines chunk differently (our heading-aware chunker vs LlamaIndex's
SentenceSplitter, different overlaps), so chunks/s would reward whichever makes fewer, larger
chunks. Throughput is therefore quoted per unit of *input*: source tokens/s (the parsed text
of the documents, counted once with the embedding model's tokenizer — the same count for both
sides) and documents/s; the chunk and embedded-token counts of each side are reported next
to them. Stores: ours is ``--store`` (``edge``, the embedded default: Qdrant Edge; or
``qdrant``: qdrant-client's local mode in a folder, or the server at ``--qdrant-url``);
LlamaIndex has no Qdrant Edge integration, so its ``QdrantVectorStore`` uses qdrant-client's
local mode, or the same server with ``--qdrant-url``. The report names both and says whether
they are the same (``--store qdrant`` gives the like-for-like comparison).

Goals (exit status 1 when one is missed; ``--report-only`` reports without failing,
``--smoke`` enforces only the checks):

- cold ingest vs raw ``SentenceTransformer.encode`` of the same chunk texts: >= 0.90 of its
  speed (model already loaded; load time reported separately);
- vs LlamaIndex ``IngestionPipeline`` (same model, same chunk size settings): >= 2.0x its
  source tokens/s;
- unchanged re-ingest >= 100x faster than cold;
- the guard steps (PII detection and injection scoring, per chunk at ingest) <= 10 % of the
  cold ingest's time.

The time of each ingest step (``SyncReport.steps``: read, parse, chunk, pii, injection, embed,
sentence_vectors, upsert, manifest, index) is reported per 1,000 chunks. ``sentence_vectors``
is work LlamaIndex's pipeline does not do (the answer path's sentences embedded once, at
ingest: ``rag.indexing.sentence_vectors``), so the ratios are given with and without it.

``--compare-env KEY=VALUE`` (repeatable) runs our cold ingest a second time, right after
the first, into its own data dir with those ``RAG_*`` variables set (e.g.
``RAG_EMBEDDING__DOCUMENT_PRECISION=int8``): reported under ``compare_env`` with its ratios
to raw encode, to LlamaIndex and to our default run (the goals stay on the default run).

Checks (enforced in smoke runs too): documents ingested, none failed, and the unchanged
re-ingest embeds 0 chunks. Peak RSS of each phase is reported.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish  # noqa: E402

GOAL_VS_RAW = 0.90
GOAL_VS_LLAMAINDEX = 2.0
GOAL_UNCHANGED_SPEEDUP = 100.0
GOAL_GUARD_SHARE = 0.10  # PII + injection scoring, of the cold ingest's time
GUARD_STEPS = ("pii", "injection")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _settings(data_dir: Path, store: str, qdrant_url: str | None) -> Any:
    from rag.core.config import load_settings

    store_settings: dict[str, object] = {"backend": store}
    if store == "qdrant":
        if qdrant_url:
            store_settings.update(url=qdrant_url, collection="bench_ours")
        else:
            store_settings["path"] = str(data_dir / "ours-qdrant")
    overrides: dict[str, object] = {"data_dir": str(data_dir), "store": store_settings}
    return load_settings(overrides=overrides)


def describe_store(side: str, store: str, qdrant_url: str | None) -> str:
    if side == "ours" and store == "edge":
        return "Qdrant Edge (qdrant-edge-py, embedded in process)"
    if qdrant_url:
        return f"Qdrant server at {qdrant_url} (qdrant-client)"
    return "qdrant-client local mode (in-process, a folder on disk)"


def source_tokens(folder: Path) -> dict[str, int]:
    """Documents and tokens of their parsed text (the embedding model's tokenizer, no
    truncation): the input both pipelines get, counted once."""
    from rag.core.errors import RagError
    from rag.core.tokens import load_tokenizer
    from rag.indexing.embedding import default_model_path
    from rag.indexing.parsing import parse_bytes

    encode = load_tokenizer(default_model_path())
    docs = tokens = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            text = parse_bytes(path.read_bytes(), path.suffix, path.name).text
        except (RagError, ValueError):
            continue
        docs += 1
        tokens += len(encode(text))
    return {"documents": docs, "tokens": tokens}


def phase_ours(folder: Path, data_dir: Path, store: str, qdrant_url: str | None) -> dict[str, Any]:
    from rag.indexing.index import Index
    from rag.indexing.ingest import Ingestor

    settings = _settings(data_dir, store, qdrant_url)
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
        "sentences_embedded": cold.sentences_embedded,
        "steps": dict(cold.steps),
        "reingest_s": again_s,
        "reingest_embedded": again.embedded,
        "reingest_unchanged": again.unchanged,
        "failed": cold.failed,
        "peak_mb": _peak_mb(),
    }


def phase_raw(data_dir: Path) -> dict[str, Any]:
    from rag.core.config import EmbeddingSettings
    from rag.core.tokens import load_tokenizer
    from rag.indexing.embedding import Embedder, default_model_path

    texts = json.loads((data_dir / "texts.json").read_text())
    # Only the PyTorch model is timed here: no ONNX export of the short-text encoder.
    emb = Embedder(EmbeddingSettings(short_text_backend="torch"))
    emb.warm_up()
    model = emb._model
    t0 = time.perf_counter()
    model.encode(texts, batch_size=EmbeddingSettings().batch_size, normalize_embeddings=True)
    encode_s = time.perf_counter() - t0
    encode = load_tokenizer(default_model_path())
    return {
        "encode_s": encode_s,
        "texts": len(texts),
        "tokens": sum(len(encode(t)) for t in texts),
        "peak_mb": _peak_mb(),
    }


def phase_llamaindex(folder: Path, data_dir: Path, qdrant_url: str | None) -> dict[str, Any]:
    from llama_index.core import SimpleDirectoryReader
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from rag.core.config import load_settings
    from rag.core.tokens import load_tokenizer
    from rag.indexing.embedding import default_model_path

    s = load_settings()
    model_dir = default_model_path()
    embed = HuggingFaceEmbedding(
        model_name=str(model_dir), device="cpu", embed_batch_size=s.embedding.batch_size
    )
    embed.get_text_embedding("warm up")
    encode = load_tokenizer(model_dir)
    splitter = SentenceSplitter(
        chunk_size=s.chunking.chunk_tokens,
        chunk_overlap=s.chunking.overlap_tokens,
        tokenizer=encode,
    )
    client = (
        QdrantClient(url=qdrant_url)
        if qdrant_url
        else QdrantClient(path=str(data_dir / "llamaindex-qdrant"))
    )
    store = QdrantVectorStore(client=client, collection_name="bench_llamaindex")
    pipeline = IngestionPipeline(transformations=[splitter, embed], vector_store=store)
    t0 = time.perf_counter()
    docs = SimpleDirectoryReader(str(folder), recursive=True).load_data()
    nodes = pipeline.run(documents=docs)
    cold_s = time.perf_counter() - t0
    return {
        "cold_s": cold_s,
        "documents_read": len(docs),
        "chunks": len(nodes),
        "tokens": sum(len(encode(n.get_content())) for n in nodes),
        "peak_mb": _peak_mb(),
    }


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


def _run_phase(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"phase {args[1]} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _per_s(amount: float, seconds: float) -> float:
    return round(amount / seconds, 2) if seconds > 0 else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("source", type=Path, nargs="?")
    ap.add_argument("--limit", type=int, default=None, help="only the first N corpus documents")
    ap.add_argument(
        "--store",
        choices=["edge", "qdrant"],
        default="edge",
        help="our store: edge (embedded default) or qdrant (local mode, or --qdrant-url)",
    )
    ap.add_argument(
        "--qdrant-url", default=None, help="a Qdrant server for both sides (with --store qdrant)"
    )
    ap.add_argument("--skip-llamaindex", action="store_true")
    ap.add_argument(
        "--compare-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="also run our ingest with this RAG_* setting (repeatable), e.g. "
        "RAG_EMBEDDING__DOCUMENT_PRECISION=int8",
    )
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    add_goal_arguments(ap)
    a = ap.parse_args()

    if a.phase:  # child process
        if a.phase == "ours":
            out = phase_ours(a.folder, a.data, a.store, a.qdrant_url)
        elif a.phase == "raw":
            out = phase_raw(a.data)
        else:
            out = phase_llamaindex(a.folder, a.data, a.qdrant_url)
        print(json.dumps(out))
        return 0

    if a.source is None:
        ap.error("give a folder of documents or a BEIR corpus.jsonl")
    if a.qdrant_url and a.store != "qdrant":
        ap.error("--qdrant-url is for --store qdrant (both sides on that server)")
    compare_env = dict(pair.split("=", 1) for pair in a.compare_env if "=" in pair)
    if len(compare_env) != len(a.compare_env):
        ap.error("--compare-env: give KEY=VALUE")
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    folder = a.source
    if a.source.suffix == ".jsonl":
        folder = work / "docs"
        folder.mkdir()
        n = write_corpus(a.source, folder, a.limit)
        print(f"wrote {n} documents from {a.source} to {folder}", file=sys.stderr)
    data = work / "data"
    data.mkdir()
    source = source_tokens(folder)
    url = ["--qdrant-url", a.qdrant_url] if a.qdrant_url else []
    print("phase 1/3: our ingest (cold, then unchanged)…", file=sys.stderr)
    ours = _run_phase(
        ["--phase", "ours", "--folder", str(folder), "--data", str(data), "--store", a.store, *url]
    )
    ours_env: dict[str, Any] | None = None
    if compare_env and a.store == "qdrant" and a.qdrant_url:
        ap.error("--compare-env needs a store of its own: not with --qdrant-url")
    if compare_env:
        print(f"phase 1b: our ingest with {compare_env}…", file=sys.stderr)
        data_env = work / "data-env"
        data_env.mkdir()
        ours_env = _run_phase(
            [
                "--phase",
                "ours",
                "--folder",
                str(folder),
                "--data",
                str(data_env),
                "--store",
                a.store,
            ],
            env=compare_env,
        )
    print("phase 2/3: raw model.encode of the same chunk texts…", file=sys.stderr)
    raw = _run_phase(["--phase", "raw", "--data", str(data)])
    li: dict[str, Any] | None = None
    if not a.skip_llamaindex:
        print("phase 3/3: LlamaIndex IngestionPipeline…", file=sys.stderr)
        li = _run_phase(
            ["--phase", "llamaindex", "--folder", str(folder), "--data", str(data), *url]
        )

    cold_s = float(ours["cold_s"])
    steps = {k: float(v) for k, v in ours["steps"].items()}
    sentences_s = steps.get("sentence_vectors", 0.0)
    guard_share = sum(steps.get(k, 0.0) for k in GUARD_STEPS) / cold_s if cold_s else 0.0
    per_1000 = 1000.0 / max(1, int(ours["chunks"]))
    reingest_s = float(ours["reingest_s"])
    encode_s = float(raw["encode_s"])
    stores = {
        "ours": describe_store("ours", a.store, a.qdrant_url),
        "llamaindex": describe_store("llamaindex", a.store, a.qdrant_url) if li else None,
    }
    report: dict[str, Any] = {
        "goal": f"cold ingest >= {GOAL_VS_RAW} of raw encode speed on the same chunk texts, "
        f">= {GOAL_VS_LLAMAINDEX}x LlamaIndex's source tokens/s, unchanged re-ingest "
        f">= {GOAL_UNCHANGED_SPEEDUP:.0f}x faster than cold and embedding nothing",
        "documents_dir": str(folder),
        "store": a.store,
        "stores": stores,
        "same_store": li is not None and stores["ours"] == stores["llamaindex"],
        "source": source,
        "model_load_s": round(float(ours["load_s"]), 2),
        "ours": {
            "cold_ingest_s": round(cold_s, 2),
            "source_tokens_per_s": _per_s(source["tokens"], cold_s),
            "documents_per_s": _per_s(source["documents"], cold_s),
            "chunks": int(ours["chunks"]),
            "embedded_tokens": int(raw["tokens"]),
            "chunks_per_s": _per_s(float(ours["chunks"]), cold_s),
            "failed": ours["failed"],
            "sentences_embedded": int(ours["sentences_embedded"]),
            # Seconds per 1,000 chunks of each step; the rest is the sync's own bookkeeping.
            "step_s_per_1000_chunks": {
                **{k: round(v * per_1000, 3) for k, v in sorted(steps.items())},
                "other": round((cold_s - sum(steps.values())) * per_1000, 3),
            },
            "guard_share": round(guard_share, 4),
            "sentence_vectors_share": round(sentences_s / cold_s, 4) if cold_s else None,
        },
        "raw_encode": {
            "seconds": round(encode_s, 2),
            "texts": raw["texts"],
            "embedded_tokens_per_s": _per_s(float(raw["tokens"]), encode_s),
        },
        # The same texts on both sides: the time ratio is the throughput ratio.
        "ratio_vs_raw_encode": round(encode_s / cold_s, 3) if cold_s else None,
        "ratio_vs_raw_encode_without_sentence_vectors": (
            round(encode_s / (cold_s - sentences_s), 3) if cold_s > sentences_s else None
        ),
        "unchanged_reingest_s": round(reingest_s, 3),
        "unchanged_speedup": round(cold_s / reingest_s, 1) if reingest_s else None,
        "unchanged_embedded": ours["reingest_embedded"],
        "peak_rss_mb": {
            "ours": round(float(ours["peak_mb"]), 1),
            "raw_encode": round(float(raw["peak_mb"]), 1),
        },
    }
    goals = [
        Goal(
            "cold ingest vs raw encode (same chunk texts)",
            f">= {GOAL_VS_RAW}",
            report["ratio_vs_raw_encode"],
            (report["ratio_vs_raw_encode"] or 0.0) >= GOAL_VS_RAW,
        ),
        Goal(
            "guard steps (pii + injection) share of the cold ingest",
            f"<= {GOAL_GUARD_SHARE:.0%}",
            report["ours"]["guard_share"],
            report["ours"]["guard_share"] <= GOAL_GUARD_SHARE,
        ),
        Goal(
            "unchanged re-ingest speedup",
            f">= {GOAL_UNCHANGED_SPEEDUP:.0f}x",
            report["unchanged_speedup"],
            (report["unchanged_speedup"] or 0.0) >= GOAL_UNCHANGED_SPEEDUP,
        ),
        Goal(
            "documents ingested, none failed",
            "> 0 chunks, 0 failed",
            {"chunks": report["ours"]["chunks"], "failed": ours["failed"]},
            report["ours"]["chunks"] > 0 and int(ours["failed"]) == 0,
            check=True,
        ),
        Goal(
            "unchanged re-ingest embeds nothing",
            "0 chunks embedded",
            ours["reingest_embedded"],
            ours["reingest_embedded"] == 0,
            check=True,
        ),
    ]
    if li is not None:
        li_s = float(li["cold_s"])
        report["llamaindex"] = {
            "cold_ingest_s": round(li_s, 2),
            "source_tokens_per_s": _per_s(source["tokens"], li_s),
            "documents_per_s": _per_s(source["documents"], li_s),
            "documents_read": li["documents_read"],
            "chunks": li["chunks"],
            "embedded_tokens": li["tokens"],
            "chunks_per_s": _per_s(float(li["chunks"]), li_s),
        }
        # Same documents, same source tokens: the ratio of source tokens/s (= of documents/s).
        report["ratio_vs_llamaindex"] = round(li_s / cold_s, 3) if cold_s else None
        report["ratio_vs_llamaindex_without_sentence_vectors"] = (
            round(li_s / (cold_s - sentences_s), 3) if cold_s > sentences_s else None
        )
        report["peak_rss_mb"]["llamaindex"] = round(float(li["peak_mb"]), 1)
        goals.insert(
            1,
            Goal(
                "source tokens/s vs LlamaIndex"
                + ("" if report["same_store"] else f" (stores differ: ours {a.store})"),
                f">= {GOAL_VS_LLAMAINDEX}x",
                report["ratio_vs_llamaindex"],
                (report["ratio_vs_llamaindex"] or 0.0) >= GOAL_VS_LLAMAINDEX,
            ),
        )
        goals.append(
            Goal(
                "LlamaIndex phase produced chunks",
                "> 0",
                li["chunks"],
                int(li["chunks"]) > 0,
                check=True,
            )
        )
    if ours_env is not None:
        env_s = float(ours_env["cold_s"])
        env_steps = {k: float(v) for k, v in ours_env["steps"].items()}
        env_sentences_s = env_steps.get("sentence_vectors", 0.0)
        env_per_1000 = 1000.0 / max(1, int(ours_env["chunks"]))
        li_cold = float(li["cold_s"]) if li is not None else None
        report["compare_env"] = {
            "env": compare_env,
            "cold_ingest_s": round(env_s, 2),
            "source_tokens_per_s": _per_s(source["tokens"], env_s),
            "chunks": int(ours_env["chunks"]),
            "failed": ours_env["failed"],
            "step_s_per_1000_chunks": {
                k: round(v * env_per_1000, 3) for k, v in sorted(env_steps.items())
            },
            "ratio_to_default_run": round(cold_s / env_s, 3) if env_s else None,
            "ratio_vs_raw_encode": round(encode_s / env_s, 3) if env_s else None,
            "ratio_vs_raw_encode_without_sentence_vectors": (
                round(encode_s / (env_s - env_sentences_s), 3) if env_s > env_sentences_s else None
            ),
            "ratio_vs_llamaindex": round(li_cold / env_s, 3) if li_cold and env_s else None,
            "ratio_vs_llamaindex_without_sentence_vectors": (
                round(li_cold / (env_s - env_sentences_s), 3)
                if li_cold and env_s > env_sentences_s
                else None
            ),
        }
        goals.append(
            Goal(
                "compare-env run ingested, none failed",
                "> 0 chunks, 0 failed",
                {"chunks": ours_env["chunks"], "failed": ours_env["failed"]},
                int(ours_env["chunks"]) > 0 and int(ours_env["failed"]) == 0,
                check=True,
            )
        )
    return finish(report, goals, a, a.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
