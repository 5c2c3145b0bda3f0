"""The ``tollgate`` command line: plans, customers, keys, usage, invoices, closes."""
