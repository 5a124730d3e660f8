"""Generators behind one streaming interface, and the fallback chain that composes them.

- ``openai``: any OpenAI-compatible server (this is how vLLM is used);
- ``local``: SmolLM2-135M-Instruct (GGUF) in process on the CPU;
- ``extractive``: no LLM, the best-supported sentences of the context.

Each is a :data:`GENERATORS` entry: a name in ``generation.chain`` -> a factory handed a
:class:`GeneratorContext`. Another backend is one call, before the pipeline is built::

    GENERATORS.register("mine", lambda context: MyGenerator(context.settings))
"""

from rag.generate.base import (
    GenerationError,
    GenerationRequest,
    Generator,
    TokenCounter,
    Usage,
)
from rag.generate.chain import (
    GENERATORS,
    ChainEvent,
    GeneratorChain,
    GeneratorContext,
    GeneratorFactory,
    build_chain,
    build_generator,
)

__all__ = [
    "GENERATORS",
    "ChainEvent",
    "GenerationError",
    "GenerationRequest",
    "Generator",
    "GeneratorChain",
    "GeneratorContext",
    "GeneratorFactory",
    "TokenCounter",
    "Usage",
    "build_chain",
    "build_generator",
]
