"""Create the template's AWS resources in moto's server, and resolve their local names.

Only the resource types the product uses are created. Names, keys, queues, rules and the
user pool's schema come from template.yaml, so the local stack cannot drift from it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import boto3

from agentpool_dev.template import Template, resolve

logger = logging.getLogger(__name__)

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
# The AgentCore stand-ins accept any well-formed ARN, so every Runtime in the template gets this
# one. The Gateway stand-in's URL is only known once it listens, so LocalStack replaces
# STANDIN_GATEWAY_URL then.
STANDIN_RUNTIME_ID = "agentpool_standin"
STANDIN_RUNTIME_ARN = (
    f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT_ID}:runtime/{STANDIN_RUNTIME_ID}"
)
STANDIN_GATEWAY_URL = "http://127.0.0.1/mcp"


@dataclass
class LocalResources:
    """Physical ids of the template's resources in the local stack, by logical id."""

    stack_name: str
    parameters: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    def lookup(self, logical_id: str, attribute: str | None) -> str:
        if attribute is None:
            if logical_id not in self.refs:
                raise KeyError(f"the local stack has no value for Ref {logical_id}")
            return self.refs[logical_id]
        key = (logical_id, attribute)
        if key not in self.attributes:
            raise KeyError(f"the local stack has no value for {logical_id}.{attribute}")
        return self.attributes[key]

    def resolve(self, value: Any) -> Any:
        return resolve(value, self.lookup, self.parameters)


def pseudo_parameters(stack_name: str) -> dict[str, str]:
    return {
        "AWS::StackName": stack_name,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }


