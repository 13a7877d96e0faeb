"""Running the node: logs, systemd, metrics, health checks, accounts, a local broker.

logsetup.py    text or JSON log lines
sdnotify.py    systemd readiness, status and watchdog
metrics.py     Prometheus metrics of a node
health.py      `orac-node health` and `orac-node metrics`
topics.py      `orac-node topics`: reading and editing the topics registry
accounts.py    satellite accounts in Mosquitto's password file
localbroker.py a private Mosquitto (demo, bench, tests)
nodeproc.py    `orac-node run` as a child process (demo, bench)
"""
