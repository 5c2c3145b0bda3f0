"""The CloudFormation output keys of a stack holding the ``Tollgate`` construct.

The CDK construct (``tollgate.cdk``) writes them and the CLI (``tollgate --stack NAME``) reads them: both
import these names, so the two cannot drift. Standard library only (the CLI must not need aws-cdk-lib).
"""

from __future__ import annotations

TABLE_NAME = "TableName"
STRIPE_API_KEY_SECRET_ARN = "StripeApiKeySecretArn"  # noqa: S105 - an output's name, not a secret
STRIPE_WEBHOOK_SECRET_ARN = "StripeWebhookSecretArn"  # noqa: S105 - an output's name, not a secret
WEBHOOK_URL = "WebhookUrl"
ALARM_TOPIC_ARN = "AlarmTopicArn"
CLOSE_QUEUE_URL = "CloseQueueUrl"
AUTHORIZER_FUNCTION_ARN = "AuthorizerFunctionArn"
USAGE_FUNCTION_ARN = "UsageFunctionArn"
CLOSE_STARTER_FUNCTION_NAME = "CloseStarterFunctionName"
PORTAL_LINK_SECRET_ARN = "PortalLinkSecretArn"  # noqa: S105 - an output's name, not a secret
PORTAL_URL = "PortalUrl"  # MeteredApi.add_portal_route's: where the usage page's signed links lead
