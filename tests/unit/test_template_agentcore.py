"""Assertions on the AgentCore resources of template.yaml after the SAM transform.

They cover what tenant isolation and billing rely on. Only the invoke function may call the
runtime. The Gateway accepts only this user pool's tokens for the app client. The policy engine
enforces agentpool/tools.cedar, and each tool target calls its own function.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load
from samtranslator.translator.transform import transform

from agentpool.tiers import TIERS
from agentpool.tools import GATEWAY_TOOLS

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
POLICY_PATH = REPO_ROOT / "layers" / "shared" / "agentpool" / "tools.cedar"
PARAMETERS = {
    "AgentArtifactBucket": "agentpool-artifacts-123456789012-us-east-1",
    "AgentArtifactKey": f"agent/{'0' * 64}.zip",
}
INVOKE_ACTIONS = {
    "bedrock-agentcore:InvokeAgentRuntime",
    "bedrock-agentcore:InvokeAgentRuntimeForUser",
}


class _NoManagedPolicies:
    def load(self) -> dict[str, str]:
        raise AssertionError("template.yaml names a managed policy. Give its ARN instead.")


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(json.dumps(load(str(TEMPLATE_PATH))))
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://artifacts/{logical_id}.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = f"s3://artifacts/{logical_id}.zip"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        transformed = transform(template, PARAMETERS, _NoManagedPolicies())
    transformed_resources: dict[str, Any] = transformed["Resources"]
    return transformed_resources


def _of_type(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: res for name, res in resources.items() if res["Type"] == resource_type}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in _as_list(policy["PolicyDocument"]["Statement"])
    ]


def _statement(role: dict[str, Any], sid: str) -> dict[str, Any]:
    matches = [s for s in _role_statements(role) if s.get("Sid") == sid]
    assert len(matches) == 1, f"expected one statement with Sid {sid}, found {len(matches)}"
    return matches[0]


def _function_role_id(resources: dict[str, Any], function_id: str) -> str:
    role_id: str = resources[function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return role_id


def _cedar_statements(text: str) -> list[str]:
    """Split Cedar text into statements, each from `permit`/`forbid` to its closing `;`."""
    return re.findall(r"^(?:permit|forbid) \(.*?;$", text, flags=re.DOTALL | re.MULTILINE)


def _cloudformation_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema in the shape of a GatewayTarget's SchemaDefinition.

    SchemaDefinition has Type, Description, Properties, Required and Items only, so
    keywords such as minimum and maximum are dropped.
    """
    converted: dict[str, Any] = {"Type": schema["type"]}
    if "description" in schema:
        converted["Description"] = schema["description"]
    if "properties" in schema:
        converted["Properties"] = {
            name: _cloudformation_schema(value) for name, value in schema["properties"].items()
        }
    if "required" in schema:
        converted["Required"] = schema["required"]
    if "items" in schema:
        converted["Items"] = _cloudformation_schema(schema["items"])
    return converted


# ------------------------------------------------------------------------------- runtime


def test_runtime_runs_code_zip_from_parameters(resources: dict[str, Any]) -> None:
    code = resources["AgentRuntime"]["Properties"]["AgentRuntimeArtifact"]["CodeConfiguration"]
    assert code["Code"]["S3"] == {
        "Bucket": {"Ref": "AgentArtifactBucket"},
        "Prefix": {"Ref": "AgentArtifactKey"},
    }
    assert code["Runtime"] == "PYTHON_3_11"
    assert code["EntryPoint"] == ["main.py"]


def test_runtime_uses_iam_inbound_auth(resources: dict[str, Any]) -> None:
    assert "AuthorizerConfiguration" not in resources["AgentRuntime"]["Properties"]


def test_runtime_gets_gateway_url(resources: dict[str, Any]) -> None:
    variables = resources["AgentRuntime"]["Properties"]["EnvironmentVariables"]
    assert variables["GATEWAY_URL"] == {"Fn::GetAtt": ["Gateway", "GatewayUrl"]}


