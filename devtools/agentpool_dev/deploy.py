"""Build the agent's code zip, upload it and deploy the stack with SAM CLI.

`python -m agentpool_dev.deploy artifact` builds build/agent.zip with no AWS account: pip
fetches the linux arm64 wheels of the agent's dependencies from PyPI.
`python -m agentpool_dev.deploy deploy --env dev` also uploads the zip to the account's
artifact bucket and runs `sam build` and `sam deploy --config-env dev` with the zip's location.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from agentpool_dev.template import REPO_ROOT

logger = logging.getLogger(__name__)

BUILD_DIR = REPO_ROOT / "build"
STAGING_DIR = BUILD_DIR / "agent-artifact"
ARTIFACT_PATH = BUILD_DIR / "agent.zip"
REQUIREMENTS = [
    REPO_ROOT / "agent" / "requirements.txt",
    REPO_ROOT / "layers" / "shared" / "requirements.txt",
]
# AgentCore Runtime runs Python code zips on linux arm64 (Graviton).
PIP_PLATFORM = "manylinux2014_aarch64"
PYTHON_VERSION = "3.11"
# A fixed timestamp makes the zip, and so its SHA-256 and S3 key, depend on content only.
ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Artifact:
    path: Path
    sha256: str

    @property
    def key(self) -> str:
        return f"agent/{self.sha256}.zip"


def _copy_package(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build_artifact(staging: Path = STAGING_DIR, output: Path = ARTIFACT_PATH) -> Artifact:
    """Build the zip: main.py, the agent and agentpool packages, and arm64 dependencies."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--platform", PIP_PLATFORM, "--implementation", "cp", "--python-version", PYTHON_VERSION,
        "--only-binary=:all:", "--target", str(staging),
    ]  # fmt: skip
    for requirements in REQUIREMENTS:
        command += ["-r", str(requirements)]
    subprocess.run(command, check=True)  # noqa: S603 - fixed argv
    _copy_package(REPO_ROOT / "agent", staging / "agent")
    _copy_package(REPO_ROOT / "layers" / "shared" / "agentpool", staging / "agentpool")
    shutil.copy2(REPO_ROOT / "agent" / "main.py", staging / "main.py")

    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(staging.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts:
                continue
            info = zipfile.ZipInfo(path.relative_to(staging).as_posix(), ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # AgentCore Runtime keeps POSIX permissions, so every file must be readable.
            info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
            archive.writestr(info, path.read_bytes())
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    logger.info("agent artifact built path=%s sha256=%s", output, digest)
    return Artifact(output, digest)


def artifact_bucket_name(account_id: str, region: str) -> str:
    return f"agentpool-artifacts-{account_id}-{region}"


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the artifact bucket if it is missing: private, versioned, encrypted, TLS only."""
    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NoSuchBucket", "NotFound"):
            raise
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    logger.info("artifact bucket created bucket=%s", bucket)


def upload_artifact(artifact: Artifact, session: boto3.session.Session, region: str) -> str:
    """Upload the zip unless the bucket already has it, and return the bucket name."""
    account_id = session.client("sts").get_caller_identity()["Account"]
    bucket = artifact_bucket_name(account_id, region)
    s3 = session.client("s3", region_name=region)
    ensure_bucket(s3, bucket, region)
    try:
        s3.head_object(Bucket=bucket, Key=artifact.key)
        logger.info("agent artifact already uploaded bucket=%s key=%s", bucket, artifact.key)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("404", "NotFound"):
            raise
        s3.upload_file(str(artifact.path), bucket, artifact.key)
        logger.info("agent artifact uploaded bucket=%s key=%s", bucket, artifact.key)
    return bucket


def deploy_settings(
    environment: str, config: Path = REPO_ROOT / "samconfig.toml"
) -> tuple[str, str]:
    """Return the region and parameter overrides of `environment` in samconfig.toml."""
    document = tomllib.loads(config.read_text(encoding="utf-8"))
    if environment not in document:
        raise SystemExit(f"samconfig.toml has no environment {environment!r}: use dev or prod")
    section = document[environment]
    region = section.get("global", {}).get("parameters", {}).get("region")
    overrides = section.get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
    if not region:
        raise SystemExit(f"samconfig.toml sets no region for {environment!r}")
    return str(region), str(overrides)


def deploy(environment: str, sam: str) -> None:
    region, overrides = deploy_settings(environment)
    artifact = build_artifact()
    bucket = upload_artifact(artifact, boto3.session.Session(region_name=region), region)
    # --parameter-overrides replaces samconfig.toml's list instead of adding to it, so the
    # environment's own overrides are passed again.
    overrides = f"{overrides} AgentArtifactBucket={bucket} AgentArtifactKey={artifact.key}"
    environment_variables = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    commands = [
        [sam, "build", "--template", "template.yaml"],
        [sam, "deploy", "--config-env", environment, "--parameter-overrides", overrides.strip()],
    ]
    for command in commands:
        subprocess.run(command, check=True, cwd=REPO_ROOT, env=environment_variables)  # noqa: S603


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agentpool_dev.deploy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("artifact", help="Build build/agent.zip (needs PyPI, no AWS account).")
    deploy_parser = commands.add_parser("deploy", help="Build, upload and deploy one environment.")
    deploy_parser.add_argument(
        "--env", required=True, help="samconfig.toml environment: dev or prod."
    )
    deploy_parser.add_argument("--sam", default="sam", help="Path of the SAM CLI executable.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "artifact":
        artifact = build_artifact()
        print(f"{artifact.path} sha256={artifact.sha256}")
    else:
        deploy(args.env, args.sam)


if __name__ == "__main__":
    main()
