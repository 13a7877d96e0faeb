"""Long recordings as jobs: a Redis queue any node takes from (docs/JOBS.md).

store.py    the queue and the jobs in Redis, every write fenced by a run's token
windows.py  cutting a recording at pauses into overlapping windows, and stitching
runner.py   a node's worker: one job at a time, in the scheduler's batch lane
submit.py   queueing a file (streamed) or a request's bytes
formats.py  a finished job as text, SRT, WebVTT or JSON
"""
