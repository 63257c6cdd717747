"""prodvec's Feast plugins (prodvec.core.feast_plugin) against Feast's own engine and stores.

Real Feast registry, real SQLite and redis-server, real DuckDB over Parquet;
every comparison is with what Feast itself writes or computes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prodvec.core import feast_ops
from prodvec.core.embeddings import Embeddings
from prodvec.core.snapshots import SnapshotStore
from tests.test_feast import REPO, redis_url  # noqa: F401  (a fixture: starts a real redis-server)

pytestmark = pytest.mark.integration

CUT1 = pd.Timestamp("2025-02-01", tz="UTC")
CUT2 = pd.Timestamp("2025-03-01", tz="UTC")
VIEW = "product_fam_v1"


def awkward_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """float32 values whose bits a float64 round trip or a careless encoder would change."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    special = np.array([-0.0, 1e-45, -3.4028235e38, 3.4028235e38, np.float32(1) / 3, 1e-38], dtype=np.float32)
    vectors[0, : len(special)] = special[:dim]
    return vectors


def served_home(home: Path, n: int = 30, dim: int = 8) -> dict[str, np.ndarray]:
    """Two promoted snapshots (the second one skips the last product); returns the vectors of each."""
    store = SnapshotStore(home)
    ids = np.array([f"P{i:04d}" for i in range(n)])
    out = {}
    for cutoff, seed, count in ((CUT1, 1, n), (CUT2, 2, n - 1)):
        vectors = awkward_vectors(count, dim, seed)
        ref = store.write("fam", 1, cutoff, Embeddings(ids[:count], vectors), {})
        store.update_card(ref, validation={"success": True, "summary": "ok"})
        store.promote(ref)
        out[cutoff.isoformat()] = vectors
    # What the online store must hold after a full materialization: the newest row per product.
    newest = out[CUT1.isoformat()].copy()
    newest[: n - 1] = out[CUT2.isoformat()]
    out["newest"], out["ids"] = newest, ids
    return out


def online_matrix(fs, ids) -> np.ndarray:
    rows = fs.get_online_features(features=[f"{VIEW}:embedding"],
                                  entity_rows=[{"product_id": i} for i in ids]).to_dict()["embedding"]
    return np.array(rows, dtype=np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a.view(np.uint32) == b.view(np.uint32)).all())


def materialize(home: Path, online: str, plugin: bool):
    fs = feast_ops.open_store(home, online=online, plugin=plugin)
    feast_ops.apply(fs, home)
    feast_ops.materialize(fs, home)
    return fs


def test_value_and_key_bytes_are_feasts_own():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.utils import _columns_to_proto_values
    from feast.value_type import ValueType

    from prodvec.core.feast_plugin.encoding import entity_keys, float_list_values

    rng = np.random.default_rng(0)
    lists = [[1.0, 2.0], None, [], rng.normal(size=40).tolist(), rng.normal(size=300).tolist(), [-0.0]]
    for arrow_type in (pa.list_(pa.float32()), pa.list_(pa.float64()), pa.large_list(pa.float32())):
        column = pa.array(lists * 2, arrow_type).slice(1)  # a sliced array: offsets must be honoured
        feast = _columns_to_proto_values(pa.record_batch([column], names=["e"]), [("e", ValueType.FLOAT_LIST)],
                                         allow_missing=False)["e"]
        mine = [bytes(v) for v in float_list_values(column)]
        assert mine == [v.SerializeToString() for v in feast]
        assert [Value.FromString(b) for b in mine] == list(feast)
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(awkward_vectors(5, 16, 3).ravel()), 16)
    assert [Value.FromString(bytes(b)).float_list_val.val for b in float_list_values(fixed)] == \
        [list(v) for v in np.asarray(fixed.flatten()).reshape(5, 16).tolist()]

    def feast_key(value: Value) -> bytes:
        return serialize_entity_key(EntityKey(join_keys=["product_id"], entity_values=[value]), 3)

    names = pa.array(["P1", "héllo", "", "x" * 300, "P2"]).slice(1)
    assert [bytes(k) for k in entity_keys("product_id", names, ValueType.STRING, b"prodvec")] == \
        [feast_key(Value(string_val=s)) + b"prodvec" for s in names.to_pylist()]
    numbers = pa.array([5, -3, 2**40])
    assert [bytes(k) for k in entity_keys("product_id", numbers, ValueType.INT64)] == \
        [feast_key(Value(int64_val=i)) for i in numbers.to_pylist()]


