"""The agentpool agent that runs on Amazon Bedrock AgentCore Runtime."""
