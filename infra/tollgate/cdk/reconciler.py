"""``LedgerReconciler``: after each period's close, reconcile counters, request ledger and invoices.

Made by ``Tollgate(ledger=True)``. The close watchdog, once its check finds the close of the period complete,
invokes the **ledger reconciler** (``tollgate.billing.close.reconciler``) asynchronously with the period; the
reconciler asks the ledger through Athena and reads the table, then publishes ``UnexplainedCredits`` and
``FlaggedCustomers`` (alarmed in ``Monitoring``). Like the other asynchronously invoked functions it is
retried twice, then its event goes to its failure queue (alarmed); Athena failing is not a function error but
a ``ReconciliationFailures`` metric (alarmed).

Its role may: Query the customers on ``gsi1``; BatchGetItem (the counters) and Query (close records,
threshold invoices) on the table; ask the ledger through Athena (``UsageLedger.grant_queries``); send to its
failure queue. The watchdog's role gets ``lambda:InvokeFunction`` on this function only, and its name in
``LEDGER_RECONCILER_FUNCTION``.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from tollgate.billing.close.settings import LEDGER_RECONCILER_FUNCTION
from tollgate.cdk.billing import (
    ONE_VCPU_MEMORY_MB,
    configure_async_invoke,
    failure_queue,
    send_failures_statement,
)
from tollgate.cdk.constants import (
    ENV_TABLE_NAME,
    HANDLER_LEDGER_RECONCILER,
    ID_LEDGER_RECONCILER_FAILURES,
    ID_LEDGER_RECONCILER_FUNCTION,
    SCHEDULED_RESERVED_CONCURRENCY,
    SERVICE_PERIOD_CLOSE,
)
from tollgate.cdk.data import TollgateData
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.ledger import UsageLedger

RECONCILER_TABLE_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:Query")  # counters; close records
INVOKE_ACTIONS = ("lambda:InvokeFunction",)


class LedgerReconciler(Construct):
    """The reconciler function (``function``), its failure queue, and the watchdog's right to start it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        data: TollgateData,
        ledger: UsageLedger,
        watchdog: TollgateFunction,
    ) -> None:
        super().__init__(scope, id)
        table = data.table
        self.failure_queue = failure_queue(self, ID_LEDGER_RECONCILER_FAILURES, "the ledger reconciler")
        self.reconciler = TollgateFunction(
            self,
            ID_LEDGER_RECONCILER_FUNCTION,
            handler=HANDLER_LEDGER_RECONCILER,
            description="Tollgate ledger reconciler: counters = request ledger = invoices of a closed period",
            service_name=SERVICE_PERIOD_CLOSE,
            # Every customer's counters and close records, read as the watchdog reads them (one vCPU,
            # Lambda's longest timeout), and one Athena query (reconciler.ATHENA_TIMEOUT_SECONDS).
            memory_size=ONE_VCPU_MEMORY_MB,
            timeout=cdk.Duration.minutes(15),
            environment={ENV_TABLE_NAME: table.table_name, **ledger.query_environment()},
            reserved_concurrency=SCHEDULED_RESERVED_CONCURRENCY,
            statements=[
                iam.PolicyStatement(
                    sid="ListCustomers", actions=["dynamodb:Query"], resources=[data.gsi1_arn]
                ),
                iam.PolicyStatement(
                    sid="ReadCountersAndCloses",
                    actions=list(RECONCILER_TABLE_ACTIONS),
                    resources=[table.table_arn],
                ),
                send_failures_statement(self.failure_queue),
            ],
        )
        ledger.grant_queries(self.reconciler.role)
        configure_async_invoke(self.reconciler, self.reconciler.function, self.failure_queue)
        watchdog.function.add_environment(LEDGER_RECONCILER_FUNCTION, self.function.function_name)
        watchdog.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="StartLedgerReconciler",
                actions=list(INVOKE_ACTIONS),
                resources=[self.function.function_arn],
            )
        )

    @property
    def function(self) -> lambda_.Function:
        return self.reconciler.function
