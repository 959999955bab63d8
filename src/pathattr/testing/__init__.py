"""Oracles and peer shims for tests and benchmarks: :mod:`.oracles` (reference transcriptions of published
algorithms) and :mod:`.peers` (running peer libraries as oracles)."""
