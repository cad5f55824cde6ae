"""botcore's benchmark harness: ``python -m bench`` (``--quick`` for a smoke run, ``--runs N``).

See :mod:`bench.driver` for how a run is measured and :mod:`bench.presets` for what is measured.
"""
