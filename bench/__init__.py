"""swapkern benchmarks: `python -m bench.overhead` (swap cost) and `python -m bench.train` (training speed-up)."""
