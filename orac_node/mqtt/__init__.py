"""MQTT: the node's broker connection and what it sends over it.

bus.py        the connection: persistent session, manual acks, reconnects, outbox
publisher.py  transcripts, error reports and status onto their topics
listeners.py  the same, in process, for clients of the node itself (Wyoming)
rpc.py        request/response for ORAC Core (MQTT v5)
options.py    BrokerLogin, TLS settings, socket options for every client
paho.py       what aiomqtt 2.x does not expose (manual acks, CONNACK), in one place
"""
