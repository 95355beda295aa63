"""Post-run verdicts computed offline from a run directory (:func:`rmt.check.api.evaluate`, ``rmt check``)."""
