"""A provider adopts Tollgate as the deploy guide says, outside this repository, from the built wheel.

Builds the wheel, installs ``tollgate[cdk]`` (versions pinned from uv.lock) into a fresh venv inside a copy of
``examples/provider-app`` in a temporary directory, runs the ``tollgate`` CLI from there, and synthesizes the
example with ``npx cdk synth`` (real bundling: each Lambda asset is built from the installed package). Then:
every method of the provider's REST and HTTP APIs is behind the Tollgate authorizer with caching off (but the
signed-link usage page), both APIs' access logs go to the request ledger, cdk-nag and cfn-lint find nothing,
the authorizer's asset has no stripe or pydantic and ships bytecode, and no path of this repository appears
in what was synthesized.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.infra.cfn import REPO_ROOT, cfn_lint_findings, props, resources

pytestmark = pytest.mark.e2e
EXAMPLE = REPO_ROOT / "examples" / "provider-app"


def _uv() -> str:
    for candidate in (REPO_ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.skip("uv is not installed (make setup installs it into .tools/)")


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 900) -> str:
    done = subprocess.run(  # noqa: S603 - commands built from fixed parts
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The provider's shell: this machine's environment (certificates, proxies, caches) less everything that
    points into this repository (its venv, PYTHONPATH, uv's project settings), with fake AWS credentials."""
    dropped = {
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHOME",
        "UV_PROJECT_ENVIRONMENT",
        "CDK_OUTDIR",
        "CDK_CONTEXT_JSON",
    }
    env = {k: v for k, v in os.environ.items() if k not in dropped and str(REPO_ROOT) not in v}
    env["PATH"] = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if str(REPO_ROOT) not in p
    )
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "TABLE_NAME",
        "TOLLGATE_STACK",
    ):
        env.pop(name, None)
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="eu-west-1")
    env.update(extra)
    return env


@dataclass(frozen=True)
class Adopted:
    wheel: Path
    app_dir: Path
    python: Path
    tollgate: Path
    assembly: Path
    template: dict[str, Any]


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory) -> Adopted:
    work = tmp_path_factory.mktemp("provider")
    uv = _uv()
    wheel_dir = work / "dist"
    _run([uv, "build", "--package", "tollgate", "--wheel", "--out-dir", str(wheel_dir), "--quiet"], REPO_ROOT)
    (wheel,) = wheel_dir.glob("tollgate-*.whl")
    constraints = work / "constraints.txt"
    constraints.write_text(
        _run(
            [
                uv,
                "export",
                "--package",
                "tollgate",
                "--extra",
                "cdk",
                "--no-dev",
                "--no-hashes",
                "--no-emit-workspace",
                "--frozen",
                "--quiet",
            ],
            REPO_ROOT,
        )
    )

    app_dir = work / "provider-app"
    shutil.copytree(EXAMPLE, app_dir, ignore=shutil.ignore_patterns("cdk.out", ".venv", "node_modules"))
    env = _clean_env()
    # The deploy guide's set-up, as a provider runs it in their app directory.
    _run([uv, "venv", "--quiet", "--python", sys.executable, ".venv"], app_dir, env)
    python = app_dir / ".venv" / "bin" / "python"
    _run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(constraints), f"{wheel}[cdk]"],
        app_dir,
        env,
    )
    _run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], app_dir, env)
    _run(["npx", "cdk", "synth", "--quiet"], app_dir, env)

    assembly = app_dir / "cdk.out"
    template = json.loads((assembly / "WeatherApi.template.json").read_text())
    return Adopted(wheel, app_dir, python, app_dir / ".venv" / "bin" / "tollgate", assembly, template)


def test_the_wheel_installs_only_the_tollgate_package(adopted: Adopted) -> None:
    code = (
        "import importlib.metadata as m; print('\\n'.join(sorted({f.parts[0] for f in m.files('tollgate')})))"
    )
    top_level = _run([str(adopted.python), "-c", code], adopted.app_dir, _clean_env()).split()
    assert [name for name in top_level if not name.endswith((".dist-info", ".."))] == ["tollgate"]


