"""What both harnesses share: micro-timing (timing), provenance of a measurement (provenance), statistics over
seeds (stats) and figures (plots)."""
