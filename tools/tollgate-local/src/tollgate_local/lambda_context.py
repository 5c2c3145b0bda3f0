"""A stand-in for the context Lambda hands a handler: the fields Powertools reads (``inject_lambda_context``).

The local gateway passes one to the real handlers; tests do the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LocalLambdaContext:
    function_name: str = "tollgate-local"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:tollgate-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000
