"""A local stand-in for API Gateway (REST, Lambda proxy integrations), on 127.0.0.1 only.

Each HTTP request becomes the real-shaped ``REQUEST`` authorizer event; the real authorizer handler decides;
an Allow runs the backend handler with the authorizer's context, a Deny answers with the same status and body
the deployed gateway responses give (``tollgate.metering.gateway_responses``).

With a :class:`LocalLedger`, every request it answers (allowed, refused, or on no route) is written as the
usage ledger's record (``tollgate.domain.ledger``: the same keys, every value a string, ``"-"`` for none),
into the ledger's partition layout, as the deployed stage's access log does.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from tollgate.domain.ledger import LOCAL_SUFFIX, object_prefix, record_line
from tollgate.metering.gateway_responses import BY_TYPE
from tollgate_local.apigw import rest_event, rest_proxy_event
from tollgate_local.lambda_context import LocalLambdaContext

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
MISSING_ROUTE = (403, '{"message":"Missing Authentication Token"}')  # what API Gateway answers
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/items/{id}"
    backend: Handler
    authorized: bool = True  # False: no authorizer, like a method with authorization NONE (GET /portal)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        found = re.fullmatch(pattern, path)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    body: str
    headers: dict[str, str]


def gateway_answer(response_type: str, authorizer_context: dict[str, Any], request_id: str) -> GatewayAnswer:
    """What API Gateway answers for a gateway response of ``response_type``."""
    context = {f"authorizer.{name}": str(value) for name, value in authorizer_context.items()}
    status, body = BY_TYPE[response_type].render({**context, "requestId": request_id})
    return GatewayAnswer(status, json.dumps(body), {"content-type": "application/json"})


class LocalLedger:
    """The usage ledger in a directory: ``{root}/period=YYYY-MM/day=YYYY-MM-DD/gateway-{pid}-{id}.jsonl``.

    One file per partition per ledger (per gateway process); each record is appended and flushed at once, so
    a reader sees it promptly. Thread-safe: the gateway serves each request on its own thread.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._name = f"gateway-{os.getpid()}-{uuid.uuid4().hex[:8]}{LOCAL_SUFFIX}"
        self._lock = threading.Lock()
        self._files: dict[str, IO[str]] = {}

    def write(self, values: dict[str, object]) -> str:
        """Append the record of ``values``; return its line."""
        line = record_line(values)
        prefix = object_prefix(json.loads(line))
        with self._lock:
            file = self._files.get(prefix)
            if file is None:
                folder = self.root / prefix
                folder.mkdir(parents=True, exist_ok=True)
                file = self._files[prefix] = (folder / self._name).open("a", encoding="utf-8")
            file.write(line)
            file.flush()
        return line

    def close(self) -> None:
        with self._lock:
            for file in self._files.values():
                file.close()
            self._files.clear()


# What the stage's access log takes from the authorizer's context, by record key.
_CONTEXT_KEYS = {
    "customerId": "customerId",
    "keyId": "keyId",
    "planId": "planId",
    "planVersion": "planVersion",
    "period": "period",
    "credits": "credits",
    "metered": "metered",
    "denyReason": "reason",
    "segment": "segment",
    "routeCode": "routeCode",
    "shard": "shard",
}


