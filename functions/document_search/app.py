"""Gateway tool `document-search___search_documents`: search the calling tenant's documents.

The Gateway's Cedar policy has already checked that `tenant_id` in the input is the caller's
own tenant; the vended credentials enforce it again at IAM.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentpool.documents import InvalidDocumentNameError, get_document, search_documents
from agentpool.observability import function_logger
from agentpool.registry import TenantRegistry
from agentpool.tiers import Tool
from agentpool.tools import DocumentSearchInput, input_error
from agentpool.tvm import TenantScope, TokenVendingMachine

logger = function_logger()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True)

    tenants_table: str
    documents_bucket: str
    tenant_access_role_arn: str


settings = Settings()
registry = TenantRegistry(boto3.resource("dynamodb").Table(settings.tenants_table))
vending_machine = TokenVendingMachine(settings.tenant_access_role_arn)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    problem = input_error(Tool.DOCUMENT_SEARCH, event)
    if problem is not None:
        logger.info("invalid tool input", extra={"problem": problem})
        return {"error": problem}
    search = DocumentSearchInput.model_validate(event)
    tenant = registry.get(search.tenant_id)
    if tenant is None or tenant.status != "active":
        logger.info("tenant not active", extra={"tenant_id": search.tenant_id})
        return {"error": "tenant is not registered or not active"}
    scope = TenantScope(tenant.tenant_id, tenant.tier, search.user_id)
    s3 = vending_machine.session_for(scope).client("s3")
    if search.document is not None:
        return _one_document(s3, tenant.tenant_id, search.document)
    hits = search_documents(
        s3, settings.documents_bucket, tenant.tenant_id, search.query, search.max_results
    )
    logger.info("documents searched", extra={"tenant_id": tenant.tenant_id, "hits": len(hits)})
    return {"results": [{"document": h.document, "excerpt": h.excerpt} for h in hits]}


def _one_document(s3: Any, tenant_id: str, name: str) -> dict[str, Any]:
    try:
        text = get_document(s3, settings.documents_bucket, tenant_id, name)
    except InvalidDocumentNameError as error:
        logger.info("invalid document name", extra={"tenant_id": tenant_id})
        return {"error": str(error)}
    if text is None:
        return {"error": "document not found"}
    logger.info("document read", extra={"tenant_id": tenant_id})
    return {"document": name, "text": text}