def test_resp_framing_and_row_concatenation_match_a_plain_python_reference():
    """The Redis request is framed by numpy (resp_bulk, concat_rows); every byte must be what redis-py's
    `$<len>\\r\\n<arg>\\r\\n` framing gives, for rows of any lengths, uniform or not, and for sliced rows."""
    from prodvec.core.feast_plugin.encoding import Packed, concat_rows, resp_bulk

    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(0, 25))
        lengths = rng.choice([0, 1, 9, 10, 99, 100, 519, 1234], size=n) if trial % 2 else np.full(n, 519)
        rows = [bytes(rng.integers(0, 256, int(k), dtype=np.uint8)) for k in lengths]
        other = [r[::-1] + b"!" for r in rows]
        for skip in (0, min(n, 3)):  # a Packed whose offsets do not start at 0 (a slice of a batch)
            a, b = (Packed(p.buffer, p.offsets[skip:]) for p in (Packed.of(rows), Packed.of(other)))
            assert list(a) == rows[skip:]
            assert list(resp_bulk(a)) == [b"$%d\r\n%s\r\n" % (len(r), r) for r in rows[skip:]]
            assert list(concat_rows([a, resp_bulk(b)])) == \
                [r + b"$%d\r\n%s\r\n" % (len(o), o) for r, o in zip(rows[skip:], other[skip:])]


def test_sqlite_rows_are_bit_identical_with_the_plugin_and_with_feasts_engine(tmp_path):
    native_home, plugin_home = tmp_path / "native", tmp_path / "plugin"
    # 300 rows: two full multi-row INSERTs (writers.ROWS_PER_STATEMENT = 128) and 44 single-row ones.
    truth = served_home(native_home, n=300)
    shutil.copytree(native_home, plugin_home)  # the same Parquet bytes, created_timestamp included

    native = materialize(native_home, "sqlite", plugin=False)
    plugin = materialize(plugin_home, "sqlite", plugin=True)
    assert type(native._get_provider().batch_engine).__name__ == "LocalComputeEngine"
    assert [job.rows_written for job in plugin._get_provider().batch_engine.jobs] == [len(truth["ids"])]
    for fs in (native, plugin):
        assert same_bits(online_matrix(fs, truth["ids"]), truth["newest"])

    def rows(home: Path) -> list[tuple]:
        with sqlite3.connect(home / "feast" / "online_store.db") as conn:
            return conn.execute(f"SELECT entity_key, feature_name, value, value_text, vector_value, event_ts, "
                                f"created_ts FROM prodvec_{VIEW} ORDER BY entity_key").fetchall()

    assert rows(plugin_home) == rows(native_home)
    assert len(rows(plugin_home)) == len(truth["ids"])


def test_redis_hashes_are_bit_identical_with_the_plugin_and_with_feasts_engine(tmp_path, redis_url):  # noqa: F811
    import redis

    truth = served_home(tmp_path, n=2_500)  # three script calls (writers.SCRIPT_ROWS = 1,000) in one request
    host, port = redis_url.removeprefix("redis://").split(":")
    client = redis.Redis(host=host, port=int(port))

    def hashes() -> dict:
        return {key: client.hgetall(key) for key in client.keys("*")}

    fs = materialize(tmp_path, redis_url, plugin=False)
    assert same_bits(online_matrix(fs, truth["ids"]), truth["newest"])
    native = hashes()
    client.flushall()
    fs = materialize(tmp_path, redis_url, plugin=True)
    assert fs._get_provider().batch_engine.jobs[-1].rows_written == len(truth["ids"])
    assert same_bits(online_matrix(fs, truth["ids"]), truth["newest"])
    assert hashes() == native and len(native) == len(truth["ids"])
    # Materializing again writes nothing: every stored event time is already as new (Feast's rule).
    feast_ops.materialize(fs, tmp_path)
    assert fs._get_provider().batch_engine.jobs[-1].rows_written == 0


