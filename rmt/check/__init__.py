"""Post-run verdicts computed offline from a run directory (filled by the checkers issue)."""
