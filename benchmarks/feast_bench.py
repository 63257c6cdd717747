"""The Feast plugin against Feast's own engine and against the bare store load, side by side.

Every measurement runs in its own child process, so its peak RSS (from
os.wait4) is that stage's alone; ratios against the reference measured in the
same command are the headline, not absolute times.

* materialization of one snapshot (N products x dim float32) into SQLite and a
  real redis-server: prodvec's EmbeddingComputeEngine, Feast's
  LocalComputeEngine (capped at --native-max rows: it needs a protobuf object
  per float), and the floor, the same number of rows of the same sizes loaded
  with one bare `executemany` per 10k rows / on Redis the faster of a pipeline
  of HSETs and the plugin's Lua script without its newer-time check, bytes
  prepared beforehand;
* get_historical_features: prodvec's offline store, Feast's DuckDB offline
  store, and a hand-written DuckDB ASOF JOIN over the same Parquet (all
  returning an Arrow table);
* online lookup latency (get_online_features, p50/p99) for 1 and 100 products.

    .venv/bin/python benchmarks/feast_bench.py [--feast-sizes 10000,100000] [--feast-dims 64,256] [--large] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CUTOFF = pd.Timestamp("2025-02-01", tz="UTC")
FLOOR_BATCH = 10_000
SECTION = "## Feast plugin"


# -- child side --------------------------------------------------------------------------------------------------
def prepare(home: str, n: int, dim: int, snapshots: int = 1) -> dict:
    from prodvec.core.embeddings import Embeddings
    from prodvec.core.neighbours import ensure_index
    from prodvec.core.snapshots import SnapshotStore

    store = SnapshotStore(home)
    rng = np.random.default_rng(0)
    ids = np.array([f"P{i:08d}" for i in range(n)])
    for s in range(snapshots):
        ref = store.write("bench", 1, CUTOFF + pd.Timedelta(days=30 * s),
                          Embeddings(ids, rng.normal(size=(n, dim)).astype(np.float32)), {})
        store.update_card(ref, validation={"success": True, "summary": "bench"})
        # A flat (exact) neighbour index: promote would otherwise build HNSW over every snapshot first, minutes
        # at 1M rows, which is serving's cost, not materialization's.
        ensure_index(store, ref, kind="flat")
        store.promote(ref)
    return {}


def materialize(home: str, online: str, plugin: bool, overlap: bool = True) -> dict:
    from prodvec.core import feast_ops

    fs = feast_ops.open_store(home, online=online, plugin=plugin)
    feast_ops.apply(fs, home)
    if plugin:  # overlap=False: the plugin writing each batch before reading the next (the engine's switch)
        fs._get_provider().batch_engine.overlap_writes = overlap
    started, cpu = time.perf_counter(), time.process_time()
    served = feast_ops.materialize(fs, home)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    jobs = getattr(fs._get_provider().batch_engine, "jobs", [])
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": sum(served.values()),
            "batches": sum(j.batches for j in jobs)}


def floor(home: str, online: str, n: int, dim: int, method: str = "script") -> dict:
    """The plugin's rows, written with no Feast, no reading and no encoding in the timing.

    The bytes are the plugin's own, made before the clock starts: the serialized entity keys of the bench's
    products (with the project suffix on Redis), real ValueProto bytes of `dim` floats (FLOOR_BATCH distinct
    ones, reused), one stored time. SQLite: into the table layout SqliteOnlineStore.update makes (its primary
    key and entity-key index), FLOOR_BATCH rows per transaction, ROWS_PER_STATEMENT rows per INSERT as the
    plugin sends them. Redis: the hash the plugin writes (`_ts:<view>` and the feature field) per key,
    FLOOR_BATCH rows per request, framed in RESP with the plugin's numpy framing, either as plain HSETs
    (`method` "hset": no script, what the plugin sends with `skip_dedup: true`) or as the plugin's script with
    its newer-time check off ("script"); the faster of the two is the floor.
    """
    import pyarrow as pa

    from prodvec.core import feast_ops
    from prodvec.core.feast_plugin.encoding import Packed, concat_rows, entity_keys, float_list_values, resp_bulk
    from prodvec.core.feast_plugin.writers import (ROWS_PER_STATEMENT, UPSERT_NEWER_LUA, hset_request, repeated,
                                                   script_request, send_request)

    suffix = b"" if online == "sqlite" else feast_ops.PROJECT.encode()
    keys = entity_keys("product_id", pa.array([f"P{i:08d}" for i in range(n)]), 2, suffix)  # 2: STRING
    vectors = np.random.default_rng(0).normal(size=(min(n, FLOOR_BATCH), dim)).astype(np.float32)
    values = float_list_values(pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim))
    stamp, field, ts_field = b"\x08\x80\xcc\xd8\xbc\x06", b"abcd", b"_ts:product_bench_v1"
    if online != "sqlite":
        import redis

        host, port = online.removeprefix("redis://").split(":")
        client = redis.Redis(host=host, port=int(port))
        client.ping()  # connected before the clock starts
    else:
        import sqlite3

        key_list, value_list = keys.tolist(), values.tolist()
    started, cpu = time.perf_counter(), time.process_time()
    if online == "sqlite":
        path = Path(home) / "floor.db"
        path.unlink(missing_ok=True)
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, "
                     "vector_value BLOB, event_ts timestamp, created_ts timestamp, PRIMARY KEY(entity_key, feature_name))")
        conn.execute("CREATE INDEX t_ek ON t (entity_key)")  # the table as SqliteOnlineStore.update makes it
        insert = "INSERT INTO t (entity_key, feature_name, value, value_text, event_ts, created_ts) VALUES "
        one, many = insert + "(?, ?, ?, ?, ?, ?)", insert + ", ".join(["(?, ?, ?, ?, ?, ?)"] * ROWS_PER_STATEMENT)
        width = 6 * ROWS_PER_STATEMENT
        for start in range(0, n, FLOOR_BATCH):
            flat = [x for k, v in zip(key_list[start:start + FLOOR_BATCH], value_list)
                    for x in (k, "embedding", v, None, 1738368000, 1738368000)]
            full = len(flat) // width * width
            with conn:
                conn.executemany(many, (flat[i:i + width] for i in range(0, full, width)))
                conn.executemany(one, (flat[i:i + 6] for i in range(full, len(flat), 6)))
        conn.close()
    else:
        framed_keys = resp_bulk(keys)

        def rows(start: int, stop: int) -> Packed:
            return Packed(framed_keys.buffer, framed_keys.offsets[start:stop + 1])

        framed_values = resp_bulk(values)
        framed_stamp = b"$%d\r\n%s\r\n" % (len(stamp), stamp)
        for start in range(0, n, FLOOR_BATCH):
            stop = min(start + FLOOR_BATCH, n)
            count = stop - start
            batch_values = Packed(framed_values.buffer, framed_values.offsets[:count + 1])
            if method == "hset":  # per key: HSET key _ts:<view> <stamp> <field> <value> (the plugin's skip_dedup)
                send_request(client, *hset_request(rows(start, stop), ts_field, repeated(framed_stamp, count), [field],
                                                   [batch_values], None))
            else:  # the plugin's script and framing, without its read-and-compare step
                head = b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (ts_field, b"0", b"0", b"1", field))
                eval_head = b"$4\r\nEVAL\r\n$%d\r\n%s\r\n" % (len(UPSERT_NEWER_LUA), UPSERT_NEWER_LUA.encode())
                send_request(client, *script_request(eval_head, rows(start, stop), head,
                                                     concat_rows([repeated(framed_stamp, count), batch_values]), 1))
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu, "rows": n}


def lookup(home: str, online: str, repeats: int = 200) -> dict:
    from prodvec.core import feast_ops

    fs = feast_ops.open_store(home, online=online)
    rng = np.random.default_rng(1)
    n = int(json.loads((next(Path(home).glob("snapshots/bench/v1/*/model_card.json"))).read_text())["rows"])
    out = {}
    for batch in (1, 100):
        times = []
        for r in range(repeats + 5):
            rows = [{"product_id": f"P{i:08d}"} for i in rng.integers(0, n, batch)]
            started = time.perf_counter()
            got = fs.get_online_features(features=["product_bench_v1:embedding"], entity_rows=rows).to_dict()
            if r >= 5:  # the first calls load the registry and connect
                times.append(time.perf_counter() - started)
        assert got["embedding"][0] is not None
        out[f"p50_ms_{batch}"] = 1000 * float(np.percentile(times, 50))
        out[f"p99_ms_{batch}"] = 1000 * float(np.percentile(times, 99))
    return out


def entity_rows(n_products: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    seconds = rng.integers(int(CUTOFF.timestamp()) - 86_400 * 10, int(CUTOFF.timestamp()) + 86_400 * 50, rows)
    return pd.DataFrame({"product_id": [f"P{i:08d}" for i in rng.integers(0, n_products, rows)],
                         "event_timestamp": pd.to_datetime(seconds, unit="s", utc=True)})


def historical(home: str, n_products: int, rows: int, mode: str) -> dict:
    entity = entity_rows(n_products, rows)
    if mode == "raw":
        import duckdb
        import pyarrow as pa

        from prodvec.core.snapshots import SnapshotStore

        path = SnapshotStore(home).served_table("bench", 1)
        started = time.perf_counter()
        con = duckdb.connect(config={"threads": 2})
        # DuckDB estimates a registered Arrow table at ~1 row and then plans ASOF as a nested-loop join
        # (quadratic: 900 s at 1M rows); the threshold of 0 keeps its real ASOF operator.
        con.execute("SET asof_loop_join_threshold = 0")
        con.register("entity_rows", pa.Table.from_pandas(entity, preserve_index=False))
        # The plain query a DuckDB user writes: newest row at or before each entity time.
        table = con.execute(
            "SELECT e.*, f.embedding FROM entity_rows e ASOF LEFT JOIN (SELECT product_id, embedding, "
            "event_timestamp FROM read_parquet(?)) f "
            "ON e.product_id = f.product_id AND e.event_timestamp >= f.event_timestamp",
            [str(path)]).to_arrow_table()
    else:
        from prodvec.core import feast_ops

        fs = feast_ops.open_store(home, plugin=mode == "plugin")
        feast_ops.apply(fs, home)
        started = time.perf_counter()
        table = fs.get_historical_features(entity_df=entity, features=["product_bench_v1:embedding"]).to_arrow()
    seconds = time.perf_counter() - started
    found = table.num_rows - table.column("embedding").null_count
    return {"seconds": seconds, "rows": table.num_rows, "found": found}


CHILD_TASKS = {"prepare": prepare, "materialize": materialize, "floor": floor, "lookup": lookup,
               "historical": historical}


# -- parent side -------------------------------------------------------------------------------------------------
def child(task: str, timeout: float, **kwargs) -> dict:
    """Run one task in a fresh interpreter; add its wall time and peak RSS (GB), or why it did not finish."""
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        proc = subprocess.Popen([sys.executable, __file__, "--child", task, json.dumps(kwargs), result.name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                return {"error": f"over {timeout:.0f} s (stopped)"}
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            return {"error": proc.stderr.read().strip().splitlines()[-1][:200]}
        out = json.loads(Path(result.name).read_text())
    out["peak_rss_gb"] = usage.ru_maxrss / 1e6  # KiB on Linux
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(work: Path):
    binary = shutil.which("redis-server")
    if binary is None:
        return None, None
    port = free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(work)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, f"redis://127.0.0.1:{port}"


def flush(url: str) -> None:
    import redis

    host, port = url.removeprefix("redis://").split(":")
    redis.Redis(host=host, port=int(port)).flushall()


def rate(result: dict) -> float | None:
    return result["rows"] / result["seconds"] if "seconds" in result else None


def prepared(result: dict) -> None:
    """Stop when the snapshot could not be written (e.g. over --stage-timeout): every contender would then
    "materialize" an empty home in milliseconds."""
    if "error" in result:
        raise RuntimeError(f"preparing the benchmark snapshot failed: {result['error']}")


def best_of(runs: int, measure) -> dict:
    """The fastest of `runs` measurements (each from an empty store, in a fresh process), with every run's
    seconds: on a shared machine the slower runs measure the neighbours; all contenders get the same runs."""
    results = [measure() for _ in range(max(runs, 1))]
    done = [r for r in results if "seconds" in r]
    if not done:
        return results[-1]
    best = dict(min(done, key=lambda r: r["seconds"]))
    best["runs_seconds"] = [r.get("seconds") for r in results]
    return best


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc; 0 where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return 0.0


def bench_materialization(work: Path, sizes: list[int], dims: list[int], stores: dict[str, str], native_max: int,
                          timeout: float, log, repeats: int = 1, server_pid: int | None = None) -> list[dict]:
    rows = []
    for dim in dims:
        for n in sizes:
            home = work / f"mat_{n}_{dim}"
            prepared(child("prepare", timeout, home=str(home), n=n, dim=dim))
            for store, online in stores.items():
                row = {"stage": "materialize", "store": store, "products": n, "dim": dim}
                floors = ("hset", "script") if online.startswith("redis") else ("executemany",)
                runs = [("plugin", "materialize", {"plugin": True}), ("native", "materialize", {"plugin": False})]
                runs += [(f"floor_{m}", "floor", {"n": n, "dim": dim, "method": m}) for m in floors]
                for name, task, args in runs:
                    if name == "native" and n > native_max:
                        row[name] = {"error": f"not run above --native-max {native_max}"}
                        continue

                    def measure(task=task, args=args) -> dict:
                        (home / "feast" / "online_store.db").unlink(missing_ok=True)
                        if online.startswith("redis"):
                            flush(online)
                        # redis-server's CPU over the child's run (idle outside the timed part): the store's share
                        # of the work, which the child's own CPU time does not show.
                        before = process_cpu(server_pid) if online.startswith("redis") else 0.0
                        out = child(task, timeout, home=str(home), online=online, **args)
                        if online.startswith("redis") and "seconds" in out:
                            out["server_cpu_seconds"] = process_cpu(server_pid) - before
                        return out

                    row[name] = best_of(repeats, measure)
                    log(f"materialize {store} {n}x{dim} {name}: {row[name]}")
                # The floor is the fastest bare load measured (on Redis, of the two ways of writing).
                row["floor"] = min((row[f"floor_{m}"] for m in floors), key=lambda r: r.get("seconds", float("inf")))
                rows.append(row)
            shutil.rmtree(home, ignore_errors=True)
    return rows


def bench_lookup(work: Path, n: int, stores: dict[str, str], timeout: float, log) -> list[dict]:
    home = work / "lookup"
    prepared(child("prepare", timeout, home=str(home), n=n, dim=64))
    out = []
    for store, online in stores.items():
        if online.startswith("redis"):
            flush(online)
        child("materialize", timeout, home=str(home), online=online, plugin=True)
        result = child("lookup", timeout, home=str(home), online=online)
        log(f"lookup {store}: {result}")
        out.append({"stage": "lookup", "store": store, "products": n, "dim": 64, **result})
    shutil.rmtree(home, ignore_errors=True)
    return out


def bench_historical(work: Path, n_products: int, row_counts: list[int], timeout: float, log) -> list[dict]:
    home = work / "hist"
    prepared(child("prepare", timeout, home=str(home), n=n_products, dim=64, snapshots=3))
    out = []
    for rows in row_counts:
        row = {"stage": "historical", "entity_rows": rows, "products": n_products, "dim": 64, "snapshots": 3}
        for mode in ("plugin", "native", "raw"):
            row[mode] = child("historical", timeout, home=str(home), n_products=n_products, rows=rows, mode=mode)
            log(f"historical {rows} {mode}: {row[mode]}")
        out.append(row)
    shutil.rmtree(home, ignore_errors=True)
    return out


def fmt(value, digits=2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def markdown(results: dict) -> str:
    lines = [SECTION, "", f"`{results['command']}` ({results['when']}, {os.cpu_count()} CPUs, shared machine)", "",
             "Materialization of one snapshot (rows/s; peak RSS of the child process in GB):", "",
             "| store | products × dim | plugin rows/s | Feast native rows/s | floor rows/s | plugin ÷ native | "
             "floor ÷ plugin | CPU s plugin / floor | RSS plugin / native / floor |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["materialize"]:
        p, nat, fl = rate(r["plugin"]), rate(r["native"]), rate(r["floor"])
        rss = " / ".join(fmt(r[k].get("peak_rss_gb")) for k in ("plugin", "native", "floor"))
        native_cell = fmt(nat, 0) if nat else r["native"].get("error", "—")
        # CPU of the timed part: the process (all its threads) plus, on Redis, redis-server during the run.
        cpu = " / ".join(fmt(r[k]["cpu_seconds"] + r[k].get("server_cpu_seconds", 0.0)) if "cpu_seconds" in r[k]
                         else "—" for k in ("plugin", "floor"))
        lines.append(f"| {r['store']} | {r['products']:,} × {r['dim']} | {fmt(p, 0)} | {native_cell} | {fmt(fl, 0)} | "
                     f"{fmt(p / nat if p and nat else None, 1)}× | {fmt(fl / p if p and fl else None)}× | {cpu} | {rss} |")
    if results.get("historical"):
        lines += ["", "get_historical_features, 3 snapshots × "
                  f"{results['historical'][0]['products']:,} products × 64 (seconds to an Arrow table; RSS GB):", "",
                  "| entity rows | plugin s | Feast DuckDB s | raw DuckDB ASOF s | plugin ÷ raw | native ÷ plugin | "
                  "RSS plugin / native / raw |", "|---|---|---|---|---|---|---|"]
        for r in results["historical"]:
            s = {m: r[m].get("seconds") for m in ("plugin", "native", "raw")}
            rss = " / ".join(fmt(r[m].get("peak_rss_gb")) for m in ("plugin", "native", "raw"))
            lines.append(f"| {r['entity_rows']:,} | {fmt(s['plugin'])} | {fmt(s['native']) if s['native'] else r['native'].get('error')} "
                         f"| {fmt(s['raw'])} | {fmt(s['plugin'] / s['raw'] if s['plugin'] and s['raw'] else None)}× | "
                         f"{fmt(s['native'] / s['plugin'] if s['native'] and s['plugin'] else None, 1)}× | {rss} |")
    if results.get("lookup"):
        lines += ["", f"get_online_features latency after the plugin's materialization "
                  f"({results['lookup'][0]['products']:,} products × 64), ms:", "",
                  "| store | 1 product p50 | 1 product p99 | 100 products p50 | 100 products p99 |", "|---|---|---|---|---|"]
        for r in results["lookup"]:
            lines.append(f"| {r['store']} | {fmt(r.get('p50_ms_1'))} | {fmt(r.get('p99_ms_1'))} | "
                         f"{fmt(r.get('p50_ms_100'))} | {fmt(r.get('p99_ms_100'))} |")
    return "\n".join(lines) + "\n"


def write_reports(results: dict, md_path: Path, json_path: Path) -> None:
    """Replace (or add) this benchmark's section of bench.md and its key of bench.json; leave the rest alone."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    text = md_path.read_text() if md_path.exists() else "# prodvec benchmark\n"
    if SECTION in text:
        head, rest = text.split(SECTION, 1)
        following = rest.find("\n## ")
        text = head + (rest[following + 1:] if following >= 0 else "")
    md_path.write_text(text.rstrip("\n") + "\n\n" + markdown(results))
    data = json.loads(json_path.read_text()) if json_path.exists() else {}
    data["feast_plugin"] = results
    json_path.write_text(json.dumps(data, indent=2, default=str))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--feast-sizes", default="10000,100000", help="products per materialization run")
    parser.add_argument("--feast-dims", default="64,256")
    parser.add_argument("--large", action="store_true", help="add 1,000,000 products to --feast-sizes")
    parser.add_argument("--native-max", type=int, default=100_000,
                        help="largest size Feast's own engine is asked to materialize (it needs ~10 GB per 1M rows)")
    parser.add_argument("--hist-rows", default="100000,1000000", help="entity rows for get_historical_features")
    parser.add_argument("--stage-timeout", type=float, default=1800, help="seconds before a stage is stopped")
    parser.add_argument("--stages", default="materialize,historical,lookup", help="which parts to run")
    parser.add_argument("--stores", default="sqlite,redis", help="online stores to materialize into and read from")
    parser.add_argument("--repeats", type=int, default=1,
                        help="materialization runs per contender (plugin, native, floor); the fastest is reported")


