"""Entry point of the agent's code zip on AgentCore Runtime.

The zip contains this file at its root, next to the `agent` and `agentpool` packages and their
dependencies. The runtime runs this file as a script, so the zip root is on `sys.path` and
`agent.app` imports as it does in the repository.
"""

from agent.app import main

if __name__ == "__main__":
    main()
