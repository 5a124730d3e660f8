"""int8 embedding encoder vs fp32: SciFact retrieval quality and encode time, one run.

    .venv/bin/python benchmarks/int8_encoder.py [CORPUS_DIR] [--docs N] [--rounds 5]
        [--timing-queries 100] [--onnx-cache DIR] [--json-out FILE] [--smoke] [--report-only]

``CORPUS_DIR``: a BEIR folder (default ``../shared/datasets/scifact``). ``embedding.
query_precision`` / ``embedding.document_precision: int8`` run the ONNX export quantized to
int8 (``rag.indexing.embedding_onnx``); this measures whether that is worth it.

Quality. The corpus (``--docs N``: every document the test qrels name, then the rest in
corpus order up to N; default all) is cut by the index's own chunker (title, blank line,
abstract: what ``rag eval retrieval`` ingests) and each chunk embedded by both document
encoders: fp32 (the PyTorch model at ``embedding.dtype``: what ingestion uses by default)
and int8. Every judged query is embedded by both query encoders (the fp32 ONNX export, the
default; int8). Dense retrieval is an exact dot-product search (what the store's dense arm
returns, without HNSW approximation or BM25 fusion, so the encoders alone are compared),
chunks collapsed to documents by their best chunk, scored with ``evals.metrics`` (the
retrieval eval's nDCG@10 and recall@100). Four combinations: fp32, int8 queries (fp32
documents), int8 documents (fp32 queries), int8 both.

Time (interleaved: each round runs fp32 and int8 back to back, in alternating order, so load
from elsewhere on the machine falls on both; medians of the rounds): one query at a time;
batches of 16 queries; document chunks (tokens/s of ``embed_documents`` on 64 chunks).

Goals: nDCG@10 of each int8 path within 0.005 of fp32 (the bar for making it a default, issue
29), one-sided: no more than 0.005 below it (a rise is quality held, not lost). Checks: every judged query scored; int8 vectors within cosine 0.95 of fp32 on average.
Human-readable lines go to stderr, the JSON to stdout (and ``--json-out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import Goal, add_goal_arguments, finish, finite  # noqa: E402

NDCG_TOLERANCE = 0.005
BATCH = 16
DOC_BATCH = 64


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(
    root: Path, docs: int | None
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """(doc id -> "title\\n\\ntext", judged query id -> text, qrels) for the test split."""
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, grade = line.split("\t")
        if int(grade) > 0:
            qrels.setdefault(qid, {})[did] = int(grade)
    queries = {}
    for line in (root / "queries.jsonl").open(encoding="utf-8"):
        q = json.loads(line)
        if q["_id"] in qrels:
            queries[q["_id"]] = q["text"]
    corpus = {}
    for line in (root / "corpus.jsonl").open(encoding="utf-8"):
        d = json.loads(line)
        corpus[d["_id"]] = f"{d.get('title', '')}\n\n{d.get('text', '')}".strip()
    wanted = [d for d in dict.fromkeys(d for j in qrels.values() for d in j) if d in corpus]
    order = wanted + [d for d in corpus if d not in set(wanted)]
    keep = order[: docs or len(order)]
    return {d: corpus[d] for d in keep}, queries, qrels


def chunk_corpus(index: Any, corpus: dict[str, str]) -> tuple[list[str], list[str]]:
    """(chunk texts, their document ids), cut by the index's chunker."""
    from rag.core.documents import ParsedDocument, Section

    texts: list[str] = []
    owners: list[str] = []
    for did, text in corpus.items():
        doc = ParsedDocument(text, did, [Section(0, len(text))])
        for chunk in index.chunker.run(doc, f"{did}.txt", "bench"):
            texts.append(chunk.text)
            owners.append(did)
    return texts, owners


def scores(
    qvecs: Any, dvecs: Any, owners: list[str], qids: list[str], qrels: Any
) -> dict[str, float]:
    import numpy as np

    from evals.metrics import average, query_metrics

    sims = qvecs @ dvecs.T
    per_query = []
    for row, qid in zip(sims, qids, strict=True):
        ranked: list[str] = []
        seen: set[str] = set()
        for i in np.argsort(-row, kind="stable"):
            d = owners[int(i)]
            if d not in seen:
                seen.add(d)
                ranked.append(d)
                if len(ranked) == 100:
                    break
        per_query.append(query_metrics(ranked, qrels[qid]))
    return {
        k: round(average(q[k] for q in per_query), 4) for k in ("ndcg@10", "recall@100", "mrr@10")
    }


