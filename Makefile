# agentpool developer commands. `.ci/run` runs `make test` on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
STAMP := $(VENV)/.installed
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
ENV ?= dev
AGENT_ARTIFACT := build/agent.zip
NODE_STAMP := node_modules/.installed

.PHONY: install demo run test unit integration security lint build agent-artifact deploy bench clean

install: $(STAMP)

$(STAMP): requirements-dev.txt layers/shared/requirements.txt agent/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# SAM CLI pins its own boto3, so it lives in a virtualenv of its own.
$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==1.170.0
	touch $@

# checkov pins versions that clash with the project's, so it also has a virtualenv of its own.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.3.30
	touch $@

# Test-only Node tools (the IAM policy simulator of tests/security/iam), pinned by the lock file.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

demo: $(STAMP)
	$(BIN)/agentpool demo

run: $(STAMP)
	$(BIN)/agentpool local run

test: $(STAMP) $(NODE_STAMP) lint build $(AGENT_ARTIFACT)
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

security: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest tests/security

# Benchmarks, never part of `make test`: about 10 minutes on 2 cores. Rewrites docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Needs no AWS account: `sam validate --lint` runs cfn-lint locally and sends nothing to AWS.
# SAM CLI still loads the AWS profile, so AWS_PROFILE is unset in case it names a missing one.
# cfn-lint's informational checks are on so that every stateful resource states what happens to
# its data when the stack is deleted.
lint: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/shared/agentpool functions agent devtools/agentpool_dev
	$(BIN)/cfn-lint --include-checks I -- template.yaml
	env -u AWS_PROFILE SAM_CLI_TELEMETRY=0 $(SAM) validate --lint --region us-east-1 --template template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
	  --file template.yaml

# Builds for arm64 without a container: aws-lambda-builders fetches manylinux aarch64 wheels of
# the layer's requirements from PyPI, so it needs python3.11 on PATH and PyPI, but no AWS account.
build: $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM) build --template template.yaml

# The agent's code zip for AgentCore Runtime: like `build`, it needs PyPI but no AWS account.
agent-artifact: $(AGENT_ARTIFACT)

$(AGENT_ARTIFACT): $(STAMP) agent/requirements.txt layers/shared/requirements.txt \
		$(wildcard agent/*.py layers/shared/agentpool/*.py layers/shared/agentpool/*/*.py)
	$(BIN)/python -m agentpool_dev.deploy artifact

# Needs AWS credentials; see docs/deploy.md. Never run in CI.
deploy: $(STAMP) $(SAM_STAMP)
	$(BIN)/python -m agentpool_dev.deploy deploy --env $(ENV) --sam $(SAM)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .agentpool out build node_modules
