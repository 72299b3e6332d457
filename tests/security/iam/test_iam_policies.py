"""IAM decisions for template.yaml's policies, from the simulator @cloud-copilot/iam-simulate.

moto ignores IAM policies, so the local stack cannot show that tenant-scoped credentials stop at
the tenant's own data. These tests evaluate the template's policies with an IAM policy
simulator instead: the TenantAccessRole's permissions and trust policy, and the functions' own
roles. Each matrix runs in one Node process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from .template_policies import (
    ACCOUNT_ID,
    REGION,
    SimulationRequest,
    TemplatePolicies,
    node_modules_ready,
    simulate,
)

pytestmark = pytest.mark.skipif(
    not node_modules_ready(),
    reason="node_modules is missing; `make test` installs it with `npm ci`",
)

ALLOWED = "Allowed"
DENIED = "Denied"

TENANT = "acme"
OTHER_TENANT = "globex"
# Shares TENANT's id as a string prefix, so a pattern without a trailing "/" would match it.
PREFIX_TWIN = "acme-corp"

TEMPLATE = TemplatePolicies()
TENANT_ROLE_ARN = TEMPLATE.arn("TenantAccessRole")
TENANT_PRINCIPAL = (
    f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{TEMPLATE.physical_name('TenantAccessRole')}/"
    "tenant-session"
)
BUCKET_ARN = TEMPLATE.arn("DocumentsBucket")
TENANT_TABLES = ["SessionsTable", "TotalsTable", "LedgerTable"]
# Billing tables: tenants read their own items and write none.
BILLING_TABLES = ["TotalsTable", "LedgerTable"]
LEDGER_INDEX_ARN = f"{TEMPLATE.arn('LedgerTable')}/index/by-event-time"

# Actions of the TenantAccessRole that the matrix below covers. A new action in the role's
# policy fails test_matrix_covers_every_tenant_action until rows for it are added.
DYNAMODB_ITEM_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
DYNAMODB_QUERY_ACTIONS = ["dynamodb:Query"]
MEMORY_EVENT_ACTIONS = [
    "bedrock-agentcore:CreateEvent",
    "bedrock-agentcore:GetEvent",
    "bedrock-agentcore:ListEvents",
]
MEMORY_RECORD_ACTIONS = ["bedrock-agentcore:RetrieveMemoryRecords"]
# AgentCore Memory actor id of the tenant role session's user: "<TenantId>:<UserId>".
OWN_ACTOR = f"{TENANT}:user-1"


@dataclass(frozen=True)
class Row:
    """One simulated request and the decision that the template's policies must give."""

    request: SimulationRequest
    expected: str

    @property
    def id(self) -> str:
        return self.request.id


def tenant_tags(tenant_id: str | None) -> dict[str, str | list[str]]:
    """Principal context of a TenantAccessRole session vended for `tenant_id` (None: no tags)."""
    context: dict[str, str | list[str]] = {"aws:PrincipalArn": TENANT_ROLE_ARN}
    if tenant_id is not None:
        context["aws:PrincipalTag/TenantId"] = tenant_id
        context["aws:PrincipalTag/Tier"] = "basic"
        context["aws:PrincipalTag/UserId"] = "user-1"
    return context


def tenant_row(
    case: str,
    action: str,
    resource: str,
    expected: str,
    tag: str | None = TENANT,
    **keys: str | list[str],
) -> Row:
    context = {**tenant_tags(tag), **{key.replace("__", ":"): value for key, value in keys.items()}}
    return Row(
        SimulationRequest(
            id=f"{action} {case} {resource.rsplit(':', 1)[-1]}",
            principal=TENANT_PRINCIPAL,
            action=action,
            resource=resource,
            identity_policies=TEMPLATE.role_policies("TenantAccessRole"),
            context=context,
        ),
        expected,
    )


