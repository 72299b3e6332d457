"""Fixtures shared by the unit tests."""

from tests.unit.fast_moto import fast_transactions

__all__ = ["fast_transactions"]
