"""What answers cost, and the daily budget that turns them cheaper instead of broken.

Every model call of a request (refused and failed attempts included) is recorded by the
fallback chain (``ChainOutcome.attempts``); :meth:`CostController.charge` prices each with
``costs.prices`` (per backend, per million input and output tokens; an unlisted backend costs
0), fills ``usage.cost`` and ``usage.backends[].cost`` and adds them to the tenant's spend of
the UTC day in ``<data_dir>/costs.sqlite`` (0600; it survives restarts, a new UTC day starts
from 0).

Budgets: ``costs.daily_budget`` per tenant, overridden by ``costs.tenants.<name>.daily_budget``.
Once a tenant's spend reaches it, :meth:`CostController.skip_reason` makes the chain skip
priced backends: the next backend answers (``degraded: true``, a fallback whose error starts
with ``budget``); when every backend is priced the chain's spare (extractive, free) answers.
Never an error. Crossing ``costs.warn_at`` fractions (80 % and 100 %) is logged once per tenant
and day and counted (``rag_budget_warnings_total``). Concurrent requests may overshoot the cap
by what the calls already under way cost: the check happens before a call, the charge after.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.config import CostSettings, PriceSettings
from rag.core.datadir import private_sqlite
from rag.core.types import BackendUsage, Usage

if TYPE_CHECKING:
    from rag.generate.base import Generator
    from rag.generate.chain import ChainOutcome

__all__ = ["BUDGET_REASON", "CostController", "CostLedger", "model_label", "utc_day"]

log = logging.getLogger(__name__)

BUDGET_REASON = "budget"
LEDGER_FILE = "costs.sqlite"


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")


def model_label(model: str | None) -> str:
    """A bounded, path-free model name for metrics and the ledger (a GGUF path: its file name)."""
    if not model:
        return ""
    return Path(model).name if ("/" in model or "\\" in model) else model


class CostLedger:
    """Spend per (UTC day, tenant, backend, model) in SQLite: safe across threads and processes."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db = private_sqlite(path)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spend (day TEXT, tenant TEXT, backend TEXT, "
                "model TEXT, calls INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, "
                "cost REAL, PRIMARY KEY (day, tenant, backend, model))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS warned (day TEXT, tenant TEXT, level REAL, "
                "PRIMARY KEY (day, tenant, level))"
            )

    def add(self, day: str, tenant: str, entries: list[BackendUsage]) -> float:
        """Record the calls; returns the tenant's spend of ``day`` after them."""
        with self._lock, self._db:
            for e in entries:
                self._db.execute(
                    "INSERT INTO spend VALUES (?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT "
                    "(day, tenant, backend, model) DO UPDATE SET calls = calls + 1, "
                    "prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                    "completion_tokens = completion_tokens + excluded.completion_tokens, "
                    "cost = cost + excluded.cost",
                    (
                        day,
                        tenant,
                        e.backend,
                        model_label(e.model),
                        e.prompt_tokens,
                        e.completion_tokens,
                        e.cost,
                    ),
                )
            return self._spent(day, tenant)

    def _spent(self, day: str, tenant: str) -> float:
        row = self._db.execute(
            "SELECT COALESCE(SUM(cost), 0) FROM spend WHERE day = ? AND tenant = ?", (day, tenant)
        ).fetchone()
        return float(row[0])

    def spent(self, day: str, tenant: str) -> float:
        with self._lock:
            return self._spent(day, tenant)

    def day_totals(self, day: str) -> dict[str, dict[str, float]]:
        """tenant -> {cost, prompt_tokens, completion_tokens, calls} for ``day``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT tenant, SUM(cost), SUM(prompt_tokens), SUM(completion_tokens), "
                "SUM(calls) FROM spend WHERE day = ? GROUP BY tenant",
                (day,),
            ).fetchall()
        return {
            str(t): {
                "cost": float(c),
                "prompt_tokens": float(p),
                "completion_tokens": float(k),
                "calls": float(n),
            }
            for t, c, p, k, n in rows
        }

    def mark_warned(self, day: str, tenant: str, level: float) -> bool:
        """True the first time (per day, tenant, level) across restarts."""
        with self._lock, self._db:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO warned VALUES (?, ?, ?)", (day, tenant, level)
            )
            return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CostController:
    """Prices, budgets and the ledger for one data dir. ``clock``: seconds since the epoch."""

    def __init__(
        self,
        settings: CostSettings,
        data_dir: Path,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.clock = clock
        self.ledger = CostLedger(data_dir / LEDGER_FILE)
        self._lock = threading.Lock()
        # (tenant, level) -> warnings issued by this process (rag_budget_warnings_total)
        self.warnings: dict[tuple[str, str], int] = {}

    def day(self) -> str:
        return utc_day(self.clock())

    def price(self, backend: str) -> PriceSettings | None:
        for name, price in self.settings.prices.items():
            if name == backend:
                return price
        return None

    def priced(self, backend: str) -> bool:
        p = self.price(backend)
        return p is not None and (p.input_per_million > 0 or p.output_per_million > 0)

    def budget(self, tenant: str) -> float | None:
        override = self.settings.tenants.get(tenant)
        if override is not None and override.daily_budget is not None:
            return override.daily_budget
        return self.settings.daily_budget

    def cost_of(self, entry: BackendUsage) -> float:
        p = self.price(entry.backend)
        if p is None:
            return 0.0
        return (
            entry.prompt_tokens * p.input_per_million
            + entry.completion_tokens * p.output_per_million
        ) / 1_000_000.0

    def spent(self, tenant: str) -> float:
        return self.ledger.spent(self.day(), tenant)

    def skip_reason(self, tenant: str, generator: Generator) -> str | None:
        """Why ``generator`` must not be asked for ``tenant`` now (its budget is spent), or None."""
        budget = self.budget(tenant)
        if budget is None or not self.priced(generator.name):
            return None
        spent = self.spent(tenant)
        if spent < budget:
            return None
        return (
            f"{BUDGET_REASON}: tenant {tenant!r} spent {spent:.4f} of its daily budget of "
            f"{budget:.4f} {self.settings.currency}; priced backends resume at UTC midnight "
            "(raise costs.daily_budget or costs.tenants.<tenant>.daily_budget to lift it)"
        )

    def charge(self, outcome: ChainOutcome, tenant: str) -> Usage:
        """Price every attempt of ``outcome``, record it, and set ``outcome.usage`` to the total."""
        self.charge_calls(outcome.attempts, tenant)
        usage = outcome.usage
        usage.backends = [a.model_copy() for a in outcome.attempts]
        usage.prompt_tokens = sum(a.prompt_tokens for a in outcome.attempts)
        usage.completion_tokens = sum(a.completion_tokens for a in outcome.attempts)
        usage.cost = round(sum(a.cost for a in outcome.attempts), 10)
        return usage

    def charge_calls(self, calls: list[BackendUsage], tenant: str) -> None:
        """Price ``calls`` (their ``cost`` set) and add them to the tenant's day."""
        for entry in calls:
            entry.cost = round(self.cost_of(entry), 10)
        called = [a for a in calls if a.outcome != "skipped"]
        if called:
            try:
                spent = self.ledger.add(self.day(), tenant, called)
                self._check_warnings(tenant, spent)
            except sqlite3.OperationalError as exc:
                # A full data dir ("database or disk is full"), a locked file: the answer is
                # still given (it was produced and paid for); its spend goes unrecorded.
                log.warning("spend of tenant %r not recorded: %s", tenant, exc)

    def _check_warnings(self, tenant: str, spent: float) -> None:
        budget = self.budget(tenant)
        if budget is None:
            return
        fraction = spent / budget if budget > 0 else float("inf")
        for level in sorted(self.settings.warn_at):
            if fraction >= level and self.ledger.mark_warned(self.day(), tenant, level):
                key = (tenant, f"{level:g}")
                with self._lock:
                    self.warnings[key] = self.warnings.get(key, 0) + 1
                log.warning(
                    "tenant %r has spent %.0f%% of its daily budget (%.4f of %.4f %s)%s",
                    tenant,
                    fraction * 100 if budget > 0 else 100,
                    spent,
                    budget,
                    self.settings.currency,
                    "; priced backends are skipped until UTC midnight" if fraction >= 1 else "",
                )

    def report(self) -> dict[str, Any]:
        """Today's spend per tenant, budgets and warnings: what /metrics shows."""
        totals = self.ledger.day_totals(self.day())
        tenants = set(totals) | set(self.settings.tenants)
        with self._lock:
            warnings = dict(self.warnings)
        return {
            "day": self.day(),
            "currency": self.settings.currency,
            "tenants": {
                t: {**totals.get(t, {"cost": 0.0}), "budget": self.budget(t)}
                for t in sorted(tenants)
            },
            "warnings": warnings,
        }

    def close(self) -> None:
        self.ledger.close()
