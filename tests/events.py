"""The tests build API Gateway events with the same code the local gateway uses."""

from tollgate_local.apigw import EPOCH_MS, http_event, rest_event

__all__ = ["EPOCH_MS", "http_event", "rest_event"]
