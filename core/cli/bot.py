"""ask, kb search and eval: the bot and its retrieval from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from ..config import Settings
from ..db import create_engine, upgrade
from .common import cli, existing_database, settings_options
from .kb import kb

# The NLU stack (jieba, scikit-learn) is imported inside the commands that use it, so that
# `bangban --help` and the storage commands start in a fraction of a second.


def _entries(settings: Settings):
    from ..knowledge import load_entries

    existing_database(settings)

    async def run():
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            return await load_entries(engine)
        finally:
            await engine.dispose()

    entries = asyncio.run(run())
    if not entries:
        click.echo("note: the knowledge base is empty (import one with `bangban kb import`, "
                   "or run `bangban serve` once to load the seed)", err=True)
    return entries


def _bot(settings: Settings, entries=None):  # noqa: ANN001 - KB entries, loaded if not given
    from ..dialog.bot import Bot
    from ..knowledge import build_snapshot

    snapshot = build_snapshot(_entries(settings) if entries is None else entries,
                              rerank=settings.kb.rerank)
    return Bot(lambda: snapshot, settings.bot)


@cli.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One line of JSON per question.")
@click.option("--context/--no-context", default=False,
              help="Treat the questions as one conversation (follow-ups, '2' picks).")
@settings_options
def ask(settings: Settings, text: tuple[str, ...], as_json: bool, context: bool) -> None:
    """Ask 小申: each TEXT is one question; prints what the bot would do and say."""
    from ..dialog.bot import Context

    bot = _bot(settings)
    ctx = Context()
    for question in text:
        if not context:
            ctx = Context()
        reply = bot.respond(question, ctx)
        if as_json:
            click.echo(json.dumps({
                "q": question, "action": reply.action, "matters": reply.meta.matters,
                "entry_id": reply.meta.entry_id, "entry_type": reply.meta.entry_type,
                "confidence": round(reply.meta.confidence, 4), "intent": reply.meta.intent,
                "text": reply.text, "suggestions": reply.meta.suggestions,
                "quick_replies": [q.label for q in reply.quick_replies],
            }, ensure_ascii=False))
        else:
            head = f"[{reply.action}"
            if reply.meta.entry_id:
                head += f" {reply.meta.entry_id} {','.join(reply.meta.matters)}"
            # the buttons a channel would show, numbered as a text channel offers them (what
            # "2" picks with --context)
            choices = "".join(f"  {n}. {q.label}\n" for n, q in enumerate(reply.quick_replies, 1))
            click.echo(f"> {question}\n{head} confidence={reply.meta.confidence:.2f}]\n"
                       f"{reply.text}\n{choices}")


@kb.command("search")
@click.argument("query", nargs=-1, required=True)
@click.option("--top", default=5, show_default=True, type=click.IntRange(min=1),
              help="How many entries to list.")
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@settings_options
def kb_search(settings: Settings, query: tuple[str, ...], top: int, as_json: bool) -> None:
    """Rank KB entries for QUERY (retrieval only, no dialog policy)."""
    from ..knowledge import search_index

    index = search_index(_entries(settings), settings.kb.rerank)
    hits = index.search(" ".join(query), top=top)
    if as_json:
        # rerank: the re-ranker's probability, where it ran (null on KBs with aliases)
        click.echo(json.dumps([{"entry_id": h.entry_id, "type": h.type, "score": round(h.score, 4),
                                "rerank": None if h.rerank is None else round(h.rerank, 4),
                                "matters": h.matters, "matched": h.row} for h in hits],
                              ensure_ascii=False))
        return
    for rank, h in enumerate(hits, 1):
        title = index.entries[h.index].display_title
        click.echo(f"{rank}. {h.score:.3f}  {h.entry_id:<28} {h.type:<10} "
                   f"{','.join(h.matters):<8} {title}")


@cli.command("eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mode", type=click.Choice(["dialog", "retrieval"]), default="dialog",
              show_default=True,
              help="dialog: the whole bot policy; retrieval: ranking only (hit@1/hit@3).")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON (misses included).")
@click.option("--misses", is_flag=True, help="List the questions it got wrong.")
@settings_options
def eval_cmd(settings: Settings, file: Path, mode: str, as_json: bool, misses: bool) -> None:
    """Score the bot on FILE: JSONL {"q", "expect"} or TSV expect<TAB>question.

    expect is a matter code (M01…), out_of_scope, human, unknown, or a KB entry id. Prints the
    accuracy per expected class and per group, then overall (last line).
    """
    from ..evaluation import (evaluate_dialog, evaluate_retrieval, format_report, load_cases,
                              unknown_expectations)
    from ..knowledge import search_index
    from ..reference import matter_names

    cases = load_cases(file)
    entries = _entries(settings)
    unknown = unknown_expectations(cases, {e.id for e in entries}, set(matter_names()))
    if unknown:
        # scored as misses all the same: the file is the judge of what is right
        shown = "; ".join(f"{c.where}: {c.expect}" for c in unknown[:5])
        click.echo(f"warning: {len(unknown)} expectations are no matter code, class or KB entry "
                   f"id, so they can only be misses ({shown}"
                   f"{' …' if len(unknown) > 5 else ''})", err=True)
    start = time.perf_counter()
    if mode == "retrieval":
        index = search_index(entries, settings.kb.rerank)
        report = evaluate_retrieval(index, cases)
    else:
        report = evaluate_dialog(_bot(settings, entries), cases)
    if as_json:
        data = report.as_dict()
        data["seconds_total"] = round(time.perf_counter() - start, 3)
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    if misses:
        for m in report.misses:
            click.echo(f"MISS {m['expect']:<14} {m['got']:<40} {m['q']}", err=True)
    click.echo(format_report(report))
    sys.stdout.flush()
