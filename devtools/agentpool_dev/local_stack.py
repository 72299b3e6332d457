"""The local stack: the whole product on 127.0.0.1, with no AWS account.

- moto's server (its own process) serves Cognito, STS, IAM, DynamoDB, EventBridge, SQS, S3
  and CloudWatch, with the resources of template.yaml;
- the local API serves the template's routes and checks ID tokens like the Cognito authorizer;
- each Lambda function runs in its own worker processes with its template environment;
- the agent app runs as its own process, as on AgentCore Runtime;
- stand-ins serve Bedrock Converse, the AgentCore data plane and the AgentCore Gateway;
- an SQS poller delivers the metering queue to the aggregator, as Lambda's event source
  mapping does;
- the AgentCore stand-in writes its USAGE_LOGS records to the runtime usage log group in moto,
  and a log poller delivers them to RuntimeUsageFunction, as the subscription filter does.

Handler and agent code is the code that runs in AWS; only endpoints and settings differ.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3

from agentpool.tokens import CognitoJwtVerifier
from agentpool_dev.lambda_runner import FunctionSpec, LambdaRunner, base_environment
from agentpool_dev.local_api import LocalApi
from agentpool_dev.log_subscription_poller import LogSubscriptionPoller
from agentpool_dev.provision import ACCOUNT_ID, REGION, LocalResources, Provisioner
from agentpool_dev.sqs_poller import SqsPoller
from agentpool_dev.standins.agentcore import AgentCoreStandIn
from agentpool_dev.standins.bedrock import BedrockStandIn
from agentpool_dev.standins.gateway import GatewayStandIn
from agentpool_dev.template import REPO_ROOT, Template

logger = logging.getLogger(__name__)

STACK_NAME = "agentpool-local"
STATE_DIR = REPO_ROOT / ".agentpool"
# File in which a running local stack writes its endpoints for the CLI. AGENTPOOL_STATE_FILE
# overrides it.
STATE_FILE = Path(os.environ.get("AGENTPOOL_STATE_FILE") or STATE_DIR / "local-stack.json")
LOG_DIR = REPO_ROOT / "out" / "local" / "logs"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Log stream of the runtime usage log group that the AgentCore stand-in writes to.
USAGE_LOG_STREAM = "agentcore-standin-usage"


class PortInUseError(RuntimeError):
    """A port the local stack needs is taken by another process."""


def check_ports_free(ports: Ports) -> None:
    """Raise PortInUseError naming the first busy port and the variable that moves it."""
    for name, port in asdict(ports).items():
        with socket.socket() as probe:
            # As the servers do, so that connections of a stack that just stopped (TIME_WAIT)
            # do not count as a busy port, while a process still listening does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                variable = f"AGENTPOOL_{name.upper()}_PORT"
                raise PortInUseError(
                    f"port {port} ({variable}) is in use on 127.0.0.1: stop the process that "
                    f"holds it (another `make run`?) or set {variable} to a free port"
                ) from error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Ports:
    api: int = 3000
    agent: int = 8080
    moto: int = 5100
    bedrock: int = 5101
    agentcore: int = 5102
    gateway: int = 5103

    @classmethod
    def from_env(cls) -> Ports:
        defaults = cls()
        return cls(
            **{
                name: int(os.environ.get(f"AGENTPOOL_{name.upper()}_PORT", value))
                for name, value in asdict(defaults).items()
            }
        )

    @classmethod
    def free(cls) -> Ports:
        """Free ports for every server, for tests that must not clash with `make run`."""
        return cls(**{name: free_port() for name in asdict(cls())})


@dataclass(frozen=True)
class StackState:
    """Endpoints and resource names of a running local stack, written to STATE_FILE for clients."""

    api_url: str
    moto_url: str
    region: str
    user_pool_id: str
    user_pool_client_id: str
    issuer: str
    resources: dict[str, str]
    logs: str

    def save(self, path: Path = STATE_FILE) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path = STATE_FILE) -> StackState:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _wait_for_http(
    url: str, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}; see its log")
        try:
            with urllib.request.urlopen(url, timeout=1):  # noqa: S310 - 127.0.0.1 only
                return
        except urllib.error.HTTPError:
            return  # the server responds, even if with an error status
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not respond within {timeout} s; see the logs in out/local/logs")


class LocalStack:
    def __init__(
        self,
        ports: Ports | None = None,
        log_dir: Path = LOG_DIR,
        state_file: Path | None = STATE_FILE,
        max_concurrency: int = 4,
        runtime_usage_logs: bool = True,
    ) -> None:
        """`runtime_usage_logs=False` leaves the stand-in's usage records out of the log group,
        so no runtime usage is billed unless it is ingested by hand."""
        self.ports = ports or Ports.from_env()
        self.runtime_usage_logs = runtime_usage_logs
        self.log_dir = log_dir
        self.state_file = state_file
        self.max_concurrency = max_concurrency
        self.template = Template()
        self.moto_url = f"http://127.0.0.1:{self.ports.moto}"
        self._processes: list[subprocess.Popen[bytes]] = []
        self._stoppers: list[Any] = []
        self.runner = LambdaRunner()
        self.resources: LocalResources | None = None
        self.state: StackState | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StackState:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        check_ports_free(self.ports)
        try:
            self._start_moto()
            self.resources = Provisioner(
                self.template, self.aws_session(), self.moto_url
            ).provision(
                STACK_NAME,
                {"Environment": "dev", "LogLevel": "INFO"},
            )
            verifier = self._verifier()
            self._start_standins(verifier)
            self._start_agent()
            self._start_functions()
            self._start_api(verifier)
            self._start_pollers()
        except BaseException:
            self.stop()
            raise
        self.state = self._state()
        if self.state_file is not None:
            self.state.save(self.state_file)
        return self.state

    def stop(self) -> None:
        for stopper in reversed(self._stoppers):
            try:
                stopper()
            except Exception:
                logger.exception("stopping a local stack component failed")
        self._stoppers.clear()
        self.runner.stop()
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self._processes.clear()
        if self.state_file is not None and self.state_file.exists():
            self.state_file.unlink()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------- helpers
    def aws_session(self) -> boto3.session.Session:
        """Return a boto3 session with the local stack's platform (not tenant) credentials."""
        return boto3.session.Session(
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=REGION,
        )

    def client(self, service: str) -> Any:
        return self.aws_session().client(service, endpoint_url=self.moto_url)

    def name(self, logical_id: str) -> str:
        assert self.resources is not None, "the local stack is not started"  # noqa: S101
        return self.resources.refs[logical_id]

    def _log(self, name: str) -> Any:
        return (self.log_dir / f"{name}.log").open("ab")

    def _aws_environment(self) -> dict[str, str]:
        """Environment that points every AWS SDK call of a process at the local stack."""
        return {
            **LOCAL_CREDENTIALS,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f"http://127.0.0.1:{self.ports.bedrock}",
            "AWS_ENDPOINT_URL_BEDROCK_AGENTCORE": f"http://127.0.0.1:{self.ports.agentcore}",
            # No config or credential files of the developer's may leak in.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    # ----------------------------------------------------------------- components
    def _start_moto(self) -> None:
        log = self._log("moto")
        # moto's server with DynamoDB conditional writes made atomic, as they are in AWS.
        argv = [sys.executable, "-m", "agentpool_dev.moto_atomic"]
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [*argv, "-H", "127.0.0.1", "-p", str(self.ports.moto)],
            stdout=log,
            stderr=log,
            env={**base_environment(), **LOCAL_CREDENTIALS},
        )
        self._processes.append(process)
        _wait_for_http(f"{self.moto_url}/moto-api/", 30, process)

    def _verifier(self) -> CognitoJwtVerifier:
        pool_id = self.name("UserPool")
        return CognitoJwtVerifier(
            issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
            jwks_url=f"{self.moto_url}/{pool_id}/.well-known/jwks.json",
            audience=self.name("UserPoolClient"),
        )

    def _gateway_interceptor(self) -> str | None:
        """Return the logical id of the Gateway's REQUEST interceptor function, if any."""
        for resource in self.template.of_type("AWS::BedrockAgentCore::Gateway").values():
            for config in resource["Properties"].get("InterceptorConfigurations", []):
                if "REQUEST" in config["InterceptionPoints"]:
                    arn = config["Interceptor"]["Lambda"]["Arn"]
                    return str(arn["Fn::GetAtt"][0])
        return None

    def _start_standins(self, verifier: CognitoJwtVerifier) -> None:
        bedrock = BedrockStandIn(port=self.ports.bedrock)
        bedrock.start()
        self._stoppers.append(bedrock.stop)
        self.bedrock = bedrock

        agentcore = AgentCoreStandIn(
            agent_url=f"http://127.0.0.1:{self.ports.agent}",
            port=self.ports.agentcore,
            usage_log_sink=self._usage_log_sink(),
        )
        agentcore.start()
        self._stoppers.append(agentcore.stop)
        self.agentcore = agentcore

        gateway = GatewayStandIn(
            verifier=verifier,
            invoke_function=self.runner.invoke,
            port=self.ports.gateway,
            interceptor_function=self._gateway_interceptor(),
        )
        gateway.start()
        self._stoppers.append(gateway.stop)
        self.gateway = gateway
        assert self.resources is not None  # noqa: S101
        for logical_id in self.template.of_type("AWS::BedrockAgentCore::Gateway"):
            self.resources.attributes[(logical_id, "GatewayUrl")] = f"{gateway.url}/mcp"

    def _usage_log_sink(self) -> Any:
        """Return a function that writes USAGE_LOGS records to the template's log group."""
        log_group_id = self.template.vended_log_group("USAGE_LOGS")
        if not self.runtime_usage_logs or log_group_id is None:
            return None
        logs = self.client("logs")
        log_group = self.name(log_group_id)
        logs.create_log_stream(logGroupName=log_group, logStreamName=USAGE_LOG_STREAM)

        def write(records: list[dict[str, Any]]) -> None:
            logs.put_log_events(
                logGroupName=log_group,
                logStreamName=USAGE_LOG_STREAM,
                logEvents=[
                    {
                        "timestamp": record["event_timestamp"],
                        "message": json.dumps(record, separators=(",", ":")),
                    }
                    for record in records
                ],
            )

        return write

    def _start_agent(self) -> None:
        assert self.resources is not None  # noqa: S101
        env = {
            **base_environment(),
            **self._aws_environment(),
            "PORT": str(self.ports.agent),
            "AGENT_HOST": "127.0.0.1",
            "AGENT_PORT": str(self.ports.agent),
            "GATEWAY_URL": f"{self.gateway.url}/mcp",
            # The agent keeps conversation history in the Memory stand-in, as the tenant's user.
            "MEMORY_ID": self.resources.lookup("Memory", "MemoryId"),
            "TENANT_ACCESS_ROLE_ARN": self.resources.lookup("TenantAccessRole", "Arn"),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "shared"), str(REPO_ROOT)]),
        }
        log = self._log("agent")
        process = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, str(REPO_ROOT / "agent" / "app.py")],
            stdout=log,
            stderr=log,
            env=env,
            cwd=REPO_ROOT / "agent",
        )
        self._processes.append(process)
        _wait_for_http(f"http://127.0.0.1:{self.ports.agent}/ping", 60, process)

    def _start_functions(self) -> None:
        assert self.resources is not None  # noqa: S101
        for logical_id in self.template.functions():
            variables = self.resources.resolve(self.template.function_environment(logical_id))
            if "TOKEN_JWKS_URL" in variables:
                # The user pool's signing keys are served by moto, not by Cognito's domain.
                pool_id = self.name("UserPool")
                variables["TOKEN_JWKS_URL"] = f"{self.moto_url}/{pool_id}/.well-known/jwks.json"
            code_uri = self.template.function_setting(logical_id, "CodeUri")
            handler = self.template.function_setting(logical_id, "Handler")
            environment = {
                **base_environment(),
                **self._aws_environment(),
                **{key: str(value) for key, value in variables.items()},
                "AWS_LAMBDA_FUNCTION_NAME": self.name(logical_id),
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(
                    self.template.function_setting(logical_id, "MemorySize")
                ),
                "PYTHONPATH": str(REPO_ROOT / "layers" / "shared"),
                # No X-Ray daemon runs locally.
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
            self.runner.add(
                FunctionSpec(
                    logical_id=logical_id,
                    code_dir=(REPO_ROOT / code_uri).resolve(),
                    handler=handler,
                    environment=environment,
                    timeout_seconds=int(self.template.function_setting(logical_id, "Timeout")),
                    log_path=self.log_dir / f"{logical_id}.log",
                ),
                max_concurrency=self.max_concurrency,
            )

    def _start_api(self, verifier: CognitoJwtVerifier) -> None:
        apis = self.template.of_type("AWS::Serverless::Api")
        api_props = next(iter(apis.values()))["Properties"]
        gateway_responses = {
            kind: spec["ResponseTemplates"]["application/json"]
            for kind, spec in (api_props.get("GatewayResponses") or {}).items()
            if "application/json" in spec.get("ResponseTemplates", {})
        }
        gateway_statuses = {
            kind: int(spec["StatusCode"])
            for kind, spec in (api_props.get("GatewayResponses") or {}).items()
            if "StatusCode" in spec
        }
        api = LocalApi(
            routes=self.template.api_routes(),
            verifier=verifier,
            invoke=self.runner.invoke,
            stage=api_props["StageName"],
            gateway_responses=gateway_responses,
            gateway_statuses=gateway_statuses,
            port=self.ports.api,
        )
        api.start()
        self._stoppers.append(api.stop)
        self.api = api

    def _start_pollers(self) -> None:
        assert self.resources is not None  # noqa: S101
        self.pollers: list[SqsPoller] = []
        for logical_id, props in self.template.sqs_event_sources():
            queue_logical_id = props["Queue"]["Fn::GetAtt"][0]
            poller = SqsPoller(
                sqs=self.client("sqs"),
                queue_url=self.resources.refs[queue_logical_id],
                queue_arn=self.resources.attributes[(queue_logical_id, "Arn")],
                batch_size=int(props.get("BatchSize", 10)),
                invoke=functools.partial(self.runner.invoke, logical_id),
                reports_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
            )
            poller.start()
            self._stoppers.append(poller.stop)
            self.pollers.append(poller)
        self.log_pollers: list[LogSubscriptionPoller] = []
        for subscription in self.template.subscription_filters():
            if subscription.filter_pattern:
                raise ValueError(
                    f"{subscription.logical_id}: the local stack supports only the empty "
                    f"filter pattern, not {subscription.filter_pattern!r}"
                )
            log_poller = LogSubscriptionPoller(
                logs=self.client("logs"),
                log_group=self.name(subscription.log_group),
                filter_name=f"{STACK_NAME}-{subscription.logical_id}",
                owner=ACCOUNT_ID,
                invoke=functools.partial(self.runner.invoke, subscription.function),
                dead_letter=self._function_dead_letter(subscription.function),
            )
            log_poller.start()
            self._stoppers.append(log_poller.stop)
            self.log_pollers.append(log_poller)

    def _function_dead_letter(self, function_id: str) -> Any:
        """Return a sender to the function's SQS DeadLetterQueue, or None if it has none."""
        assert self.resources is not None  # noqa: S101
        config = self.template.function_setting(function_id, "DeadLetterQueue")
        if not config or config.get("Type") != "SQS":
            return None
        queue_id = config["TargetArn"]["Fn::GetAtt"][0]
        queue_url = self.resources.refs[queue_id]
        sqs = self.client("sqs")

        def send(body: str) -> None:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        return send

    def wait_for_metering(self, timeout: float = 60) -> None:
        """Block until every log event is delivered, every queue is empty and no batch is in flight.

        Log pollers are checked first, because their function puts events on the bus.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(poller.idle() for poller in self.log_pollers) and all(
                poller.idle() for poller in self.pollers
            ):
                return
            time.sleep(0.2)
        raise TimeoutError(f"metering queues not drained within {timeout} s")

    def _state(self) -> StackState:
        assert self.resources is not None  # noqa: S101
        pool_id = self.name("UserPool")
        outputs = self.resources.resolve(
            {
                name: spec["Value"]
                for name, spec in self.template.document.get("Outputs", {}).items()
            }
        )
        outputs["ApiUrl"] = self.api.url
        return StackState(
            api_url=self.api.url,
            moto_url=self.moto_url,
            region=REGION,
            user_pool_id=pool_id,
            user_pool_client_id=self.name("UserPoolClient"),
            issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
            resources=outputs,
            logs=str(self.log_dir),
        )
