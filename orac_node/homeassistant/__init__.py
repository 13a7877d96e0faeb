"""Home Assistant's ways into the node.

wyoming_server.py  the Wyoming STT server the node runs (``wyoming.uri``): connections
dialog.py          one Wyoming utterance (audio-start .. audio-stop) as node sessions
info.py            the ``info`` answer to ``describe``: the program, its models, languages
advertise.py       the _wyoming._tcp zeroconf advertisement Home Assistant discovers
discovery.py       MQTT discovery configs: the node and its satellites as Home Assistant
                   devices (``homeassistant.discovery``)
forget.py          ``orac-node homeassistant forget-node|forget-satellite``: removing them
"""
