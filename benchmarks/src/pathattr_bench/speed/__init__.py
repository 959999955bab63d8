"""Speed and memory benchmarks against the peers and the floor (``pathattr-bench speed``)."""