def test_runtime_endpoint_follows_runtime_version(resources: dict[str, Any]) -> None:
    endpoint = resources["AgentRuntimeEndpoint"]["Properties"]
    assert endpoint["AgentRuntimeId"] == {"Fn::GetAtt": ["AgentRuntime", "AgentRuntimeId"]}
    assert endpoint["AgentRuntimeVersion"] == {
        "Fn::GetAtt": ["AgentRuntime", "AgentRuntimeVersion"]
    }


def test_invoke_function_calls_through_endpoint(resources: dict[str, Any]) -> None:
    variables = resources["InvokeFunction"]["Properties"]["Environment"]["Variables"]
    assert (
        variables["AGENT_RUNTIME_QUALIFIER"]
        == (resources["AgentRuntimeEndpoint"]["Properties"]["Name"])
    )
    assert variables["AGENT_RUNTIME_ARN"] == {"Fn::GetAtt": ["AgentRuntime", "AgentRuntimeArn"]}


def test_invoke_role_scoped_to_runtime_and_endpoint(resources: dict[str, Any]) -> None:
    role = resources[_function_role_id(resources, "InvokeFunction")]
    statement = _statement(role, "InvokeAgent")
    assert set(_as_list(statement["Action"])) == INVOKE_ACTIONS
    assert _as_list(statement["Resource"]) == [
        {"Fn::GetAtt": ["AgentRuntime", "AgentRuntimeArn"]},
        {"Fn::GetAtt": ["AgentRuntimeEndpoint", "AgentRuntimeEndpointArn"]},
    ]


def test_only_invoke_role_may_invoke_runtime(resources: dict[str, Any]) -> None:
    invoke_role = _function_role_id(resources, "InvokeFunction")
    granted = {
        role_id
        for role_id, role in _of_type(resources, "AWS::IAM::Role").items()
        for statement in _role_statements(role)
        if statement["Effect"] == "Allow" and INVOKE_ACTIONS & set(_as_list(statement["Action"]))
    }
    assert granted == {invoke_role}


def test_runtime_resource_policy_denies_other_principals(resources: dict[str, Any]) -> None:
    properties = resources["AgentRuntimeResourcePolicy"]["Properties"]
    assert properties["ResourceArn"] == {"Fn::GetAtt": ["AgentRuntime", "AgentRuntimeArn"]}
    text, variables = properties["Policy"]["Fn::Sub"]
    statement = json.loads(text)["Statement"][0]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert set(statement["Action"]) == INVOKE_ACTIONS
    assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": "${InvokeRoleArn}"}}
    invoke_role = _function_role_id(resources, "InvokeFunction")
    assert variables["InvokeRoleArn"] == {"Fn::GetAtt": [invoke_role, "Arn"]}


def test_runtime_role_models_match_tiers(resources: dict[str, Any]) -> None:
    statement = _statement(resources["AgentRuntimeRole"], "InvokeTierModels")
    assert statement["Action"] == "bedrock:InvokeModel"
    model_ids = {
        resource["Fn::Sub"].rsplit("foundation-model/", 1)[1]
        for resource in _as_list(statement["Resource"])
    }
    assert model_ids == {tier.model_id for tier in TIERS.values()}


def test_runtime_trusts_only_agentcore_of_account(resources: dict[str, Any]) -> None:
    trust = resources["AgentRuntimeRole"]["Properties"]["AssumeRolePolicyDocument"]
    statement = trust["Statement"][0]
    assert statement["Principal"] == {"Service": "bedrock-agentcore.amazonaws.com"}
    assert statement["Condition"]["StringEquals"] == {
        "aws:SourceAccount": {"Ref": "AWS::AccountId"}
    }


