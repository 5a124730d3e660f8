"""The one interface every generator implements: a request in, a stream of text pieces out.

The definitions live in :mod:`rag.contracts` (``Generator``, ``GenerationRequest``) and
:mod:`rag.core.tokens` (``TokenCounter``); this module gathers what a backend imports.
``stream(request)`` yields ``str`` pieces as they are produced and, last, one :class:`Usage`.
It raises :class:`GenerationError` when it cannot answer (the chain then asks the next
backend). Closing the iterator early (the client went away) must stop the model promptly.
"""

from __future__ import annotations

from rag.contracts import GenerationRequest, Generator, close_quietly
from rag.core.errors import GenerationError
from rag.core.tokens import TokenCounter, approximate_counter, hf_token_counter
from rag.core.types import Usage

__all__ = [
    "GenerationError",
    "GenerationRequest",
    "Generator",
    "TokenCounter",
    "Usage",
    "approximate_counter",
    "close_quietly",
    "hf_token_counter",
]
