"""cdk-nag (AwsSolutions) and cfn-lint on the synthesized templates, and the acknowledgements on record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs

from tests.infra.cfn import cfn_lint_findings
from tests.infra.conftest import REPORT_INSTEAD_OF_FAILING, SKIP_BUNDLING, ProviderApps, Synthesized
from tollgate.cdk.nag import NAG_PACK_NAME, acknowledge, add_checks

ACKNOWLEDGED_RULES_METADATA = "aws:cdk:acknowledged-rules"
# Every finding the Tollgate stack acknowledges. A new acknowledgement must be added here, deliberately.
EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-L1",  # python3.12 pinned with the cp312 wheels
    "AwsSolutions-SMG4",  # Stripe credentials: not rotatable by Secrets Manager; the link secret: put anew
    "AwsSolutions-SQS3",  # the schedule DLQ and the failure queues (Lambda on-failure destinations) are DLQs
    "AwsSolutions-COG4",  # the metered routes use the Lambda REQUEST authorizer
    "AwsSolutions-APIG4",  # GET /portal: the usage page's signed link is its credential
    "AwsSolutions-APIG3",  # WAF on the sample API is the provider's choice
    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]",
    "AwsSolutions-S1",  # the usage ledger's server access log bucket does not log itself
    # Firehose names the ledger's objects itself: its role writes them by prefix (ledger/, ledger-errors/)
    "AwsSolutions-IAM5[Resource::<TollgateLedgerBucket00773FF3.Arn>/ledger/*]",
    "AwsSolutions-IAM5[Resource::<TollgateLedgerBucket00773FF3.Arn>/ledger-errors/*]",
    # Athena names its query results itself: the usage function (GET /usage/export) writes them by prefix
    "AwsSolutions-IAM5[Resource::<TollgateLedgerBucket00773FF3.Arn>/athena-results/*]",
}


def nag_violations(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        violation
        for plugin in report["pluginReports"]
        if plugin["pluginName"] == NAG_PACK_NAME
        for violation in plugin.get("violations", [])
    ]


def violating_paths(violations: list[dict[str, Any]], rule: str) -> set[str]:
    return {
        resource["constructPath"]
        for violation in violations
        if violation["ruleName"] == rule
        for resource in violation.get("violatingConstructs", violation.get("violatingResources", []))
    }


def test_cdk_nag_reports_no_errors_or_warnings(tollgate: Synthesized) -> None:
    violations = nag_violations(tollgate.validation_report())
    summary = [
        (v["ruleName"], v["severity"], sorted(violating_paths([v], v["ruleName"]))) for v in violations
    ]
    assert violations == [], json.dumps(summary, indent=1)


def test_no_plugin_reports_a_failure(tollgate: Synthesized) -> None:
    report = tollgate.validation_report()
    failures = [p["pluginName"] for p in report["pluginReports"] if p.get("conclusion") == "failure"]
    assert failures == []


def test_cdk_nag_really_runs_and_acknowledgements_silence_only_their_construct(tmp_path: Path) -> None:
    """Control: the same wiring flags a queue without TLS enforcement, unless acknowledged on it."""
    app = cdk.App(outdir=str(tmp_path), context={**SKIP_BUNDLING, **REPORT_INSTEAD_OF_FAILING})
    stack = cdk.Stack(app, "Control")
    flagged = sqs.Queue(stack, "Flagged", enforce_ssl=False)
    waived = sqs.Queue(stack, "Waived", enforce_ssl=False)
    acknowledge(
        waived, "AwsSolutions-SQS4", "Control case: this queue is acknowledged in the test on purpose."
    )
    add_checks(app)
    app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    paths = violating_paths(nag_violations(report), "AwsSolutions-SQS4")
    assert flagged.node.path + "/Resource" in paths
    assert not [p for p in paths if p.startswith(waived.node.path)]


def test_acknowledge_refuses_an_empty_justification(fresh_stack: Any) -> None:
    with pytest.raises(ValueError, match="justification"):
        acknowledge(fresh_stack(), "AwsSolutions-SQS4", "because")


def test_every_acknowledgement_is_expected_and_justified(tollgate: Synthesized) -> None:
    acknowledged: dict[str, list[str]] = {}
    for path, entries in tollgate.construct_metadata().items():
        for entry in entries:
            if entry["type"] != ACKNOWLEDGED_RULES_METADATA:
                continue
            for qualified_id, reason in entry["data"].items():
                rule = qualified_id.split("::", 1)[1]  # "Annotation::AwsSolutions-L1" -> "AwsSolutions-L1"
                acknowledged.setdefault(rule, []).append(path)
                assert len(reason.split()) >= 12, (path, rule, reason)
    assert set(acknowledged) == EXPECTED_ACKNOWLEDGEMENTS
    # Acknowledged where they apply, never for the whole stack.
    stack_path = "/" + tollgate.stack.node.path
    assert all(stack_path not in (paths) for paths in acknowledged.values())


def test_no_error_or_warning_annotations(tollgate: Synthesized) -> None:
    messages = [
        (m.level, m.id, m.entry.data)
        for m in tollgate.artifact.messages
        if str(m.level).lower().endswith(("error", "warning", "warn"))
    ]
    assert messages == []


def test_cfn_lint_finds_no_errors(tollgate: Synthesized, provider_apps: ProviderApps) -> None:
    for synthesized in (tollgate, provider_apps.rest, provider_apps.http):
        assert cfn_lint_findings(synthesized.template_path) == [], synthesized.template_path.name


def test_only_dead_letter_queues_are_acknowledged_as_such(tollgate: Synthesized) -> None:
    """SQS3 ("no DLQ") is acknowledged on exactly the queues that are themselves where failures land: the
    schedule DLQ and each scheduled function's on-failure queue; never on the close queue or its DLQ."""
    acknowledged = {
        path
        for path, entries in tollgate.construct_metadata().items()
        for entry in entries
        if entry["type"] == ACKNOWLEDGED_RULES_METADATA
        and any(rule.endswith("AwsSolutions-SQS3") for rule in entry["data"])
    }
    names = {path.rsplit("/", 1)[-1] for path in acknowledged}
    assert names == {
        "ScheduleDeadLetterQueue",
        "CloseStarterFailureQueue",
        "DunningSweeperFailureQueue",
        "CloseWatchdogFailureQueue",
        "AlertStreamFailureQueue",  # the alert stream mapping's on-failure destination
        "LedgerReconcilerFailureQueue",  # the ledger reconciler's (the app's stack has a ledger)
    }
