"""Python function calls per answered question: a load-independent measure of the framework's
own work, for before/after comparisons on a busy machine (wall-clock overhead is noisy there).

    .venv/bin/python scripts/call_count.py [CHECKOUT]      # default: this checkout

Ingests ``examples/docs`` of CHECKOUT into a temporary data dir, answers four questions once to
warm up, then profiles 40 answers (default extractive chain, answer cache off) with cProfile and
prints the calls per query and the top functions by own time. Works on checkouts from before the
wings (``rag.pipeline``) and after (``rag.query.pipeline``); run it with the other checkout's
path and ``PYTHONPATH`` set to it.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTIONS = [
    "How long are backups kept?",
    "What is the free tier rate limit?",
    "When do new engineers join on-call?",
    "How fast must pages be acknowledged?",
]


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    sys.path.insert(0, str(root))
    mods: Any
    try:
        import rag.query.pipeline as pipeline_mod
        from rag.core.config import Settings
        from rag.indexing.index import Index
        from rag.indexing.ingest import Ingestor

        if not str(pipeline_mod.__file__).startswith(str(root)):
            raise ImportError
        mods = (pipeline_mod, Settings, Index, Ingestor)
    except ImportError:  # a checkout from before the wings
        for name in [k for k in sys.modules if k == "rag" or k.startswith("rag.")]:
            del sys.modules[name]
        import rag.pipeline as old_pipeline  # type: ignore[import-not-found,unused-ignore]
        from rag.config import Settings as OldSettings  # type: ignore[import-not-found,unused-ignore]
        from rag.index import Index as OldIndex  # type: ignore[import-not-found,unused-ignore]
        from rag.ingest import Ingestor as OldIngestor  # type: ignore[import-not-found,unused-ignore]

        mods = (old_pipeline, OldSettings, OldIndex, OldIngestor)
    pipeline_mod, settings_cls, index_cls, ingestor_cls = mods
    tmp = Path(tempfile.mkdtemp(prefix="calls-"))
    settings = settings_cls(
        data_dir=str(tmp / "data"),
        generation={"chain": ["extractive"]},
        cache={"enabled": False},
        evals={"after_sync": False},
    )
    index = index_cls(settings)
    index.open(create=True)
    ingestor_cls(index).sync_folder(root / "examples" / "docs")
    pipe = pipeline_mod.QueryPipeline(index, settings)
    pipe.warm_up()
    for q in QUESTIONS:
        pipe.run(q)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(10):
        for q in QUESTIONS:
            pipe.run(q)
    profile.disable()
    stats = pstats.Stats(profile)
    print(f"{pipeline_mod.__file__}: {stats.total_calls / 40:.0f} Python calls per query")  # type: ignore[attr-defined]
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(10)
    print(out.getvalue())


if __name__ == "__main__":
    main()
