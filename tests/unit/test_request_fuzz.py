"""Nothing a client sends can crash request parsing: every body parses or raises the 400 error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentpool.errors import ForbiddenError, InvalidRequestError, UnauthorizedError
from agentpool.identity import identity_from_authorizer
from agentpool.invocation import parse_request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.dictionaries(
        st.sampled_from(["prompt", "sessionId", "tenantId", "tier", "extra"]),
        json_values,
        max_size=4,
    ).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_parse_request_never_crashes(body: str) -> None:
    try:
        request = parse_request(body)
    except InvalidRequestError:
        return
    assert request.prompt.strip()


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=6))
def test_identity_never_crashes_on_claims(claims: dict[str, Any]) -> None:
    event = {"requestContext": {"authorizer": {"claims": claims}}}
    try:
        caller = identity_from_authorizer(event)
    except (UnauthorizedError, ForbiddenError):
        return
    assert caller.tenant_id == claims["custom:tenant_id"]
