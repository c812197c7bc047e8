"""Benchmarks on the team's real datasets (`../shared/data` beside the clone), one module per benchmark.

Run from the root of the clone as `python -m benchmarks.NAME [options]` (e.g. `python -m benchmarks.fraud_detection
--seeds 0,1,2`): each imports `benchmarks.common` and the `pipelines`, `tasks` and `shared` packages (from the
clone, or from an install of them) without touching `sys.path`, prints progress on stderr and ends with one JSON
line on stdout. Not part of the installed package; the package never imports from here.
"""
