# orac-node tasks. Run through `python3 -m orac_node.bootstrap <recipe>` on a new
# machine (it installs mosquitto/ffmpeg and the venv first), or `just <recipe>`
# once .venv/bin is on PATH.

shared := justfile_directory() / ".." / "shared"
model := env("ORAC_NODE_MODEL", shared / "models" / "ggml-tiny.en.bin")

# The main job: a local broker, the node on CPU, sample commands streamed in real time.
demo *args:
    orac-node demo --model "{{model}}" --audio "{{shared}}/audio/commands/utt001.wav" --audio "{{shared}}/audio/commands/utt002.wav" --audio "{{shared}}/audio/commands/utt013.wav" {{args}}

# Everything CI checks: lint, types, then the whole test suite.
test *args: lint
    pytest {{args}}

# ruff (lint + format check) and mypy --strict.
lint:
    ruff check orac_node tests
    ruff format --check orac_node tests
    mypy

# Rewrite files to the house format.
fmt:
    ruff format orac_node tests
    ruff check --fix orac_node tests
