"""The pages' security headers, docs served from this origin only, a protectable /metrics and a cheap /readyz.

The chat page keeps the API key in ``localStorage``: no script from another origin may run
on this origin (a CDN's Swagger UI on ``/docs`` was one), and no other site may frame it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Deployment, LiveServer

EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def _csp(r: httpx.Response) -> dict[str, list[str]]:
    policy = r.headers.get("content-security-policy")
    assert policy, f"no Content-Security-Policy on {r.url}"
    out: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def _assert_page_headers(r: httpx.Response) -> dict[str, list[str]]:
    assert r.status_code == 200, r.text
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = _csp(r)
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["script-src"] == ["'self'"], csp  # no other origin, nothing inline
    for sources in csp.values():
        for source in sources:
            assert "//" not in source and source not in ("*", "https:", "http:"), csp
    return csp


@pytest.mark.parametrize("page", ["/", "/docs"])
def test_pages_send_security_headers(deployment: Deployment, page: str) -> None:
    _assert_page_headers(httpx.get(deployment.server.url + page))


def test_docs_reference_no_external_origin_and_their_assets_are_served(
    deployment: Deployment,
) -> None:
    base = deployment.server.url
    html = httpx.get(base + "/docs").text
    assert not EXTERNAL.search(html), html
    assert "<script>" not in html.replace(" ", "")  # inline scripts would need 'unsafe-inline'
    assets = re.findall(r"""(?:src|href)="(/[^"]+)\"""", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        r = httpx.get(base + asset)
        assert r.status_code == 200, asset
        assert r.headers["x-content-type-options"] == "nosniff"
    # ReDoc would load from a CDN as well: not offered.
    assert httpx.get(base + "/redoc").status_code == 404


def test_api_responses_are_not_frameable_or_sniffable(deployment: Deployment) -> None:
    r = httpx.get(deployment.server.url + "/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


# -- the docs page renders under its CSP ----------------------------------------------------------
@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver: "
            "apt-get install -y chromium chromium-driver",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_swagger_ui_renders_under_the_policy(browser: Any, deployment: Deployment) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(deployment.server.url + "/docs")
    WebDriverWait(browser, 60).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .opblock"))
    )
    assert "rag-kb" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    violations = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]
    assert not violations, violations


# -- item 14: /metrics behind a key, /readyz cached --------------------------------------------
@pytest.fixture(scope="module")
def guarded(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(api={"metrics_key": "scrape-secret-0123456789"})


def test_metrics_need_the_metrics_key_when_one_is_set(
    guarded: LiveServer, deployment: Deployment
) -> None:
    url = guarded.url + "/metrics"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {deployment.keys['default']}"},
    ):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "unauthorized"
        assert "api.metrics_key" in r.json()["error"]["message"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    r = httpx.get(url, headers={"Authorization": "Bearer scrape-secret-0123456789"})
    assert r.status_code == 200 and "rag_" in r.text
    # Without a key configured, /metrics stays open (the default, for a loopback deployment).
    assert httpx.get(deployment.server.url + "/metrics").status_code == 200


def test_readiness_checks_are_cached_for_a_second(
    guarded: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routes_ops as ops

    calls: list[float] = []
    real = ops._checks

    def counted(state: Any) -> Any:
        calls.append(time.monotonic())
        return real(state)

    monkeypatch.setattr(ops, "_checks", counted)
    with httpx.Client(base_url=guarded.url) as c:
        time.sleep(1.1)  # whatever was cached before has expired
        started = time.monotonic()
        statuses = [c.get("/readyz").status_code for _ in range(20)]
        elapsed = time.monotonic() - started
    assert statuses == [200] * 20
    # At most one computation per second of requests (plus the one that started it).
    assert 1 <= len(calls) <= 2 + int(elapsed), (len(calls), elapsed)


# -- DNS rebinding: the Host a request names; /metrics beyond loopback ---------------------------
def _get(server: LiveServer, path: str, host: str, **headers: str) -> httpx.Response:
    # httpx sends the Host given here as it is, the way a browser sends a rebound name.
    return httpx.get(server.url + path, headers={"Host": host, **headers}, timeout=30)


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/v1/documents", "/"])
def test_a_request_naming_another_host_is_refused(deployment: Deployment, path: str) -> None:
    """A DNS-rebinding page (attacker.example pointed at 127.0.0.1) makes the visitor's
    browser send its requests here with the attacker's name as Host: refused everywhere."""
    server = deployment.server
    key = {"Authorization": f"Bearer {deployment.keys['default']}"}
    for host in (
        "attacker.example",
        f"attacker.example:{server.port}",
        "localhost.attacker.example",
    ):
        r = _get(server, path, host, **key)
        assert r.status_code == 400, (host, r.status_code, r.text[:200])
        assert r.json()["error"]["type"] == "invalid_host"
        assert "api.allowed_hosts" in r.json()["error"]["message"]
        assert "rag_" not in r.text
    for host in (
        f"127.0.0.1:{server.port}",
        f"localhost:{server.port}",
        "LocalHost",
        f"[::1]:{server.port}",
    ):
        assert _get(server, path, host, **key).status_code == 200, host


def test_metrics_refuse_a_rebound_name_and_allowed_hosts_add_names(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(api={"allowed_hosts": ["kb.example.com", "*.corp.example"]})
    assert _get(server, "/metrics", "attacker.example").status_code == 400
    assert _get(server, "/metrics", "kb.example.com.attacker.example").status_code == 400
    for host in ("kb.example.com", f"kb.example.com:{server.port}", "eu.corp.example"):
        r = _get(server, "/metrics", host)
        assert r.status_code == 200 and "rag_" in r.text, host
    assert _get(server, "/metrics", "corp.example").status_code == 400


def test_metrics_need_a_key_on_a_server_listening_beyond_loopback(
    deployment: Deployment,
) -> None:
    """Bound to 0.0.0.0 (the container's `rag serve --host 0.0.0.0`), /metrics is not left
    open: without api.metrics_key it is closed and says how to open it."""
    from api.app import create_app
    from tests.api.conftest import settings_for

    index = deployment.index
    started: list[LiveServer] = []
    try:
        for metrics_key in (None, "scrape-secret-0123456789"):
            settings = settings_for(index.data_dir, api={"metrics_key": metrics_key})
            app = create_app(settings, index=index, keys=deployment.store, bind_host="0.0.0.0")
            server = LiveServer(app).start()  # listens on 127.0.0.1: the app is told 0.0.0.0
            started.append(server)
            server.wait_ready()
            r = httpx.get(server.url + "/metrics")
            if metrics_key is None:
                assert r.status_code == 403, r.text
                assert "api.metrics_key" in r.json()["error"]["message"]
            else:
                assert r.status_code == 401, r.text
                r = httpx.get(
                    server.url + "/metrics", headers={"Authorization": f"Bearer {metrics_key}"}
                )
                assert r.status_code == 200 and "rag_" in r.text
            assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        for s in started:
            s.stop()