def test_every_provider_method_is_metered_without_caching(adopted: Adopted) -> None:
    template = adopted.template
    (rest_authorizer_id,) = resources(template, "AWS::ApiGateway::Authorizer")
    rest_authorizer = props(template["Resources"][rest_authorizer_id])
    assert rest_authorizer["AuthorizerResultTtlInSeconds"] == 0
    methods = resources(template, "AWS::ApiGateway::Method")
    # the usage page a signed link opens: its token is the credential, no API key, not metered
    (portal_id,) = [i for i, m in methods.items() if props(m)["AuthorizationType"] == "NONE"]
    assert props(methods.pop(portal_id))["HttpMethod"] == "GET"
    assert "/portal" in json.dumps(template["Outputs"]["PortalUrl"]["Value"])
    # GET /forecast/{city}, GET /history/{city}, GET /usage, GET /usage/export, GET /usage/page,
    # GET|PUT /usage/budget, GET|PUT /usage/alerts, GET|PUT|DELETE /usage/alerts/webhook
    assert len(methods) == 12
    for logical_id, method in methods.items():
        assert props(method)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(method)["AuthorizerId"] == {"Ref": rest_authorizer_id}, logical_id

    (http_authorizer_id,) = resources(template, "AWS::ApiGatewayV2::Authorizer")
    assert props(template["Resources"][http_authorizer_id])["AuthorizerResultTtlInSeconds"] == 0
    routes = resources(template, "AWS::ApiGatewayV2::Route")
    assert sorted(props(r)["RouteKey"] for r in routes.values()) == [
        "DELETE /usage/alerts/webhook",
        "GET /forecast/{city}",
        "GET /usage",
        "GET /usage/alerts",
        "GET /usage/alerts/webhook",
        "GET /usage/budget",
        "GET /usage/export",
        "GET /usage/page",
        "PUT /usage/alerts",
        "PUT /usage/alerts/webhook",
        "PUT /usage/budget",
    ]
    for logical_id, route in routes.items():
        assert props(route)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(route)["AuthorizerId"] == {"Ref": http_authorizer_id}, logical_id


