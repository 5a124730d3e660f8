"""PII scrubbing with Presidio (spaCy small, built offline): detection, per-sink policy.

Cheap to import: Presidio and spaCy load when a detector is first used or warmed up::

    from rag.guards.pii import scrubber_for
    scrub = scrubber_for(settings)      # settings.pii; one per configuration per process
    scrub.warm_up()                     # optional: load the engine now (~1-2 s)
    scrub.scrub("mail jane@gmail.com")  # 'mail <EMAIL_ADDRESS>'
"""

from rag.core.pii_settings import DEFAULT_ENTITIES, PiiPattern, PiiSettings
from rag.guards.pii.engine import Detector, Span, detector_for
from rag.guards.pii.logs import install_log_scrubbing, scrub_exception
from rag.guards.pii.policy import (
    PLACEHOLDER,
    Pseudonymiser,
    Scrubber,
    StreamRestorer,
    scrub_values,
    scrubber_for,
)

__all__ = [
    "DEFAULT_ENTITIES",
    "PLACEHOLDER",
    "Detector",
    "PiiPattern",
    "PiiSettings",
    "Pseudonymiser",
    "Scrubber",
    "Span",
    "StreamRestorer",
    "detector_for",
    "install_log_scrubbing",
    "scrub_exception",
    "scrub_values",
    "scrubber_for",
]
