"""Assertions on template.yaml after the SAM transform, for the settings that tenant isolation,
billing and authentication rely on.

The transform runs offline in aws-sam-translator, the library behind CloudFormation's
AWS::Serverless-2016-10-31 transform, so these tests check the resources that would be
deployed, including the roles, event source mappings and API definition that SAM generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load
from samtranslator.translator.transform import transform

from agentpool.events import DETAIL_TYPES
from agentpool.memory import actor_id, namespace

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
TENANT_TAG = "${aws:PrincipalTag/TenantId}"


class _NoManagedPolicies:
    """ManagedPolicyLoader stand-in. The real loader lists policies through IAM, which SAM only
    needs when a template names a managed policy instead of giving its ARN."""

    def load(self) -> dict[str, str]:
        raise AssertionError("template.yaml names a managed policy. Give its ARN instead.")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    # cfn-lint returns its own node classes, so a JSON round trip makes them plain dicts and strs.
    template: dict[str, Any] = json.loads(json.dumps(load(str(TEMPLATE_PATH))))
    # `sam package` replaces local code folders with S3 URIs before the transform runs.
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = f"s3://artifacts/{logical_id}.zip"
    # The translator reads the region from a boto3 session, which makes no AWS call.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        transformed = transform(template, {}, _NoManagedPolicies())
    transformed_resources: dict[str, Any] = transformed["Resources"]
    return transformed_resources


def _of_type(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: res for name, res in resources.items() if res["Type"] == resource_type}


def _statement(policy_document: dict[str, Any], sid: str) -> dict[str, Any]:
    matches = [s for s in policy_document["Statement"] if s.get("Sid") == sid]
    assert len(matches) == 1, f"expected one statement with Sid {sid}, found {len(matches)}"
    return matches[0]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _tenant_policy(resources: dict[str, Any]) -> dict[str, Any]:
    policies = resources["TenantAccessRole"]["Properties"]["Policies"]
    return next(p["PolicyDocument"] for p in policies if p["PolicyName"] == "tenant-data")


def _function_roles(resources: dict[str, Any]) -> dict[str, Any]:
    role_ids = [
        function["Properties"]["Role"]["Fn::GetAtt"][0]
        for function in _of_type(resources, "AWS::Lambda::Function").values()
    ]
    return {role_id: resources[role_id] for role_id in role_ids}


# ------------------------------------------------------------------ tenant access role


def test_tenant_role_trust_requires_tag_session(resources: dict[str, Any]) -> None:
    trust = resources["TenantAccessRole"]["Properties"]["AssumeRolePolicyDocument"]
    statement = _statement(trust, "FunctionRolesWithTenantTags")
    assert "sts:TagSession" in _as_list(statement["Action"])


@pytest.mark.parametrize("tag", ["TenantId", "Tier", "UserId"])
def test_tenant_role_trust_requires_request_tag(resources: dict[str, Any], tag: str) -> None:
    trust = resources["TenantAccessRole"]["Properties"]["AssumeRolePolicyDocument"]
    statement = _statement(trust, "FunctionRolesWithTenantTags")
    assert statement["Condition"]["Null"][f"aws:RequestTag/{tag}"] == "false"


def test_tenant_role_trust_limits_principals_to_stack(resources: dict[str, Any]) -> None:
    trust = resources["TenantAccessRole"]["Properties"]["AssumeRolePolicyDocument"]
    statement = _statement(trust, "FunctionRolesWithTenantTags")
    principal_arn = statement["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"]
    assert principal_arn.endswith(":role/${AWS::StackName}-*")


def test_tenant_role_dynamodb_leading_keys(resources: dict[str, Any]) -> None:
    for sid in ("OwnTenantSessions", "ReadOwnTenantBilling"):
        statement = _statement(_tenant_policy(resources), sid)
        condition = statement["Condition"]["ForAllValues:StringEquals"]
        assert condition["dynamodb:LeadingKeys"] == [TENANT_TAG]


def test_tenant_role_billing_read_only(resources: dict[str, Any]) -> None:
    statement = _statement(_tenant_policy(resources), "ReadOwnTenantBilling")
    assert statement["Action"] == ["dynamodb:GetItem", "dynamodb:Query"]


def test_tenant_role_s3_objects_scoped_to_tenant(resources: dict[str, Any]) -> None:
    statement = _statement(_tenant_policy(resources), "OwnTenantDocuments")
    # In Fn::Sub, `${!name}` renders as the literal `${name}` that IAM resolves.
    assert statement["Resource"] == {
        "Fn::Sub": "${DocumentsBucket.Arn}/tenants/${!aws:PrincipalTag/TenantId}/*"
    }


def test_tenant_role_s3_list_scoped_to_tenant(resources: dict[str, Any]) -> None:
    statement = _statement(_tenant_policy(resources), "ListOwnTenantDocuments")
    assert statement["Condition"]["StringLike"]["s3:prefix"] == [f"tenants/{TENANT_TAG}/*"]


def test_tenant_role_statements_all_tenant_scoped(resources: dict[str, Any]) -> None:
    # A statement added without the TenantId tag in its resource or condition would reach
    # every tenant's data.
    unscoped = [
        statement["Sid"]
        for statement in _tenant_policy(resources)["Statement"]
        if "PrincipalTag/TenantId" not in json.dumps(statement)
    ]
    assert unscoped == []


# -------------------------------------------------------------------- function roles


def test_function_roles_found(resources: dict[str, Any]) -> None:
    # SAM gives each function without its own Role a role named after it.
    functions = _of_type(resources, "AWS::Lambda::Function")
    assert sorted(_function_roles(resources)) == sorted(f"{name}Role" for name in functions)
    assert {"GatewayInterceptorFunction", "RuntimeUsageFunction"} <= set(functions)


def test_function_roles_no_wildcard_actions(resources: dict[str, Any]) -> None:
    wildcards = [
        (role_id, action)
        for role_id, role in _function_roles(resources).items()
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        for action in _as_list(statement["Action"])
        if "*" in action
    ]
    assert wildcards == []


def test_function_roles_no_full_access_policies(resources: dict[str, Any]) -> None:
    full_access = [
        (role_id, arn)
        for role_id, role in _function_roles(resources).items()
        for arn in role["Properties"].get("ManagedPolicyArns", [])
        if "FullAccess" in json.dumps(arn)
    ]
    assert full_access == []


# ------------------------------------------------------------------- runtime usage


def test_usage_logs_delivered_from_runtime(resources: dict[str, Any]) -> None:
    source = resources["RuntimeUsageDeliverySource"]["Properties"]
    assert source["LogType"] == "USAGE_LOGS"
    assert source["ResourceArn"] == {"Fn::GetAtt": ["AgentRuntime", "AgentRuntimeArn"]}


def test_usage_logs_delivered_to_log_group(resources: dict[str, Any]) -> None:
    delivery = resources["RuntimeUsageDelivery"]["Properties"]
    destination = resources["RuntimeUsageDeliveryDestination"]["Properties"]
    assert delivery["DeliverySourceName"] == {"Ref": "RuntimeUsageDeliverySource"}
    assert delivery["DeliveryDestinationArn"] == {
        "Fn::GetAtt": ["RuntimeUsageDeliveryDestination", "Arn"]
    }
    assert "${RuntimeUsageLogGroup}" in destination["DestinationResourceArn"]["Fn::Sub"]


def test_usage_log_group_subscribed_by_function(resources: dict[str, Any]) -> None:
    subscription = resources["RuntimeUsageSubscription"]["Properties"]
    assert subscription["LogGroupName"] == {"Ref": "RuntimeUsageLogGroup"}
    assert subscription["DestinationArn"] == {"Fn::GetAtt": ["RuntimeUsageFunction", "Arn"]}
    assert subscription["FilterPattern"] == ""


def test_usage_log_group_may_invoke_function(resources: dict[str, Any]) -> None:
    permission = resources["RuntimeUsageInvokePermission"]["Properties"]
    assert permission["Principal"] == "logs.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["RuntimeUsageLogGroup", "Arn"]}
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_runtime_usage_role_actions_exact(resources: dict[str, Any]) -> None:
    role = resources["RuntimeUsageFunctionRole"]["Properties"]
    actions = sorted(
        (action, json.dumps(statement["Resource"], sort_keys=True))
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in _as_list(statement["Action"])
    )
    queue = json.dumps({"Fn::GetAtt": ["RuntimeUsageDeadLetterQueue", "Arn"]})
    assert actions == [
        ("dynamodb:GetItem", json.dumps({"Fn::GetAtt": ["SessionsTable", "Arn"]})),
        ("dynamodb:GetItem", json.dumps({"Fn::GetAtt": ["TenantsTable", "Arn"]})),
        ("events:PutEvents", json.dumps({"Fn::GetAtt": ["MeteringBus", "Arn"]})),
        ("sqs:SendMessage", queue),
        ("sqs:SendMessage", queue),
    ]


def test_runtime_usage_failures_dead_lettered(resources: dict[str, Any]) -> None:
    function = resources["RuntimeUsageFunction"]["Properties"]
    invoke_config = resources["RuntimeUsageFunctionEventInvokeConfig"]["Properties"]
    assert function["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": ["RuntimeUsageDeadLetterQueue", "Arn"]}
    }
    assert invoke_config["MaximumRetryAttempts"] == 2


def test_runtime_usage_dead_letters_alarmed(resources: dict[str, Any]) -> None:
    alarm = resources["RuntimeUsageDeadLetterQueueAlarm"]["Properties"]
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["RuntimeUsageDeadLetterQueue", "QueueName"]}}
    ]
    assert alarm["Threshold"] == 0


# ------------------------------------------------------------------------ metering


def test_aggregator_reports_batch_item_failures(resources: dict[str, Any]) -> None:
    mapping = resources["AggregatorFunctionMetering"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_aggregator_reads_metering_queue(resources: dict[str, Any]) -> None:
    mapping = resources["AggregatorFunctionMetering"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["MeteringQueue", "Arn"]}


def test_queue_redrives_to_dead_letter_queue(resources: dict[str, Any]) -> None:
    redrive = resources["MeteringQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["MeteringDeadLetterQueue", "Arn"]}


def test_queue_redrive_retries_before_dead_letter(resources: dict[str, Any]) -> None:
    redrive = resources["MeteringQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] > 1


def test_queue_visibility_covers_aggregator_timeout(resources: dict[str, Any]) -> None:
    # Lambda recommends a visibility timeout of at least six times the function timeout.
    timeout = resources["AggregatorFunction"]["Properties"]["Timeout"]
    assert resources["MeteringQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout


def test_metering_rule_targets_queue(resources: dict[str, Any]) -> None:
    targets = resources["MeteringRule"]["Properties"]["Targets"]
    assert [t["Arn"] for t in targets] == [{"Fn::GetAtt": ["MeteringQueue", "Arn"]}]


def test_metering_rule_matches_agentpool_source(resources: dict[str, Any]) -> None:
    pattern = resources["MeteringRule"]["Properties"]["EventPattern"]
    assert pattern["source"] == ["agentpool"]


def test_metering_rule_matches_every_detail_type(resources: dict[str, Any]) -> None:
    pattern = resources["MeteringRule"]["Properties"]["EventPattern"]
    assert sorted(pattern["detail-type"]) == sorted(DETAIL_TYPES)


def test_metering_rule_on_metering_bus(resources: dict[str, Any]) -> None:
    assert resources["MeteringRule"]["Properties"]["EventBusName"] == {"Ref": "MeteringBus"}


@pytest.mark.parametrize(
    ("policy_id", "queue_id"),
    [
        ("MeteringQueuePolicy", "MeteringQueue"),
        ("MeteringDeadLetterQueuePolicy", "MeteringDeadLetterQueue"),
    ],
)
def test_queue_policy_admits_only_metering_rule(
    resources: dict[str, Any], policy_id: str, queue_id: str
) -> None:
    properties = resources[policy_id]["Properties"]
    assert properties["Queues"] == [{"Ref": queue_id}]
    statement = properties["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["MeteringRule", "Arn"]
    }


# ---------------------------------------------------------------------------- data


def test_ledger_point_in_time_recovery(resources: dict[str, Any]) -> None:
    recovery = resources["LedgerTable"]["Properties"]["PointInTimeRecoverySpecification"]
    assert recovery["PointInTimeRecoveryEnabled"] is True


@pytest.mark.parametrize(
    "table_id", ["TenantsTable", "SessionsTable", "LedgerTable", "TotalsTable", "LimitsTable"]
)
def test_table_encrypted(resources: dict[str, Any], table_id: str) -> None:
    assert resources[table_id]["Properties"]["SSESpecification"]["SSEEnabled"] is True


def test_every_table_listed_for_encryption(resources: dict[str, Any]) -> None:
    # Keeps test_table_encrypted's list complete when a table is added.
    tables = set(_of_type(resources, "AWS::DynamoDB::Table"))
    assert tables == {"TenantsTable", "SessionsTable", "LedgerTable", "TotalsTable", "LimitsTable"}


@pytest.mark.parametrize("resource_id", ["UserPool", "TenantsTable", "LedgerTable", "TotalsTable"])
def test_records_survive_stack_deletion(resources: dict[str, Any], resource_id: str) -> None:
    assert resources[resource_id]["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize(
    "setting", ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"]
)
def test_bucket_blocks_public_access(resources: dict[str, Any], setting: str) -> None:
    block = resources["DocumentsBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert block[setting] is True


def test_bucket_denies_insecure_transport(resources: dict[str, Any]) -> None:
    document = resources["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]
    statement = _statement(document, "DenyInsecureTransport")
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert statement["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_bucket_tls_rule_covers_objects(resources: dict[str, Any]) -> None:
    document = resources["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]
    statement = _statement(document, "DenyInsecureTransport")
    assert {"Fn::Sub": "${DocumentsBucket.Arn}/*"} in statement["Resource"]


def test_bucket_tls_rule_covers_bucket(resources: dict[str, Any]) -> None:
    document = resources["DocumentsBucketPolicy"]["Properties"]["PolicyDocument"]
    statement = _statement(document, "DenyInsecureTransport")
    assert {"Fn::GetAtt": ["DocumentsBucket", "Arn"]} in statement["Resource"]


# ------------------------------------------------------------------------------ logs


def test_functions_log_to_expiring_groups(resources: dict[str, Any]) -> None:
    without_retention = [
        name
        for name, function in _of_type(resources, "AWS::Lambda::Function").items()
        if "RetentionInDays"
        not in resources[function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]
    ]
    assert without_retention == []


# ----------------------------------------------------------------- API and identity


def _api_operations(resources: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    paths = resources["Api"]["Properties"]["Body"]["paths"]
    return [
        (path, method, operation)
        for path, methods in paths.items()
        for method, operation in methods.items()
    ]


def test_api_has_operations(resources: dict[str, Any]) -> None:
    assert _api_operations(resources) != []


def test_api_operations_use_cognito(resources: dict[str, Any]) -> None:
    unauthenticated = [
        f"{method.upper()} {path}"
        for path, method, operation in _api_operations(resources)
        if operation.get("security") != [{"CognitoAuthorizer": []}]
    ]
    assert unauthenticated == []


def test_api_authorizer_is_user_pool(resources: dict[str, Any]) -> None:
    definitions = resources["Api"]["Properties"]["Body"]["securityDefinitions"]
    authorizer = definitions["CognitoAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "cognito_user_pools"
    assert authorizer["providerARNs"] == [{"Fn::GetAtt": ["UserPool", "Arn"]}]


@pytest.mark.parametrize("attribute", ["tenant_id", "tier"])
def test_user_pool_attribute_immutable(resources: dict[str, Any], attribute: str) -> None:
    schema = resources["UserPool"]["Properties"]["Schema"]
    (entry,) = [a for a in schema if a["Name"] == attribute]
    assert entry["Mutable"] is False


@pytest.mark.parametrize("attribute", ["custom:tenant_id", "custom:tier"])
def test_client_cannot_write_attribute(resources: dict[str, Any], attribute: str) -> None:
    write_attributes = resources["UserPoolClient"]["Properties"]["WriteAttributes"]
    assert attribute not in write_attributes


def test_tenant_role_memory_events_scoped_to_actor(resources: dict[str, Any]) -> None:
    statement = _statement(_tenant_policy(resources), "OwnUserMemoryEvents")
    tags = {"TenantId": "abc-de", "UserId": "f"}
    condition = statement["Condition"]["StringEquals"]["bedrock-agentcore:actorId"]
    for key, value in tags.items():
        condition = condition.replace(f"${{aws:PrincipalTag/{key}}}", value)
    assert condition == actor_id("abc-de", "f")


def test_tenant_role_memory_records_scoped_to_namespace(resources: dict[str, Any]) -> None:
    statement = _statement(_tenant_policy(resources), "OwnUserMemoryRecords")
    tags = {"TenantId": "abc-de", "UserId": "f"}
    condition = statement["Condition"]["StringEquals"]["bedrock-agentcore:namespace"]
    for key, value in tags.items():
        condition = condition.replace(f"${{aws:PrincipalTag/{key}}}", value)
    assert condition == namespace("abc-de", "f")
