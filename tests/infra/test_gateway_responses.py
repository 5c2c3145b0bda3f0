"""The Gateway Responses as data (shared with a local gateway): templates and rendering."""

from __future__ import annotations

import json

from tollgate.metering import gateway_responses as gr


def test_templates_are_json_objects_with_a_request_id() -> None:
    for response in gr.GATEWAY_RESPONSES:
        body = json.loads(response.template())
        assert body["requestId"] == "$context.requestId", response.response_type
        assert isinstance(body["error"], str)


def test_render_access_denied_from_the_authorizer_context() -> None:
    status, body = gr.ACCESS_DENIED.render(
        {
            "authorizer.reason": "credit_limit_reached",
            "authorizer.message": "Monthly credit limit reached.",
            "authorizer.payUrl": "https://billing.example/pay",
            "requestId": "req-1",
        }
    )
    assert status == 403
    assert body == {
        "error": "credit_limit_reached",
        "message": "Monthly credit limit reached.",
        "payUrl": "https://billing.example/pay",
        "requestId": "req-1",
    }


def test_render_leaves_missing_variables_empty_like_api_gateway() -> None:
    status, body = gr.ACCESS_DENIED.render({"authorizer.reason": "key_revoked", "requestId": "req-2"})
    assert status == 403
    assert body["message"] == ""
    assert body["payUrl"] == ""
    assert body["error"] == "key_revoked"


def test_failures_are_503_metering_unavailable() -> None:
    for response in (gr.AUTHORIZER_FAILURE, gr.AUTHORIZER_CONFIGURATION_ERROR):
        status, body = response.render({"requestId": "r"})
        assert status == 503
        assert body["error"] == "metering_unavailable"
    assert gr.UNAUTHORIZED.render({"requestId": "r"}) == (
        401,
        {"error": "invalid_api_key", "message": gr.UNAUTHORIZED.body["message"], "requestId": "r"},
    )


def test_lookup_by_type() -> None:
    assert set(gr.BY_TYPE) == {
        "ACCESS_DENIED",
        "UNAUTHORIZED",
        "AUTHORIZER_FAILURE",
        "AUTHORIZER_CONFIGURATION_ERROR",
    }
    assert gr.BY_TYPE["ACCESS_DENIED"] is gr.ACCESS_DENIED
