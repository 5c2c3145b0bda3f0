"""``TollgateStack``: assembles the constructs and publishes what a provider needs as stack outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.sample_api import SampleApi
from tollgate.cdk.billing import Billing
from tollgate.cdk.constants import (
    CONTEXT_CLOSE_GRACE_HOURS,
    CONTEXT_DUNNING_GRACE_DAYS,
    CONTEXT_SAMPLE_API,
    CONTEXT_STACK_NAME,
    DEFAULT_CLOSE_GRACE_HOURS,
    DEFAULT_DUNNING_GRACE_DAYS,
    DEFAULT_STACK_NAME,
    ID_BILLING,
    ID_DATA,
    ID_METERING,
    ID_MONITORING,
    ID_SAMPLE_API,
    OUTPUT_ALARM_TOPIC_ARN,
    OUTPUT_API_URL,
    OUTPUT_AUTHORIZER_FUNCTION_ARN,
    OUTPUT_CLOSE_QUEUE_URL,
    OUTPUT_CLOSE_STARTER_FUNCTION_NAME,
    OUTPUT_STRIPE_API_KEY_SECRET_ARN,
    OUTPUT_STRIPE_WEBHOOK_SECRET_ARN,
    OUTPUT_TABLE_NAME,
    OUTPUT_WEBHOOK_URL,
)
from tollgate.cdk.data import TollgateData
from tollgate.cdk.functions import function_code
from tollgate.cdk.metering import Metering
from tollgate.cdk.monitoring import Monitoring


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"false", "0", "no", "off", ""}
    return bool(value)


@dataclass(frozen=True)
class TollgateSettings:
    """Deploy-time settings, read from CDK context (``cdk.json`` or ``cdk synth -c closeGraceHours=2``)."""

    stack_name: str = DEFAULT_STACK_NAME
    close_grace_hours: int = DEFAULT_CLOSE_GRACE_HOURS
    dunning_grace_days: int = DEFAULT_DUNNING_GRACE_DAYS
    sample_api: bool = True

    @classmethod
    def from_context(cls, scope: Construct) -> TollgateSettings:
        def context(key: str, default: Any) -> Any:
            value = scope.node.try_get_context(key)
            return default if value is None else value

        settings = cls(
            stack_name=str(context(CONTEXT_STACK_NAME, DEFAULT_STACK_NAME)),
            close_grace_hours=int(context(CONTEXT_CLOSE_GRACE_HOURS, DEFAULT_CLOSE_GRACE_HOURS)),
            dunning_grace_days=int(context(CONTEXT_DUNNING_GRACE_DAYS, DEFAULT_DUNNING_GRACE_DAYS)),
            sample_api=_as_bool(context(CONTEXT_SAMPLE_API, True)),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0 <= self.close_grace_hours <= 23:
            raise ValueError(f"{CONTEXT_CLOSE_GRACE_HOURS} must be 0..23, got {self.close_grace_hours}")
        if self.dunning_grace_days < 0:
            raise ValueError(f"{CONTEXT_DUNNING_GRACE_DAYS} must be >= 0, got {self.dunning_grace_days}")


class TollgateStack(cdk.Stack):
    """Tollgate: the table, the metering authorizer, billing, monitoring and (by default) the sample API."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        settings: TollgateSettings | None = None,
        **kwargs: Any,
    ) -> None:
        settings = settings or TollgateSettings()
        settings.validate()
        kwargs.setdefault("stack_name", settings.stack_name)
        kwargs.setdefault(
            "description", "Tollgate: usage-based billing for APIs (metering authorizer, DynamoDB, Stripe)"
        )
        super().__init__(scope, id, **kwargs)
        self.settings = settings
        code = function_code(self)

        self.data = TollgateData(self, ID_DATA)
        self.metering = Metering(self, ID_METERING, table=self.data.table, code=code)
        self.billing = Billing(
            self,
            ID_BILLING,
            data=self.data,
            close_grace_hours=settings.close_grace_hours,
            dunning_grace_days=settings.dunning_grace_days,
            code=code,
        )
        self.monitoring = Monitoring(
            self,
            ID_MONITORING,
            authorizer_function=self.metering.authorizer_function,
            table=self.data.table,
            close_dead_letter_queue=self.billing.close_dead_letter_queue,
            schedule_dead_letter_queue=self.billing.schedule_dead_letter_queue,
        )
        self.sample_api: SampleApi | None = None
        if settings.sample_api:
            self.sample_api = SampleApi(
                self,
                ID_SAMPLE_API,
                authorizer_function=self.metering.authorizer_function,
                table=self.data.table,
                code=code,
            )
            self._output(OUTPUT_API_URL, self.sample_api.url, "Base URL of the sample metered API")

        self._output(OUTPUT_TABLE_NAME, self.data.table.table_name, "The Tollgate DynamoDB table")
        self._output(
            OUTPUT_STRIPE_API_KEY_SECRET_ARN,
            self.billing.stripe_api_key_secret.secret_arn,
            "Put the Stripe secret API key here (aws secretsmanager put-secret-value)",
        )
        self._output(
            OUTPUT_STRIPE_WEBHOOK_SECRET_ARN,
            self.billing.stripe_webhook_secret.secret_arn,
            "Put the Stripe webhook signing secret (whsec_...) here",
        )
        self._output(
            OUTPUT_WEBHOOK_URL, self.billing.webhook_url.url, "Register this URL as a Stripe webhook endpoint"
        )
        self._output(OUTPUT_ALARM_TOPIC_ARN, self.monitoring.topic.topic_arn, "Subscribe to be alerted")
        self._output(OUTPUT_CLOSE_QUEUE_URL, self.billing.close_queue.queue_url, "Per-customer close queue")
        self._output(
            OUTPUT_AUTHORIZER_FUNCTION_ARN,
            self.metering.authorizer_function.function_arn,
            "The metering authorizer, for MeteredApi in a provider's own app",
        )
        self._output(
            OUTPUT_CLOSE_STARTER_FUNCTION_NAME,
            self.billing.close_starter.function.function_name,
            'Invoke with {"period": "YYYY-MM"} to close a period by hand',
        )

    def _output(self, key: str, value: str, description: str) -> cdk.CfnOutput:
        return cdk.CfnOutput(self, key, value=value, description=description)
