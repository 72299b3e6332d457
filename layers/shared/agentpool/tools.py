"""Gateway tools: the MCP name and input schema of each tool the tiers grant.

AgentCore Gateway names a target's tool `<target name>___<tool name>` in `tools/list` and
`tools/call`. The tenant and user fields are filled in by the agent from the verified request,
never by the model, so the schema shown to the model omits them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentpool.errors import first_problem
from agentpool.identity import TENANT_ID_PATTERN
from agentpool.tiers import Tool

GATEWAY_TOOL_SEPARATOR = "___"
# The argument that the Gateway's interceptor sets to the tenant's registry tier.
TIER_ARGUMENT = "tier"


class GatewayTool(BaseModel):
    model_config = ConfigDict(frozen=True)

    tool: Tool
    target_name: str
    tool_name: str
    function_logical_id: str
    description: str
    model_input_schema: dict[str, Any]

    @property
    def mcp_name(self) -> str:
        return f"{self.target_name}{GATEWAY_TOOL_SEPARATOR}{self.tool_name}"

    @property
    def gateway_input_schema(self) -> dict[str, Any]:
        """The schema that the Gateway target declares: the model's fields plus identity."""
        schema = dict(self.model_input_schema)
        properties = dict(schema.get("properties", {}))
        properties["tenant_id"] = {"type": "string", "description": "Calling tenant."}
        properties["user_id"] = {"type": "string", "description": "Calling user."}
        properties[TIER_ARGUMENT] = {
            "type": "string",
            "description": "Tenant's tier, set by the Gateway from the tenant registry.",
        }
        schema["properties"] = properties
        schema["required"] = [*schema.get("required", []), "tenant_id", "user_id"]
        return schema


_QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "What to search for."},
        "max_results": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["query"],
}
_DOCUMENT_SEARCH_SCHEMA: dict[str, Any] = {
    **_QUERY_SCHEMA,
    "properties": {
        **_QUERY_SCHEMA["properties"],
        "document": {
            "type": "string",
            "description": "Name of one document to return whole, as listed in search results.",
        },
    },
}

GATEWAY_TOOLS: dict[Tool, GatewayTool] = {
    Tool.DOCUMENT_SEARCH: GatewayTool(
        tool=Tool.DOCUMENT_SEARCH,
        target_name="document-search",
        tool_name="search_documents",
        function_logical_id="DocumentSearchFunction",
        description=(
            "Search the clinic's or hospital's own documents, or return one document by name."
        ),
        model_input_schema=_DOCUMENT_SEARCH_SCHEMA,
    ),
    Tool.WEB_SEARCH: GatewayTool(
        tool=Tool.WEB_SEARCH,
        target_name="web-search",
        tool_name="search_web",
        function_logical_id="WebSearchFunction",
        description="Search the public web.",
        model_input_schema=_QUERY_SCHEMA,
    ),
}


def tool_for_mcp_name(mcp_name: str) -> GatewayTool | None:
    for gateway_tool in GATEWAY_TOOLS.values():
        if gateway_tool.mcp_name == mcp_name:
            return gateway_tool
    return None


class SearchToolInput(BaseModel):
    """Arguments that a Gateway search tool's Lambda target receives.

    The agent fills `tenant_id` and `user_id` from the verified request, and the Gateway's
    Cedar policy has checked them against the caller's token before the Lambda runs. The
    Gateway's interceptor sets `tier` from the tenant registry.
    """

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=1000)
    max_results: int = Field(default=3, ge=1, le=10)
    tenant_id: str = Field(pattern=TENANT_ID_PATTERN.pattern)
    user_id: str = Field(min_length=1, max_length=128)
    tier: str | None = None


class DocumentSearchInput(SearchToolInput):
    """Arguments of the document search tool: a search, or one document to return whole."""

    document: str | None = Field(default=None, max_length=128)


TOOL_INPUTS: dict[Tool, type[SearchToolInput]] = {
    Tool.DOCUMENT_SEARCH: DocumentSearchInput,
    Tool.WEB_SEARCH: SearchToolInput,
}


def input_error(tool: Tool, arguments: Any) -> str | None:
    """Return why `arguments` are invalid for `tool`, naming the first field, or None."""
    try:
        TOOL_INPUTS[tool].model_validate(arguments)
    except ValidationError as error:
        return first_problem(error)
    return None