@pytest.mark.parametrize(
    ("log_group_id", "endpoint"),
    [("AgentRuntimeDefaultLogGroup", "DEFAULT"), ("AgentRuntimeLiveLogGroup", "live")],
)
def test_runtime_log_group_per_endpoint(
    resources: dict[str, Any], log_group_id: str, endpoint: str
) -> None:
    properties = resources[log_group_id]["Properties"]
    assert properties["LogGroupName"] == {
        "Fn::Sub": f"/aws/bedrock-agentcore/runtimes/${{AgentRuntime.AgentRuntimeId}}-{endpoint}"
    }
    assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_runtime_live_log_group_matches_endpoint(resources: dict[str, Any]) -> None:
    name = resources["AgentRuntimeLiveLogGroup"]["Properties"]["LogGroupName"]["Fn::Sub"]
    assert name.endswith("-" + resources["AgentRuntimeEndpoint"]["Properties"]["Name"])


# ------------------------------------------------------------------------------- gateway


def test_gateway_uses_custom_jwt(resources: dict[str, Any]) -> None:
    assert resources["Gateway"]["Properties"]["AuthorizerType"] == "CUSTOM_JWT"


def test_gateway_jwt_bound_to_user_pool(resources: dict[str, Any]) -> None:
    authorizer = resources["Gateway"]["Properties"]["AuthorizerConfiguration"]
    discovery_url = authorizer["CustomJWTAuthorizer"]["DiscoveryUrl"]["Fn::Sub"]
    assert discovery_url == (
        "https://cognito-idp.${AWS::Region}.${AWS::URLSuffix}/${UserPool}"
        "/.well-known/openid-configuration"
    )


def test_gateway_jwt_bound_to_app_client(resources: dict[str, Any]) -> None:
    authorizer = resources["Gateway"]["Properties"]["AuthorizerConfiguration"]
    assert authorizer["CustomJWTAuthorizer"]["AllowedAudience"] == [{"Ref": "UserPoolClient"}]


def test_gateway_policy_engine_enforced(resources: dict[str, Any]) -> None:
    configuration = resources["Gateway"]["Properties"]["PolicyEngineConfiguration"]
    assert configuration == {
        "Arn": {"Fn::GetAtt": ["PolicyEngine", "PolicyEngineArn"]},
        "Mode": "ENFORCE",
    }


def test_gateway_role_invokes_only_tool_and_interceptor_functions(
    resources: dict[str, Any],
) -> None:
    statements = _role_statements(resources["GatewayRole"])
    assert len(statements) == 1
    assert statements[0]["Action"] == "lambda:InvokeFunction"
    assert statements[0]["Resource"] == [
        *({"Fn::GetAtt": [tool.function_logical_id, "Arn"]} for tool in GATEWAY_TOOLS.values()),
        {"Fn::GetAtt": ["GatewayInterceptorFunction", "Arn"]},
    ]


def test_gateway_request_interceptor_gets_headers(resources: dict[str, Any]) -> None:
    [interceptor] = resources["Gateway"]["Properties"]["InterceptorConfigurations"]
    assert interceptor == {
        "InterceptionPoints": ["REQUEST"],
        "Interceptor": {"Lambda": {"Arn": {"Fn::GetAtt": ["GatewayInterceptorFunction", "Arn"]}}},
        "InputConfiguration": {"PassRequestHeaders": True},
    }


@pytest.mark.parametrize("tool", list(GATEWAY_TOOLS.values()), ids=lambda tool: tool.target_name)
def test_gateway_may_invoke_tool_function(resources: dict[str, Any], tool: Any) -> None:
    permissions = [
        permission["Properties"]
        for permission in _of_type(resources, "AWS::Lambda::Permission").values()
        if permission["Properties"]["FunctionName"]
        == {"Fn::GetAtt": [tool.function_logical_id, "Arn"]}
    ]
    assert [p["Principal"] for p in permissions] == [{"Fn::GetAtt": ["GatewayRole", "Arn"]}]


def test_every_tool_has_one_target(resources: dict[str, Any]) -> None:
    targets = _of_type(resources, "AWS::BedrockAgentCore::GatewayTarget").values()
    names = sorted(target["Properties"]["Name"] for target in targets)
    assert names == sorted(tool.target_name for tool in GATEWAY_TOOLS.values())