def dynamodb_rows(action: str, resource: str) -> list[Row]:
    leading_keys = "dynamodb__LeadingKeys"
    cases: list[tuple[str, str, str | None, list[str]]] = [
        ("own tenant", ALLOWED, TENANT, [TENANT]),
        ("other tenant", DENIED, TENANT, [OTHER_TENANT]),
        ("own and other tenant", DENIED, TENANT, [TENANT, OTHER_TENANT]),
        ("prefix twin tenant", DENIED, TENANT, [PREFIX_TWIN]),
        ("no tenant tag", DENIED, None, [TENANT]),
    ]
    return [
        tenant_row(case, action, resource, expected, tag, **{leading_keys: keys})
        for case, expected, tag, keys in cases
    ]


def billing_write_rows() -> list[Row]:
    """Tenant writes to the ledger and totals: denied for every key and attribute."""
    rows: list[Row] = []
    cases: list[tuple[str, list[str], list[str]]] = [
        ("own spent total", [TENANT], ["pk", "sk", "cost_usd"]),
        ("own committed amount", [TENANT], ["pk", "sk", "committed_usd"]),
        ("own reservation", [TENANT], ["pk", "sk", "state", "amount_usd", "reserved_at"]),
        ("other tenant total", [OTHER_TENANT], ["pk", "sk", "committed_usd"]),
    ]
    for table_id in BILLING_TABLES:
        for action in ("dynamodb:PutItem", "dynamodb:UpdateItem"):
            for case, keys, attributes in cases:
                rows.append(
                    tenant_row(
                        case,
                        action,
                        TEMPLATE.arn(table_id),
                        DENIED,
                        dynamodb__LeadingKeys=keys,
                        dynamodb__Attributes=attributes,
                    )
                )
    return rows


def tenant_data_rows() -> list[Row]:
    rows: list[Row] = []
    for action in DYNAMODB_ITEM_ACTIONS + DYNAMODB_QUERY_ACTIONS:
        rows += dynamodb_rows(action, TEMPLATE.arn("SessionsTable"))
    for table_id in BILLING_TABLES:
        for action in ["dynamodb:GetItem", *DYNAMODB_QUERY_ACTIONS]:
            rows += dynamodb_rows(action, TEMPLATE.arn(table_id))
    rows += billing_write_rows()
    for action in DYNAMODB_QUERY_ACTIONS:
        rows += dynamodb_rows(action, LEDGER_INDEX_ARN)
    # The tenant registry contains every tenant's tier and status, so tenant credentials must
    # never reach it.
    for action in DYNAMODB_ITEM_ACTIONS + DYNAMODB_QUERY_ACTIONS:
        rows.append(
            tenant_row(
                "registry",
                action,
                TEMPLATE.arn("TenantsTable"),
                DENIED,
                dynamodb__LeadingKeys=[TENANT],
            )
        )

    get_object_cases = [
        ("own document", f"tenants/{TENANT}/documents/flu.md", ALLOWED, TENANT),
        ("own nested key", f"tenants/{TENANT}/documents/2024/flu.md", ALLOWED, TENANT),
        ("other tenant", f"tenants/{OTHER_TENANT}/documents/flu.md", DENIED, TENANT),
        ("prefix twin tenant", f"tenants/{PREFIX_TWIN}/documents/flu.md", DENIED, TENANT),
        ("dot segment", f"tenants/{TENANT}/../{OTHER_TENANT}/documents/flu.md", DENIED, TENANT),
        ("inner dot segment", f"tenants/{TENANT}/documents/../../{OTHER_TENANT}/x", DENIED, TENANT),
        ("prefix without slash", f"tenants/{TENANT}", DENIED, TENANT),
        ("outside tenants", "shared/flu.md", DENIED, TENANT),
        ("no tenant tag", f"tenants/{TENANT}/documents/flu.md", DENIED, None),
    ]
    for case, key, expected, tag in get_object_cases:
        rows.append(tenant_row(case, "s3:GetObject", f"{BUCKET_ARN}/{key}", expected, tag))

    list_cases: list[tuple[str, str | None, str, str | None]] = [
        ("own prefix", f"tenants/{TENANT}/", ALLOWED, TENANT),
        ("own documents prefix", f"tenants/{TENANT}/documents/", ALLOWED, TENANT),
        ("other tenant prefix", f"tenants/{OTHER_TENANT}/", DENIED, TENANT),
        ("prefix twin tenant", f"tenants/{PREFIX_TWIN}/", DENIED, TENANT),
        ("own id without slash", f"tenants/{TENANT}", DENIED, TENANT),
        ("all tenants", "tenants/", DENIED, TENANT),
        ("empty prefix", "", DENIED, TENANT),
        ("no prefix", None, DENIED, TENANT),
        ("no tenant tag", f"tenants/{TENANT}/", DENIED, None),
    ]
    for case, prefix, expected, tag in list_cases:
        keys = {} if prefix is None else {"s3__prefix": prefix}
        rows.append(tenant_row(case, "s3:ListBucket", BUCKET_ARN, expected, tag, **keys))
    rows += memory_rows()
    return rows