def run(args: argparse.Namespace, md_path: Path, json_path: Path, command: str) -> dict:
    sizes = [int(s) for s in args.feast_sizes.split(",")] + ([1_000_000] if args.large else [])
    dims = [int(d) for d in args.feast_dims.split(",")]
    work = Path(tempfile.mkdtemp(prefix="prodvec-feast-bench-"))
    server, url = start_redis(work)
    stores = {name: online for name, online in {"sqlite": "sqlite", "redis": url}.items()
              if online and name in args.stores.split(",")}
    log = lambda message: print(message, flush=True)  # noqa: E731
    try:
        results = {"command": command, "when": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")}
        stages = args.stages.split(",")
        results["materialize"] = bench_materialization(
            work, sizes, dims, stores, args.native_max, args.stage_timeout, log, args.repeats,
            server.pid if server is not None else None) if "materialize" in stages else []
        if "historical" in stages:
            results["historical"] = bench_historical(work, 100_000, [int(r) for r in args.hist_rows.split(",")],
                                                     args.stage_timeout, log)
        if "lookup" in stages:
            results["lookup"] = bench_lookup(work, 100_000, stores, args.stage_timeout, log)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    write_reports(results, md_path, json_path)
    print(markdown(results))
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        task, kwargs, out = sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
        Path(out).write_text(json.dumps(CHILD_TASKS[task](**kwargs)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("reports/bench.md"))
    args = parser.parse_args()
    run(args, args.out, args.out.with_suffix(".json"), "python benchmarks/feast_bench.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
