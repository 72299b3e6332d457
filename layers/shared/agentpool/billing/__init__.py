"""Monthly billing reports: build from the ledger, reconcile with the totals, render, store."""
