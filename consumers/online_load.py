"""A bounded loopback load test of the online store while a new snapshot is materialized.

`clients` threads (each with its own FeatureStore, as separate service
workers would have) send a fixed number of `get_online_features` requests,
alternating between 1 and 100 products, against 127.0.0.1 only, for at most
`max_seconds`. Once every client has been answered once, a new snapshot is
promoted and materialized in another thread; each client's last
`AFTER_SWITCH` requests wait until it is served. Every answer is checked product
by product: its vector must equal the vector of one snapshot exactly and its
event time must be that same snapshot's cutoff — a product whose vector and
timestamp come from different snapshots, or whose vector matches none, is a
"mix". Latency percentiles are reported per request size; `make test` runs a
short version (no timing asserted), `make bench` a long one.

    result = run_load(home, "redis://127.0.0.1:6379", "product_fam_v1", old_ref, new_ref)
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prodvec.core import columns as C
from prodvec.core import feast_ops
from prodvec.core.snapshots import SnapshotRef, SnapshotStore

SIZES = (1, 100)
# The last requests of every client wait for the switch, so both snapshots are read.
AFTER_SWITCH = 2


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    mixes: list[str] = field(default_factory=list)
    latency_ms: dict[int, list[float]] = field(default_factory=lambda: {s: [] for s in SIZES})
    products_from: Counter = field(default_factory=Counter)
    during_materialization: int = 0
    materialize_s: float = float("nan")
    seconds: float = 0.0

    def summary(self) -> pd.DataFrame:
        rows = {f"{size} product{'s' if size > 1 else ''}": {
            "requests": len(ms), "p50_ms": np.percentile(ms, 50) if ms else np.nan,
            "p99_ms": np.percentile(ms, 99) if ms else np.nan} for size, ms in self.latency_ms.items()}
        return pd.DataFrame(rows).T

    def lines(self) -> list[str]:
        return [f"{self.requests} requests in {self.seconds:.1f}s, {self.during_materialization} of them while "
                f"materializing (took {self.materialize_s:.1f}s); failures {len(self.failures)}, mixed products "
                f"{len(self.mixes)}; products answered per snapshot: {dict(self.products_from)}",
                self.summary().round(2).to_string()]


@contextlib.contextmanager
def redis_server(binary: str | None = None):
    """A throw-away real redis-server on a free 127.0.0.1 port (no persistence); yields its redis:// URL."""
    binary = binary or shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (make test installs it with apt-get)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="prodvec-redis-") as workdir:
        server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                   "no", "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=10)


def _expected(store: SnapshotStore, refs: list[SnapshotRef]) -> dict[str, tuple[pd.Timestamp, pd.Series]]:
    """tag -> (cutoff, product_id -> vector) of each snapshot that may be served."""
    out = {}
    for ref in refs:
        emb = store.read(ref)
        out[ref.tag] = (ref.cutoff, pd.Series(list(emb.vectors), index=emb.ids))
    return out


def run_load(home: str | Path, online: str, view: str, old: SnapshotRef, new: SnapshotRef, *, clients: int = 16,
             requests_per_client: int = 20, max_seconds: float = 60.0, seed: int = 0) -> LoadResult:
    """Serve `old`, then promote and materialize `new` while `clients` threads read; see the module doc."""
    if not online.startswith("redis://127.0.0.1:") and not online.startswith("redis://localhost:"):
        raise ValueError(f"the load test runs on loopback only, not {online!r}")
    store = SnapshotStore(home)
    expected = _expected(store, [old, new])
    ids = expected[old.tag][1].index.to_numpy()
    feature = f"{view}:{C.EMBEDDING}"
    result = LoadResult()
    lock = threading.Lock()
    answered_once = threading.Barrier(clients + 1)
    materializing, switched = threading.Event(), threading.Event()
    deadline = time.monotonic() + max_seconds

    def check(frame: dict, asked: np.ndarray) -> None:
        # Feast reports each feature's event time as whole seconds under "<feature>__ts".
        for pid, vector, stamp in zip(frame[C.PRODUCT_ID], frame[C.EMBEDDING], frame[f"{C.EMBEDDING}__ts"]):
            if vector is None:
                result.mixes.append(f"{pid}: no vector")
                continue
            vector = np.asarray(vector, np.float32)
            source = [tag for tag, (_, table) in expected.items() if np.array_equal(table[pid], vector)]
            if not source:
                result.mixes.append(f"{pid}: vector of no served snapshot")
            elif stamp != int(expected[source[0]][0].timestamp()):
                result.mixes.append(f"{pid}: vector of {source[0]}, timestamp {stamp}")
            else:
                result.products_from[source[0]] += 1
        if sorted(frame[C.PRODUCT_ID]) != sorted(asked.tolist()):
            result.failures.append(f"asked {len(asked)} products, got {len(frame[C.PRODUCT_ID])}")

    def client(number: int) -> None:
        fs = feast_ops.open_store(home, online)
        rng = np.random.default_rng([seed, number])
        for i in range(requests_per_client):
            if i > 0 and time.monotonic() > deadline:
                break
            if i == requests_per_client - AFTER_SWITCH:
                switched.wait(timeout=max(0.0, deadline - time.monotonic()))
            size = SIZES[i % len(SIZES)]
            asked = rng.choice(ids, size=min(size, len(ids)), replace=False)
            during = materializing.is_set()
            started = time.perf_counter()
            try:
                frame = fs.get_online_features(features=[feature], entity_rows=[{C.PRODUCT_ID: p} for p in asked]
                                               ).to_dict(include_event_timestamps=True)
                error = None
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, none may pass silently
                frame, error = None, f"{type(exc).__name__}: {exc}"
            elapsed = 1e3 * (time.perf_counter() - started)
            with lock:
                result.requests += 1
                result.during_materialization += during
                if error:
                    result.failures.append(error)
                else:
                    result.latency_ms[size].append(elapsed)
                    check(frame, asked)
            if i == 0:
                answered_once.wait(timeout=max_seconds)

    def switch() -> None:
        answered_once.wait(timeout=max_seconds)
        materializing.set()
        started = time.perf_counter()
        store.promote(new)
        fs = feast_ops.open_store(home, online)
        feast_ops.materialize(fs, home, views=[view])
        result.materialize_s = time.perf_counter() - started
        materializing.clear()
        switched.set()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    switcher = threading.Thread(target=switch, daemon=True)
    for thread in [*threads, switcher]:
        thread.start()
    for thread in [*threads, switcher]:
        thread.join(timeout=max(1.0, deadline - time.monotonic()) + 120)
    result.seconds = time.perf_counter() - started
    if switcher.is_alive() or any(t.is_alive() for t in threads):
        result.failures.append(f"load test still running after {max_seconds}s + 120s grace")
    return result