class Provisioner:
    """Create resources in moto through a boto3 session pointed at it."""

    def __init__(self, template: Template, session: boto3.session.Session, endpoint: str):
        self.template = template
        self._session = session
        self._endpoint = endpoint
        self._pending_roles: dict[str, dict[str, Any]] = {}

    def _client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self._endpoint, region_name=REGION)

    def provision(self, stack_name: str, parameters: dict[str, Any]) -> LocalResources:
        resources = LocalResources(
            stack_name,
            {**self.template.parameter_defaults(), **parameters, **pseudo_parameters(stack_name)},
        )
        self._names(resources)
        self._agentcore_names(resources)
        self._user_pools(resources)
        self._tables(resources)
        self._buckets(resources)
        self._roles(resources)
        self._queues(resources)
        self._subscribed_log_groups(resources)
        # Topics first, because a rule may target one (BudgetAlertRule).
        self._alarm_topics(resources)
        self._buses_and_rules(resources)
        self._alarms_and_dashboards(resources)
        self._schedules(resources)
        return resources

    def _names(self, resources: LocalResources) -> None:
        """Names of resources that need no creation call, like functions and the API."""
        for logical_id in self.template.of_type("AWS::Serverless::Function"):
            name = f"{resources.stack_name}-{logical_id}"
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = (
                f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
            )
        for logical_id in self.template.of_type("AWS::Serverless::Api"):
            resources.refs[logical_id] = "local"
        for logical_id in self.template.of_type("AWS::Serverless::LayerVersion"):
            resources.refs[logical_id] = (
                f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{logical_id}:1"
            )

    def _agentcore_names(self, resources: LocalResources) -> None:
        """Attributes of the AgentCore resources, which the stand-ins serve without creation."""
        prefix = f"arn:aws:bedrock-agentcore:{REGION}:{ACCOUNT_ID}"
        values: dict[str, dict[str, str]] = {
            "AWS::BedrockAgentCore::Runtime": {
                "AgentRuntimeArn": STANDIN_RUNTIME_ARN,
                "AgentRuntimeId": STANDIN_RUNTIME_ID,
                "AgentRuntimeVersion": "1",
            },
            "AWS::BedrockAgentCore::Gateway": {
                "GatewayArn": f"{prefix}:gateway/agentpool-gateway-standin",
                "GatewayIdentifier": "agentpool-gateway-standin",
                "GatewayUrl": STANDIN_GATEWAY_URL,
            },
            # A memory id ends in "-" and 10 characters, as the service model's pattern requires.
            "AWS::BedrockAgentCore::Memory": {
                "MemoryArn": f"{prefix}:memory/agentpool_memory_standin-0123456789",
                "MemoryId": "agentpool_memory_standin-0123456789",
            },
            "AWS::BedrockAgentCore::PolicyEngine": {
                "PolicyEngineArn": f"{prefix}:policy-engine/agentpool_policy_standin",
                "PolicyEngineId": "agentpool_policy_standin",
            },
        }
        for resource_type, attributes in values.items():
            for logical_id in self.template.of_type(resource_type):
                for attribute, value in attributes.items():
                    resources.attributes[(logical_id, attribute)] = value
        for logical_id, resource in self.template.of_type(
            "AWS::BedrockAgentCore::RuntimeEndpoint"
        ).items():
            name = resource["Properties"]["Name"]
            resources.attributes[(logical_id, "AgentRuntimeEndpointArn")] = (
                f"{STANDIN_RUNTIME_ARN}/runtime-endpoint/{name}"
            )

    def _user_pools(self, resources: LocalResources) -> None:
        cognito = self._client("cognito-idp")
        for logical_id, resource in self.template.of_type("AWS::Cognito::UserPool").items():
            props = resources.resolve(resource["Properties"])
            pool = cognito.create_user_pool(
                PoolName=props["UserPoolName"],
                Policies=props.get("Policies", {}),
                Schema=props.get("Schema", []),
                UsernameAttributes=props.get("UsernameAttributes", []),
                AdminCreateUserConfig=props.get("AdminCreateUserConfig", {}),
            )["UserPool"]
            resources.refs[logical_id] = pool["Id"]
            resources.attributes[(logical_id, "Arn")] = pool["Arn"]
            resources.attributes[(logical_id, "ProviderName")] = (
                f"cognito-idp.{REGION}.amazonaws.com/{pool['Id']}"
            )
            resources.attributes[(logical_id, "ProviderURL")] = (
                f"https://cognito-idp.{REGION}.amazonaws.com/{pool['Id']}"
            )
        for logical_id, resource in self.template.of_type("AWS::Cognito::UserPoolClient").items():
            props = resources.resolve(resource["Properties"])
            client = cognito.create_user_pool_client(
                UserPoolId=props["UserPoolId"],
                ClientName=props["ClientName"],
                GenerateSecret=props.get("GenerateSecret", False),
                ExplicitAuthFlows=props.get("ExplicitAuthFlows", []),
                ReadAttributes=props.get("ReadAttributes", []),
                WriteAttributes=props.get("WriteAttributes", []),
            )["UserPoolClient"]
            resources.refs[logical_id] = client["ClientId"]
        for logical_id, resource in self.template.of_type("AWS::Cognito::UserPoolGroup").items():
            props = resources.resolve(resource["Properties"])
            cognito.create_group(
                UserPoolId=props["UserPoolId"],
                GroupName=props["GroupName"],
                Description=props.get("Description", ""),
            )
            resources.refs[logical_id] = props["GroupName"]

    def _tables(self, resources: LocalResources) -> None:
        dynamodb = self._client("dynamodb")
        for logical_id, resource in self.template.of_type("AWS::DynamoDB::Table").items():
            props = resources.resolve(resource["Properties"])
            name = props.get("TableName") or f"{resources.stack_name}-{logical_id}"
            request: dict[str, Any] = {
                "TableName": name,
                "KeySchema": props["KeySchema"],
                "AttributeDefinitions": props["AttributeDefinitions"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if props.get("GlobalSecondaryIndexes"):
                request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
            table = dynamodb.create_table(**request)["TableDescription"]
            # TTL is configured as in AWS. moto never expires items, and the code checks
            # expiry itself wherever it matters.
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = table["TableArn"]

    def _buckets(self, resources: LocalResources) -> None:
        s3 = self._client("s3")
        for logical_id, resource in self.template.of_type("AWS::S3::Bucket").items():
            props = resources.resolve(resource.get("Properties") or {})
            name = props.get("BucketName") or f"{resources.stack_name}-{logical_id}".lower()
            s3.create_bucket(Bucket=name)
            if props.get("PublicAccessBlockConfiguration"):
                s3.put_public_access_block(
                    Bucket=name,
                    PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"],
                )
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"

    def _roles(self, resources: LocalResources) -> None:
        roles = self.template.of_type("AWS::IAM::Role")
        # Role ARNs are known before creation, so policies may refer to any role.
        for logical_id, resource in roles.items():
            name = (resource.get("Properties") or {}).get("RoleName") or (
                f"{resources.stack_name}-{logical_id}"
            )
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        self._pending_roles = roles

    def _create_roles(self, resources: LocalResources) -> None:
        iam = self._client("iam")
        for logical_id, resource in self._pending_roles.items():
            props = resources.resolve(resource["Properties"])
            name = resources.refs[logical_id]
            iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                MaxSessionDuration=int(props.get("MaxSessionDuration", 3600)),
            )
            for policy in props.get("Policies", []):
                iam.put_role_policy(
                    RoleName=name,
                    PolicyName=policy["PolicyName"],
                    PolicyDocument=json.dumps(policy["PolicyDocument"]),
                )

    def _queues(self, resources: LocalResources) -> None:
        sqs = self._client("sqs")
        queues = self.template.of_type("AWS::SQS::Queue")
        # Queues without a redrive policy first: they are the dead-letter queues.
        ordered = sorted(
            queues, key=lambda lid: "RedrivePolicy" in queues[lid].get("Properties", {})
        )
        for logical_id in ordered:
            props = queues[logical_id].get("Properties") or {}
            name = f"{resources.stack_name}-{logical_id}"
            attributes = {
                key: str(props[key])
                for key in ("VisibilityTimeout", "MessageRetentionPeriod")
                if key in props
            }
            if "RedrivePolicy" in props:
                attributes["RedrivePolicy"] = json.dumps(resources.resolve(props["RedrivePolicy"]))
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            resources.refs[logical_id] = url
            resources.attributes[(logical_id, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
            resources.attributes[(logical_id, "QueueName")] = name

    def _subscribed_log_groups(self, resources: LocalResources) -> None:
        """Create the log groups that a subscription filter reads; the others stay uncreated."""
        logs = self._client("logs")
        for subscription in self.template.subscription_filters():
            logical_id = subscription.log_group
            # Only the name: the group's KMS key is not created locally.
            template_name = self.template.properties(logical_id).get("LogGroupName")
            name = (
                resources.resolve(template_name)
                if template_name
                else f"{resources.stack_name}-{logical_id}"
            )
            logs.create_log_group(logGroupName=name)
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = (
                f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*"
            )

    def _condition_holds(self, resource: dict[str, Any], resources: LocalResources) -> bool:
        """Evaluate a resource's Condition, for the Fn::Not and Fn::Equals forms it may use."""
        name = resource.get("Condition")
        if name is None:
            return True
        return bool(_evaluate(self.template.document["Conditions"][name], resources))

    def _alarm_topics(self, resources: LocalResources) -> None:
        kms, sns = self._client("kms"), self._client("sns")
        for logical_id, resource in self.template.of_type("AWS::KMS::Key").items():
            props = resources.resolve(resource["Properties"])
            key = kms.create_key(
                Description=props.get("Description", ""), Policy=json.dumps(props["KeyPolicy"])
            )["KeyMetadata"]
            resources.refs[logical_id] = key["KeyId"]
            resources.attributes[(logical_id, "Arn")] = key["Arn"]
        for logical_id, resource in self.template.of_type("AWS::SNS::Topic").items():
            props = resources.resolve(resource.get("Properties") or {})
            attributes = {
                key: str(props[key]) for key in ("DisplayName", "KmsMasterKeyId") if key in props
            }
            arn = sns.create_topic(
                Name=f"{resources.stack_name}-{logical_id}", Attributes=attributes
            )["TopicArn"]
            resources.refs[logical_id] = arn
            resources.attributes[(logical_id, "TopicArn")] = arn
        for logical_id, resource in self.template.of_type("AWS::SNS::Subscription").items():
            if not self._condition_holds(resource, resources):
                continue
            props = resources.resolve(resource["Properties"])
            arn = sns.subscribe(
                TopicArn=props["TopicArn"], Protocol=props["Protocol"], Endpoint=props["Endpoint"]
            )["SubscriptionArn"]
            resources.refs[logical_id] = arn

    def _alarms_and_dashboards(self, resources: LocalResources) -> None:
        cloudwatch = self._client("cloudwatch")
        for logical_id, resource in self.template.of_type("AWS::CloudWatch::Alarm").items():
            props = resources.resolve(resource["Properties"])
            name = props.get("AlarmName") or f"{resources.stack_name}-{logical_id}"
            request = {key: props[key] for key in _ALARM_PROPERTIES if key in props}
            request["Threshold"] = float(props["Threshold"])
            for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
                if key in request:
                    request[key] = int(request[key])
            cloudwatch.put_metric_alarm(AlarmName=name, **request)
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = (
                f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"
            )
        for logical_id, resource in self.template.of_type("AWS::CloudWatch::Dashboard").items():
            props = resources.resolve(resource["Properties"])
            # json.loads fails here, with the dashboard's name, on a body that is not JSON.
            json.loads(props["DashboardBody"])
            cloudwatch.put_dashboard(
                DashboardName=props["DashboardName"], DashboardBody=props["DashboardBody"]
            )
            resources.refs[logical_id] = props["DashboardName"]

    def _schedules(self, resources: LocalResources) -> None:
        """Create EventBridge Scheduler schedules. Locally nothing fires them on time."""
        scheduler = self._client("scheduler")
        for logical_id, resource in self.template.of_type("AWS::Scheduler::Schedule").items():
            props = resources.resolve(resource["Properties"])
            name = props.get("Name") or f"{resources.stack_name}-{logical_id}"
            arn = scheduler.create_schedule(
                Name=name,
                ScheduleExpression=props["ScheduleExpression"],
                ScheduleExpressionTimezone=props.get("ScheduleExpressionTimezone", "UTC"),
                FlexibleTimeWindow=props["FlexibleTimeWindow"],
                Target=props["Target"],
                State=props.get("State", "ENABLED"),
                Description=props.get("Description", ""),
            )["ScheduleArn"]
            resources.refs[logical_id] = name
            resources.attributes[(logical_id, "Arn")] = arn

    def _buses_and_rules(self, resources: LocalResources) -> None:
        events = self._client("events")
        for logical_id, resource in self.template.of_type("AWS::Events::EventBus").items():
            props = resources.resolve(resource["Properties"])
            arn = events.create_event_bus(Name=props["Name"])["EventBusArn"]
            resources.refs[logical_id] = props["Name"]
            resources.attributes[(logical_id, "Arn")] = arn
            resources.attributes[(logical_id, "Name")] = props["Name"]
        rules = self.template.of_type("AWS::Events::Rule")
        for logical_id in rules:
            bus = resources.resolve(rules[logical_id]["Properties"].get("EventBusName", "default"))
            resources.attributes[(logical_id, "Arn")] = (
                f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{bus}/{resources.stack_name}-{logical_id}"
            )
        # Roles may name rules and queues in their policies, so they are created last.
        self._create_roles(resources)
        for logical_id, resource in rules.items():
            props = resources.resolve(resource["Properties"])
            name = f"{resources.stack_name}-{logical_id}"
            bus = props.get("EventBusName", "default")
            events.put_rule(
                Name=name,
                EventBusName=bus,
                EventPattern=json.dumps(props["EventPattern"]),
                State=props.get("State", "ENABLED"),
                Description=props.get("Description", ""),
            )
            targets = [{"Id": target["Id"], "Arn": target["Arn"]} for target in props["Targets"]]
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
            resources.refs[logical_id] = name


# Properties of AWS::CloudWatch::Alarm that PutMetricAlarm takes under the same names.
_ALARM_PROPERTIES = (
    "AlarmDescription",
    "ActionsEnabled",
    "AlarmActions",
    "OKActions",
    "InsufficientDataActions",
    "MetricName",
    "Namespace",
    "Statistic",
    "ExtendedStatistic",
    "Dimensions",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "ComparisonOperator",
    "TreatMissingData",
    "Metrics",
    "Unit",
)


def _evaluate(condition: Any, resources: LocalResources) -> Any:
    """Evaluate Fn::Not, Fn::Equals and Ref in a template condition."""
    if isinstance(condition, dict) and set(condition) == {"Fn::Not"}:
        return not _evaluate(condition["Fn::Not"][0], resources)
    if isinstance(condition, dict) and set(condition) == {"Fn::Equals"}:
        left, right = (_evaluate(value, resources) for value in condition["Fn::Equals"])
        return str(left) == str(right)
    return resources.resolve(condition)
