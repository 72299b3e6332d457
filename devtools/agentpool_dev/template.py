"""Read template.yaml: the single source of truth for resources, keys, routes and rules.

The local stack and the tests read table keys, queues, rules, function settings and API
routes from here instead of repeating them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

_SHORT_TAGS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref, !GetAtt, !Sub, ...) into the
    long form ({"Ref": ...}, {"Fn::GetAtt": [...]}, {"Fn::Sub": ...})."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    tag = "!" + suffix
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag in _SHORT_TAGS:
        return {_SHORT_TAGS[tag]: value}
    if tag == "!GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)  # type: ignore[no-untyped-call]


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


@dataclass(frozen=True)
class ApiRoute:
    function: str
    path: str
    method: str

    @property
    def pattern(self) -> re.Pattern[str]:
        """Regex for the path, with `{name}` segments as named groups."""
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        return re.compile(f"^{regex}$")


class Template:
    """Typed views over the template's resources."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document or load_template()
        self.resources: dict[str, dict[str, Any]] = self.document["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.resources.items()
            if resource["Type"] == resource_type
        }

    def properties(self, logical_id: str) -> dict[str, Any]:
        return dict(self.resources[logical_id].get("Properties") or {})

    def parameter_defaults(self) -> dict[str, Any]:
        return {
            name: spec.get("Default")
            for name, spec in (self.document.get("Parameters") or {}).items()
        }

    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Serverless::Function")

    def function_environment(self, logical_id: str) -> dict[str, Any]:
        """Merged Globals and function environment variables, unresolved."""
        globals_env = (
            self.document.get("Globals", {}).get("Function", {}).get("Environment", {})
        ).get("Variables", {})
        own = (self.properties(logical_id).get("Environment") or {}).get("Variables", {})
        return {**globals_env, **own}

    def function_setting(self, logical_id: str, name: str) -> Any:
        own = self.properties(logical_id).get(name)
        if own is not None:
            return own
        return self.document.get("Globals", {}).get("Function", {}).get(name)

    def api_routes(self) -> list[ApiRoute]:
        routes = []
        for name, function in self.functions().items():
            for event in (function["Properties"].get("Events") or {}).values():
                if event["Type"] == "Api":
                    props = event["Properties"]
                    routes.append(ApiRoute(name, props["Path"], props["Method"].upper()))
        return routes

    def sqs_event_sources(self) -> list[tuple[str, dict[str, Any]]]:
        """(function logical id, SQS event properties) for every SQS event source."""
        sources = []
        for name, function in self.functions().items():
            for event in (function["Properties"].get("Events") or {}).values():
                if event["Type"] == "SQS":
                    sources.append((name, event["Properties"]))
        return sources

    def subscription_filters(self) -> list[SubscriptionFilter]:
        """Every AWS::Logs::SubscriptionFilter whose destination is a function of the template."""
        filters = []
        for name, resource in self.of_type("AWS::Logs::SubscriptionFilter").items():
            props = resource["Properties"]
            filters.append(
                SubscriptionFilter(
                    logical_id=name,
                    log_group=props["LogGroupName"]["Ref"],
                    function=props["DestinationArn"]["Fn::GetAtt"][0],
                    filter_pattern=props.get("FilterPattern", ""),
                )
            )
        return filters

    def vended_log_group(self, log_type: str) -> str | None:
        """Logical id of the log group that a delivery of `log_type` logs writes to, if any.

        Follows AWS::Logs::DeliverySource (by LogType) to the AWS::Logs::Delivery that names
        it, to that delivery's AWS::Logs::DeliveryDestination and its log group.
        """
        sources = [
            name
            for name, resource in self.of_type("AWS::Logs::DeliverySource").items()
            if resource["Properties"].get("LogType") == log_type
        ]
        for delivery in self.of_type("AWS::Logs::Delivery").values():
            props = delivery["Properties"]
            if props["DeliverySourceName"].get("Ref") not in sources:
                continue
            destination = self.properties(props["DeliveryDestinationArn"]["Fn::GetAtt"][0])
            arn = destination["DestinationResourceArn"]
            text = arn.get("Fn::Sub", "") if isinstance(arn, dict) else ""
            match = re.search(r"log-group:\$\{([A-Za-z0-9]+)\}", text)
            if match:
                return match.group(1)
        return None


@dataclass(frozen=True)
class SubscriptionFilter:
    """A CloudWatch Logs subscription filter that invokes one of the template's functions."""

    logical_id: str
    log_group: str
    function: str
    filter_pattern: str


Resolver = Callable[[str, str | None], str]


def resolve(value: Any, lookup: Resolver, parameters: Mapping[str, Any]) -> Any:
    """Resolve Ref, Fn::GetAtt and Fn::Sub in `value`.

    `lookup(logical_id, attribute)` returns the local value of a resource (attribute None for
    Ref). Parameters and pseudo parameters come from `parameters`.
    """
    if isinstance(value, list):
        return [resolve(item, lookup, parameters) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        name = value["Ref"]
        if name in parameters:
            return str(parameters[name])
        return lookup(name, None)
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return lookup(logical_id, attribute)
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        variables: dict[str, Any] = {}
        if isinstance(text, list):
            text, variables = text

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(resolve(variables[name], lookup, parameters))
            if name in parameters:
                return str(parameters[name])
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return lookup(logical_id, attribute)
            return lookup(name, None)

        return re.sub(r"\$\{([^}]+)\}", substitute, text)
    return {key: resolve(item, lookup, parameters) for key, item in value.items()}
