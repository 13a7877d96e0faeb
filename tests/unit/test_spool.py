"""The spool: what a killed node left on disk comes back intact, and only once."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orac_node.ingest.spool import FINISHED_LOG, SUFFIX, Spool

TOPIC = "audio/kitchen/chunk"


def _spool(path: Path, **kwargs: float) -> Spool:
    return Spool(
        path,
        max_bytes=int(kwargs.get("max_bytes", 1 << 20)),
        finished_ttl_s=kwargs.get("ttl", 3600.0),
    )


def test_chunks_come_back_in_order_after_a_restart(tmp_path: Path) -> None:
    first = _spool(tmp_path)
    first.finished()
    for i in range(5):
        assert first.append("kitchen", "s1", TOPIC, f"chunk {i}".encode())
    assert first.append("hall/2", "s2", "audio/hall/2/chunk", b"other")
    # killed: nothing closed, nothing flushed by Python
    second = _spool(tmp_path)
    assert second.finished() == []
    found = {(s.device, s.session): s for s in second.recover()}
    assert found[("kitchen", "s1")].payloads == [f"chunk {i}".encode() for i in range(5)]
    assert found[("kitchen", "s1")].topic == TOPIC
    assert found[("hall/2", "s2")].payloads == [b"other"]
    # recovered sessions go on appending to the same file
    second.append("kitchen", "s1", TOPIC, b"chunk 5")
    third = _spool(tmp_path)
    third.finished()
    again = {(s.device, s.session): s for s in third.recover()}
    assert again[("kitchen", "s1")].payloads[-1] == b"chunk 5"


def test_a_torn_last_record_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.append("kitchen", "s1", TOPIC, b"whole")
    spool.append("kitchen", "s1", TOPIC, b"cut short by the kill")
    (path,) = tmp_path.glob(f"*{SUFFIX}")
    path.write_bytes(path.read_bytes()[:-5])
    (found,) = _spool(tmp_path).recover()
    assert found.payloads == [b"whole"]
    reference = _spool(tmp_path / "ref")
    reference.append("kitchen", "s1", TOPIC, b"whole")
    (intact,) = (tmp_path / "ref").glob(f"*{SUFFIX}")
    assert path.stat().st_size == intact.stat().st_size  # truncated to the intact records


def test_a_file_without_a_valid_header_is_removed(tmp_path: Path) -> None:
    (tmp_path / f"deadbeef{SUFFIX}").write_bytes(b"\x05\x00\x00\x00garbage")
    spool = _spool(tmp_path)
    assert spool.recover() == []
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []


def test_finish_forgets_the_audio_and_remembers_the_session(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.finished()
    spool.append("kitchen", "s1", TOPIC, b"x" * 100)
    assert spool.size_bytes > 100
    spool.finish("kitchen", "s1")
    assert list(tmp_path.glob(f"*{SUFFIX}")) == []
    assert spool.size_bytes == 0
    spool.close()
    later = _spool(tmp_path)
    assert later.finished() == [("kitchen", "s1")]
    assert later.recover() == []


def test_finished_sessions_expire_and_the_log_is_compacted(tmp_path: Path) -> None:
    old = [time.time() - 7200, "kitchen", "old"]
    new = [time.time() - 60, "kitchen", "new"]
    lines = [json.dumps(old), json.dumps(new), '[171, "cut sho']
    (tmp_path / FINISHED_LOG).write_text("\n".join(lines))
    assert _spool(tmp_path).finished() == [("kitchen", "new")]
    assert len((tmp_path / FINISHED_LOG).read_text().splitlines()) == 1


def test_a_full_spool_refuses_new_sessions_but_not_open_ones(tmp_path: Path) -> None:
    spool = _spool(tmp_path, max_bytes=300)
    assert spool.append("kitchen", "s1", TOPIC, b"a" * 200)
    assert not spool.append("kitchen", "s2", TOPIC, b"b" * 200)
    assert spool.refused == 1
    assert spool.append("kitchen", "s1", TOPIC, b"a" * 200)  # an open session keeps going
    assert spool.open_sessions == 1


@given(
    st.text(min_size=1, max_size=60),
    st.text(min_size=1, max_size=60),
    st.lists(st.binary(max_size=300), max_size=8),
)
def test_any_device_and_session_name_round_trips(
    device: str, session: str, payloads: list[bytes]
) -> None:
    import tempfile  # noqa: PLC0415 - a fresh folder per example

    with tempfile.TemporaryDirectory() as tmp:
        spool = _spool(Path(tmp))
        for payload in payloads:
            spool.append(device, session, TOPIC, payload)
        spool.close()
        found = _spool(Path(tmp)).recover()
        if payloads:
            assert [(f.device, f.session, f.payloads) for f in found] == [
                (device, session, payloads)
            ]
            assert all(p.name.endswith(SUFFIX) and "/" not in p.name for p in Path(tmp).iterdir())
        else:
            assert found == []


def test_the_finished_log_is_compacted_while_the_node_runs(tmp_path: Path) -> None:
    """Entries older than the TTL leave the log during sync, not only at the next start."""
    now = [1_000_000.0]
    spool = Spool(tmp_path, max_bytes=1 << 20, finished_ttl_s=60.0, clock=lambda: now[0])
    spool.finished()
    for n in range(3000):
        spool.finish("kitchen", f"old-{n}")
    now[0] += 120.0  # those are past the TTL now
    for n in range(10):
        spool.finish("kitchen", f"new-{n}")
    spool.sync()  # the node's sync thread
    lines = (tmp_path / FINISHED_LOG).read_text().splitlines()
    assert [json.loads(line)[2] for line in lines] == [f"new-{n}" for n in range(10)]
    spool.finish("kitchen", "after")  # still appends after the swap
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20, finished_ttl_s=60.0, clock=lambda: now[0])
    assert again.finished()[-1] == ("kitchen", "after")


def test_fsync_after_every_chunk_is_not_done_on_the_caller_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """spool.fsync_interval_ms 0: each append is flushed by the sync thread, not by intake."""
    threads: list[str] = []
    real_fsync = os.fsync

    def recording(fd: int) -> None:
        threads.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    spool = Spool(tmp_path, max_bytes=1 << 20, finished_ttl_s=60.0, fsync_each=True)
    spool.finished()
    spool.append("kitchen", "s1", TOPIC, b"chunk")
    spool.finish("kitchen", "s0")
    assert threads == []  # the event loop's thread never waits for the disk
    syncer = threading.Thread(target=spool.sync, name="spool-sync")
    syncer.start()
    syncer.join()
    assert threads and set(threads) == {"spool-sync"}
    spool.close()
