"""`agentpool`: the operator CLI.

With no --stack it works against the running local stack (`make run`). With --stack NAME it
works against a deployed stack through its CloudFormation outputs and your AWS credentials.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import signal
import sys
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from agentpool.billing.render import FORMATS
from agentpool.billing.rerate import Rerating
from agentpool.pricing.catalog import PriceCatalog, default_catalog
from agentpool.publisher import PublishError
from agentpool.registry import TenantExistsError, TenantRegistry
from agentpool.tiers import TIERS
from agentpool_dev import backfill, demo, operations, reports, runtime_usage
from agentpool_dev.local_stack import STATE_FILE, LocalStack, PortInUseError, StackState

# soft_wrap: a line is never broken at the console width, even when the output is a file or a
# pipe (80 columns by default), so printed commands, passwords and tokens stay whole.
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def _month(value: str | None) -> str:
    if value is None:
        return datetime.now(UTC).strftime("%Y-%m")
    try:
        datetime.strptime(value, "%Y-%m")
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid month {value!r}; use YYYY-MM") from error
    return value


def counted(count: int, noun: str) -> str:
    """Return `count` and `noun`, with the noun plural unless the count is one."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _target(args: argparse.Namespace) -> operations.Target:
    if args.stack:
        return operations.deployed_target(args.stack, args.region)
    return operations.local_target()


def cmd_local_run(args: argparse.Namespace) -> int:
    stack = LocalStack()
    with console.status("Starting the local stack (moto, stand-ins, agent, functions)..."):
        state = stack.start()
    console.print(f"[bold green]Local stack running.[/] API: {state.api_url}")
    console.print(
        f"Stand-ins serve Bedrock, AgentCore Runtime and AgentCore Gateway; logs in {state.logs}."
    )
    console.print(
        "Next, in another terminal:\n"
        "  .venv/bin/agentpool tenants create --id my-clinic --name 'My Clinic' --tier basic\n"
        "  .venv/bin/agentpool users create --tenant my-clinic --email me@example.com\n"
        "  TOKEN=$(.venv/bin/agentpool token --email me@example.com "
        "--password '<printed password>')\n"
        f'  curl -X POST {state.api_url}/invocations -H "Authorization: $TOKEN" '
        '-H "Content-Type: application/json" -d \'{"prompt": "hello"}\'\n'
        "  .venv/bin/agentpool report --month YYYY-MM   # monthly billing reports, on demand\n"
        "Press Ctrl-C to stop."
    )
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        with console.status("Stopping the local stack..."):
            stack.stop()
    console.print("Local stack stopped.")
    return 0


def cmd_local_env(args: argparse.Namespace) -> int:
    if not STATE_FILE.exists():
        raise operations.OperatorError("The local stack is not running; start it with `make run`.")
    state = StackState.load()
    exports = {
        "AGENTPOOL_API_URL": state.api_url,
        "AWS_ENDPOINT_URL": state.moto_url,
        "AWS_REGION": state.region,
        "AWS_DEFAULT_REGION": state.region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AGENTPOOL_USER_POOL_ID": state.user_pool_id,
        "AGENTPOOL_USER_POOL_CLIENT_ID": state.user_pool_client_id,
        **{f"AGENTPOOL_{_snake(name).upper()}": value for name, value in state.resources.items()},
    }
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(str(value))}")
    return 0


def _snake(name: str) -> str:
    return "".join(f"_{c}" if c.isupper() and i else c for i, c in enumerate(name)).lower()


def cmd_tenants_create(args: argparse.Namespace) -> int:
    tenant = operations.create_tenant(_target(args), args.id, args.name, args.tier)
    console.print(f"Created tenant {tenant.tenant_id} ({tenant.tier}).")
    return 0


def cmd_tenants_status(args: argparse.Namespace) -> int:
    operations.set_tenant_status(_target(args), args.id, args.status)
    console.print(f"Tenant {args.id} is now {args.status}.")
    return 0


def cmd_tenants_set_tier(args: argparse.Namespace) -> int:
    before = operations.set_tenant_tier(_target(args), args.id, args.tier)
    console.print(
        f"Tenant {args.id} moved from {before.tier} to {args.tier}; its next request and tool "
        "call use the new tier."
    )
    return 0


def cmd_documents_upload(args: argparse.Namespace) -> int:
    keys = operations.upload_documents(_target(args), args.tenant, args.files)
    for key in keys:
        console.print(f"Uploaded {key}")
    return 0


def cmd_admins_create(args: argparse.Namespace) -> int:
    password = args.password or operations.generate_password()
    sub = operations.create_platform_admin(_target(args), args.email, password)
    console.print(f"Created platform admin {args.email} ({sub}).")
    if not args.password:
        console.print(f"Password (shown once): {password}")
    return 0


