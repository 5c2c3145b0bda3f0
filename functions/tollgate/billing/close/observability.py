"""The period close's logger and metrics, created once (Powertools: JSON logs, CloudWatch EMF metrics).

Shared by the starter, the worker and the close watchdog (all three are the period close's service).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

from tollgate.observability import METRICS_NAMESPACE

SERVICE = "tollgate-period-close"

# Metric names (namespace Tollgate): alarms and dashboards refer to these.
STRIPE_FAILURES = "StripeFailures"  # a Stripe call failed during a close (the message is retried)
INVOICES_FINALIZED = "InvoicesFinalized"  # an invoice was finalized and recorded (once per invoice)
TOTAL_MISMATCH = "TotalMismatch"  # Stripe's invoice total differs from our statement total
CLOSES_NO_CHARGE = "ClosesNoCharge"  # a customer-period was rated with nothing to bill (once per record)
CLOSE_FAILURES = "CloseFailures"  # one attempt at a customer-period's close failed (the message is retried)
STRIPE_RATE_LIMITED = "StripeRateLimited"  # Stripe requests answered 429 and sent again after a backoff
# The close watchdog, once per run, for the period just closed (tollgate.billing.close.watchdog):
CLOSES_CHECKED = "ClosesChecked"  # customers whose close of the period was checked
CLOSES_UNFINISHED = "ClosesUnfinished"  # ... without a finalized or no_charge record
CLOSES_MISMATCHED = "ClosesMismatched"  # ... finalized with Stripe's total differing from the statement's
CLOSE_PROBLEMS = "CloseProblems"  # unfinished + mismatched: anything above 0 pages
# The ledger reconciliation the watchdog starts once a close finished (tollgate.billing.close.reconciler),
# once per run for the period; a second run publishes the same values (alarms read their maximum):
CUSTOMERS_RECONCILED = "CustomersReconciled"  # rows of the report (customers; unknown ones the ledger names)
UNEXPLAINED_CREDITS = "UnexplainedCredits"  # credits of the differences no rule explains: above 0 pages
FLAGGED_CUSTOMERS = "FlaggedCustomers"  # customers with such a difference
RECONCILIATION_FAILURES = "ReconciliationFailures"  # 1: the reconciliation could not run (Athena, ...)

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