class ExecutionEnvironment:
    """A function as one Lambda execution environment runs it: one invocation at a time.

    The gateway serves each request on its own thread, but Powertools' Logger and Metrics keep one state per
    process, as Lambda gives each environment its own: two invocations at once would share a metric set (one
    flush can empty it under the other: the authorizer would fail after counting) and log each other's keys.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self._lock:
            return self.handler(event, context)


class LocalGateway:
    def __init__(
        self,
        routes: list[Route],
        authorizer: Handler,
        clock: Callable[[], float] = time.time,
        ledger: LocalLedger | None = None,
    ) -> None:
        self.routes = routes
        # one environment per function, however many routes it serves
        self._backends = {route.backend: ExecutionEnvironment(route.backend) for route in routes}
        self.authorizer = ExecutionEnvironment(authorizer)
        self.clock = clock  # seconds since the epoch: the request time API Gateway would stamp
        self.ledger = ledger

    def handle(self, method: str, target: str, headers: dict[str, str], body: str | None) -> GatewayAnswer:
        started = time.monotonic()
        epoch_ms = int(self.clock() * 1000)
        request_id = str(uuid.uuid4())
        record: dict[str, object] = {"requestId": request_id, "requestTime": epoch_ms, "httpMethod": method}
        answer = self._handle(method, target, headers, body, request_id, epoch_ms, record)
        if self.ledger is not None:
            record["status"] = answer.status
            record["responseLatency"] = _ms_since(started)
            self.ledger.write(record)
        return answer

    def _handle(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: str | None,
        request_id: str,
        epoch_ms: int,
        record: dict[str, object],
    ) -> GatewayAnswer:
        url = urlsplit(target)
        for route in self.routes:
            params = route.match(method, url.path)
            if params is not None:
                break
        else:
            return GatewayAnswer(*MISSING_ROUTE, {"content-type": "application/json"})
        record["resourcePath"] = route.template
        event = rest_event(
            method,
            route.template,
            path=url.path,
            headers=headers,
            epoch_ms=epoch_ms,
            path_parameters=params,
            query=dict(parse_qsl(url.query)),
            request_id=request_id,
        )
        if not route.authorized:
            proxy_event = rest_proxy_event(event, "", {}, body)
            del proxy_event["requestContext"]["authorizer"]
            return self._call(route, proxy_event, record)
        try:
            verdict = self.authorizer(event, LocalLambdaContext(function_name="authorizer"))
            allowed = verdict["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        except Exception:  # API Gateway: AUTHORIZER_FAILURE
            return gateway_answer("AUTHORIZER_FAILURE", {}, request_id)
        context = verdict.get("context") or {}
        record.update({key: context.get(name) for key, name in _CONTEXT_KEYS.items()})
        if not allowed:
            return gateway_answer("ACCESS_DENIED", context, request_id)
        proxy_event = rest_proxy_event(event, verdict["principalId"], context, body)
        return self._call(route, proxy_event, record)

    def _call(self, route: Route, proxy_event: dict[str, Any], record: dict[str, object]) -> GatewayAnswer:
        called = time.monotonic()
        try:
            answer = self._backends[route.backend](proxy_event, LocalLambdaContext(function_name="backend"))
        except Exception:  # the function failed: API Gateway answers 502 for a Lambda proxy integration
            record["integrationLatency"] = _ms_since(called)
            return GatewayAnswer(
                502, '{"message": "Internal server error"}', {"content-type": "application/json"}
            )
        status = int(answer.get("statusCode", 200))
        record.update(integrationStatus=status, integrationLatency=_ms_since(called))
        headers = {
            str(k).lower(): ", ".join(map(str, v)) for k, v in (answer.get("multiValueHeaders") or {}).items()
        }
        headers.update({str(k).lower(): str(v) for k, v in (answer.get("headers") or {}).items()})
        return GatewayAnswer(status, str(answer.get("body") or ""), headers)

    def serve(self, port: int = 0) -> RunningGateway:
        return RunningGateway(self, port)


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class RunningGateway:
    """The gateway on ``http://127.0.0.1:PORT`` in a daemon thread; ``stop()`` or leaving ``with`` ends it."""

    def __init__(self, gateway: LocalGateway, port: int) -> None:
        outer = self._gateway = gateway

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length).decode("utf-8", "replace") if length else None
                headers = {name: value for name, value in self.headers.items()}
                answer = outer.handle(self.command, self.path, headers, body)
                payload = answer.body.encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the demo prints its own story

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Request)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._gateway.ledger is not None:
            self._gateway.ledger.close()

    def __enter__(self) -> RunningGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
