"""Helpers that the integration tests import; the fixtures themselves are in tests/conftest.py."""

from conftest import Onboarding, TenantUser, running_stack

__all__ = ["Onboarding", "TenantUser", "running_stack"]
