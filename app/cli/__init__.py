"""The ``rag`` command line, assembled here: every command and command group is registered in
this one place (the modules only define them).

- ``app.cli.core``: global options, shared helpers; ``ingest``, ``watch``, ``status``,
  ``export``, ``reindex``
- ``app.cli.query``: ``query``
- ``app.cli.eval``: ``eval`` (the default suite), ``eval retrieval|answers|last``
- ``app.cli.serve``: ``serve``, ``keys create|list|revoke|groups|local``
- ``app.cli.mcp``: ``mcp`` (an MCP server on stdio)
- ``app.cli.pii``: ``pii scan``
- ``app.cli.feedback``: ``feedback`` (list, ``--candidates``), ``feedback confirm``
- ``app.cli.prompts``: ``prompts release|status|step|rollback``

Exit codes: 0 ok; 1 the command could not run (the message says what to do); 2 bad
configuration or usage; 3 ``rag eval --fail-on-regression`` found a regression, or a release
(``rag reindex``, ``rag prompts release``) was refused by its evals; 130 Ctrl-C.
"""

from __future__ import annotations

import typer

from app.cli import core, feedback, mcp, pii, prompts, query, serve
from app.cli import eval as eval_cmds
from rag.core.datadir import restrict_umask

__all__ = ["app", "main"]

app = typer.Typer(
    name="rag",
    help="Production RAG: watched folders in, a version-locked Qdrant index out, verified answers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(core.global_options)
app.command()(core.ingest)
app.command()(core.watch)
app.command()(core.status)
app.command()(core.export)
app.command()(core.reindex)

eval_app = typer.Typer(
    help="Measure retrieval and answer quality; reports land in <data_dir>/reports/.",
    no_args_is_help=False,
    invoke_without_command=True,
)
eval_app.command("retrieval")(eval_cmds.eval_retrieval)
eval_app.command("answers")(eval_cmds.eval_answers)
eval_app.command("last")(eval_cmds.eval_last)
eval_app.command("injection")(eval_cmds.eval_injection)
eval_app.command("verify")(eval_cmds.eval_verify)
eval_app.callback(invoke_without_command=True)(eval_cmds.eval_default)
app.add_typer(eval_app, name="eval")

app.command()(query.query)

keys_app = typer.Typer(
    help="API keys: each bound to one tenant, stored hashed under the data dir.",
    no_args_is_help=True,
)
keys_app.command("create")(serve.keys_create)
keys_app.command("list")(serve.keys_list)
keys_app.command("revoke")(serve.keys_revoke)
keys_app.command("groups")(serve.keys_groups)
keys_app.command("local")(serve.keys_local)
app.add_typer(keys_app, name="keys")

app.command()(serve.serve)
app.command()(mcp.mcp)

pii_app = typer.Typer(help="PII scrubbing: see what the `pii` policy finds.", no_args_is_help=True)
pii_app.command("scan")(pii.pii_scan)
app.add_typer(pii_app, name="pii")

feedback_app = typer.Typer(
    help="User feedback on answers; thumbs-down answers become golden-set candidates.",
    invoke_without_command=True,
)
feedback_app.callback(invoke_without_command=True)(feedback.feedback_list)
feedback_app.command("confirm")(feedback.feedback_confirm)
app.add_typer(feedback_app, name="feedback")

prompts_app = typer.Typer(
    help="Prompt releases: step by step, behind the evals, rolled back by themselves.",
    no_args_is_help=True,
)
prompts_app.command("release")(prompts.prompts_release)
prompts_app.command("status")(prompts.prompts_status)
prompts_app.command("step")(prompts.prompts_step)
prompts_app.command("rollback")(prompts.prompts_rollback)
app.add_typer(prompts_app, name="prompts")


def main() -> None:
    # Before anything is written: the data dir's files (every tenant's text, the manifest,
    # reports, key hashes, daemon.json) are 0600 and its folders 0700.
    restrict_umask()
    try:
        app()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
