"""The OpenAI-compatible stand-in for vLLM that the tests use: ``evals.chat_server``.

One server for tests and evals (``rag eval verify`` answers from a script through it): a small
real HTTP server on loopback, streaming and not, with scripted faults and replies whose
``{cite:PHRASE}`` placeholders are resolved against the passages each request carries.
"""

from __future__ import annotations

from evals.chat_server import ChatRequest, ChatServer, Fault, by_question, fixed, resolve

__all__ = ["ChatRequest", "ChatServer", "Fault", "by_question", "fixed", "resolve"]