@pytest.mark.parametrize("overlap", [True, False])
def test_a_table_larger_than_a_batch_is_streamed_batch_by_batch(tmp_path, overlap):
    truth = served_home(tmp_path, n=50, dim=4)
    fs = feast_ops.open_store(tmp_path)
    feast_ops.apply(fs, tmp_path)
    engine = fs._get_provider().batch_engine
    engine.batch_size, engine.overlap_writes = 7, overlap
    # A window ending before the second cutoff serves the first snapshot ...
    fs.materialize(start_date=(CUT1 - pd.Timedelta(days=1)).to_pydatetime(),
                   end_date=(CUT2 - pd.Timedelta(seconds=1)).to_pydatetime(), feature_views=[VIEW])
    assert same_bits(online_matrix(fs, truth["ids"]), truth[CUT1.isoformat()])
    # ... the full window the newest row of each of the 50 products, read from 99 rows.
    feast_ops.materialize(fs, tmp_path)
    job = engine.jobs[-1]
    assert job.rows_read == 50 and job.batches == 8 and max(job.batch_rows) <= 7
    assert same_bits(online_matrix(fs, truth["ids"]), truth["newest"])


def test_a_failed_batch_stops_the_load_before_the_next_batch_is_sent(tmp_path, monkeypatch):
    """Batch k is sent from the writer thread while k+1 is encoded: an error in k must still stop the load."""
    from prodvec.core.feast_plugin import writers

    served_home(tmp_path, n=50, dim=4)
    fs = feast_ops.open_store(tmp_path)
    feast_ops.apply(fs, tmp_path)
    engine = fs._get_provider().batch_engine
    engine.batch_size = 7
    sent, send = [], writers.SqliteRows.send

    def failing_second(self, prepared):
        sent.append(prepared[2])
        if len(sent) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return send(self, prepared)

    monkeypatch.setattr(writers.SqliteRows, "send", failing_second)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        fs.materialize(start_date=(CUT1 - pd.Timedelta(days=1)).to_pydatetime(),
                       end_date=(CUT2 + pd.Timedelta(days=1)).to_pydatetime(), feature_views=[VIEW])
    job = engine.jobs[-1]
    assert sent == [7, 7] and job.rows_written == 7 and job.status().name == "ERROR"
    with sqlite3.connect(tmp_path / "feast" / "online_store.db") as conn:
        assert conn.execute(f"SELECT count(*) FROM prodvec_{VIEW}").fetchone()[0] == 7


def test_views_that_are_not_embeddings_go_to_feasts_engine(tmp_path):
    from datetime import timedelta

    from feast import Field, FeatureView, FileSource
    from feast.types import Float32

    from prodvec.core.feast_defs import product

    path = tmp_path / "price.parquet"
    pd.DataFrame({"product_id": ["P1", "P2"], "price": np.array([1.5, 2.5], dtype=np.float32),
                  "event_timestamp": [CUT1, CUT1]}).to_parquet(path)
    view = FeatureView(name="product_price", entities=[product], ttl=timedelta(days=30),
                       schema=[Field(name="price", dtype=Float32)],
                       source=FileSource(path=str(path), timestamp_field="event_timestamp"))
    fs = feast_ops.open_store(tmp_path)
    fs.apply([product, view])
    fs.materialize(start_date=(CUT1 - pd.Timedelta(days=1)).to_pydatetime(), end_date=CUT2.to_pydatetime())
    engine = fs._get_provider().batch_engine
    assert engine.handles(view) == "features are not all Array(Float32)" and engine.jobs == []
    rows = fs.get_online_features(features=["product_price:price"], entity_rows=[{"product_id": "P2"}]).to_dict()
    assert rows["price"] == [2.5]


