"""Tollgate core: the domain (plans, customers, keys, periods, rating) and its DynamoDB store.

This package's ``__init__`` stays empty on purpose: the authorizer imports a few stdlib-only modules from it
(``keyformat``, ``periods``, ``tablekeys``) and must not pay for pydantic or stripe at cold start.
"""
