"""`flashsale`: the one command line of the project.

`flashsale serve NAME` runs one process of the product (api, worker, decider, beat); operators'
commands (create-admin, reconcile) live here too. Development and load-test commands (`run`,
`embedded`, `loadtest`, `verify`) are registered through the `flashsale.commands` entry points
by the packages that define them, and appear when those are installed with their extras.
"""

from __future__ import annotations

import os
import shutil
import sys
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path

import click

from common.platform.settings import settings_or_exit

PLUGIN_GROUP = "flashsale.commands"


class PluginGroup(click.Group):
    """A group that adds the commands other installed packages declare, loaded only when used
    (a missing extra makes its commands say so instead of breaking every other command)."""

    def _plugins(self) -> dict[str, object]:
        return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        plugin = self._plugins().get(name)
        if plugin is None:
            return None
        try:
            return plugin.load()  # type: ignore[attr-defined,no-any-return]
        except ImportError as exc:
            missing = exc.name or str(exc)

            @click.command(name=name, help=f"(unavailable: {missing} is not installed)")
            def unavailable() -> None:
                raise click.ClickException(
                    f"`flashsale {name}` needs {missing}: install the development extra "
                    "(pip install '.[dev]', which `make run` and `make test` do)")

            return unavailable


@click.group(cls=PluginGroup)
def main() -> None:
    """Flash-sale waiting room: API, workers, beat and the operators' commands."""