def test_feast_materialize_on_the_cli_uses_the_plugin(tmp_path):
    home, repo = tmp_path / "home", tmp_path / "repo"
    truth = served_home(home)
    repo.mkdir()
    shutil.copy(REPO / "repo.py", repo / "repo.py")
    yaml = (REPO / "feature_store.yaml").read_text().replace("../workspace", str(home))
    assert "EmbeddingComputeEngine" in yaml
    (repo / "feature_store.yaml").write_text(yaml)
    env = {**os.environ, "PRODVEC_HOME": str(home)}
    feast = str(Path(sys.executable).with_name("feast"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([feast, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=180)

    # Registered in-process (the registry the yaml names): one CLI start-up less, the slow part of this test.
    feast_ops.apply(feast_ops.open_store(home), home)
    done = run("--log-level", "INFO", "materialize", "2025-01-01T00:00:00", "2025-12-31T00:00:00")
    assert done.returncode == 0, done.stderr
    assert f"{VIEW}: {len(truth['ids'])} rows written in 1 batches by EmbeddingComputeEngine" in done.stderr
    fs = feast_ops.open_store(home)
    assert same_bits(online_matrix(fs, truth["ids"]), truth["newest"])


def test_point_in_time_join_on_a_million_rows_matches_an_independent_answer(tmp_path):
    """1M entity rows against 3 snapshots of 150k products (some missing in some): numpy searchsorted is the truth."""
    rng = np.random.default_rng(7)
    n_products, n_rows = 150_000, 1_000_000
    cutoffs = [pd.Timestamp("2025-01-01", tz="UTC"), CUT1, CUT2]
    store = SnapshotStore(tmp_path)
    ids = np.array([f"P{i:06d}" for i in range(n_products)])
    present = []
    for s, cutoff in enumerate(cutoffs):
        keep = np.flatnonzero(rng.random(n_products) < 0.8)
        # value = (product, snapshot) so the answer identifies the row it came from
        vectors = np.stack([keep.astype(np.float32), np.full(len(keep), s, dtype=np.float32)], axis=1)
        ref = store.write("fam", 1, cutoff, Embeddings(ids[keep], vectors), {})
        store.update_card(ref, validation={"success": True, "summary": "ok"})
        store.promote(ref)
        present.append(keep)
    fs = feast_ops.open_store(tmp_path)
    feast_ops.apply(fs, tmp_path)

    products = rng.integers(0, n_products, n_rows)
    seconds = rng.integers(int(cutoffs[0].timestamp()) - 86_400 * 20, int(CUT2.timestamp()) + 86_400 * 20, n_rows)
    seconds[:1000] = int(CUT1.timestamp())  # exactly at a cutoff: that snapshot counts
    entity = pd.DataFrame({"product_id": ids[products], "event_timestamp": pd.to_datetime(seconds, unit="s", utc=True),
                           "row": np.arange(n_rows)})
    got = fs.get_historical_features(entity_df=entity, features=[f"{VIEW}:embedding"]).to_arrow()

    # Truth: per product, its snapshot times sorted; the last one <= the row's time.
    feat_product = np.concatenate(present)
    feat_snapshot = np.concatenate([np.full(len(k), s) for s, k in enumerate(present)])
    feat_time = np.array([int(c.timestamp()) for c in cutoffs])[feat_snapshot]
    span = 10**10
    order = np.lexsort((feat_time, feat_product))
    key = feat_product[order].astype(np.int64) * span + feat_time[order]
    at = np.searchsorted(key, products.astype(np.int64) * span + seconds, side="right") - 1
    found = (at >= 0) & (feat_product[order][np.maximum(at, 0)] == products)
    expected_snapshot = np.where(found, feat_snapshot[order][np.maximum(at, 0)], -1)

    rows = got.column("row").to_numpy()
    column = got.column("embedding").combine_chunks()
    assert len(rows) == n_rows and np.array_equal(np.sort(rows), np.arange(n_rows))
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    got_snapshot = np.full(n_rows, -1)
    values = np.asarray(column.filter(pa.array(valid)).flatten()).reshape(-1, 2)
    got_snapshot[rows[valid]] = values[:, 1].astype(int)
    assert np.array_equal(got_snapshot, expected_snapshot)
    assert np.array_equal(values[:, 0].astype(int), products[rows[valid]])
    assert 0.1 < found.mean() < 0.95  # both outcomes are exercised


def test_the_redis_script_keeps_or_replaces_stored_rows_exactly_as_feasts_write_does(tmp_path, redis_url):  # noqa: F811
    """Feast's rule, decided inside Redis by the plugin's Lua script: a row is written only when the stored
    event time is unset (or <= the epoch) or older; a newer or equal stored row stays, TTL only on writes."""
    import redis
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from prodvec.core.feast_plugin.encoding import entity_keys
    from prodvec.core.feast_plugin.writers import RedisRows

    served_home(tmp_path, n=3, dim=4)
    fs = feast_ops.open_store(tmp_path, online=redis_url)
    feast_ops.apply(fs, tmp_path)
    view, store, config = fs.get_feature_view(VIEW), fs._get_provider().online_store, fs.config
    client = redis.Redis(*redis_url.removeprefix("redis://").split(":"))
    t = pd.Timestamp("2025-03-01 12:00:00.000007", tz="UTC")
    us = pd.Timedelta(microseconds=1)
    before_epoch, long_before = pd.Timestamp("1960-05-01", tz="UTC"), pd.Timestamp("1950-01-01", tz="UTC")
    # (stored event time or None, incoming event time) per product
    cases = [(None, t), (t - us, t), (t, t), (t + us, t), (t - pd.Timedelta(days=400), t), (before_epoch, t),
             (t, long_before), (before_epoch, long_before), (pd.Timestamp(0, tz="UTC"), t),
             (t.floor("s"), t), (t + pd.Timedelta(seconds=1), t)]
    ids = [f"Q{i}" for i in range(len(cases))]

    def rows(values: list[float], times: list) -> list:
        return [(EntityKey(join_keys=["product_id"], entity_values=[Value(string_val=i)]),
                 {"embedding": Value(float_list_val={"val": [v] * 4})}, ts.to_pydatetime(), None)
                for i, v, ts in zip(ids, values, times) if ts is not None]

    def outcome(write) -> dict:
        client.flushall()
        config.online_store.key_ttl_seconds = None  # the stored rows never expire; the new writes do
        store.online_write_batch(config, view, rows([1.0] * len(cases), [old for old, _ in cases]), None)
        config.online_store.key_ttl_seconds = 600
        write()
        return {key: (client.hgetall(key), client.ttl(key)) for key in client.keys("*")}

    incoming = rows([2.0] * len(cases), [new for _, new in cases])
    feast = outcome(lambda: store.online_write_batch(config, view, incoming, None))
    writer = RedisRows(store, config, view, VIEW)
    keys = entity_keys("product_id", pa.array(ids), 2, writer.key_suffix())
    values = {"embedding": [r[1]["embedding"].SerializeToString() for r in incoming]}
    event = pa.array([new for _, new in cases], pa.timestamp("us", tz="UTC"))
    # What Feast decided, spelled out: written where nothing (or a time <= the epoch) was stored or it was older.
    replaced = [bool(feast[k][0].get(next(f for f in feast[k][0] if not f.startswith(b"_ts")))
                     == values["embedding"][i]) for i, k in enumerate(keys)]
    assert replaced == [True, True, False, False, True, True, False, True, True, True, False]
    assert all((feast[k][1] > 0) == r for k, r in zip(keys, replaced))  # the TTL is set by a write only
    for two_pass in (False, True):  # the script; Feast's read-then-write pipeline, kept for Redis Cluster
        writer.cluster = two_pass
        written = []
        assert outcome(lambda: written.append(writer.write(keys, values, event, None))) == feast
        assert written == [sum(replaced)]
    # skip_dedup: Feast overwrites every row (no stored time read); the plugin then sends plain HSETs + EXPIREs.
    config.online_store.skip_dedup = True
    everything = outcome(lambda: store.online_write_batch(config, view, incoming, None))
    assert all(everything[k][0][next(f for f in everything[k][0] if not f.startswith(b"_ts"))]
               == values["embedding"][i] and everything[k][1] > 0 for i, k in enumerate(keys))
    writer, written = RedisRows(store, config, view, VIEW), []
    assert outcome(lambda: written.append(writer.write(keys, values, event, None))) == everything
    assert written == [len(cases)]


def test_the_read_back_check_samples_the_snapshot_and_notices_a_lost_row(tmp_path):
    """feast_ops.check_loaded reads 256 spread rows of the snapshot (not all of it) and the store's rows."""
    served_home(tmp_path, n=600, dim=4)
    fs = materialize(tmp_path, "sqlite", plugin=True)
    store = SnapshotStore(tmp_path)
    ref = store.get(f"fam/v1/{store.promoted('fam', 1)[-1]}")
    sample, full = feast_ops.spread_sample(ref), store.read(ref)
    rows = np.unique(np.linspace(0, len(full) - 1, 256).astype(int))
    assert list(sample.ids) == list(full.ids[rows]) and same_bits(sample.vectors, full.vectors[rows])
    assert feast_ops.read_back(fs, VIEW, ["P0003", "nope"])[1] is None  # a missing product reads as None
    # The deleted row is the last one written (the newest snapshot's last product), one of the 256 sampled.
    feast_ops.check_loaded(fs, VIEW, sample)  # everything is there
    with sqlite3.connect(tmp_path / "feast" / "online_store.db") as conn:
        conn.execute(f"DELETE FROM prodvec_{VIEW} WHERE rowid = (SELECT max(rowid) FROM prodvec_{VIEW})")
    with pytest.raises(feast_ops.OnlineLoadError, match="1 of 256 products"):
        feast_ops.check_loaded(fs, VIEW, sample)