def cmd_tenants_list(args: argparse.Namespace) -> int:
    table = Table("tenant", "name", "tier", "status")
    for tenant in operations.list_tenants(_target(args)):
        table.add_row(tenant.tenant_id, tenant.name, tenant.tier, tenant.status)
    console.print(table)
    return 0


def cmd_users_create(args: argparse.Namespace) -> int:
    password = args.password or operations.generate_password()
    sub = operations.create_user(_target(args), args.tenant, args.email, password, args.admin)
    console.print(f"Created user {args.email} ({sub}) in tenant {args.tenant}.")
    if not args.password:
        console.print(f"Password (shown once): {password}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    print(operations.id_token(_target(args), args.email, args.password))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    target = _target(args)
    token = args.token or operations.id_token(target, args.email, args.password)
    status, body = operations.invoke(target, token, args.prompt, args.session)
    print(json.dumps(body, indent=2))
    return 0 if status == 200 else 1


def cmd_usage(args: argparse.Namespace) -> int:
    month = _month(args.month)
    usage = operations.tenant_month(_target(args), args.tenant, month)
    if args.json:
        print(json.dumps(usage, indent=2, default=str))
        return 0
    console.print(usage_table(f"{args.tenant} {month}", usage))
    return 0


def usage_table(title: str, usage: dict[str, Any]) -> Table:
    table = Table("scope", "invocations", "input tokens", "output tokens", "tools", "cost (USD)")
    table.title = title
    total = usage["total"]
    table.add_row("total", *_row(total))
    for kind in ("model", "user", "tool"):
        for name, counters in sorted(usage[kind].items()):
            table.add_row(f"{kind} {name}", *_row(counters))
    return table


def _row(counters: dict[str, Decimal]) -> list[str]:
    return [
        str(counters["invocations"]),
        str(counters["input_tokens"]),
        str(counters["output_tokens"]),
        str(counters["tool_calls"]),
        f"{counters['cost_usd']:f}",
    ]


def cmd_report(args: argparse.Namespace) -> int:
    month = _month(args.month)
    formats = (args.format,) if args.format else FORMATS
    with Progress(console=console) as progress:
        task = progress.add_task(f"Reports for {month}", total=None)
        result, month_dir = reports.run_reports(
            _target(args),
            month,
            tenant_id=args.tenant,
            formats=formats,
            out_dir=Path(args.out),
            on_start=lambda count: progress.update(task, total=count),
            on_tenant=lambda tenant: progress.advance(task),
            draft=args.draft,
        )
    console.print(
        f"Wrote {counted(len(result.reports), 'tenant report')} for {month} "
        f"(total {result.total_usd.normalize():f} USD, reconciled with the ledger) in "
        f"{result.seconds:.2f} s with {result.read_requests} DynamoDB reads of "
        f"{result.items_read} items."
    )
    if result.issued:
        console.print(f"{month} is issued: later events of it are billed as adjustments.")
    else:
        console.print(f"Drafts: {month} is not issued, so its numbers can still change.")
    console.print(f"Reports: {month_dir}")
    return 0


def cmd_events_publish(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise operations.OperatorError(f"File {path} not found; pass a JSON lines file.")
    target = _target(args)
    registry = TenantRegistry(target.table("TenantsTableName"))
    parsed = backfill.read_backfill(
        path, lambda tenant_id: registry.get(tenant_id) is not None, datetime.now(UTC)
    )
    if parsed.errors:
        for error in parsed.errors:
            errors.print(f"{path}:{error.line}: {error.reason}", markup=False, highlight=False)
        invalid = counted(len(parsed.errors), "invalid line")
        errors.print(f"[red]error:[/] {invalid}; published nothing.")
        return 1
    with Progress(console=console) as progress:
        task = progress.add_task("Publishing events", total=len(parsed.events))
        try:
            backfill.publish_backfill(
                target, parsed.events, lambda count: progress.advance(task, count)
            )
        except PublishError as error:
            raise operations.OperatorError(
                f"{error}. Publish the file again: the ledger records each event id once."
            ) from error
    console.print(
        f"Published {counted(len(parsed.events), 'event')} "
        f"({counted(parsed.distinct_events, 'distinct id')}) "
        f"to {target.outputs['EventBusName']}."
    )
    return 0


def cmd_rerate(args: argparse.Namespace) -> int:
    month = _month(args.month)
    catalog = _catalog(args.catalog)
    target = _target(args)
    tenants = [tenant.tenant_id for tenant in operations.list_tenants(target)]
    rerating = Rerating(
        target.client("dynamodb"),
        target.outputs["LedgerTableName"],
        target.outputs["TotalsTableName"],
    )
    with Progress(console=console) as progress:
        task = progress.add_task(f"Re-rating {month}", total=len(tenants))
        result = rerating.run(tenants, month, catalog, lambda _: progress.advance(task))
    console.print(
        f"Re-rated {result.entries} ledger entries of {month} with catalog "
        f"{result.catalog_version}: {len(result.recorded)} differences recorded "
        f"(net {result.difference_usd.normalize():f} USD), {result.unchanged} unchanged, "
        f"{len(result.duplicates)} already recorded."
    )
    if result.unpriced:
        errors.print(
            f"{len(result.unpriced)} entries have no price in the catalog and keep their "
            "amount; add their prices and rerun."
        )
    if result.failed:
        raise operations.OperatorError(
            f"{len(result.failed)} differences were not recorded. Rerun the same command: "
            "it records only what is missing."
        )
    return 0


def _catalog(path: str | None) -> PriceCatalog:
    if path is None:
        return default_catalog()
    try:
        return PriceCatalog.from_file(Path(path))
    except FileNotFoundError as error:
        raise operations.OperatorError(f"Catalog file {path} not found.") from error
    except ValueError as error:
        raise operations.OperatorError(f"Invalid catalog file {path}: {error}") from error


def cmd_runtime_usage_ingest(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise operations.OperatorError(f"File {path} not found; pass a USAGE_LOGS JSON lines file.")
    lines = path.read_text(encoding="utf-8").splitlines()
    batch = runtime_usage.ingest_usage_logs(_target(args), lines)
    for number, reason in batch.rejected:
        errors.print(f"{path}:{number}: {reason}", markup=False, highlight=False)
    console.print(
        f"Published {counted(len(batch.events), 'Runtime Usage event')}. "
        f"Not billable: {counted(len(batch.rejected), 'record')}."
    )
    return 1 if batch.rejected else 0


def cmd_runtime_usage_replay(args: argparse.Namespace) -> int:
    result = runtime_usage.replay_dead_letters(_target(args))
    console.print(
        f"Replayed {counted(result.messages_replayed, 'dead-letter message')} and published "
        f"{counted(result.events_published, 'Runtime Usage event')}. "
        f"Still on the queue: {counted(result.messages_kept, 'message')} "
        f"({counted(result.records_rejected, 'record')} not billable)."
    )
    return 1 if result.messages_kept else 0


def _add_runtime_usage_parser(commands: Any) -> None:
    usage = commands.add_parser(
        "runtime-usage", help="AgentCore Runtime usage logs"
    ).add_subparsers(dest="runtime_usage_command", required=True)
    ingest = usage.add_parser(
        "ingest", help="publish a Runtime Usage event per record of a USAGE_LOGS file"
    )
    ingest.add_argument("file", help="JSON lines file of AgentCore USAGE_LOGS records")
    ingest.set_defaults(func=cmd_runtime_usage_ingest)
    replay = usage.add_parser(
        "replay",
        help="bill the records on the runtime usage dead-letter queue; keep those still invalid",
    )
    replay.set_defaults(func=cmd_runtime_usage_replay)


def _add_rerate_parser(commands: Any) -> None:
    rerate = commands.add_parser(
        "rerate", help="price a month's ledger entries again and record the differences"
    )
    rerate.add_argument("--month", required=True, help="billing month, YYYY-MM")
    rerate.add_argument(
        "--catalog", help="price catalog JSON file (default: the shipped catalog.json)"
    )
    rerate.set_defaults(func=cmd_rerate)


def _add_events_parser(commands: Any) -> None:
    events = commands.add_parser("events", help="metering events").add_subparsers(
        dest="events_command", required=True
    )
    publish = events.add_parser(
        "publish", help="validate a JSON lines file of event details, then publish them all"
    )
    publish.add_argument("file", help="JSON lines file, one event detail object per line")
    publish.set_defaults(func=cmd_events_publish)


def _add_onboarding_commands(commands: Any, tenants: Any) -> None:
    """Add user creation, tenant suspension, document upload and platform admin commands."""
    users = commands.add_parser("users", help="tenant users").add_subparsers(
        dest="users_command", required=True
    )
    user_create = users.add_parser("create", help="create a user of a tenant")
    user_create.add_argument("--tenant", required=True)
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--password", help="permanent password (default: generated)")
    user_create.add_argument("--admin", action="store_true", help="make a tenant admin")
    user_create.set_defaults(func=cmd_users_create)
    for command, status, text in (
        ("suspend", "suspended", "suspend a tenant: its requests get 403 until activated"),
        ("activate", "active", "activate a suspended tenant"),
    ):
        status_parser = tenants.add_parser(command, help=text)
        status_parser.add_argument("--id", required=True)
        status_parser.set_defaults(func=cmd_tenants_status, status=status)
    set_tier = tenants.add_parser("set-tier", help="move a tenant to another tier at once")
    set_tier.add_argument("--id", required=True)
    set_tier.add_argument("--tier", required=True, choices=sorted(TIERS))
    set_tier.set_defaults(func=cmd_tenants_set_tier)

    documents = commands.add_parser("documents", help="tenant documents").add_subparsers(
        dest="documents_command", required=True
    )
    upload = documents.add_parser("upload", help="upload files for a tenant's document search")
    upload.add_argument("--tenant", required=True)
    upload.add_argument("files", nargs="+", type=Path, help="text files; the file name is kept")
    upload.set_defaults(func=cmd_documents_upload)

    admins = commands.add_parser("admins", help="platform admins").add_subparsers(
        dest="admins_command", required=True
    )
    admin_create = admins.add_parser("create", help="create a platform admin (no tenant)")
    admin_create.add_argument("--email", required=True)
    admin_create.add_argument("--password", help="permanent password (default: generated)")
    admin_create.set_defaults(func=cmd_admins_create)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentpool", description=__doc__)
    parser.add_argument("--stack", help="deployed CloudFormation stack name (default: local)")
    parser.add_argument("--region", help="AWS region of the deployed stack")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the local stack").add_subparsers(
        dest="local_command", required=True
    )
    local.add_parser("run", help="serve the local stack until Ctrl-C").set_defaults(
        func=cmd_local_run
    )
    local.add_parser("env", help="print the local stack's endpoints as exports").set_defaults(
        func=cmd_local_env
    )

    demo_parser = commands.add_parser("demo", help="run the demo on a fresh local stack")
    demo_parser.set_defaults(func=demo.run_demo_command)

    tenants = commands.add_parser("tenants", help="tenant registry").add_subparsers(
        dest="tenants_command", required=True
    )
    create = tenants.add_parser("create", help="register a tenant")
    create.add_argument("--id", required=True, help="tenant id: 3-40 of a-z, 0-9 and '-'")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--tier", required=True, choices=sorted(TIERS))
    create.set_defaults(func=cmd_tenants_create)
    tenants.add_parser("list", help="list tenants").set_defaults(func=cmd_tenants_list)
    _add_onboarding_commands(commands, tenants)

    token = commands.add_parser("token", help="print an ID token for a user")
    token.add_argument("--email", required=True)
    token.add_argument("--password", required=True)
    token.set_defaults(func=cmd_token)

    invoke = commands.add_parser("invoke", help="send a prompt to the agent")
    invoke.add_argument("prompt")
    invoke.add_argument("--email")
    invoke.add_argument("--password")
    invoke.add_argument("--token", help="ID token (default: sign in with --email/--password)")
    invoke.add_argument("--session", help="session id returned by an earlier call")
    invoke.set_defaults(func=cmd_invoke)

    usage = commands.add_parser("usage", help="a tenant's usage and cost for a month")
    usage.add_argument("--tenant", required=True)
    usage.add_argument("--month", help="YYYY-MM (default: this month, UTC)")
    usage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    usage.set_defaults(func=cmd_usage)

    _add_events_parser(commands)
    _add_rerate_parser(commands)
    _add_runtime_usage_parser(commands)
    report = commands.add_parser("report", help="write the monthly billing reports")
    report.add_argument("--month", help="YYYY-MM (default: this month, UTC)")
    report.add_argument("--tenant", help="only this tenant (default: every tenant)")
    report.add_argument("--format", choices=FORMATS, help="format to save (default: all)")
    report.add_argument(
        "--draft",
        action="store_true",
        help="do not issue the month (drafts are the default for one tenant or an open month)",
    )
    report.add_argument(
        "--out", default=str(reports.DEFAULT_OUT_DIR), help="folder for the saved reports"
    )
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "invoke" and not args.token and not (args.email and args.password):
        errors.print("invoke needs --token, or --email and --password.")
        return 2
    try:
        result: int = args.func(args)
        return result
    except (operations.OperatorError, TenantExistsError) as error:
        errors.print(f"[red]error:[/] {error}")
        return 1
    except argparse.ArgumentTypeError as error:
        errors.print(f"[red]error:[/] {error}")
        return 2
    except ClientError as error:
        details = error.response.get("Error", {})
        errors.print(
            f"[red]error:[/] {error.operation_name} failed: "
            f"{details.get('Code', 'unknown')}: {details.get('Message', '')}",
            markup=True,
            highlight=False,
        )
        return 1
    except PortInUseError as error:
        errors.print(f"[red]error:[/] {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
