"""The training harness behind `python -m bench.train` and `python -m bench.study`.

    datasets    uint8 image data (image trees, CIFAR-10, a built-in synthetic set), decoded once and cached
    models      the CPU trainer's small CNN / narrow MLP and the GPU trainer's speed-run net
    config      RunConfig: what one run does; its arm name and random streams
    controls    the study's matched perturbations (instead of a swap)
    trainer     one run: setup, one training step, the evaluations that make the curves
    runner      many runs, resumably, each saved under its key; the run order
    experiment  Experiment (arms x groups x seeds), the one config builder and learning-rate rule, running one
    suite       bench.study's scales and eight experiments
    summary     the target, ratios to the baseline per (group, arm), the study's per-arm details
    verdicts    bench.study's one-line verdicts
    report      figures, the markdown table, bench.train's summary files, bench.study's REPORT.md

Imports go one way: config, models <- controls <- trainer <- runner <- experiment <- suite, and verdicts <- report;
datasets, summary, verdicts and report read results (dicts), not the trainer.
"""
