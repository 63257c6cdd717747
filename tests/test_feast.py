"""Snapshots through a real Feast registry, DuckDB offline store and online stores."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prodvec.core import feast_ops
from prodvec.consumers.features import historical_embeddings
from prodvec.core.feast_defs import LATEST_SERVICE
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore

pytestmark = pytest.mark.integration

CUT1 = pd.Timestamp("2025-02-01", tz="UTC")
CUT2 = pd.Timestamp("2025-03-01", tz="UTC")
IDS = np.array(["P1", "P2", "P3"])
REPO = Path(__file__).resolve().parent.parent / "feature_repo"


def serve(store: SnapshotStore, family: str, cutoff, value: float, dim: int = 4, version: int = 1):
    ref = store.write(family, version, cutoff, Embeddings(IDS, np.full((len(IDS), dim), value)), {})
    store.update_card(ref, validation={"success": True, "summary": "ok"})
    store.promote(ref)
    return ref


@pytest.fixture
def home(tmp_path):
    store = SnapshotStore(tmp_path)
    serve(store, "fam", CUT1, 1.0)
    serve(store, "fam", CUT2, 2.0)
    return tmp_path


def test_each_order_gets_the_snapshot_that_existed_at_its_own_time(home):
    fs = feast_ops.open_store(home)
    feast_ops.apply(fs, home)
    orders = pd.DataFrame({
        "product_id": ["P1", "P1", "P2", "P2", "P3"],
        "event_timestamp": [CUT1 - pd.Timedelta(days=1), CUT1, CUT2 - pd.Timedelta(seconds=1), CUT2,
                            CUT2 + pd.Timedelta(days=30)],
    })
    matrix, found = historical_embeddings(fs, orders, ["product_fam_v1"])["product_fam_v1"]
    assert found.tolist() == [False, True, True, True, True]
    # Placed before the second cutoff: never the second snapshot.
    assert matrix[:3, 0].tolist() == [0.0, 1.0, 1.0]
    assert matrix[3:, 0].tolist() == [2.0, 2.0]


def test_a_new_version_is_picked_up_by_apply_with_no_edits(home):
    fs = feast_ops.open_store(home)
    assert feast_ops.apply(fs, home) == ["product_fam_v1"]
    serve(SnapshotStore(home), "fam", CUT2, 5.0, dim=6, version=2)
    assert feast_ops.apply(fs, home) == ["product_fam_v1", "product_fam_v2"]
    views = {v.name: v for v in fs.list_feature_views()}
    assert views["product_fam_v2"].tags["dim"] == "6"
    service = fs.get_feature_service(LATEST_SERVICE)
    assert [p.name for p in service.feature_view_projections] == ["product_fam_v2"]


def test_materialize_serves_the_newest_snapshot_and_rollback_the_previous(home):
    fs = feast_ops.open_store(home)
    feast_ops.apply(fs, home)
    served = feast_ops.materialize(fs, home)
    assert served == {"product_fam_v1": 3}

    def online() -> list[float]:
        rows = fs.get_online_features(features=["product_fam_v1:embedding"],
                                      entity_rows=[{"product_id": "P2"}]).to_dict()
        return rows["embedding"][0]

    assert online() == [2.0] * 4
    store = SnapshotStore(home)
    store.rollback("fam", 1)
    feast_ops.reset_online_view(fs, "product_fam_v1")
    feast_ops.materialize(fs, home)
    assert online() == [1.0] * 4


def test_the_feast_cli_lists_and_applies_the_generated_views(home, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    shutil.copy(REPO / "repo.py", repo / "repo.py")
    (repo / "feature_store.yaml").write_text(
        (REPO / "feature_store.yaml").read_text().replace("../workspace", str(home))
    )
    env = {**os.environ, "PRODVEC_HOME": str(home)}
    feast = str(Path(sys.executable).with_name("feast"))
    applied = subprocess.run([feast, "apply"], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert applied.returncode == 0, applied.stderr
    listed = subprocess.run([feast, "feature-views", "list"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "product_fam_v1" in listed.stdout
    now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    incremental = subprocess.run([feast, "materialize-incremental", now], cwd=repo, env=env, capture_output=True,
                                 text=True, timeout=120)
    assert incremental.returncode == 0, incremental.stderr
    fs = feast_ops.open_store(home)
    rows = fs.get_online_features(features=["product_fam_v1:embedding"], entity_rows=[{"product_id": "P3"}])
    assert rows.to_dict()["embedding"][0] == [2.0] * 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs it with apt-get)")
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_redis_online_store_serves_and_rolls_back(home, redis_url):
    fs = feast_ops.open_store(home, online=redis_url)
    feast_ops.apply(fs, home)
    feast_ops.materialize(fs, home)

    def online() -> list[float]:
        return fs.get_online_features(features=["product_fam_v1:embedding"],
                                      entity_rows=[{"product_id": "P1"}]).to_dict()["embedding"][0]

    assert online() == [2.0] * 4
    SnapshotStore(home).rollback("fam", 1)
    # Redis keeps the newest event time per key: without the reset the older row would be ignored.
    feast_ops.reset_online_view(fs, "product_fam_v1")
    feast_ops.materialize(fs, home)
    assert online() == [1.0] * 4


def test_feast_calls_leave_the_process_warning_filters_and_feast_logger_as_they_were(home):
    import logging
    import warnings

    import feast.infra.offline_stores.duckdb  # noqa: F401  (third-party import-time filters are not ours)
    import feast.infra.online_stores.redis  # noqa: F401

    before, level = list(warnings.filters), logging.getLogger("feast").level
    fs = feast_ops.open_store(home)
    feast_ops.apply(fs, home)
    feast_ops.materialize(fs, home)
    orders = pd.DataFrame({"product_id": ["P1", "P2"], "event_timestamp": [CUT1, CUT2]})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        matrix, _ = historical_embeddings(fs, orders, ["product_fam_v1"])["product_fam_v1"]
        warnings.warn("a caller's own deprecation", DeprecationWarning)
    assert matrix[:, 0].tolist() == [1.0, 2.0]
    # Feast's (ibis') deprecations inside the retrieval are silenced; the caller's own warning still arrives.
    assert [str(w.message) for w in seen] == ["a caller's own deprecation"]
    assert warnings.filters == before and logging.getLogger("feast").level == level
