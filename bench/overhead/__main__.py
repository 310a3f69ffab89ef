"""`python -m bench.overhead`: runs the overhead benchmark's command (bench.overhead.cli)."""

from .cli import main

main()
