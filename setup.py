"""Ships the top-level configs/ inside the wheel (all other metadata is in pyproject.toml).

configs/ (default.yaml, vllm.yaml, prompts/<name>/<version>.yaml) stays where it is, the one
source of truth; ``build_py`` copies it into the wheel as package data ``rag/_defaults/configs/``,
which ``rag.core.resources.project_root`` finds through importlib.resources. An editable install
copies nothing: it reads the checkout's configs/ directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONFIGS = Path(__file__).resolve().parent / "configs"
SHIPPED = ("rag", "_defaults", "configs")


class build_py_with_configs(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        if not (CONFIGS / "default.yaml").is_file():
            raise SystemExit(f"{CONFIGS}/default.yaml is missing: the wheel would have no config")
        target = Path(self.build_lib, *SHIPPED)
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            CONFIGS, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]", ".*")
        )

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [
                str(Path(self.build_lib, *SHIPPED, p.relative_to(CONFIGS)))
                for p in sorted(CONFIGS.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")
            ]
        return outputs


setup(cmdclass={"build_py": build_py_with_configs})
