"""One auditor of a sale's invariants (`audit`), used by beat's reconciliation (`reconcile`),
`flashsale verify` and the fault tests alike."""