def venv_script(name: str) -> str:
    """A console script installed beside this interpreter (gunicorn, celery), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def gunicorn_config() -> str:
    """The API's gunicorn settings, shipped in the `api` package (found without importing it,
    so this command needs no Flask): `api/gunicorn.conf.py`."""
    spec = find_spec("api")
    if spec is None or not spec.submodule_search_locations:
        raise click.ClickException("the api package is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "gunicorn.conf.py")


def _exec(argv: list[str]) -> None:
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@main.command()
@click.argument("name", type=click.Choice(["api", "worker", "decider", "beat"]))
def serve(name: str) -> None:
    """Run one process of the system (what each Procfile line calls)."""
    settings = settings_or_exit()
    var = settings.var_dir
    if name == "api":
        # gunicorn runs several processes: prometheus_client aggregates them through files.
        # Wiped at start, as prometheus_client asks: old processes' files would be counted.
        metrics_dir = var / "run" / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        _exec([venv_script("gunicorn"), "-c", gunicorn_config(), "api.app:create_app()"])
    elif name in ("worker", "decider"):
        from common.platform.task_routes import DECISIONS_QUEUE, DEFAULT_QUEUE

        # A worker serves every queue (it is enough alone); a decider only decisions, so
        # tickets are decided even while every worker thread waits on Stripe.
        queues, threads = ((f"{DEFAULT_QUEUE},{DECISIONS_QUEUE}", 8) if name == "worker"
                           else (DECISIONS_QUEUE, 4))
        # Threads pool: one process, so a kill by PID takes the whole worker down at once
        # and leaves its stream entries pending for another worker to claim.
        _exec([
            venv_script("celery"), "-A", "worker.app", "worker", "--pool", "threads",
            "--queues", queues, "--concurrency", str(threads), "--loglevel", settings.log_level,
            "--without-gossip", "--without-mingle", "-n", f"{name}-{os.getpid()}@%h",
        ])
    elif name == "beat":
        schedule = var / "run" / f"celerybeat-{os.getpid()}"
        schedule.parent.mkdir(parents=True, exist_ok=True)
        _exec([
            venv_script("celery"), "-A", "worker.app", "beat", "--loglevel",
            settings.log_level, "--schedule", str(schedule),
        ])


@main.command("create-admin")
@click.option("--email", required=True, help="The admin's email.")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Used only when the account is created; prompted for when omitted.")
@click.option("--name", default="Admin", show_default=True)
@click.option("--promote-existing", is_flag=True,
              help="Make an existing customer account with this email an admin (its password "
                   "stays as its owner set it).")
def create_admin(email: str, password: str, name: str, promote_existing: bool) -> None:
    """Create an admin account (idempotent); an existing customer account is promoted only
    with --promote-existing."""
    from common.accounts.users import (
        Role,
        configure_password_hashing,
        ensure_admin,
        find_by_email,
        normalise_email,
    )
    from common.platform.clients import Clients
    from common.platform.errors import AccountNotAdmin, DomainError
    from common.platform.schema import ensure_schema

    settings = settings_or_exit()
    configure_password_hashing(settings)
    clients = Clients(settings)
    try:
        ensure_schema(clients.db)
        was = find_by_email(clients.db, email)
        user, created = ensure_admin(clients.db, email=email, password=password, name=name,
                                     promote_existing=promote_existing)
    except AccountNotAdmin:
        raise click.ClickException(
            f"{normalise_email(email)} belongs to an existing customer account, which was not "
            "changed. Whoever registered that address would get the admin's rights: if it is "
            "yours, run again with --promote-existing.") from None
    except DomainError as exc:
        fields = exc.details.get("fields", {})
        raise click.ClickException(" ".join([exc.message, *(f"{k}: {' '.join(v)}"
                                                            for k, v in fields.items())])) from None
    finally:
        clients.close()
    if created:
        outcome = "created"
    elif was and was.get("role") != Role.ADMIN:
        outcome = "promoted an existing customer account to admin (its password is unchanged)"
    else:
        outcome = "already an admin"
    click.echo(f"{outcome}: {user['email']} ({user['_id']})")


@main.command()
@click.option("--sale", "sale_id", help="One sale; every sale when omitted.")
@click.option("--no-repair", is_flag=True, help="Report only; change nothing.")
def reconcile(sale_id: str | None, no_repair: bool) -> None:
    """Check available + reserved + sold == stock_total against tickets and orders; repair
    what is provable (a paid ticket whose order is missing). Exit 1 on any drift."""
    from common.auditing.reconcile import reconcile_all, reconcile_sale
    from common.billing.payments import PaymentContext
    from common.billing.stripe_gateway import StripeGateway
    from common.platform.clients import Clients

    settings = settings_or_exit()
    clients = Clients(settings)
    ctx = PaymentContext(mongo=clients.mongo, db=clients.db, redis=clients.sales_redis,
                         gateway=StripeGateway(clients.stripe, emulator=settings.stripe_emulator),
                         serialize_transactions=settings.mongodb_serialize_transactions)
    reports = ([reconcile_sale(ctx, sale_id, not no_repair)] if sale_id
               else reconcile_all(ctx, not no_repair))
    for report in reports:
        state = "OK   " if report.consistent else "DRIFT"
        click.echo(f"{state} {report.sale_id}: total={report.stock_total} available={report.available} "
                   f"reserved={report.reserved} sold={report.sold} order_units={report.order_units}"
                   + (f" repaired={len(report.orders_repaired)}" if report.orders_repaired else "")
                   + (f" problems={'; '.join(report.problems)}" if report.problems else ""))
    sys.exit(0 if all(r.consistent for r in reports) else 1)


@main.command("audit-fairness")
@click.option("--sale", "sale_id", required=True)
@click.option("--api", "api_url", help="Read the public answer from this shop (e.g. "
              "http://127.0.0.1:8000); default: from MongoDB and Redis directly.")
def audit_fairness(sale_id: str, api_url: str | None) -> None:
    """Recompute the lobby's order from the public fairness answer alone
    (`GET /api/sales/<id>/fairness`, every page) and compare it with the tickets' places.
    A beacon draw (`hmac-sha256-drand-v2`) is checked first: the round's BLS signature, its
    time after the close, the entries against their digest. Exit 1 on any failure, with why."""
    import json
    import urllib.parse
    import urllib.request

    from common.flash_sale import lobby
    from common.platform.clients import Clients

    clients = Clients(settings_or_exit())
    entries: list[str] = []
    cursor: str | None = None
    while True:
        if api_url:
            query = urllib.parse.urlencode({"limit": 1000, **({"cursor": cursor} if cursor else {})})
            url = f"{api_url.rstrip('/')}/api/sales/{sale_id}/fairness?{query}"
            with urllib.request.urlopen(url, timeout=30) as answer:
                page = json.load(answer)
        else:
            page = lobby.fairness_page(clients.db, clients.sales_redis, sale_id, cursor=cursor)
        entries += page["entries"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    try:
        order = lobby.recompute_order(page, entries)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    differences = lobby.order_differences(order, lobby.placed_lobby(clients.sales_redis, sale_id, entries))
    for line in differences[:50]:
        click.echo(line)
    beacon = page.get("beacon")
    if beacon:
        click.echo(f"beacon round {beacon['round']} of chain {beacon['chain_hash']}: signature verified, "
                   f"produced after the close ({page['closed_at']}); entries match their digest")
    click.echo(f"{'OK   ' if not differences else 'DRIFT'} {sale_id}: {len(order)} lobby tickets, "
               f"{len(differences)} differences")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
