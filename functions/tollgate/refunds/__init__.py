"""Bill only what succeeded: failed requests refunded from the usage ledger (``tollgate.domain.refunds``)."""
