"""The plug-in tables in one place, and :func:`check_settings`, which checks every setting
that names a plug-in against its table.

| table        | owned by                  | setting               | built in                      |
|--------------|---------------------------|-----------------------|-------------------------------|
| ``PARSERS``  | ``rag.indexing.parsing``  | ``ingestion.extensions`` (suffixes) | markdown, text, html, pdf, docx |
| ``STORES``   | ``rag.store``             | ``store.backend``     | edge, qdrant                  |
| ``GENERATORS`` | ``rag.generate``        | ``generation.chain``, ``costs.prices`` keys | openai, local, extractive |
| ``RERANKERS``| ``rag.query.rerank``      | ``rerank.backend``    | none, cross-encoder, embedding|

Settings are loaded in ``rag.core``, below the wings that own the tables, so loading cannot
check these names; the composition point calls :func:`check_settings` once the plug-ins it
adds are registered (the ``rag`` CLI does, right after loading the configuration), and each
wing checks its own name again when it builds the component. This module sits above every
wing (the import-linter layers name it) and registers nothing.
"""

from __future__ import annotations

from typing import Any

from rag.core.config import Settings
from rag.core.errors import ConfigError
from rag.core.registry import Registry
from rag.generate.chain import GENERATORS
from rag.indexing.parsing import PARSERS, check_extensions
from rag.query.rerank import RERANKERS
from rag.store import STORES

__all__ = ["GENERATORS", "PARSERS", "RERANKERS", "STORES", "check_settings"]


def check_settings(settings: Settings) -> Settings:
    """``settings``, once every plug-in name in it is registered; else one ConfigError
    listing each unknown name with its key and the registered names."""
    lookups: list[tuple[Registry[Any], str, str]] = [
        (STORES, settings.store.backend, "store.backend"),
        *((GENERATORS, name, "generation.chain") for name in settings.generation.chain),
        *((GENERATORS, name, "costs.prices") for name in settings.costs.prices),
        (RERANKERS, settings.rerank.backend, "rerank.backend"),
    ]
    errors: list[str] = []
    for table, name, key in lookups:
        try:
            table.get(name, key=key)
        except ConfigError as exc:
            errors.append(str(exc))
    try:
        check_extensions(settings.ingestion.extensions)
    except ConfigError as exc:
        errors.append(str(exc))
    if len(errors) == 1:
        raise ConfigError(errors[0])
    if errors:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  - {e}" for e in errors))
    return settings
