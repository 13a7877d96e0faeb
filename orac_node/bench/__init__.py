"""``orac-node bench``: measuring the node the way users run it, against baselines.

Scenarios stream real audio through a real broker into a real node process in
real time (runner.py); baselines decode the same clips directly with
pywhispercpp in the same run (baselines.py); results are reported as ratios,
because absolute times on a shared machine drift (report.py).
"""
