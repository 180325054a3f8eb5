"""`flashsale loadtest` and `flashsale verify`, registered with the `flashsale` command line
through the `flashsale.commands` entry points (the product never imports the load tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from common.development.cli import services_file
from common.platform.settings import settings_or_exit


@click.command()
@click.option("--users", default=200, show_default=True, type=click.IntRange(1),
              help="Shoppers (the surge defaults to 10,000).")
@click.option("--stock", type=click.IntRange(1),
              help="Units on sale [default: 100; surge 500; soak users x 100].")
@click.option("--spawn-rate", type=click.FloatRange(min=0.1),
              help="Shoppers started per second [default: all within a second].")
@click.option("--duration", help="Longest the shoppers may take (30s, 10m, 1h30m); a soak runs "
              "this long [default: 2m; surge 5m; soak 10m].")
@click.option("--arrival", type=click.Choice(["lobby", "opening"]),
              help="lobby: the sale's lobby is open and it starts --lobby-window s later; shoppers "
                   "arrive over that window and wait in the lobby. opening: no lobby, everyone "
                   "presses Buy within --arrival-window of the opening [default: surge and "
                   "--leavers lobby, otherwise opening].")
@click.option("--lobby-window", type=click.FloatRange(min=2),
              help="Seconds from the lobby's opening to the sale's start, over which shoppers "
                   "arrive [default: 60; --leavers 30].")
@click.option("--arrival-window", type=click.FloatRange(min=0),
              help="With --arrival opening, shoppers waiting for the opening press Buy within "
                   "this many seconds of it [default: 1; surge 5].")
@click.option("--pay", is_flag=True, help="Pay every reservation with a test card.")
@click.option("--card-entry", default="3,8", show_default=True, metavar="MIN,MAX",
              help="Seconds a paying shopper takes to type a card (0,0: at once).")
@click.option("--scenario", type=click.Choice(["shoppers", "surge", "scalpers", "draw"]),
              default="shoppers", show_default=True, help="surge: 10,000 shoppers for 500 units, "
              "arriving over a 60 s lobby. draw: --users shoppers enter a draw sale of --stock "
              "units, each holding a card; times the draw's walk (captures and releases).")
@click.option("--updates", type=click.Choice(["sse", "poll"]), default="sse", show_default=True,
              help="How shoppers follow their ticket: its event stream, or polling with "
                   "poll_after_ms.")
@click.option("--leavers", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              metavar="FRACTION", help="This fraction of shoppers close their stream / stop "
              "polling once queued and never come back; presence is on (15 s) and everyone joins "
              "the lobby at least 25 s before the opening. Checks no leaver gets a unit and every unit "
              "goes to a stayer while stayers remain.")
@click.option("--soak", is_flag=True, help="Shoppers start journey after journey; records the "
              "API's and worker's memory every 10 s.")
@click.option("--services", type=click.Path(dir_okay=False, path_type=Path),
              help="services.json of the running system [default: var/run/services.json].")
@click.option("--admin-email", help="[default: ADMIN_EMAIL]")
@click.option("--admin-password", help="[default: ADMIN_PASSWORD]")
@click.option("--results-dir", type=click.Path(file_okay=False, path_type=Path),
              help="[default: loadtests/results]")
@click.option("--scalper-accounts", default=200, show_default=True, type=click.IntRange(1),
              help="scalpers: the scalper's accounts (--users are the people).")
@click.option("--scalper-cards", default=3, show_default=True, type=click.IntRange(1),
              help="scalpers: the scalper's cards.")
@click.option("--defences", type=click.Choice(["off", "challenge", "one_card", "all", "table"]),
              default="table", show_default=True,
              help="scalpers: the sale's entry defences; `table` runs all four and prints one table.")
def loadtest(users: int, stock: int | None, spawn_rate: float | None, duration: str | None,
             arrival: str | None, lobby_window: float | None, arrival_window: float | None,
             pay: bool, card_entry: str, scenario: str,
             updates: str, leavers: float, soak: bool,
             services: Path | None, admin_email: str | None, admin_password: str | None,
             results_dir: Path | None, scalper_accounts: int = 200, scalper_cards: int = 3,
             defences: str = "table") -> None:
    """Load-test the running system, verify the sale's invariants, print one summary.

    Exits non-zero when an invariant fails.
    """
    from loadtests.runner import RESULTS_DIR, LoadTestOptions, parse_duration, run_loadtest

    settings = settings_or_exit()
    try:
        parse_duration(duration or "0")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    try:
        low, high = (float(part) for part in card_entry.split(","))
        if not 0 <= low <= high:
            raise ValueError
    except ValueError:
        raise click.BadParameter("MIN,MAX seconds, 0 <= MIN <= MAX", param_hint="--card-entry") from None
    options = LoadTestOptions(
        users=users, stock=stock, spawn_rate=spawn_rate, duration=duration,
        arrival_window=arrival_window, pay=pay, card_entry=card_entry, scenario=scenario, soak=soak,
        updates=updates, leavers=leavers, arrival=arrival, lobby_window=lobby_window,
        services=services or services_file(settings.var_dir),
        admin_email=admin_email or settings.admin_email or "",
        admin_password=admin_password or settings.admin_password or "",
        results_dir=results_dir or RESULTS_DIR)
    if not options.admin_email or not options.admin_password:
        raise click.UsageError("the load test signs in as an admin: set ADMIN_EMAIL and "
                               "ADMIN_PASSWORD (or pass --admin-email/--admin-password)")
    if scenario == "draw":
        from loadtests.draw_entries import run_draw
        from loadtests.verify import load_services

        try:
            text, passed = run_draw(
                load_services(options.services), admin_email=options.admin_email,
                admin_password=options.admin_password, shoppers=users, units=stock or 10,
                results_dir=options.results_dir, rate=settings.draw_stripe_calls_per_second,
                lobby_seconds=lobby_window, echo=lambda message: click.echo(message, err=True))
        except (FileNotFoundError, RuntimeError) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(text)
        sys.exit(0 if passed else 1)
    if scenario == "scalpers":
        from loadtests.scalpers import run_scalpers
        from loadtests.verify import load_services

        click.echo(run_scalpers(
            load_services(options.services), admin_email=options.admin_email,
            admin_password=options.admin_password, people=users, scalper_accounts=scalper_accounts,
            cards=scalper_cards, units=stock or 100, defences=defences,
            results_dir=options.results_dir, echo=lambda message: click.echo(message, err=True)))
        return
    try:
        summary = run_loadtest(options, echo=lambda message: click.echo(message, err=True))
    except (FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary.render())
    sys.exit(summary.exit_code)


@click.command()
@click.option("--sale", "sale_id", required=True, help="The sale's id (sal_...).")
@click.option("--services", type=click.Path(dir_okay=False, path_type=Path),
              help="services.json of the running system [default: var/run/services.json].")
@click.option("--sold-out", is_flag=True,
              help="Also require every unit paid for: orders = stock, product stock 0.")
def verify(sale_id: str, services: Path | None, sold_out: bool) -> None:
    """Check a sale's invariants from Redis and MongoDB; exits non-zero on a FAIL."""
    from loadtests.verify import run_verify

    path = services or services_file(settings_or_exit().var_dir)
    try:
        sys.exit(run_verify(sale_id, path, expect_sold_out=sold_out))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None


