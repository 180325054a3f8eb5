"""MkDocs hook: the configuration page's table of settings, generated at build time from
`common/platform/settings.py`, so the page cannot drift from the code.

Each row is one field of `Settings`: its environment variable, type, default and bounds come
from the pydantic model; its meaning from the field's `description=` when it has one, else from
the comment written above the field in the settings module, else from the comment beside the
variable in `.env.example`, else from NOTES below, else from the comment above the run of
fields it is written in. A comment line standing alone above a group of fields (such as
`# Authentication.`) becomes the heading of that group's table. `<!-- settings-table -->` in a
page is replaced by the tables.
"""

from __future__ import annotations

import ast
import logging
import re
import sys
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- settings-table -->"

log = logging.getLogger("mkdocs.hooks.settings_table")

# The meaning of the settings whose code carries no comment or description. A note for a
# setting that no longer exists, or a setting with no meaning anywhere, is a warning, which
# `mkdocs build --strict` turns into a failed build. Better still: a comment above the field.
NOTES = {
    "flask_env": "`production` here also counts as production (the older Flask spelling of APP_ENV).",
    "host": "Address the API (gunicorn) binds to.",
    "public_url": "The shop's public URL (links, the webhook endpoint Stripe is pointed at); "
                  "default `http://HOST:PORT`.",
    "redis_url": "Redis for the broker, rate limits, the token denylist and locks (and the "
                 "sale data unless REDIS_CLUSTER_NODES is set).",
    "redis_pool_timeout_seconds": "How long a request waits for a free pooled Redis connection "
                                  "(see REDIS_MAX_CONNECTIONS).",
    "mongodb_db": "Database name used when MONGODB_URI names none.",
    "stripe_secret_key": "Stripe secret key (`sk_...`); required in production.",
    "stripe_publishable_key": "Stripe publishable key (`pk_...`) handed to the browser by "
                              "`GET /api/config`.",
    "stripe_webhook_secret": "Signing secret of the Stripe webhook endpoint (`whsec_...`); "
                             "required in production.",
    "stripe_timeout_seconds": "Timeout of one Stripe API call.",
    "jwt_access_ttl_seconds": "Lifetime of an access token (15 minutes).",
    "jwt_refresh_ttl_seconds": "Lifetime of a refresh token (30 days).",
    "admin_password": "The first admin's password (with ADMIN_EMAIL); in development generated "
                      "into `var/secrets/admin_password`.",
    "login_rate_limit": "Logins per client address and per email (flask-limiter on Redis).",
    "register_total_rate_limit": "Sign-ups in total, whatever the address (about a core of hashing).",
    "password_hash_time_cost": "argon2id passes (see PASSWORD_HASH_MEMORY_KIB).",
    "password_hash_parallelism": "argon2id lanes (see PASSWORD_HASH_MEMORY_KIB).",
    "admission_rate_limit": "Admissions of one shopper to one sale, enforced inside admit.lua "
                            "(GCRA); past it 429 `rate_limited` with Retry-After.",
    "log_level": "Level of the JSON log lines.",
    "decision_batch_size": "Tickets the decider reads and decides in one `reserve_batch.lua` call.",
    "drain_idle_seconds": "A drain task lets go of a sale after its waiting room stays empty this long.",
    "payment_intent_concurrency": "PaymentIntents a decider creates at once (its thread pool), so "
                                  "one slow Stripe call does not hold the line.",
    "expiry_interval_seconds": "How often beat expires unpaid reservations and sweeps the "
                               "PaymentIntent cancellation outbox.",
    "reconcile_interval_seconds": "How often beat runs the sale auditor over the live sales (reconcile).",
    "task_max_retries": "Retries of a Celery task (exponential backoff) before it is dead-lettered.",
    "frontend_dist": "The built front end the API serves (`npm run build` in frontend/).",
}


def _settings_class() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from common.platform.settings import Settings

    return Settings


def _source_comments(source: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Per field: the comment block just above it, the heading of the group it is in, and the
    comment of the run of fields it continues (a comment above two fields written together
    describes both)."""
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings")
    comments: dict[str, str] = {}
    headings: dict[str, str] = {}
    shared: dict[str, str] = {}
    heading = ""
    previous: tuple[int, str] | None = None  # the last field's end line and its run's comment
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        block: list[str] = []
        row = node.lineno - 2  # the line above the field, 0-based
        while row >= 0 and lines[row].strip().startswith("#"):
            block.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        blank_before = row >= 0 and not lines[row].strip()
        text = " ".join(block)
        # A short comment alone above a group ("# Authentication.") names the group.
        if blank_before and len(block) == 1 and len(text.split()) <= 4:
            heading, text = text.rstrip("."), ""
        elif blank_before and block and len(text.split()) > 4 and text.startswith(("Where ", "Backing ")):
            heading, text = text, ""
        comments[name] = text
        headings[name] = heading
        if not block and previous and previous[0] == node.lineno - 1:
            shared[name] = previous[1]
        run = text or shared.get(name, "")
        previous = (node.end_lineno or node.lineno, run)
    return comments, headings, shared


def _env_example_comments() -> dict[str, str]:
    found: dict[str, str] = {}
    path = ROOT / ".env.example"
    if path.exists():
        for line in path.read_text().splitlines():
            # A comment indented further than one space continues the line above: skipped.
            match = re.match(r"#\s*([A-Z][A-Z0-9_]*)=\S*\s*(?:# ?(\S.*))?$", line.strip())
            if match and match.group(2):
                found[match.group(1).lower()] = match.group(2).strip()
    return found


def _type_name(annotation: Any) -> str:
    if getattr(annotation, "__origin__", None) is Literal:
        return " | ".join(f"`{value}`" for value in annotation.__args__)
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    text = text or str(annotation).replace("typing.", "").replace("pathlib.", "")
    return text.replace("NoneType", "None")


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        try:
            return f"`<project>/{value.relative_to(ROOT)}`"
        except ValueError:
            return f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _bounds(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{sign} {bound:,}" if isinstance(bound, int) else f"{sign} {bound}")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _heading(text: str) -> tuple[str, str]:
    """A group's comment as a heading and the sentences after its first, if any."""
    title, _, rest = text.partition(". ")
    return title.rstrip("."), rest


def settings_table() -> str:
    """One table per group of settings (as grouped in the settings module), each a heading."""
    settings = _settings_class()
    source = Path(sys.modules[settings.__module__].__file__).read_text()  # type: ignore[arg-type]
    comments, headings, shared = _source_comments(source)
    env_notes = _env_example_comments()
    header = ["| environment variable | type | default | bounds | meaning |",
              "| --- | --- | --- | --- | --- |"]
    out: list[str] = []
    current = None
    for name, field in settings.model_fields.items():
        heading = headings.get(name, "") or "Environment"
        if heading != current:
            title, rest = _heading(heading)
            out += ["", f"### {title}", ""] + ([rest, ""] if rest else []) + header
            current = heading
        meaning = (field.description or comments.get(name) or env_notes.get(name)
                   or NOTES.get(name) or shared.get(name, ""))
        if not meaning:
            log.warning("setting %s has no description: add a comment above it in "
                        "common/platform/settings.py", name.upper())
        out.append("| " + " | ".join((
            f"`{name.upper()}`", _cell(_type_name(field.annotation)), _cell(_default(field.default)),
            _cell(_bounds(field)), _cell(meaning))) + " |")
    for name in NOTES.keys() - settings.model_fields.keys():
        log.warning("docs/hooks/settings_table.py describes %s, which is no longer a setting",
                    name.upper())
    return "\n".join(out).strip("\n")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, settings_table())
    return markdown
