"""The online store under faults (issue 13), with a real redis-server.

- Redis dies and comes back in the middle of `prodvec materialize`: the command
  fails with one line saying what to do, and running it again completes.
- While `prodvec materialize` loads a new snapshot, concurrent
  `get_online_features` calls return, for every product, exactly one
  snapshot's vector (the old or the new one), never a mix and never nothing.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodvec.core import feast_ops
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore
from tests.kill_harness import run_command, start_command

pytestmark = pytest.mark.integration

CUT1 = pd.Timestamp("2025-02-01", tz="UTC")
CUT2 = pd.Timestamp("2025-03-01", tz="UTC")
DIM = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Redis:
    """A real redis-server on a fixed port that a test can kill and start again."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("redis-server")
        self.port = _free_port()
        self.workdir = workdir
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no", "--dir", str(self.workdir)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def keys(self) -> int:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=1).dbsize()
        except redis.RedisError:
            return -1


@pytest.fixture
def redis_server(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make test installs it with apt-get)")
    server = Redis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


def _snapshot(store, cutoff, offset: float, n: int):
    ids = np.array([f"P{i:06d}" for i in range(n)])
    # Every element of a product's vector says which snapshot it came from (offset) and which product (i).
    vectors = (np.arange(n, dtype=np.float32)[:, None] + offset) * np.ones((1, DIM), np.float32)
    ref = store.write("fam", 1, cutoff, Embeddings(ids, vectors), {})
    store.update_card(ref, validation={"success": True, "summary": "PASSED"})
    return ref


def _materialize_with_fault(tmp_path, home, redis_server, n: int, down_until_exit: bool):
    """`prodvec materialize` in its own process; redis is killed once a fifth of the rows are in."""
    run_command(["--help"], tmp_path / "warm.txt")  # the forkserver's imports are not part of the window
    out = tmp_path / "out.txt"
    process = start_command(["materialize", "--home", home, "--online", redis_server.url], out)
    deadline = time.time() + 300
    while redis_server.keys() < n // 5 and process.is_alive() and time.time() < deadline:
        time.sleep(0.01)
    assert process.is_alive(), "materialization finished before redis could be killed: make the table larger"
    redis_server.kill()
    if down_until_exit:
        process.join(300)
        redis_server.start()
    else:
        time.sleep(0.3)
        redis_server.start()
        process.join(300)
    return process.exitcode, out.read_text()


def _online_rows(home, redis_server, n: int) -> list[float]:
    fs = feast_ops.open_store(home, redis_server.url)
    sample = [0, n // 3, n // 2, n - 1]
    rows = fs.get_online_features(features=["product_fam_v1:embedding"],
                                  entity_rows=[{"product_id": f"P{i:06d}"} for i in sample]).to_dict()["embedding"]
    return [None if r is None else r[0] for r in rows], [float(i) for i in sample]


def test_redis_down_during_materialize_is_a_clear_error_and_a_rerun_completes(tmp_path, redis_server):
    home, n = tmp_path / "home", 30_000
    store = SnapshotStore(home)
    store.promote(_snapshot(store, CUT1, 0.0, n))
    feast_ops.apply(feast_ops.open_store(home, redis_server.url), home)

    code, output = _materialize_with_fault(tmp_path, home, redis_server, n, down_until_exit=True)
    assert code == 1, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    assert "online store" in errors[0] and "prodvec materialize" in errors[0]

    again = run_command(["materialize", "--home", home, "--online", redis_server.url], tmp_path / "out2.txt")
    assert again.code == 0, again.output
    got, want = _online_rows(home, redis_server, n)
    assert got == want, "every product is back online after the re-run"


def test_a_redis_restart_mid_load_loses_nothing(tmp_path, redis_server):
    """Redis comes back empty within the client's retries: the load completes, or fails saying so; never a
    success with rows missing (materialize reads a sample back)."""
    home, n = tmp_path / "home", 30_000
    store = SnapshotStore(home)
    store.promote(_snapshot(store, CUT1, 0.0, n))
    feast_ops.apply(feast_ops.open_store(home, redis_server.url), home)
    code, output = _materialize_with_fault(tmp_path, home, redis_server, n, down_until_exit=False)
    assert "Traceback" not in output, output
    if code != 0:
        assert "Error:" in output and "prodvec materialize" in output, output
        assert run_command(["materialize", "--home", home, "--online", redis_server.url], tmp_path / "o.txt").code == 0
    got, want = _online_rows(home, redis_server, n)
    assert got == want


def test_reads_during_materialize_never_mix_two_snapshots(tmp_path, redis_server):
    home, n = tmp_path / "home", 20_000
    store = SnapshotStore(home)
    store.promote(_snapshot(store, CUT1, 0.0, n))
    fs = feast_ops.open_store(home, redis_server.url)
    feast_ops.apply(fs, home)
    feast_ops.materialize(fs, home)
    store.promote(_snapshot(store, CUT2, 1_000_000.0, n))
    feast_ops.apply(fs, home)

    run_command(["--help"], tmp_path / "warm.txt")
    process = start_command(["materialize", "--home", home, "--online", redis_server.url], tmp_path / "out.txt")
    rng = np.random.default_rng(0)
    reads, old, new = 0, 0, 0
    while process.is_alive() or reads == 0:
        picked = rng.choice(n, size=50, replace=False)
        rows = fs.get_online_features(features=["product_fam_v1:embedding"],
                                      entity_rows=[{"product_id": f"P{i:06d}"} for i in picked]).to_dict()["embedding"]
        for i, vector in zip(picked, rows):
            assert vector is not None, f"P{i:06d} had no vector during materialization"
            vector = np.asarray(vector)
            assert np.all(vector == vector[0]), f"P{i:06d}: elements of different snapshots {vector}"
            assert vector[0] in (float(i), float(i) + 1_000_000.0), f"P{i:06d}: {vector[0]} is neither snapshot's"
            new += vector[0] >= 1_000_000.0
            old += vector[0] < 1_000_000.0
        reads += 1
    process.join()
    assert process.exitcode == 0, (tmp_path / "out.txt").read_text()
    assert old and new, f"reads saw both snapshots while the load ran ({old} old, {new} new in {reads} reads)"
