"""What a REST API answers when the metering authorizer denies or fails: the Gateway Responses, as data.

Standard library only, so a local gateway can import it and answer exactly like API Gateway does.
``MeteredApi`` turns each entry into an ``AWS::ApiGateway::GatewayResponse``; ``render`` fills in the
``$context`` variables the same way API Gateway's mapping templates do (as plain text substitution).

- ``ACCESS_DENIED``: the authorizer answered with a Deny policy. Its ``context`` carries ``reason``,
  ``message`` and ``payUrl`` (e.g. ``credit_limit_reached`` with a link to buy more). Every reason and its
  message is in :mod:`tollgate.metering.decisions`, so a new reason needs no new gateway response: e.g.
  ``malformed_request``, for an event that is not API Gateway's shape (no request time within 5 minutes of
  the authorizer's clock, no route, no ``methodArn``).
- ``UNAUTHORIZED``: the authorizer raised ``Unauthorized`` (no usable API key).
- ``AUTHORIZER_FAILURE`` / ``AUTHORIZER_CONFIGURATION_ERROR``: the authorizer crashed, timed out or could not
  be invoked. The request was not metered, so it must not pass; the client may retry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

CONTENT_TYPE = "application/json"
_CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+)")


@dataclass(frozen=True)
class GatewayResponse:
    """One Gateway Response: the API Gateway response type, the status code and the JSON body template."""

    response_type: str  # an API Gateway ResponseType name, e.g. "ACCESS_DENIED"
    status_code: int
    body: Mapping[str, str]  # field -> literal text or a template with $context.* variables
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def template(self) -> str:
        """The mapping template for ``application/json``: the body as a JSON object, variables left in."""
        return json.dumps(dict(self.body), separators=(",", ":"))

    def render(self, context: Mapping[str, str]) -> tuple[int, dict[str, str]]:
        """Status and body with ``$context.x.y`` replaced from ``context`` (keys: ``"authorizer.reason"``).

        A variable missing from ``context`` becomes an empty string, as in API Gateway.
        """

        def substitute(text: str) -> str:
            return _CONTEXT_VARIABLE.sub(lambda match: str(context.get(match.group(1), "")), text)

        return self.status_code, {name: substitute(value) for name, value in self.body.items()}


ACCESS_DENIED = GatewayResponse(
    response_type="ACCESS_DENIED",
    status_code=403,
    body=MappingProxyType(
        {
            "error": "$context.authorizer.reason",
            "message": "$context.authorizer.message",
            "payUrl": "$context.authorizer.payUrl",
            "requestId": "$context.requestId",
        }
    ),
)

UNAUTHORIZED = GatewayResponse(
    response_type="UNAUTHORIZED",
    status_code=401,
    body=MappingProxyType(
        {
            "error": "invalid_api_key",
            "message": "Send a valid API key in the x-api-key header.",
            "requestId": "$context.requestId",
        }
    ),
)

_METERING_UNAVAILABLE_BODY = MappingProxyType(
    {
        "error": "metering_unavailable",
        "message": "Usage metering is temporarily unavailable. The request was not processed; retry later.",
        "requestId": "$context.requestId",
    }
)

AUTHORIZER_FAILURE = GatewayResponse(
    response_type="AUTHORIZER_FAILURE",
    status_code=503,
    body=_METERING_UNAVAILABLE_BODY,
)

AUTHORIZER_CONFIGURATION_ERROR = GatewayResponse(
    response_type="AUTHORIZER_CONFIGURATION_ERROR",
    status_code=503,
    body=_METERING_UNAVAILABLE_BODY,
)

GATEWAY_RESPONSES: tuple[GatewayResponse, ...] = (
    ACCESS_DENIED,
    UNAUTHORIZED,
    AUTHORIZER_FAILURE,
    AUTHORIZER_CONFIGURATION_ERROR,
)
BY_TYPE: Mapping[str, GatewayResponse] = MappingProxyType({r.response_type: r for r in GATEWAY_RESPONSES})
