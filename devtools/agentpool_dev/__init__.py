"""Operator CLI and local stack for agentpool: run the whole product on one machine."""