@pytest.mark.parametrize("tool", list(GATEWAY_TOOLS.values()), ids=lambda tool: tool.target_name)
def test_target_matches_tools_module(resources: dict[str, Any], tool: Any) -> None:
    [target] = [
        target["Properties"]
        for target in _of_type(resources, "AWS::BedrockAgentCore::GatewayTarget").values()
        if target["Properties"]["Name"] == tool.target_name
    ]
    assert target["GatewayIdentifier"] == {"Fn::GetAtt": ["Gateway", "GatewayIdentifier"]}
    assert target["CredentialProviderConfigurations"] == [
        {"CredentialProviderType": "GATEWAY_IAM_ROLE"}
    ]
    lambda_target = target["TargetConfiguration"]["Mcp"]["Lambda"]
    assert lambda_target["LambdaArn"] == {"Fn::GetAtt": [tool.function_logical_id, "Arn"]}
    [definition] = lambda_target["ToolSchema"]["InlinePayload"]
    assert definition["Name"] == tool.tool_name
    assert definition["Description"] == tool.description
    assert definition["InputSchema"] == _cloudformation_schema(tool.gateway_input_schema)


# -------------------------------------------------------------------------------- policy


def test_policy_statements_equal_cedar_file(resources: dict[str, Any]) -> None:
    policies = _of_type(resources, "AWS::BedrockAgentCore::Policy").values()
    in_template = sorted(p["Properties"]["Definition"]["Cedar"]["Statement"] for p in policies)
    in_file = sorted(_cedar_statements(POLICY_PATH.read_text(encoding="utf-8")))
    assert in_template == in_file


def test_cedar_file_has_only_statements_and_comments() -> None:
    # Keeps test_policy_statements_equal_cedar_file from missing a statement it cannot split.
    text = POLICY_PATH.read_text(encoding="utf-8")
    for statement in _cedar_statements(text):
        text = text.replace(statement, "")
    leftover = [line for line in text.splitlines() if line.strip() and not line.startswith("//")]
    assert leftover == []


def test_policies_active_in_engine(resources: dict[str, Any]) -> None:
    for policy in _of_type(resources, "AWS::BedrockAgentCore::Policy").values():
        assert policy["Properties"]["EnforcementMode"] == "ACTIVE"
        assert policy["Properties"]["PolicyEngineId"] == {
            "Fn::GetAtt": ["PolicyEngine", "PolicyEngineId"]
        }


# ------------------------------------------------------------------------ least privilege


def test_no_wildcard_actions_in_roles(resources: dict[str, Any]) -> None:
    for role_id, role in _of_type(resources, "AWS::IAM::Role").items():
        for statement in _role_statements(role):
            for action in _as_list(statement["Action"]):
                assert action != "*", role_id
                assert not action.endswith(":*"), f"{role_id}: {action}"


def test_no_full_access_managed_policies(resources: dict[str, Any]) -> None:
    for role_id, role in _of_type(resources, "AWS::IAM::Role").items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            assert "FullAccess" not in json.dumps(arn), f"{role_id}: {arn}"


def test_every_log_group_expires_and_uses_key(resources: dict[str, Any]) -> None:
    for log_group_id, log_group in _of_type(resources, "AWS::Logs::LogGroup").items():
        assert log_group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, (
            log_group_id
        )
        assert log_group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["LogsKey", "Arn"]}, (
            log_group_id
        )


# ---------------------------------------------------------------------------- web search


def test_web_search_id_defaults_to_managed_tool() -> None:
    template = load(str(TEMPLATE_PATH))
    assert template["Parameters"]["WebSearchId"]["Default"] == "web-search.v1"


def test_web_search_function_gets_web_search_id(resources: dict[str, Any]) -> None:
    variables = resources["WebSearchFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["WEB_SEARCH_ID"] == {"Ref": "WebSearchId"}


def test_web_search_role_grants_managed_tool(resources: dict[str, Any]) -> None:
    role = resources[_function_role_id(resources, "WebSearchFunction")]
    statement = _statement(role, "InvokeWebSearch")
    assert statement["Action"] == "bedrock-agentcore:InvokeWebSearch"
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:bedrock-agentcore:${AWS::Region}:aws:tool/${WebSearchId}"
    }
