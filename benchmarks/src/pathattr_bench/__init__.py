"""pathattr's experiment harness (a separate package from the library, ``benchmarks/`` in the repository).

The IG2 paper's evaluation families with their models and data loaders (:mod:`.families`), the resumable SQLite
runner (:mod:`.runner`, :mod:`.store`), reports (:mod:`.report`), the speed benchmarks (:mod:`.speed`), the demo
and the ``pathattr-bench`` command (:mod:`.cli`). Install with ``pip install -e ./benchmarks`` (``make test``
does).
"""
