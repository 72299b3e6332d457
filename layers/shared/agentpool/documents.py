"""Search a tenant's documents in S3, under `tenants/<tenant id>/documents/`.

Reads go through tenant-scoped credentials, whose policy allows only the tenant's own prefix,
so a wrong prefix fails at IAM even if this code had a bug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_DOCUMENTS = 50
# One file name in the tenant's documents folder: no "/" (so no other folder or tenant) and no
# "..", starting with a letter or digit.
DOCUMENT_NAME_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,127}$")
MAX_DOCUMENT_BYTES = 64 * 1024
EXCERPT_CHARS = 400

_WORD = re.compile(r"[a-z0-9]+")


def documents_prefix(tenant_id: str) -> str:
    return f"tenants/{tenant_id}/documents/"


class InvalidDocumentNameError(ValueError):
    """A document name that is not one file name inside the tenant's documents folder."""


def document_key(tenant_id: str, name: str) -> str:
    """Return the S3 key of document `name` of the tenant, raising InvalidDocumentNameError."""
    if not DOCUMENT_NAME_PATTERN.fullmatch(name):
        raise InvalidDocumentNameError(
            "document must be a file name of letters, digits, '.', '_' and '-' (at most 128), "
            "with no '/' and no '..'"
        )
    return documents_prefix(tenant_id) + name


def get_document(s3_client: Any, bucket: str, tenant_id: str, name: str) -> str | None:
    """Return the text (up to MAX_DOCUMENT_BYTES) of one of the tenant's documents, or None.

    The key is built from the tenant id and a validated name, so it is always inside the
    tenant's own prefix. The tenant-scoped credentials allow no other prefix either.
    """
    key = document_key(tenant_id, name)
    try:
        body = s3_client.get_object(
            Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_DOCUMENT_BYTES - 1}"
        )
    except s3_client.exceptions.NoSuchKey:
        return None
    text: str = body["Body"].read().decode("utf-8", errors="replace")
    return text


@dataclass(frozen=True)
class SearchHit:
    document: str
    score: int
    excerpt: str


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if len(word) > 2}


def search_documents(
    s3_client: Any, bucket: str, tenant_id: str, query: str, max_results: int
) -> list[SearchHit]:
    """Rank the tenant's documents by how many query words they contain."""
    prefix = documents_prefix(tenant_id)
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=MAX_DOCUMENTS)
    query_words = _words(query)
    hits = []
    for entry in listed.get("Contents", []):
        key = entry["Key"]
        body = s3_client.get_object(
            Bucket=bucket, Key=key, Range=f"bytes=0-{MAX_DOCUMENT_BYTES - 1}"
        )
        text = body["Body"].read().decode("utf-8", errors="replace")
        score = len(query_words & _words(text))
        if score:
            excerpt = " ".join(text.split())[:EXCERPT_CHARS]
            hits.append(SearchHit(key.removeprefix(prefix), score, excerpt))
    hits.sort(key=lambda hit: (-hit.score, hit.document))
    return hits[:max_results]
