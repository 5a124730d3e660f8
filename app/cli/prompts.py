"""``rag prompts``: prompt releases that go live step by step (rag/query/releases.py).

- ``rag prompts release answer@v4 [--steps 5,50,100] [--force] [--json]``: the golden-set
  answer eval with the candidate and the live version first (exit 3 when the candidate
  regresses, unless ``--force``); then the release is recorded in the data dir and every
  process on it serves the candidate to the step's share of users. With a daemon (`rag serve`)
  on an embedded store, the daemon runs the gate (it holds the index);
- ``rag prompts status [--json]``: each release's versions, shares and figures side by side;
- ``rag prompts step [--json]``: judge every running release's window now (a tick: requests
  judge it too, as their answers come in);
- ``rag prompts rollback [NAME] [--reason TEXT]``: stop a running release by hand.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.cli.core import _ask_daemon, daemon_client, echo_err, fail, get_settings, print_json
from rag.core.errors import RagError

__all__ = ["prompts_release", "prompts_rollback", "prompts_status", "prompts_step"]


def _store() -> Any:
    from rag.query.releases import release_store

    return release_store(get_settings().resolved_data_dir())


def _steps(raw: str | None) -> list[int] | None:
    if raw is None:
        return None
    try:
        return [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        fail(f"--steps {raw!r}: give percentages of users, e.g. 5,50,100", code=2)
        raise  # unreachable


def prompts_release(
    ref: Annotated[str, typer.Argument(help="The candidate, NAME@VERSION (e.g. answer@v4)")],
    steps: Annotated[
        str | None,
        typer.Option("--steps", help="Shares of users, step by step (default releases.steps)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Release even when the golden-set eval regresses")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Release a prompt version step by step, behind the golden-set eval."""
    shares = _steps(steps)
    client = daemon_client()
    if client is not None and get_settings().store.backend == "edge":
        body = {"prompt": ref, "steps": shares, "force": force}
        result = _ask_daemon(client, lambda: client.release_prompt(body))
    else:
        from app.cli.core import open_index
        from evals.releases import release_prompt

        index = open_index(create=False)
        try:
            result = release_prompt(index, ref, shares, force=force, echo=echo_err)
        except RagError as exc:
            fail(str(exc))
            raise  # unreachable
        finally:
            index.close()
    if as_json:
        print_json(result)
    elif result["released"]:
        release = result["release"]
        typer.echo(
            f"released {ref} against {result['live']}: {release['steps'][release['step']]} % of "
            f"users first, then {', '.join(f'{s} %' for s in release['steps'][release['step'] + 1 :]) or 'done'}"
            + (" (forced past the golden-set eval)" if result.get("forced") else "")
        )
    else:
        typer.echo(f"release refused: {result['reason']}", err=True)
        for r in result["regressions"]:
            typer.echo(
                f"  {r['metric']}: {r['previous']:.3f} -> {r['current']:.3f} ({r['delta']:+.3f})",
                err=True,
            )
        typer.echo("  (`--force` releases anyway)", err=True)
    if not result["released"]:
        raise typer.Exit(3)


def _shown(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def prompts_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Each prompt release: versions, shares and figures side by side."""
    data = _store().status()
    if as_json:
        print_json(data)
        return
    if not data:
        typer.echo("no prompt release yet (`rag prompts release answer@v4`)")
        return
    for name, release in data.items():
        if release.get("status") is None:
            continue
        share = ", ".join(f"{name}@{v} {pct} %" for v, pct in release["share"].items())
        typer.echo(f"{name}: release {release['id']} {release['status']}; serving {share}")
        if release.get("reason"):
            typer.echo(f"  reason: {release['reason']}")
        figures = release["figures"]
        typer.echo(f"  {'this step':<20} {'live':>14} {'candidate':>14}")
        typer.echo(
            f"  {'version':<20} {figures['live']['version']:>14} {figures['candidate']['version']:>14}"
        )
        for key in (
            "answers",
            "abstention_rate",
            "thumbs_down_rate",
            "all_verified_rate",
            "latency_p95_ms",
            "cost_per_answer",
        ):
            typer.echo(
                f"  {key:<20} {_shown(figures['live'][key]):>14} {_shown(figures['candidate'][key]):>14}"
            )
        typer.echo(f"  rollbacks so far: {release['rollbacks']}")


def prompts_step(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Judge every running release's window now: the next step, rolled back, or wait."""
    from rag.query.releases import judge

    settings = get_settings()
    store = _store()
    out: dict[str, Any] = {}
    for name, release in store.read()["prompts"].items():
        if release["status"] != "running":
            continue
        event = store.decide(name, settings.releases)
        if event is None:
            arms = store.arms(release)
            _, reasons, _ = judge(arms["live"], arms["candidate"], settings.releases)
            out[name] = {"event": "waiting", "reasons": reasons}
        else:
            out[name] = event
    if as_json:
        print_json(out)
        return
    if not out:
        typer.echo("no release is running")
    for name, event in out.items():
        detail = (
            event.get("reason")
            or "; ".join(event.get("reasons") or [])
            or (f"now {event.get('to_share')} %")
        )
        typer.echo(f"{name}: {event['event']}: {detail}")


def prompts_rollback(
    name: Annotated[str | None, typer.Argument(help="Prompt name (default prompts.name)")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the release)")] = (
        "rolled back by hand"
    ),
) -> None:
    """Stop a running release: the live version serves everyone again."""
    try:
        release = _store().rollback(name or get_settings().prompts.name, reason)
    except RagError as exc:
        fail(str(exc))
        return
    typer.echo(
        f"{release['name']}@{release['candidate']} rolled back; {release['live']} serves everyone"
    )
