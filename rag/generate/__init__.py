"""Generators behind one streaming interface, and the fallback chain that composes them.

- ``openai``: any OpenAI-compatible server (this is how vLLM is used);
- ``local``: SmolLM2-135M-Instruct (GGUF) in process on the CPU;
- ``extractive``: no LLM, the best-supported sentences of the context.
"""

from rag.generate.base import (
    GenerationError,
    GenerationRequest,
    Generator,
    TokenCounter,
    Usage,
)
from rag.generate.chain import ChainEvent, GeneratorChain, build_chain, build_generator

__all__ = [
    "ChainEvent",
    "GenerationError",
    "GenerationRequest",
    "Generator",
    "GeneratorChain",
    "TokenCounter",
    "Usage",
    "build_chain",
    "build_generator",
]