def test_both_apis_log_every_request_to_the_ledger(adopted: Adopted) -> None:
    template = adopted.template
    streams = resources(template, "AWS::KinesisFirehose::DeliveryStream")
    (rest_stream_id,) = [
        i for i, s in streams.items() if props(s)["DeliveryStreamName"].startswith("amazon-apigateway-")
    ]
    (rest_stage,) = resources(template, "AWS::ApiGateway::Stage").values()
    assert props(rest_stage)["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": [rest_stream_id, "Arn"]}
    # the provider's own stage settings are kept next to the ledger's access log
    (settings,) = props(rest_stage)["MethodSettings"]
    assert (settings["LoggingLevel"], settings["ThrottlingRateLimit"]) == ("ERROR", 500)

    (http_stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    log_group = props(http_stage)["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    (subscription,) = resources(template, "AWS::Logs::SubscriptionFilter").values()
    assert props(subscription)["LogGroupName"] == {"Ref": log_group}
    (http_stream_id,) = set(streams) - {rest_stream_id}
    assert props(subscription)["DestinationArn"] == {"Fn::GetAtt": [http_stream_id, "Arn"]}


def test_cdk_nag_and_cfn_lint_find_nothing(adopted: Adopted) -> None:
    report = json.loads((adopted.assembly / "validation-report.json").read_text())
    violations = [v for plugin in report.get("pluginReports", []) for v in plugin.get("violations", [])]
    assert violations == []
    assert all(plugin["summary"]["status"] == "success" for plugin in report.get("pluginReports", []))
    assert cfn_lint_findings(adopted.assembly / "WeatherApi.template.json") == []


def _asset_of(adopted: Adopted, handler: str) -> Path:
    functions = resources(adopted.template, "AWS::Lambda::Function")
    (function,) = [f for f in functions.values() if props(f)["Handler"] == handler]
    asset_hash = function["Metadata"]["aws:asset:path"]
    return adopted.assembly / asset_hash


def test_the_authorizer_asset_is_lean_and_compiled(adopted: Adopted) -> None:
    asset = _asset_of(adopted, "tollgate.metering.handler.handler")
    top = {p.name for p in asset.iterdir()}
    assert "tollgate" in top
    assert not top & {"stripe", "pydantic", "pydantic_core", "typer", "rich", "yaml"}
    assert not (asset / "tollgate" / "cli").exists()
    assert not (asset / "tollgate" / "cdk").exists()
    assert not (asset / "tollgate" / "billing").exists()
    assert (asset / "tollgate" / "metering" / "__pycache__" / "handler.cpython-312.pyc").is_file()
    size = sum(f.stat().st_size for f in asset.rglob("*") if f.is_file())
    print(f"\nauthorizer asset, unzipped: {size / 1e6:.1f} MB")


def test_nothing_synthesized_names_this_repository(adopted: Adopted) -> None:
    repo = str(REPO_ROOT)
    for path in adopted.assembly.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".py", ".txt"}:
            assert repo not in path.read_text(errors="replace"), path


@pytest.fixture
def local_table() -> Iterator[dict[str, str]]:
    """A moto DynamoDB server on 127.0.0.1 with a Tollgate table, standing in for a deployed stack's table."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        import boto3

        from tollgate.dal.schema import create_table

        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "dynamodb",
            endpoint_url=endpoint,
            region_name="eu-west-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        create_table(client, "weather-tollgate")
        yield {"AWS_ENDPOINT_URL": endpoint, "TABLE_NAME": "weather-tollgate"}
    finally:
        server.stop()


def test_the_cli_works_from_the_providers_directory(adopted: Adopted, local_table: dict[str, str]) -> None:
    assert "plans" in _run([str(adopted.tollgate), "--help"], adopted.app_dir, _clean_env())

    unconfigured = subprocess.run(  # noqa: S603
        [str(adopted.tollgate), "plans", "create", "plans.yaml"],
        cwd=adopted.app_dir,
        env=_clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert unconfigured.returncode == 1
    assert unconfigured.stderr.strip().count("\n") == 0, unconfigured.stderr
    assert "no table configured" in unconfigured.stderr
    assert "--stack" in unconfigured.stderr

    env = _clean_env(**local_table)
    created = _run([str(adopted.tollgate), "plans", "create", "plans.yaml"], adopted.app_dir, env)
    assert "payg" in created
    assert "pro" in created
    listed = _run([str(adopted.tollgate), "plans", "list"], adopted.app_dir, env)
    assert "Pay as you go" in listed


def test_the_cli_installs_on_its_own_without_the_cdk(adopted: Adopted, tmp_path: Path) -> None:
    """``uv tool install`` of the bare wheel (no [cdk] extra): the CLI runs from any directory."""
    tools, bin_dir, elsewhere = tmp_path / "tools", tmp_path / "bin", tmp_path / "anywhere"
    elsewhere.mkdir()
    env = _clean_env(UV_TOOL_DIR=str(tools), UV_TOOL_BIN_DIR=str(bin_dir))
    _run(
        [_uv(), "tool", "install", "--quiet", "--python", sys.executable, str(adopted.wheel)], elsewhere, env
    )
    tollgate = bin_dir / "tollgate"
    assert "customers" in _run([str(tollgate), "--help"], elsewhere, env)
    unconfigured = subprocess.run(  # noqa: S603
        [str(tollgate), "usage", "acme"], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
    )
    assert unconfigured.returncode == 1
    assert unconfigured.stderr.startswith("error: no table configured"), unconfigured.stderr
    tool_python = next(tools.glob("tollgate/bin/python"))
    missing = "import importlib.util as u; print(u.find_spec('aws_cdk') is None)"
    assert _run([str(tool_python), "-c", missing], elsewhere, env).strip() == "True"
