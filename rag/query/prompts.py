"""Versioned prompts: ``<directory>/<name>/<version>.yaml``, validated at load, pinned, A/B split.

A prompt file::

    name: answer                      # must match the folder
    version: v1                       # must match the file name
    metadata: {author: ..., date: 2026-01-31, notes: ...}
    model: {temperature: 0.0, max_tokens: 256, stop: []}   # generation parameters it was tuned with
    variables: [context, question]    # exactly the ${...} placeholders the template uses
    template:
      system: |
        ...
      user: |
        ${context} ... ${question}

Placeholders use ``string.Template`` syntax (``${name}``; a literal dollar is ``$$``), so JSON
and braces in prompts need no escaping. A template that uses an undeclared or unknown
variable, or declares one it never uses, fails at load, i.e. at start.

Which version answers: an explicit ``name@version`` request; else, when an A/B split is
configured, a deterministic hash of the user (or session) picks a version by weight; else
the pin; else the newest version. ``<directory>/<name>/deploy.yaml`` (``pin:``, ``ab:``)
overrides the configured pin and split. Files are re-read when their modification time
changes (checked at most every ``reload_seconds``), so a rollback is an edit of
``deploy.yaml`` (or of the pin in the config) without a restart; a broken edit is refused
and the last good set keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rag.contracts import Prompt
from rag.core.config import PromptSettings
from rag.core.errors import PromptError
from rag.core.resources import project_root

__all__ = [
    "KNOWN_VARIABLES",
    "REQUIRED_VARIABLES",
    "Prompt",
    "PromptError",
    "PromptRegistry",
    "parse_prompt_ref",
    "resolve_prompt_dir",
    "subject_point",
]

log = logging.getLogger(__name__)

# What the pipeline fills in. ``context`` is the packed passages, each headed "[n] title".
KNOWN_VARIABLES = frozenset({"question", "context", "passages", "abstain_text"})
REQUIRED_VARIABLES = frozenset({"question", "context"})
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DEPLOY_FILE = "deploy.yaml"


def parse_prompt_ref(ref: str) -> tuple[str, str | None]:
    """``"answer@v2"`` → ("answer", "v2"); ``"answer"`` → ("answer", None)."""
    name, _, version = ref.partition("@")
    if not name or (version == "" and "@" in ref):
        raise PromptError(f"prompt {ref!r}: write it as NAME@VERSION (e.g. answer@v1) or NAME")
    return name, version or None


def resolve_prompt_dir(directory: str) -> Path:
    """An absolute path as given; a relative one against the folder holding configs/."""
    path = Path(directory).expanduser()
    return path if path.is_absolute() else project_root() / path


def _version_key(version: str) -> tuple[Any, ...]:
    # Natural order: v2 < v10.
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version))


def _identifiers(template: str, where: str) -> set[str]:
    tpl = string.Template(template)
    if not tpl.is_valid():
        raise PromptError(f"{where}: invalid placeholder (use ${{name}}; write a literal $ as $$)")
    return set(tpl.get_identifiers())


def load_prompt_file(path: Path) -> Prompt:
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PromptError(f"{where}: cannot read it as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PromptError(
            f"{where}: the top level must be a mapping (name, version, template, ...)"
        )
    unknown = set(raw) - {"name", "version", "metadata", "model", "variables", "template"}
    if unknown:
        raise PromptError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    name, version = str(raw.get("name") or ""), str(raw.get("version") or "")
    if name != path.parent.name or version != path.stem:
        raise PromptError(
            f"{where}: name/version ({name!r}, {version!r}) must match the folder and file name "
            f"({path.parent.name!r}, {path.stem!r})"
        )
    template = raw.get("template")
    if isinstance(template, str):
        template = {"user": template}
    if not isinstance(template, dict) or not isinstance(template.get("user"), str):
        raise PromptError(
            f"{where}: template must have a 'user' text (and optionally a 'system' text)"
        )
    extra_parts = set(template) - {"system", "user"}
    if extra_parts:
        raise PromptError(f"{where}: template has unknown part(s) {', '.join(sorted(extra_parts))}")
    system = str(template.get("system") or "")
    user = str(template["user"])
    declared_raw = raw.get("variables")
    if not isinstance(declared_raw, list) or not all(isinstance(v, str) for v in declared_raw):
        raise PromptError(f"{where}: variables must be a list of names, e.g. [context, question]")
    declared = set(declared_raw)
    used = _identifiers(system, f"{where} (template.system)") | _identifiers(
        user, f"{where} (template.user)"
    )
    problems = []
    if unknown_vars := declared - KNOWN_VARIABLES:
        problems.append(
            f"unknown variable(s) {sorted(unknown_vars)} (known: {sorted(KNOWN_VARIABLES)})"
        )
    if undeclared := used - declared:
        problems.append(f"template uses undeclared variable(s) {sorted(undeclared)}")
    if unused := declared - used:
        problems.append(f"declared variable(s) {sorted(unused)} never used in the template")
    if missing := REQUIRED_VARIABLES - used:
        problems.append(f"template must use {sorted(missing)}")
    if problems:
        raise PromptError(f"{where}: " + "; ".join(problems))
    model = raw.get("model") or {}
    if not isinstance(model, dict) or set(model) - {"temperature", "max_tokens", "stop"}:
        raise PromptError(f"{where}: model may set temperature, max_tokens and stop only")
    try:
        temperature = float(model["temperature"]) if model.get("temperature") is not None else None
        max_tokens = int(model["max_tokens"]) if model.get("max_tokens") is not None else None
    except (TypeError, ValueError) as exc:
        raise PromptError(
            f"{where}: model.temperature must be a number and model.max_tokens an integer"
        ) from exc
    if max_tokens is not None and max_tokens < 1:
        raise PromptError(f"{where}: model.max_tokens must be at least 1")
    stop = model.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise PromptError(f"{where}: model.stop must be a list of non-empty strings")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise PromptError(f"{where}: metadata must be a mapping (author, date, notes)")
    return Prompt(
        name=name,
        version=version,
        system=system,
        user=user,
        variables=frozenset(declared),
        temperature=temperature,
        max_tokens=max_tokens,
        stop=tuple(stop),
        metadata={
            k: (str(v) if not isinstance(v, (str, int, float, bool)) else v)
            for k, v in metadata.items()
        },
        path=path,
    )


@dataclass(frozen=True)
class _Deployment:
    pin: str | None
    ab: dict[str, float]


def _check_weights(
    ab: dict[str, float], versions: dict[str, Prompt], where: str
) -> dict[str, float]:
    out: dict[str, float] = {}
    for version, weight in ab.items():
        if str(version) not in versions:
            raise PromptError(
                f"{where}: A/B names version {version!r}, which has no file (have: {sorted(versions)})"
            )
        try:
            w = float(weight)
        except (TypeError, ValueError) as exc:
            raise PromptError(f"{where}: A/B weight for {version!r} must be a number") from exc
        if w < 0:
            raise PromptError(f"{where}: A/B weight for {version!r} must not be negative")
        out[str(version)] = w
    if out and sum(out.values()) <= 0:
        raise PromptError(
            f"{where}: A/B weights add up to 0; give at least one version a positive weight"
        )
    return out


class PromptRegistry:
    """Every version of every prompt under ``directory``; thread-safe, hot-reloading."""

    def __init__(self, settings: PromptSettings, directory: Path | None = None):
        self.settings = settings
        self.directory = directory or resolve_prompt_dir(settings.directory)
        self._lock = threading.Lock()
        self._prompts: dict[str, dict[str, Prompt]] = {}
        self._deploy: dict[str, _Deployment] = {}
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._checked = 0.0
        self.last_error: str | None = None

    # -- loading ---------------------------------------------------------------------
    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*/*.yaml") if p.is_file())

    def _snapshot(self) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in self._files():
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _read_all(self) -> tuple[dict[str, dict[str, Prompt]], dict[str, _Deployment]]:
        prompts: dict[str, dict[str, Prompt]] = {}
        deploy_files: dict[str, Path] = {}
        for path in self._files():
            if path.name == _DEPLOY_FILE:
                deploy_files[path.parent.name] = path
                continue
            prompt = load_prompt_file(path)
            prompts.setdefault(prompt.name, {})[prompt.version] = prompt
        deployments: dict[str, _Deployment] = {}
        for name, versions in prompts.items():
            pin, ab = None, {}
            if name == self.settings.name:
                pin, ab = self.settings.pin, dict(self.settings.ab)
                where = f"prompts settings for {name!r}"
                if pin is not None and pin not in versions:
                    raise PromptError(
                        f"{where}: pinned version {pin!r} has no file (have: {sorted(versions, key=_version_key)})"
                    )
                ab = _check_weights(ab, versions, where)
            if name in deploy_files:
                where = str(deploy_files[name])
                try:
                    raw = yaml.safe_load(deploy_files[name].read_text(encoding="utf-8")) or {}
                except (OSError, yaml.YAMLError) as exc:
                    raise PromptError(f"{where}: cannot read it as YAML: {exc}") from exc
                if not isinstance(raw, dict) or set(raw) - {"pin", "ab"}:
                    raise PromptError(
                        f"{where}: expected 'pin: VERSION' and/or 'ab: {{VERSION: weight}}'"
                    )
                if "pin" in raw:
                    pin = None if raw["pin"] is None else str(raw["pin"])
                    if pin is not None and pin not in versions:
                        raise PromptError(
                            f"{where}: pinned version {pin!r} has no file (have: {sorted(versions)})"
                        )
                if "ab" in raw:
                    if not isinstance(raw["ab"], dict | None):
                        raise PromptError(f"{where}: ab must map versions to weights")
                    ab = _check_weights(raw["ab"] or {}, versions, where)
            deployments[name] = _Deployment(pin, ab)
        for name in deploy_files.keys() - prompts.keys():
            raise PromptError(f"{deploy_files[name]}: there is no prompt version beside it")
        return prompts, deployments

    def load(self) -> None:
        """Read every prompt now; raises :class:`PromptError` on the first invalid one (use at start)."""
        with self._lock:
            stamp = self._snapshot()
            prompts, deployments = self._read_all()
            if self.settings.name not in prompts:
                raise PromptError(
                    f"no prompt named {self.settings.name!r} under {self.directory}: add "
                    f"{self.directory / self.settings.name / 'v1.yaml'} or set prompts.name"
                )
            self._prompts, self._deploy, self._stamp = prompts, deployments, stamp
            self._checked = time.monotonic()
            self.last_error = None

    def _maybe_reload(self) -> None:
        if self._stamp is None:
            self.load()
            return
        now = time.monotonic()
        if now - self._checked < self.settings.reload_seconds:
            return
        with self._lock:
            self._checked = now
            stamp = self._snapshot()
            if stamp == self._stamp:
                return
            try:
                prompts, deployments = self._read_all()
                if self.settings.name not in prompts:
                    raise PromptError(
                        f"no prompt named {self.settings.name!r} is left under {self.directory}"
                    )
            except PromptError as exc:
                # Keep serving the last good set; say why the edit was not taken.
                if str(exc) != self.last_error:
                    log.error("prompt change refused, still serving the previous prompts: %s", exc)
                self.last_error = str(exc)
                self._stamp = stamp
                return
            self._prompts, self._deploy, self._stamp = prompts, deployments, stamp
            self.last_error = None
            log.info("prompts reloaded from %s", self.directory)

    # -- lookup ----------------------------------------------------------------------
    def versions(self, name: str | None = None) -> list[str]:
        self._maybe_reload()
        return sorted(self._prompts.get(name or self.settings.name, {}), key=_version_key)

    def get(self, name: str, version: str | None = None) -> Prompt:
        self._maybe_reload()
        versions = self._prompts.get(name)
        if not versions:
            raise PromptError(
                f"no prompt named {name!r} (have: {', '.join(sorted(self._prompts)) or 'none'})"
            )
        if version is None:
            version = max(versions, key=_version_key)
        if version not in versions:
            raise PromptError(
                f"prompt {name!r} has no version {version!r} (have: {', '.join(sorted(versions, key=_version_key))})"
            )
        return versions[version]

    def select(
        self, requested: str | None = None, user: str | None = None, session: str | None = None
    ) -> Prompt:
        """The prompt that answers this request (see the module docstring for the order)."""
        self._maybe_reload()
        if requested:
            name, version = parse_prompt_ref(requested)
            if version is not None or name != self.settings.name:
                return self.get(name, version)
        name = self.settings.name
        deploy = self._deploy.get(name, _Deployment(None, {}))
        subject = user or session
        if deploy.ab and subject:
            return self.get(name, ab_choice(deploy.ab, f"{name}:{subject}"))
        return self.get(name, deploy.pin)


def subject_point(key: str) -> float:
    """Where ``key`` (``<prompt name>:<user or session>``) falls in [0, 1): the same key
    always the same point (the A/B split and a release's share both cut this line)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def ab_choice(weights: dict[str, float], key: str) -> str:
    """Deterministic weighted choice: the same key always lands on the same version."""
    point = subject_point(key)
    total = sum(weights.values())
    cumulative = 0.0
    ordered = sorted(weights, key=_version_key)
    for version in ordered:
        cumulative += weights[version] / total
        if point < cumulative:
            return version
    return [v for v in ordered if weights[v] > 0][-1]
