"""What runs on a lent GPU beside the tests: the compute-sanitizer workload (sanitize). The prepared one-call script
that runs it, bench/gpu_check.sh, stays at its path (notes name it)."""
