"""The request ledger: API Gateway's access log, one JSON Lines record per request, and what it is used for.

``queries`` holds the SQL (one text per question, the same on Athena and DuckDB) and the ``LedgerQueries``
interface; ``duckdb_ledger`` reads a local directory of ledger files (DuckDB, imported only there: the CLI's
``tollgate[local]`` extra), ``athena`` the deployed Glue table; ``report`` holds the reconciliation rules
(pure); ``reconcile`` gathers the counters, the ledger and the close records for them; ``export`` makes a
customer's CSV (``GET /usage/export``, ``tollgate usage export``). The usage function imports ``queries``,
``export`` and ``athena`` (standard library and boto3 only); DuckDB is imported only by the local adapter.
"""
