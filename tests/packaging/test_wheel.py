"""The wheel on its own: built with ``uv build``, installed non-editable, run from a folder
outside the checkout.

The wheel is installed with ``uv pip install --no-deps --target DIR`` and run with ``DIR`` first
on ``PYTHONPATH`` by this venv's python, so torch and the other dependencies come from the venv
(nothing is reinstalled) while ``rag``, ``api``, ``evals``, ``ingestion`` and ``app`` come from
the wheel: the editable install's finder in the venv is consulted only after ``sys.path``, and
the test checks that it did not win. ~40 s, most of it loading the embedding model three times.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("rag", "api", "evals", "ingestion", "app")
FACT = "Nightly backups of the zorblax cluster are kept for 37 days in cold storage."

pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: run `make install` (it installs uv) first")
    return uv


def _ignore(folder: str, names: list[str]) -> set[str]:
    # The checkout minus venvs, caches, data and earlier build output (the build writes
    # build/ and *.egg-info next to its sources, so it runs on a copy, not the shared tree).
    top = Path(folder) == REPO
    return {
        n
        for n in names
        if n in ("__pycache__", ".git")
        or n.endswith((".pyc", ".egg-info"))
        or (top and (n.startswith(".") or n in ("data", "build", "dist")))
    }


def _build(tmp: Path, *args: str) -> Path:
    src, out = tmp / "src", tmp / "dist"
    if not src.exists():
        shutil.copytree(REPO, src, ignore=_ignore)
    proc = subprocess.run(
        [_uv(), "build", *args, "--out-dir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"uv build failed:\n{proc.stdout}\n{proc.stderr}"
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("wheel"), "--wheel")


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site") / "site-packages"
    install = ["pip", "install", "--no-deps", "--python", sys.executable, "--target", str(target)]
    proc = subprocess.run(
        [_uv(), *install, str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"uv pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return target


def _env(target: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])]),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "RAG_EMBEDDING__THREADS": "1",
        }
    )
    return env


def _rag(target: Path, cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        [str(target / "bin" / "rag"), *args],
        cwd=cwd,
        env=_env(target),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"`rag {' '.join(args)}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def _wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_wheel_carries_configs_prompts_chat_page_golden_set_and_markers(wheel: Path) -> None:
    names = _wheel_names(wheel)
    configs = sorted(
        p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*") if p.is_file()
    )
    assert "configs/default.yaml" in configs and "configs/vllm.yaml" in configs
    assert any(c.startswith("configs/prompts/") for c in configs)
    with zipfile.ZipFile(wheel) as zf:
        for rel in configs:
            # The top-level configs/ is the one source: the wheel's copy is byte for byte it.
            assert zf.read(f"rag/_defaults/{rel}") == (REPO / rel).read_bytes(), rel
    static = sorted(p.name for p in (REPO / "api" / "static").iterdir() if p.is_file())
    assert "index.html" in static
    for name in static:
        assert f"api/static/{name}" in names
    assert "evals/golden.jsonl" in names
    for package in PACKAGES:
        assert f"{package}/py.typed" in names, package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert "rag = app.cli:main" in zf.read(entry_points).decode()


def test_sdist_builds_the_same_wheel(wheel: Path, tmp_path: Path) -> None:
    # `uv build` (no flag) goes source -> sdist -> wheel: MANIFEST.in must carry configs/ along.
    from_sdist = _build(tmp_path)
    assert _wheel_names(from_sdist) == _wheel_names(wheel)


def test_installed_wheel_works_from_any_folder(installed: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "elsewhere"
    (cwd / "docs").mkdir(parents=True)
    (cwd / "docs" / "backups.md").write_text(f"# Backups\n\n{FACT}\n", encoding="utf-8")
    assert not (cwd / "configs").exists()

    # The packages, and every file they read, come from the wheel, not the checkout.
    probe = (
        "import json, rag, api, evals, ingestion, app, api.app as a, rag.core.resources as r\n"
        "from evals.golden import default_golden_path\n"
        "print(json.dumps({'modules': [m.__file__ for m in (rag, api, evals, ingestion, app)],"
        " 'root': str(r.project_root()), 'default': str(r.default_config()),"
        " 'vllm': str(r.find_config('configs/vllm.yaml')),"
        " 'static': str(a.STATIC), 'golden': str(default_golden_path(None))}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=cwd,
        env=_env(installed),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    where = json.loads(proc.stdout)
    for path in [*where.pop("modules"), *where.values()]:
        assert Path(path).resolve().is_relative_to(installed.resolve()), (path, installed)
    assert Path(where["root"]) == installed / "rag" / "_defaults"
    assert Path(where["vllm"]).is_file()

    out = _rag(installed, cwd, "ingest", "docs")
    assert "1 file(s) ingested" in out, out
    result = json.loads(
        _rag(installed, cwd, "query", "--json", "--context-only", "How long are backups kept?")
    )
    sources = [c["source"] for c in result["citations"]]
    assert sources and sources[0].endswith("backups.md"), result
    assert "37 days" in result["citations"][0]["quote"]
    assert (cwd / "data").is_dir()  # the default data_dir is relative to where rag runs

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = (tmp_path / "serve.log").open("w+")
    server = subprocess.Popen(
        [str(installed / "bin" / "rag"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env=_env(installed),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"rag serve exited {server.returncode}"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
                    assert resp.status == 200
                    assert json.loads(resp.read())["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline, "rag serve did not answer /healthz in 180 s"
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/", timeout=10) as resp:
            page = resp.read().decode()
        assert resp.status == 200 and "<html" in page.lower()
        assert page == (REPO / "api" / "static" / "index.html").read_text(encoding="utf-8")
        with urllib.request.urlopen(f"{base}/static/app.js", timeout=10) as resp:
            assert resp.status == 200 and resp.read()
    except BaseException:
        log.seek(0)
        print(f"rag serve log:\n{log.read()}")
        raise
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
