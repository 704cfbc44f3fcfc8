"""Staff-facing pages: agent workspace, KB operations, dashboard, problem ledger."""
