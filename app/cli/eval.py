"""``rag eval``: retrieval and answer quality, on public datasets or on your own knowledge base.

- ``rag eval`` — the default suite on the live index (golden set if it matches, label-free
  canary), written as a report under ``<data_dir>/reports/``; the daemon runs the same suite
  by itself after each sync that changed the index and after ``rag reindex``.
- ``rag eval retrieval --dataset DIR [--docs FOLDER]`` — BEIR-layout retrieval metrics on an
  isolated, cached index of the dataset's corpus.
- ``rag eval answers --dataset DIR [--docs FOLDER]`` — the full query path per question.
- ``rag eval verify [--docs FOLDER] [--squad DIR]`` — what a capable model writes, verified:
  the kept / stopped figures of ``evals/verify.py`` (a scripted model on the production path).
- ``rag eval last`` — the latest report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

from app.cli.core import (
    daemon_client,
    fail,
    get_settings,
    open_index,
    print_json,
    progress_reporter,
)

if TYPE_CHECKING:
    from evals.datasets import Dataset, DatasetIndex
    from rag.core.config import Settings
    from rag.indexing.embedding import Embedder

__all__ = [
    "eval_answers",
    "eval_default",
    "eval_injection",
    "eval_last",
    "eval_retrieval",
    "eval_verify",
    "load_embedder",
]

Mode = Literal["dense", "sparse", "hybrid"]
_embedders: dict[str, Embedder] = {}


def load_embedder(settings: Settings) -> Embedder:
    """One warmed embedder per model and process (tests hand in their session's one)."""
    from rag.indexing.embedding import embedder_for

    key = settings.embedding.model_dump_json()
    if key not in _embedders:
        model = embedder_for(settings)
        model.warm_up()
        _embedders[key] = model
    return _embedders[key]


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def _load_dataset(dataset: Path, split: str, docs: Path | None) -> Dataset:
    from evals.datasets import DatasetError, load_beir

    try:
        return load_beir(dataset, split, docs)
    except DatasetError as exc:
        fail(str(exc), code=2)
        raise  # unreachable: fail() exits


def _open_dataset_index(settings: Settings, data: Dataset, rebuild: bool) -> DatasetIndex:
    from evals.datasets import open_dataset_index

    embedder = load_embedder(settings)
    with progress_reporter("eval index") as progress:
        return open_dataset_index(
            settings, data, embedder, rebuild=rebuild, progress=progress, echo=_echo
        )


def _limit_queries(queries: dict[str, str], limit: int | None) -> dict[str, str]:
    return dict(list(queries.items())[:limit]) if limit else queries


def _sample_queries(queries: dict[str, str], n: int | None) -> dict[str, str]:
    """Every k-th query: deterministic, and spread over a file that groups its kinds."""
    items = list(queries.items())
    if not n or n >= len(items):
        return queries
    return dict(items[round(i * len(items) / n)] for i in range(n))


def _save_report(settings: Settings, name: str, result: dict[str, Any], dsi: DatasetIndex) -> str:
    """``--report``: the result saved as a one-suite report; returns its report.html."""
    from evals.suite import save_dataset_report

    folder = save_dataset_report(settings, name, result, dsi.index, dsi.describe())
    return str(folder / "report.html")


MODE_OPTION = typer.Option("--mode", help="dense | sparse | hybrid (default: retrieval.mode)")


def eval_retrieval(
    dataset: Annotated[
        Path,
        typer.Option(
            "--dataset", help="BEIR-layout folder: queries.jsonl, qrels/<split>.tsv, corpus.jsonl"
        ),
    ],
    split: Annotated[str, typer.Option("--split", help="qrels/<split>.tsv to score")] = "test",
    docs: Annotated[
        Path | None,
        typer.Option("--docs", help="Corpus is this folder; qrels corpus-id = path relative to it"),
    ] = None,
    top_k: Annotated[
        int | None,
        typer.Option(
            "--top-k", min=1, max=1000, help="Documents ranked per query (default evals.top_k)"
        ),
    ] = None,
    mode: Annotated[str | None, MODE_OPTION] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N judged queries")
    ] = None,
    per_query: Annotated[
        bool, typer.Option("--per-query", help="Include each query's ranked doc ids and scores")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Ignore the cached index of this corpus")
    ] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Also write report.json/html under <data_dir>/reports/")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """nDCG@10, recall@1/5/10/100, MRR@10 and latency of the real retriever on a BEIR dataset."""
    from evals.retrieval import evaluate_retrieval

    if mode is not None and mode not in ("dense", "sparse", "hybrid"):
        fail(f"--mode {mode!r}: use dense, sparse or hybrid", code=2)
    settings = get_settings()
    started = time.perf_counter()
    data = _load_dataset(dataset, split, docs)
    queries = _limit_queries(data.judged_queries(), limit)
    if not queries:
        fail(
            f"no query in {dataset} has a relevant document in qrels/{split}.tsv: nothing to score",
            code=2,
        )
    dsi = _open_dataset_index(settings, data, rebuild)
    try:
        k = top_k or settings.evals.top_k
        with progress_reporter("eval queries") as progress:
            result = evaluate_retrieval(
                dsi.index, queries, data.qrels, dsi.to_doc, k, cast("Mode | None", mode), progress
            )
        result.update(kind="retrieval", dataset=data.describe(), index=dsi.describe())
        result["timings"] = {
            "index_seconds": round(dsi.build_seconds, 3),
            "query_seconds": result["seconds"],
            "total_seconds": round(time.perf_counter() - started, 3),
        }
        if report:
            result["report"] = _save_report(settings, data.name, result, dsi)
    finally:
        dsi.close()
    if not per_query:
        result.pop("per_query", None)
    if as_json:
        print_json(result)
        return
    _print_retrieval(result)


def _print_retrieval(result: dict[str, Any]) -> None:
    cfg = result["config"]
    idx = result["index"]
    typer.echo(
        f"{result['dataset']['name']} ({result['dataset']['split']}): {result['queries']} queries, mode {cfg['mode']}, "
        f"top {cfg['top_k']}; index {'cached' if idx['cached'] else 'built'} in {idx['build_seconds']:.1f}s"
    )
    for key in ("ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100", "mrr@10"):
        typer.echo(f"  {key:<11} {result[key]:.4f}")
    lat = result["latency_ms"]
    typer.echo(f"  latency     p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms")
    if result.get("report"):
        typer.echo(f"  report      {result['report']}")


def eval_answers(
    dataset: Annotated[
        Path, typer.Option("--dataset", help="BEIR-layout folder with answers.jsonl")
    ],
    split: Annotated[str, typer.Option("--split")] = "test",
    docs: Annotated[
        Path | None,
        typer.Option("--docs", help="Corpus is this folder; qrels corpus-id = path relative to it"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N questions")
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=1,
            help="N questions evenly spaced over the set (keeps its answerable/unanswerable mix)",
        ),
    ] = None,
    half: Annotated[
        str | None,
        typer.Option(
            "--half",
            help="Only the questions queries.jsonl marks with this half (tune | report)",
        ),
    ] = None,
    per_query: Annotated[
        bool, typer.Option("--per-query", help="Include each question's answer and citations")
    ] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Ignore the cached index of this corpus")
    ] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Also write report.json/html under <data_dir>/reports/")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Answer quality of the full query path: gold answer contained and cited, abstention, latency, tokens."""
    from evals.answers import evaluate_answers, pipeline_runner
    from evals.conversations import evaluate_conversations, load_conversations

    settings = get_settings()
    started = time.perf_counter()
    data = _load_dataset(dataset, split, docs)
    if data.answers is None:
        fail(
            f'{dataset} has no answers.jsonl ({{"_id", "answerable", "answers"}} per line) nor '
            "conversations.jsonl: use `rag eval retrieval`",
            code=2,
        )
    assert data.answers is not None
    if not data.answers and not data.conversations:
        fail(f"{dataset}: answers.jsonl names no question: nothing to answer", code=2)
    if half is not None:
        if half not in set(data.halves.values()):
            fail(
                f"--half {half}: queries.jsonl marks no question with it (halves: "
                f"{', '.join(sorted(set(data.halves.values()))) or 'none'})",
                code=2,
            )
        data.queries = {q: t for q, t in data.queries.items() if data.halves.get(q) == half}
    questions = _limit_queries({q: t for q, t in data.queries.items() if q in data.answers}, limit)
    if limit and sample:
        fail("give --limit or --sample, not both", code=2)
    questions = _sample_queries(questions, sample)
    dsi = _open_dataset_index(settings, data, rebuild)
    try:
        run = pipeline_runner(dsi.index, dsi.index.settings)
        try:
            with progress_reporter("eval questions") as progress:
                result = evaluate_answers(
                    run, questions, data.answers, data.qrels, dsi.to_doc, progress=progress
                )
            if data.conversations is not None:
                # follow-ups beside first turns (evals/conversations.py)
                talks = load_conversations(data.conversations)
                if limit or sample:
                    talks = talks[: max(1, min(len(talks), limit or sample or len(talks)))]
                with progress_reporter("eval conversations") as progress:
                    result["conversations"] = evaluate_conversations(
                        run, talks, dsi.to_doc, progress=progress
                    )
        finally:
            run.close()
        result.update(kind="answers", dataset=data.describe(), index=dsi.describe())
        result["timings"] = {
            "index_seconds": round(dsi.build_seconds, 3),
            "answer_seconds": result["seconds"],
            "total_seconds": round(time.perf_counter() - started, 3),
        }
        if report:
            result["report"] = _save_report(settings, f"{data.name}-answers", result, dsi)
    finally:
        dsi.close()
    if not per_query:
        result.pop("per_query", None)
        (result.get("conversations") or {}).pop("per_turn", None)
    if as_json:
        print_json(result)
        return
    if result["questions"]:
        _print_answers(data.name, result)
    if result.get("conversations"):
        _print_conversations(data.name, result["conversations"])
    if result["errors"]:
        typer.echo(
            f"  {len(result['errors'])} question(s) failed; first: {result['errors'][0]['error']}",
            err=True,
        )


def _print_answers(name: str, result: dict[str, Any]) -> None:
    """The answer eval's figures, the SQuAD-normalised right answer and the code-aware one."""
    from evals.report import ANSWER_FIGURES

    typer.echo(f"{name}: {result['questions']} questions ({result['answerable']} answerable)")
    for key in ANSWER_FIGURES:
        value = result.get(key)
        typer.echo(f"  {key:<34} {'–' if value is None else f'{value:.4f}'}")
    lat, tok = result["latency_ms"], result["tokens_per_question"]
    typer.echo(
        f"  latency p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms; tokens/question {tok['total']:.0f}"
    )


def _print_conversations(name: str, conv: dict[str, Any]) -> None:
    """First turns and follow-ups side by side."""
    first, follow = conv["first_turn"], conv["follow_up"]
    typer.echo(
        f"{name}: {conv['conversations']} conversations, {first['turns']} first turns, "
        f"{follow['turns']} follow-ups"
    )
    typer.echo(f"  {'':<34} {'first turn':>10} {'follow-up':>10}")

    def shown(value: Any) -> str:
        return "–" if value is None else f"{value:.4f}"

    for key in (
        "answer_contains_gold",
        "answer_contains_gold_code_aware",
        "gold_cited",
        "abstention_rate_unanswerable",
        "false_abstention_rate_answerable",
    ):
        typer.echo(f"  {key:<34} {shown(first.get(key)):>10} {shown(follow.get(key)):>10}")
    typer.echo(
        f"  {'latency p50 (ms)':<34} {first['latency_ms']['p50']:>10.0f} "
        f"{follow['latency_ms']['p50']:>10.0f}"
    )
    kinds = ", ".join(
        f"{k} {shown(v['answer_contains_gold'])}"
        for k, v in conv["by_kind"].items()
        if k != "first" and v["answer_contains_gold"] is not None
    )
    if kinds:
        typer.echo(f"  follow-ups right by kind: {kinds}")


def eval_last(
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report.json")] = False,
) -> None:
    """The latest report (written after the last sync, reindex or `rag eval`)."""
    from evals.report import latest_report, reports_dir

    found = latest_report(reports_dir(get_settings()))
    if found is None:
        fail(
            f"no eval report under {reports_dir(get_settings())} yet: run `rag eval`, or let `rag watch` "
            "run one after its next sync"
        )
        return
    folder, data = found
    if as_json:
        print_json({**data, "path": str(folder / "report.html")})
        return
    _print_report(folder, data)


def _print_report(folder: Path, data: dict[str, Any]) -> None:
    typer.echo(
        f"report {data['id']} ({data['trigger']}), compared with {data.get('previous') or 'nothing'}"
    )
    deltas = data.get("deltas") or {}
    for key, value in (data.get("metrics") or {}).items():
        delta = deltas.get(key)
        shown = f"{delta:+.3f}" if delta is not None else "new"
        typer.echo(f"  {key:<40} {value:10.3f}  {shown}")
    regs = data.get("regressions") or []
    if regs:
        typer.echo(f"{len(regs)} regression(s):")
        for r in regs:
            typer.echo(
                f"  {r['metric']}: {r['previous']:.3f} -> {r['current']:.3f} ({r['delta']:+.3f})"
            )
    variants = data.get("variants") or {}
    if variants:  # a release gate's variants side by side (collection:kb_v2, prompt:answer@v4)
        names = list(variants)
        typer.echo(f"  {'variant':<40} " + " ".join(f"{n:>22}" for n in names))
        for key in sorted({k for figures in variants.values() for k in figures}):
            cells = " ".join(
                f"{variants[n][key]:>22.3f}" if key in variants[n] else f"{'–':>22}" for n in names
            )
            typer.echo(f"  {key:<40} {cells}")
    for note in data.get("notes") or []:
        typer.echo(f"  note: {note}", err=True)
    typer.echo(f"html: {folder / 'report.html'}")


def eval_default(
    ctx: typer.Context,
    suite: Annotated[
        Path | None, typer.Option("--suite", help="Golden set (.jsonl/.yaml); default evals.suite")
    ] = None,
    answers: Annotated[
        bool | None, typer.Option("--answers/--no-answers", help="Also score generated answers")
    ] = None,
    fail_on_regression: Annotated[
        bool, typer.Option("--fail-on-regression", help="Exit 3 when a metric regressed (for CI)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """With no subcommand: the default suite on the live index (what the daemon runs after a sync)."""
    if ctx.invoked_subcommand is not None:
        return
    if daemon_client() is not None and get_settings().store.backend == "edge":
        fail(
            "a daemon (`rag watch`/`rag serve`) holds this index and runs this suite itself after every sync "
            "that changes it: see `rag eval last`, or run `rag reindex` to trigger a fresh report"
        )
    from evals.datasets import DatasetError
    from evals.suite import run_default_suite

    index = open_index(create=False)
    index.embedder.warm_up()
    try:
        folder, report = run_default_suite(
            index, trigger="manual", suite_path=suite, answers=answers
        )
    except DatasetError as exc:
        fail(str(exc), code=2)
        return
    finally:
        index.close()
    if as_json:
        print_json({**report, "path": str(folder / "report.html")})
    else:
        _print_report(folder, report)
    if fail_on_regression and report.get("regressions"):
        raise typer.Exit(3)


def eval_verify(
    docs: Annotated[
        Path | None,
        typer.Option(
            "--docs",
            help="Folder the hand-written cases are about (default: examples/docs here)",
        ),
    ] = None,
    cases: Annotated[
        Path | None,
        typer.Option("--cases", help="Hand-written cases (default: evals/verify_docs.jsonl)"),
    ] = None,
    squad: Annotated[
        Path | None,
        typer.Option("--squad", help="SQuAD 2.0 folder (BEIR layout): also the generated set"),
    ] = None,
    squad_limit: Annotated[
        int | None, typer.Option("--squad-limit", min=1, help="At most N SQuAD cases per kind")
    ] = None,
    half: Annotated[
        str, typer.Option("--half", help="held_out (reported), tune (tuned on) or all")
    ] = "held_out",
    stream: Annotated[
        bool, typer.Option("--stream", help="Judge what the stream shows (default: the answer)")
    ] = False,
    per_case: Annotated[
        bool, typer.Option("--per-case", help="Include every case (the model's reply, the answer)")
    ] = False,
    report: Annotated[
        bool, typer.Option("--report", help="Also write report.json/html under <data_dir>/reports/")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """What a capable model writes, verified claim by claim: paraphrases and syntheses kept,
    wrong values, inventions and answers to unanswerable questions stopped, wrong citations
    fixed (a scripted OpenAI-compatible model on the production path; evals/verify.py)."""
    from evals.verify import run_verify

    if half not in ("held_out", "tune", "all"):
        fail("--half is held_out, tune or all", code=2)
    if docs is None and Path("examples/docs").is_dir():
        docs = Path("examples/docs")
    if docs is None and squad is None:
        fail("no set to run: give --docs FOLDER (the cases' documents) and/or --squad DIR", code=2)
    for folder in (docs, squad):
        if folder is not None and not folder.is_dir():
            fail(f"{folder} is not a folder", code=2)
    settings = get_settings()
    with progress_reporter("verify cases") as progress:
        result = run_verify(
            settings,
            load_embedder(settings),
            docs=docs,
            cases_path=cases,
            squad=squad,
            squad_limit=squad_limit,
            stream=stream,
            half=None if half == "all" else half,
            progress=progress,
            echo=_echo,
        )
    if report:
        from evals.report import save_report

        folder, _ = save_report(settings, {"verify": result}, "manual", "rag eval verify", {}, [])
        result["report"] = str(folder / "report.html")
    if not per_case:
        result.pop("per_case", None)
    if as_json:
        print_json(result)
        return
    _print_verify(result)
    if not result["goals_met"]:
        raise typer.Exit(1)


def _print_verify(result: dict[str, Any]) -> None:
    typer.echo(f"verify ({result['half']} half, {result['door']}): {result['cases']} cases")
    for name, figures in result["sets"].items():
        typer.echo(f"  {name}: {figures['cases']} cases ({figures['skipped']} skipped)")
        for kind, entry in figures["per_kind"].items():
            rate = next(
                (
                    f"{k} {entry[k]:.3f}"
                    for k in ("kept_whole", "shown", "fixed_or_refused")
                    if entry.get(k) is not None
                ),
                "–",
            )
            verdicts = ", ".join(f"{v} {n}" for v, n in entry["verdicts"].items())
            typer.echo(f"    {kind:<14} {entry['cases']:>4}  {rate:<24} ({verdicts})")
    for goal in result["goals"]:
        value = "–" if goal["value"] is None else f"{goal['value']:.4f}"
        state = "met" if goal["met"] else "MISSED"
        typer.echo(f"  {goal['name']:<32} {value}  (goal {goal['target']}: {state})")
    if result.get("report"):
        typer.echo(f"  report      {result['report']}")


def eval_injection(
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Also ask with the defence off")
    ] = True,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset",
            help="Also attack a BEIR answer set (e.g. ../shared/datasets/squad2): the corpus's "
            "attacks planted into answer paragraphs and appended to questions, per family",
        ),
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", help="Answerable questions of --dataset asked", min=1)
    ] = 120,
    half: Annotated[
        str, typer.Option("--half", help="Half of evals/injection_attacks.jsonl: report or tune")
    ] = "report",
    report: Annotated[
        bool, typer.Option("--report", help="Also write report.json/html under <data_dir>/reports/")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Prompt-injection suite: planted and direct attacks on fixtures of its own (isolated index),
    per family of the attack corpus; with --dataset, attacked questions of an answer set too."""
    from evals.injection import run_injection_suite

    if half not in ("report", "tune"):
        fail("--half is report (the figures to quote) or tune (what the detector was tuned on)")
    settings = get_settings()
    embedder = load_embedder(settings)
    result = run_injection_suite(settings, embedder, baseline=baseline)
    suites: dict[str, dict[str, Any]] = {"injection": result}
    if dataset is not None:
        from evals.datasets import DatasetError
        from evals.injection_attacks import run_attacked_answers

        try:
            attacked = run_attacked_answers(
                settings, embedder, dataset, sample=sample, half=half, echo=_echo
            )
        except (DatasetError, ValueError) as exc:
            fail(f"{exc} (give a BEIR folder with corpus.jsonl and answers.jsonl)", code=2)
            return
        suites[f"injection-{dataset.resolve().name}"] = attacked
        result["attacked_answers"] = attacked
    if report:
        from evals.report import save_report

        folder, _ = save_report(settings, suites, "manual", "rag eval injection", {}, [])
        result["report"] = str(folder / "report.html")
    if as_json:
        print_json(result)
        return
    for key, value in result["metrics"].items():
        if key.startswith("family_"):
            continue  # the table below
        base = (result.get("baseline") or {}).get(key)
        typer.echo(
            f"{key:36} {value:.4f}" + (f"   (defence off: {base:.4f})" if base is not None else "")
        )
    for err in result["detector_errors"]:
        typer.echo(f"  detector {err}")
    typer.echo(
        f"\n{'family (report half)':<22}{'planted_removed':>16}{'content_kept':>14}"
        f"{'appended_cut':>14}{'appended_right':>16}{'attack_success':>16}"
    )
    for family, m in result["families"].items():
        typer.echo(
            f"{family:<22}{m['planted_removed']:>16.3f}{m['content_kept']:>14.3f}"
            f"{m['appended_cut']:>14.3f}{m['appended_right']:>16.3f}"
            f"{m['appended_attack_success']:>16.3f}"
        )
    if "attacked_answers" in result:
        _echo_attacked(result["attacked_answers"])
    if result.get("report"):
        typer.echo(f"  report      {result['report']}")


def _echo_attacked(r: dict[str, Any]) -> None:
    """The answer set's attacked questions: per condition, then per family."""
    typer.echo(f"\n{r['dataset']} ({r['sample']} questions, {r['half']} half of the corpus)")
    typer.echo(f"{'condition':<12}{'right':>8}{'abstained':>11}{'attack_success':>16}")
    for condition, m in r["conditions"].items():
        success = "" if condition == "clean" else f"{m['attack_success']:>16.3f}"
        typer.echo(f"{condition:<12}{m['right']:>8.3f}{m['abstained']:>11.3f}{success}")
    typer.echo(
        f"{'family':<14}{'n':>4}{'clean':>8}{'planted':>9}{'p.success':>11}{'appended':>10}"
        f"{'a.success':>11}"
    )
    for family, clean in r["families_clean"].items():
        p = r["families"]["planted"].get(family, {})
        a = r["families"]["appended"].get(family, {})
        typer.echo(
            f"{family:<14}{clean['questions']:>4}{clean['right']:>8.3f}{p.get('right', 0):>9.3f}"
            f"{p.get('attack_success', 0):>11.3f}{a.get('right', 0):>10.3f}"
            f"{a.get('attack_success', 0):>11.3f}"
        )
    fp = r["question_false_positives"]
    typer.echo(
        f"clean questions cut: {fp['flagged']}/{fp['questions']}; clean chunks flagged: "
        f"{r['chunk_flags']['clean']['flagged']}/{r['chunk_flags']['clean']['chunks']}"
    )