def granted_resources(action: str) -> list[str]:
    """Resources of the TenantAccessRole statements that allow `action`."""
    return [
        resource
        for policy in TEMPLATE.role_policies("TenantAccessRole")
        for statement in policy["policy"]["Statement"]
        if statement["Effect"] == "Allow" and action in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    ]


def memory_rows() -> list[Row]:
    """Rows for the AgentCore Memory actions, when the role's policy grants them."""
    rows: list[Row] = []
    actor_cases: list[tuple[str, str | None, str, str | None]] = [
        ("own actor", OWN_ACTOR, ALLOWED, TENANT),
        ("other tenant actor", f"{OTHER_TENANT}:user-1", DENIED, TENANT),
        ("same tenant other user", f"{TENANT}:user-2", DENIED, TENANT),
        ("prefix twin actor", f"{PREFIX_TWIN}:user-1", DENIED, TENANT),
        ("no actor id", None, DENIED, TENANT),
        ("no tenant tag", OWN_ACTOR, DENIED, None),
    ]
    for action in MEMORY_EVENT_ACTIONS:
        for resource in granted_resources(action):
            for case, actor, expected, tag in actor_cases:
                keys = {} if actor is None else {"bedrock-agentcore__actorId": actor}
                rows.append(tenant_row(case, action, resource, expected, tag, **keys))
    namespace_cases: list[tuple[str, str | None, str, str | None]] = [
        ("own namespace", f"/actor/{OWN_ACTOR}/", ALLOWED, TENANT),
        ("other tenant namespace", f"/actor/{OTHER_TENANT}:user-1/", DENIED, TENANT),
        ("same tenant other user", f"/actor/{TENANT}:user-2/", DENIED, TENANT),
        ("all actors", "/actor/", DENIED, TENANT),
        ("no namespace", None, DENIED, TENANT),
        ("no tenant tag", f"/actor/{OWN_ACTOR}/", DENIED, None),
    ]
    for action in MEMORY_RECORD_ACTIONS:
        for resource in granted_resources(action):
            for case, namespace, expected, tag in namespace_cases:
                keys = {} if namespace is None else {"bedrock-agentcore__namespace": namespace}
                rows.append(tenant_row(case, action, resource, expected, tag, **keys))
    return rows


# ----------------------------------------------------------------- trust policy


def function_principal(role_name: str, account: str = ACCOUNT_ID) -> tuple[str, str]:
    """Session ARN and role ARN of a Lambda function's execution role."""
    role_arn = f"arn:aws:iam::{account}:role/{role_name}"
    session_arn = f"arn:aws:sts::{account}:assumed-role/{role_name}/{role_name}-session"
    return session_arn, role_arn


