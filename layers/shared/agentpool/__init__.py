"""Shared code for agentpool's Lambda functions and agent, deployed as a Lambda layer."""
