"""``bangban figures``: the help desk's figures (resolution, first response, dispatch) from SQL."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import click

from ..config import Settings
from .common import cli, existing_database, settings_options


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected YYYY-MM-DD") from None


def _pct(rate) -> str:  # noqa: ANN001 - a core.figures.Rate
    if rate.rate is None:
        return "-"
    mark = "" if rate.meets_target is None else (" ok" if rate.meets_target else " !")
    return f"{rate.rate * 100:.1f}%{mark}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:g}s"


@cli.command()
@settings_options
@click.option("--from", "date_from", callback=_day, help="First Beijing day (default: 6 days "
              "before --to).")
@click.option("--to", "date_to", callback=_day, help="Last Beijing day (default: today).")
@click.option("--by", type=click.Choice(["day", "unit", "matter", "channel"]), default="day",
              show_default=True, help="Grouping of the rows (the last row is the total).")
@click.option("--unit", "units", multiple=True, help="Only this unit (repeatable).")
@click.option("--channel", "channels", multiple=True, help="Only this channel (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="The whole document, as the API gives it.")
def figures(settings: Settings, date_from: date | None, date_to: date | None, by: str,
            units: tuple[str, ...], channels: tuple[str, ...], as_json: bool) -> None:
    """Resolution rates, first-response times and the dispatch rate, with the seed's targets
    (bot >= 50 %, human >= 90 %, dispatch <= 10 %, first response within 60 s; '!' marks a
    missed target). GET /console/api/figures serves the same figures to supervisors.
    """
    from pydantic import ValidationError

    from ..db import create_engine
    from ..errors import ValidationFailed
    from ..figures import FiguresQuery, compute

    from adapters import discover

    existing_database(settings)

    from ..reference import load_codes

    # a typo would only print zeros: name what exists instead
    for given, known, option in ((units, set(load_codes().department), "--unit"),
                                 (channels, set(discover()), "--channel")):
        if unknown := [x for x in given if x not in known]:
            raise click.BadParameter(f"{', '.join(unknown)} (known: {', '.join(sorted(known))})",
                                     param_hint=option)
    try:  # no --to: today; no --from: the 7 days up to --to
        query = FiguresQuery(since=date_from, until=date_to, by=by, units=list(units) or None,
                             channels=list(channels) or None)
    except ValidationError as exc:
        raise ValidationFailed(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None

    async def run():  # noqa: ANN202
        engine = create_engine(settings.database_url)
        try:
            return await compute(engine, query)
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    if as_json:
        click.echo(json.dumps(result.model_dump(mode="json", by_alias=True), ensure_ascii=False))
        return
    click.echo(f"{query.since} .. {query.until}, by {by}"
               + (f", units {','.join(units)}" if units else "")
               + (f", channels {','.join(channels)}" if channels else ""))
    click.echo(f"{by:<16} {'bot':>9} {'human':>9} {'closed':>9} {'p50':>7} {'p90':>7} "
               f"{'<=60s':>9} {'dispatch':>9} {'help':>6} {'convs':>6}")
    for g in [*result.groups, result.overall]:
        key = "total" if g is result.overall else (g.key or "-")
        fr = g.first_response
        click.echo(f"{key:<16} {_pct(g.bot_resolution):>9} {_pct(g.human_resolution):>9} "
                   f"{_pct(g.human_closed_resolved):>9} {_secs(fr.p50_s):>7} "
                   f"{_secs(fr.p90_s):>7} {_pct(fr.within_target):>9} {_pct(g.dispatch):>9} "
                   f"{g.counts.conversations_with_help:>6} {g.counts.conversations:>6}")
