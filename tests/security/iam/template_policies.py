"""IAM policies of template.yaml as they would be deployed, and a client for simulate.mjs.

The policies are read from template.yaml as written. Ref, Fn::GetAtt and Fn::Sub are resolved
to placeholder names and ARNs in account 123456789012, us-east-1, for a stack named
`agentpool`, following CloudFormation's physical naming: `<stack>-<LogicalId>-<suffix>`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentpool_dev.template import REPO_ROOT, load_template

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
STACK_NAME = "agentpool"
AGENT_RUNTIME_ARN = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT_ID}:runtime/agentpool_agent"
SIMULATE_SCRIPT = Path(__file__).with_name("simulate.mjs")
PSEUDO_PARAMETERS = {
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::StackName": STACK_NAME,
    "AWS::URLSuffix": "amazonaws.com",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class TemplatePolicies:
    """Resolved policy documents of the template's IAM role and its functions' SAM roles."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document or load_template()
        self.resources: dict[str, Any] = self.document["Resources"]

    # ------------------------------------------------------------------- names
    def physical_name(self, logical_id: str) -> str:
        if self._sam_function_of_role(logical_id):
            return f"{STACK_NAME}-{logical_id}-1A2B3C4D5E6F"
        resource = self.resources[logical_id]
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::Events::EventBus":
            return str(self.resolve(properties["Name"]))
        if resource["Type"] == "AWS::S3::Bucket":
            # Bucket names are lowercase.
            return f"{STACK_NAME}-{logical_id.lower()}-1a2b3c4d5e6f"
        return f"{STACK_NAME}-{logical_id}-1A2B3C4D5E6F"

    def function_role_name(self, function_id: str) -> str:
        """Name of the role that SAM creates for a function without a `Role` property."""
        return self.physical_name(f"{function_id}Role")

    def _sam_function_of_role(self, logical_id: str) -> bool:
        """Whether `logical_id` is the `<Function>Role` that SAM generates for a function."""
        function_id = logical_id.removesuffix("Role")
        return (
            logical_id not in self.resources
            and logical_id.endswith("Role")
            and self.resources.get(function_id, {}).get("Type") == "AWS::Serverless::Function"
        )

    def arn(self, logical_id: str) -> str:
        name = self.physical_name(logical_id)
        if self._sam_function_of_role(logical_id):
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        resource_type = self.resources[logical_id]["Type"]
        arns = {
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}",
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
            "AWS::Events::EventBus": f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}",
        }
        if resource_type in arns:
            return arns[resource_type]
        # Other services: a well-formed ARN in the resource's service, which no policy of the
        # tenant role or the functions' data statements can match by accident.
        service = resource_type.split("::")[1].lower()
        kind = resource_type.split("::")[2].lower()
        return f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{kind}/{name}"

    def _ref(self, name: str) -> str:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name == "AgentRuntimeArn":
            return AGENT_RUNTIME_ARN
        parameter = self.document.get("Parameters", {}).get(name)
        if parameter is not None:
            return str(parameter.get("Default", f"placeholder-{name.lower()}"))
        return self.physical_name(name)

    def _get_att(self, logical_id: str, attribute: str) -> str:
        if attribute == "Arn":
            return self.arn(logical_id)
        resource_type = self.resources.get(logical_id, {}).get("Type")
        agentcore = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT_ID}"
        if (resource_type, attribute) == ("AWS::BedrockAgentCore::Runtime", "AgentRuntimeArn"):
            return f"{agentcore}:runtime/{self.physical_name(logical_id)}"
        if (resource_type, attribute) == ("AWS::BedrockAgentCore::Memory", "MemoryArn"):
            return f"{agentcore}:memory/{self.physical_name(logical_id)}"
        if (resource_type, attribute) == (
            "AWS::BedrockAgentCore::RuntimeEndpoint",
            "AgentRuntimeEndpointArn",
        ):
            runtime_id = self.resources[logical_id]["Properties"]["AgentRuntimeId"]
            runtime_name = self.physical_name(runtime_id["Fn::GetAtt"][0])
            endpoint_name = self.physical_name(logical_id)
            return f"{agentcore}:runtime/{runtime_name}/runtime-endpoint/{endpoint_name}"
        if attribute.endswith("Arn"):
            return f"{self.arn(logical_id)}/{attribute.lower()}"
        return f"{self.physical_name(logical_id)}-{attribute.lower()}"

    def _sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                # `${!name}` renders as the literal `${name}`, which IAM resolves at request time.
                return "${" + name[1:] + "}"
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._get_att(logical_id, attribute)
            return self._ref(name)

        return _SUB_VARIABLE.sub(replace, text)

    def resolve(self, value: Any) -> Any:
        """Replace the intrinsic functions in `value` with placeholder values."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                return self._get_att(*argument)
            if key == "Fn::Sub":
                if isinstance(argument, list):
                    return self._sub(argument[0], argument[1])
                return self._sub(argument, {})
            if key == "Fn::Join":
                separator, items = argument
                return str(separator).join(str(item) for item in self.resolve(items))
        return {key: self.resolve(item) for key, item in value.items()}

    # ---------------------------------------------------------------- policies
    def role_policies(self, role_id: str) -> list[dict[str, Any]]:
        """Inline policies of an AWS::IAM::Role as simulator identity policies."""
        properties = self.resources[role_id]["Properties"]
        return [
            {"name": policy["PolicyName"], "policy": self.resolve(policy["PolicyDocument"])}
            for policy in properties.get("Policies", [])
        ]

    def trust_policy(self, role_id: str) -> dict[str, Any]:
        document: dict[str, Any] = self.resolve(
            self.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]
        )
        return document

    def function_ids(self) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource["Type"] == "AWS::Serverless::Function"
        ]

    def function_policies(self, function_id: str) -> list[dict[str, Any]]:
        """The function's SAM `Policies` statements, one identity policy per list entry.

        NOTE: SAM also attaches AWSLambdaBasicExecutionRole (CloudWatch Logs only), which is
        not included here.
        """
        properties = self.resources[function_id]["Properties"]
        policies = []
        for index, entry in enumerate(properties.get("Policies", [])):
            if not isinstance(entry, dict) or "Statement" not in entry:
                raise ValueError(
                    f"{function_id} uses a policy form that is not an inline statement"
                )
            statements = self.resolve(entry["Statement"])
            policies.append(
                {
                    "name": f"{function_id}RolePolicy{index}",
                    "policy": {"Version": "2012-10-17", "Statement": statements},
                }
            )
        return policies


@dataclass
class SimulationRequest:
    """One request to simulate; `context` contains its request and principal context keys."""

    id: str
    principal: str
    action: str
    resource: str
    identity_policies: list[dict[str, Any]]
    context: dict[str, str | list[str]] = field(default_factory=dict)
    resource_policy: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "account": ACCOUNT_ID,
            "identityPolicies": self.identity_policies,
            "resourcePolicy": self.resource_policy,
            "context": self.context,
        }


def node_modules_ready() -> bool:
    return (REPO_ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir()


def simulate(requests: list[SimulationRequest]) -> dict[str, str]:
    """Run every request through simulate.mjs in one Node process; return decisions by id.

    Raises RuntimeError when the simulator rejects a request as invalid (an unknown action,
    a resource ARN of the wrong type for the action, or a malformed policy).
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; install Node.js 20 to run the IAM simulation")
    completed = subprocess.run(  # noqa: S603 - fixed script, JSON on stdin
        [node, str(SIMULATE_SCRIPT)],
        input=json.dumps([request.to_json() for request in requests]),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"simulate.mjs failed: {completed.stderr}")
    results = json.loads(completed.stdout)
    errors = {result["id"]: result["error"] for result in results if "error" in result}
    if errors:
        raise RuntimeError(f"the simulator rejected requests as invalid: {errors}")
    return {result["id"]: result["decision"] for result in results}