def trust_row(
    case: str,
    action: str,
    expected: str,
    function_id: str = "InvokeFunction",
    role_name: str | None = None,
    account: str = ACCOUNT_ID,
    tags: tuple[str, ...] = ("TenantId", "Tier", "UserId"),
) -> Row:
    session_arn, role_arn = function_principal(
        role_name or TEMPLATE.function_role_name(function_id), account
    )
    values = {"TenantId": TENANT, "Tier": "basic", "UserId": "user-1"}
    context: dict[str, str | list[str]] = {"aws:PrincipalArn": role_arn}
    context |= {f"aws:RequestTag/{tag}": values[tag] for tag in tags}
    if tags:
        context["aws:TagKeys"] = list(tags)
    return Row(
        SimulationRequest(
            id=f"{action} {case}",
            principal=session_arn,
            action=action,
            resource=TENANT_ROLE_ARN,
            identity_policies=TEMPLATE.function_policies(function_id),
            context=context,
            resource_policy=TEMPLATE.trust_policy("TenantAccessRole"),
        ),
        expected,
    )


def trust_rows() -> list[Row]:
    rows: list[Row] = []
    for action in ("sts:AssumeRole", "sts:TagSession"):
        rows += [
            trust_row("invoke role with tags", action, ALLOWED),
            trust_row("document search role with tags", action, ALLOWED, "DocumentSearchFunction"),
            trust_row("no tags", action, DENIED, tags=()),
            trust_row("no TenantId tag", action, DENIED, tags=("Tier", "UserId")),
            trust_row("no Tier tag", action, DENIED, tags=("TenantId", "UserId")),
            trust_row("no UserId tag", action, DENIED, tags=("TenantId", "Tier")),
            trust_row(
                "role of another stack",
                action,
                DENIED,
                role_name="otherstack-InvokeFunctionRole-1A2B3C4D5E6F",
            ),
            trust_row(
                "role in another account",
                action,
                DENIED,
                account="210987654321",
            ),
            # Inside the stack's name prefix, but its own policy does not grant the action.
            trust_row("aggregator role", action, DENIED, "AggregatorFunction"),
            trust_row("web search role", action, DENIED, "WebSearchFunction"),
        ]
    return rows


# --------------------------------------------------------------- function roles


def function_row(
    function_id: str,
    case: str,
    action: str,
    resource: str,
    expected: str,
    context: dict[str, str | list[str]] | None = None,
) -> Row:
    session_arn, role_arn = function_principal(TEMPLATE.function_role_name(function_id))
    return Row(
        SimulationRequest(
            id=f"{function_id} {action} {case}",
            principal=session_arn,
            action=action,
            resource=resource,
            identity_policies=TEMPLATE.function_policies(function_id),
            context={"aws:PrincipalArn": role_arn, **(context or {})},
        ),
        expected,
    )


def granted_rows(function_id: str) -> list[Row]:
    """One allowed row per action and concrete resource that the function's policy grants."""
    rows = []
    for policy in TEMPLATE.function_policies(function_id):
        for statement in policy["policy"]["Statement"]:
            actions = _as_list(statement["Action"])
            context = granted_context(statement)
            for resource in _as_list(statement["Resource"]):
                if "*" in resource:
                    continue
                rows += [
                    function_row(
                        function_id, f"granted {resource}", action, resource, ALLOWED, context
                    )
                    for action in actions
                ]
    return rows


def granted_context(statement: dict[str, Any]) -> dict[str, str | list[str]] | None:
    """Request context that meets a statement's `ForAllValues:StringEquals` condition, if any."""
    equals = statement.get("Condition", {}).get("ForAllValues:StringEquals", {})
    return {key: _as_list(value) for key, value in equals.items()} or None


# Functions whose own role reads tenant tables across tenants by design, with those tables.
# Every other function reaches tenant data only through TenantAccessRole credentials.
PLATFORM_READERS = {
    # Writes every tenant's monthly billing report.
    "MonthlyReportFunction": {"TotalsTable"},
    # GET /admin/tenants/{tenantId}/usage, for platform admins only.
    "AdminUsageFunction": {"TotalsTable"},
    # Reads the issued months and every tenant's month total for budget alerts.
    "AggregatorFunction": {"TotalsTable"},
    # Queries a hard-capped tenant's reservations to expire stale ones.
    "InvokeFunction": {"TotalsTable"},
    # Reads the owner of each runtime session whose usage log records it bills.
    "RuntimeUsageFunction": {"SessionsTable"},
}


