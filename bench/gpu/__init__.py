"""What runs on a lent GPU beside the tests: the prepared one-call script (check.sh; run as bench/gpu_check.sh, which
execs it and stays at its path because notes name it) and the compute-sanitizer workload it runs (sanitize)."""