def timed(fn: Any, *a: Any) -> float:
    t = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    ap.add_argument("--docs", type=int, default=None, help="corpus sample (default: all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timing-queries", type=int, default=100)
    ap.add_argument(
        "--onnx-cache", type=Path, help="where the ONNX exports are kept (default: a temp folder)"
    )
    ap.add_argument("--json-out", type=Path)
    add_goal_arguments(ap)
    args = ap.parse_args()
    if args.smoke:
        args.docs, args.rounds, args.timing_queries = min(args.docs or 60, 60), 1, 8

    import numpy as np

    from rag.core.config import load_settings
    from rag.indexing.embedding import Embedder
    from rag.indexing.index import Index

    tmp = Path(tempfile.mkdtemp(prefix="rag-int8-"))
    settings = load_settings(overrides={"data_dir": str(tmp / "data")})
    cache = args.onnx_cache or settings.resolved_data_dir() / "models" / "onnx"
    embedders = {
        p: Embedder(
            # ONNX for short texts on both sides, whatever RAG_EMBEDDING__SHORT_TEXT_BACKEND says.
            settings.embedding.model_copy(
                update={"query_precision": p, "document_precision": p, "short_text_backend": "auto"}
            ),
            cache_dir=cache,
        )
        for p in ("fp32", "int8")
    }
    for e in embedders.values():
        e.warm_up()
    fp32, int8 = embedders["fp32"], embedders["int8"]
    log(
        f"encoders: fp32 queries {fp32.query_backend}, documents {fp32.document_backend}; "
        f"int8 queries {int8.query_backend}, documents {int8.document_backend} "
        f"(int8 probe cosine {int8.int8_cosine:.4f})"
    )
    corpus, queries, qrels = load(args.corpus, args.docs)
    index = Index(settings, embedder=fp32)
    texts, owners = chunk_corpus(index, corpus)
    qids = [q for q in queries if any(d in corpus for d in qrels[q])]
    qtexts = [queries[q] for q in qids]
    log(f"{len(corpus)} documents, {len(texts)} chunks, {len(qids)} judged queries")

    doc_vecs: dict[str, Any] = {}
    doc_seconds: dict[str, float] = {}
    for p, e in embedders.items():
        t = time.perf_counter()
        doc_vecs[p] = e.embed_documents(texts)
        doc_seconds[p] = time.perf_counter() - t
        log(f"  documents at {p}: {doc_seconds[p]:.0f} s")
    query_vecs = {p: np.concatenate([e.embed([q]) for q in qtexts]) for p, e in embedders.items()}
    combos = {
        "fp32": ("fp32", "fp32"),
        "int8_queries": ("int8", "fp32"),
        "int8_documents": ("fp32", "int8"),
        "int8_both": ("int8", "int8"),
    }
    quality = {
        name: scores(query_vecs[q], doc_vecs[d], owners, qids, qrels)
        for name, (q, d) in combos.items()
    }
    for name, row in quality.items():
        log(f"  {name:15s} nDCG@10 {row['ndcg@10']:.4f}  recall@100 {row['recall@100']:.4f}")
    cos_docs = float(np.mean(np.sum(doc_vecs["fp32"] * doc_vecs["int8"], axis=1)))
    cos_queries = float(np.mean(np.sum(query_vecs["fp32"] * query_vecs["int8"], axis=1)))

    # Time, interleaved rounds.
    sample = qtexts[: args.timing_queries]
    chunk_sample = texts[:DOC_BATCH]
    tokens = sum(len(ids) for ids in fp32._model.tokenizer(chunk_sample)["input_ids"])
    per: dict[str, dict[str, list[float]]] = {
        p: {"single_ms": [], "batch16_ms_per_query": [], "doc_tokens_per_s": []} for p in embedders
    }
    for r in range(args.rounds):
        order = list(embedders.items()) if r % 2 == 0 else list(embedders.items())[::-1]
        for p, e in order:
            s = timed(lambda e=e: [e.embed([q]) for q in sample])
            per[p]["single_ms"].append(s / len(sample) * 1000)
            batches = [sample[i : i + BATCH] for i in range(0, len(sample), BATCH)]
            # Batches up to onnx_max_batch go to the query encoder; past it, embed_documents.
            s = timed(lambda e=e, bs=batches: [e._query_encoder().encode(b, True) for b in bs])
            per[p]["batch16_ms_per_query"].append(s / len(sample) * 1000)
            s = timed(e.embed_documents, chunk_sample)
            per[p]["doc_tokens_per_s"].append(tokens / s)
    timing = {p: {k: round(statistics.median(v), 3) for k, v in d.items()} for p, d in per.items()}
    for p, row in timing.items():
        log(f"  {p}: {row}")
    ratios = {
        "single_query_fp32_over_int8": round(
            timing["fp32"]["single_ms"] / timing["int8"]["single_ms"], 3
        ),
        "batch16_fp32_over_int8": round(
            timing["fp32"]["batch16_ms_per_query"] / timing["int8"]["batch16_ms_per_query"], 3
        ),
        "documents_int8_over_fp32": round(
            timing["int8"]["doc_tokens_per_s"] / timing["fp32"]["doc_tokens_per_s"], 3
        ),
    }
    log(f"  ratios: {ratios}")
    results: dict[str, Any] = {
        "goal": f"nDCG@10 of int8 queries, documents and both >= fp32's - {NDCG_TOLERANCE}",
        "corpus": str(args.corpus),
        "documents": len(corpus),
        "chunks": len(texts),
        "queries": len(qids),
        "encoders": {
            p: {"queries": e.query_backend, "documents": e.document_backend}
            for p, e in embedders.items()
        },
        "int8_probe_cosine": int8.int8_cosine,
        "mean_cosine_int8_to_fp32": {"documents": cos_docs, "queries": cos_queries},
        "quality": quality,
        "document_seconds_full_corpus": {p: round(s, 1) for p, s in doc_seconds.items()},
        "timing": timing,
        "ratios": ratios,
        "rounds": args.rounds,
    }
    base = quality["fp32"]["ndcg@10"]
    goals = [
        Goal(
            f"ndcg10_{name}",
            f">= fp32 - {NDCG_TOLERANCE} ({base})",
            quality[name]["ndcg@10"],
            quality[name]["ndcg@10"] >= base - NDCG_TOLERANCE,
        )
        for name in ("int8_queries", "int8_documents", "int8_both")
    ]
    goals += [
        Goal("queries_scored", "every judged query", len(qids), len(qids) > 0, check=True),
        Goal(
            "int8_near_fp32",
            "mean cosine >= 0.95 (documents, queries)",
            [round(cos_docs, 4), round(cos_queries, 4)],
            min(cos_docs, cos_queries) >= 0.95,
            check=True,
        ),
        Goal(
            "timings_measured",
            "finite",
            ratios,
            finite(*ratios.values()),
            check=True,
        ),
    ]
    return finish(results, goals, args, args.json_out)


if __name__ == "__main__":
    raise SystemExit(main())