def function_rows() -> list[Row]:
    rows: list[Row] = []
    own_key = {"dynamodb:LeadingKeys": [TENANT]}
    for function_id in TEMPLATE.function_ids():
        rows += granted_rows(function_id)
        for table_id in TENANT_TABLES:
            if table_id in PLATFORM_READERS.get(function_id, set()):
                continue
            for action in ("dynamodb:GetItem", "dynamodb:Query"):
                rows.append(
                    function_row(
                        function_id,
                        f"reads {table_id}",
                        action,
                        TEMPLATE.arn(table_id),
                        DENIED,
                        own_key,
                    )
                )
        rows.append(
            function_row(
                function_id,
                "reads a document",
                "s3:GetObject",
                f"{BUCKET_ARN}/tenants/{TENANT}/documents/flu.md",
                DENIED,
            )
        )
        rows.append(
            function_row(
                function_id,
                "lists documents",
                "s3:ListBucket",
                BUCKET_ARN,
                DENIED,
                {"s3:prefix": f"tenants/{TENANT}/"},
            )
        )
    # The report function may mark months issued, but never write a tenant's totals.
    rows.append(
        function_row(
            "MonthlyReportFunction",
            "writes a tenant total",
            "dynamodb:PutItem",
            TEMPLATE.arn("TotalsTable"),
            DENIED,
            own_key,
        )
    )
    rows += reservation_rows()
    # It may set the issued mark on a tier shard's month total, and nothing else there.
    tier_shard = {"dynamodb:LeadingKeys": ["tier#basic#3"]}
    mark = {"dynamodb:Attributes": ["pk", "sk", "issued_at"]}
    for case, context, expected in [
        ("marks a tier total issued", {**tier_shard, **mark}, ALLOWED),
        ("adds to a tier total", {**tier_shard, "dynamodb:Attributes": ["cost_usd"]}, DENIED),
        ("marks a tenant total", {**own_key, **mark}, DENIED),
    ]:
        rows.append(
            function_row(
                "MonthlyReportFunction",
                case,
                "dynamodb:UpdateItem",
                TEMPLATE.arn("TotalsTable"),
                expected,
                context,
            )
        )
    rows += web_search_rows()
    # The invoke function writes sessions only through tenant-scoped credentials.
    rows.append(
        function_row(
            "InvokeFunction",
            "writes a session",
            "dynamodb:PutItem",
            TEMPLATE.arn("SessionsTable"),
            DENIED,
            own_key,
        )
    )
    return rows


# The AWS managed web search tool. AWS owns it, so its ARN names the account `aws`.
WEB_SEARCH_TOOL_ARN = f"arn:aws:bedrock-agentcore:{REGION}:aws:tool/web-search.v1"


def web_search_rows() -> list[Row]:
    """Return rows that allow InvokeWebSearch only to the web search role on the managed tool."""
    action = "bedrock-agentcore:InvokeWebSearch"
    return [
        function_row("WebSearchFunction", "managed tool", action, WEB_SEARCH_TOOL_ARN, ALLOWED),
        function_row(
            "WebSearchFunction",
            "tool in another region",
            action,
            WEB_SEARCH_TOOL_ARN.replace(REGION, "eu-west-1"),
            DENIED,
        ),
        function_row("DocumentSearchFunction", "managed tool", action, WEB_SEARCH_TOOL_ARN, DENIED),
        function_row("InvokeFunction", "managed tool", action, WEB_SEARCH_TOOL_ARN, DENIED),
    ]


# Attributes of the hard-cap reservation calls in agentpool.budget.
RESERVE_MONTH = ["pk", "sk", "committed_usd", "reserved_usd"]
RESERVE_ITEM = ["pk", "sk", "state", "month", "amount_usd", "reserved_at"]
SETTLE_MONTH = ["pk", "sk", "committed_usd", "reserved_usd", "held_usd"]
SETTLE_ITEM = ["pk", "sk", "state", "held_usd", "held_at", "pending_usd"]


