"""Fixtures of the attack tests. The local stack, `target` and `onboard` come from
tests/conftest.py, so the security and integration tests share one session-scoped stack."""

from conftest import Onboarding, TenantUser

__all__ = ["Onboarding", "TenantUser"]
