"""swapkern benchmarks. Commands: `python -m bench.overhead` (what a swap costs), `python -m bench.train` (does
swapping speed training up: one experiment from flags) and `python -m bench.study` (the experiment suite);
`bash bench/gpu_check.sh` on a lent GPU.

    common/    what both harnesses share: micro-timing, provenance, statistics, figures
    overhead/  the overhead harness
    training/  the training harness: data, models, the trainer, experiments run resumably, summaries, reports
    gpu/       the one-call GPU check (check.sh, run as bench/gpu_check.sh) and the sanitizer workload it runs
    train.py, study.py   the two training commands: flags -> experiments -> bench.training
"""
