"""compose.yaml runs the real self-hosted Langfuse v3 stack and wires the app to it.

No container runs here (no compose plugin, no registry access): the file is checked as what
`docker compose` reads — anchors merged, ``${VAR:-default}`` taken at its default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[2]
_VAR = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _defaults(value: Any) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: m.group(2), value)
    if isinstance(value, dict):
        return {k: _defaults(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_defaults(v) for v in value]
    return value


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = _defaults(yaml.safe_load((ROOT / "compose.yaml").read_text()))
    return data


def test_langfuse_stack_is_there() -> None:
    services = _compose()["services"]
    images = {name: str(s.get("image", "")) for name, s in services.items()}
    assert images["langfuse-web"].endswith("langfuse/langfuse:3")
    assert images["langfuse-worker"].endswith("langfuse/langfuse-worker:3")
    for name, image in (
        ("postgres", "postgres"),
        ("clickhouse", "clickhouse/clickhouse-server"),
        ("redis", "redis"),
        ("minio", "minio/minio"),
    ):
        assert image in images[name], name
        assert services[name].get("healthcheck"), f"{name} needs a healthcheck to be waited on"
    version = images["clickhouse"].rsplit(":", 1)[1]
    assert tuple(int(x) for x in version.split(".")[:2]) >= (24, 3), (
        "Langfuse v3 needs ClickHouse >= 24.3"
    )
    for name in ("langfuse-web", "langfuse-worker"):
        env = services[name]["environment"]
        assert urlparse(env["DATABASE_URL"]).hostname == "postgres"
        assert urlparse(env["CLICKHOUSE_URL"]).hostname == "clickhouse"
        assert env["REDIS_HOST"] == "redis"
        assert urlparse(env["LANGFUSE_S3_EVENT_UPLOAD_ENDPOINT"]).hostname == "minio"
        assert len(env["ENCRYPTION_KEY"]) == 64
        assert set(services[name]["depends_on"]) == {"postgres", "clickhouse", "redis", "minio"}


def test_app_is_wired_to_langfuse_with_the_projects_keys() -> None:
    services = _compose()["services"]
    app, web = services["app"]["environment"], services["langfuse-web"]["environment"]
    url = urlparse(app["LANGFUSE_BASE_URL"])
    assert url.hostname == "langfuse-web"
    assert any(str(p).endswith(f":{url.port}") for p in services["langfuse-web"]["ports"])
    assert app["LANGFUSE_PUBLIC_KEY"] == web["LANGFUSE_INIT_PROJECT_PUBLIC_KEY"]
    assert app["LANGFUSE_SECRET_KEY"] == web["LANGFUSE_INIT_PROJECT_SECRET_KEY"]
    assert "langfuse-web" in services["app"]["depends_on"]


def test_the_app_reads_those_variables(monkeypatch: Any, tmp_path: Path) -> None:
    from rag.core.config import DEFAULT_CONFIG, load_settings
    from rag.observability import resolve_config

    app = _compose()["services"]["app"]["environment"]
    for key, value in app.items():
        if key.startswith("LANGFUSE_"):
            monkeypatch.setenv(key, str(value))
    config = resolve_config(load_settings(DEFAULT_CONFIG, {"data_dir": str(tmp_path)}))
    assert config is not None
    assert config.base_url == "http://langfuse-web:3000"
    assert config.release == app["LANGFUSE_RELEASE"]
    assert config.environment == "production"