def reservation_rows() -> list[Row]:
    """The invoke role's reservation writes: reservation attributes of tenant items only."""
    totals = TEMPLATE.arn("TotalsTable")
    cases: list[tuple[str, str, list[str], list[str], str]] = [
        ("reserves", "dynamodb:UpdateItem", [TENANT], RESERVE_MONTH, ALLOWED),
        ("puts a reservation", "dynamodb:PutItem", [TENANT], RESERVE_ITEM, ALLOWED),
        ("settles", "dynamodb:UpdateItem", [TENANT], SETTLE_MONTH, ALLOWED),
        ("holds", "dynamodb:UpdateItem", [TENANT], SETTLE_ITEM, ALLOWED),
        ("sets spent", "dynamodb:UpdateItem", [TENANT], ["pk", "sk", "cost_usd"], DENIED),
        ("sets counters", "dynamodb:UpdateItem", [TENANT], ["pk", "sk", "events"], DENIED),
        ("puts a totals item", "dynamodb:PutItem", [TENANT], ["pk", "sk", "cost_usd"], DENIED),
        ("writes tier totals", "dynamodb:UpdateItem", ["tier#basic#0"], RESERVE_MONTH, DENIED),
        ("marks a month issued", "dynamodb:PutItem", ["billing#issued"], ["pk", "sk"], DENIED),
    ]
    rows = [
        function_row(
            "InvokeFunction",
            case,
            action,
            totals,
            expected,
            {"dynamodb:LeadingKeys": keys, "dynamodb:Attributes": attributes},
        )
        for case, action, keys, attributes, expected in cases
    ]
    rows.append(
        function_row(
            "InvokeFunction",
            "writes a ledger entry",
            "dynamodb:PutItem",
            TEMPLATE.arn("LedgerTable"),
            DENIED,
            {"dynamodb:LeadingKeys": [TENANT]},
        )
    )
    return rows


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _decision(raw: str) -> str:
    return ALLOWED if raw == ALLOWED else DENIED


TENANT_DATA_ROWS = tenant_data_rows()
TRUST_ROWS = trust_rows()
FUNCTION_ROWS = function_rows()


@pytest.fixture(scope="module")
def tenant_data_decisions() -> dict[str, str]:
    return simulate([row.request for row in TENANT_DATA_ROWS])


@pytest.fixture(scope="module")
def trust_decisions() -> dict[str, str]:
    return simulate([row.request for row in TRUST_ROWS])


@pytest.fixture(scope="module")
def function_decisions() -> dict[str, str]:
    return simulate([row.request for row in FUNCTION_ROWS])


def test_row_ids_unique() -> None:
    ids = [row.id for row in TENANT_DATA_ROWS + TRUST_ROWS + FUNCTION_ROWS]
    assert len(ids) == len(set(ids))


def test_matrix_covers_every_tenant_action() -> None:
    policy_actions = {
        action
        for policy in TEMPLATE.role_policies("TenantAccessRole")
        for statement in policy["policy"]["Statement"]
        for action in _as_list(statement["Action"])
    }
    allowed_rows = {row.request.action for row in TENANT_DATA_ROWS if row.expected == ALLOWED}
    denied_rows = {row.request.action for row in TENANT_DATA_ROWS if row.expected == DENIED}
    assert policy_actions - allowed_rows == set()
    assert policy_actions - denied_rows == set()


@pytest.mark.parametrize("row", TENANT_DATA_ROWS, ids=lambda row: row.id)
def test_tenant_role_decision(row: Row, tenant_data_decisions: dict[str, str]) -> None:
    assert _decision(tenant_data_decisions[row.id]) == row.expected


@pytest.mark.parametrize("row", TRUST_ROWS, ids=lambda row: row.id)
def test_tenant_role_trust_decision(row: Row, trust_decisions: dict[str, str]) -> None:
    assert _decision(trust_decisions[row.id]) == row.expected


@pytest.mark.parametrize("row", FUNCTION_ROWS, ids=lambda row: row.id)
def test_function_role_decision(row: Row, function_decisions: dict[str, str]) -> None:
    assert _decision(function_decisions[row.id]) == row.expected
