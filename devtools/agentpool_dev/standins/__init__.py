"""Local stand-ins for AWS services that moto does not serve: Bedrock, AgentCore and its Gateway."""
