"""Times bench/duckdb_query.sql over a generated archive; prints one JSON line."""
import json, sys, time, pathlib, duckdb

data = pathlib.Path(sys.argv[1])
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
sql = (pathlib.Path(__file__).parent / "duckdb_query.sql").read_text()
con = duckdb.connect()
con.execute(f"SET threads = {threads}")
con.execute(f"SET file_search_path = '{data}'")
t = time.perf_counter()
rows = con.execute(sql).fetchall()
elapsed = time.perf_counter() - t
print(json.dumps({"engine": "duckdb", "version": duckdb.__version__, "threads": threads, "seconds": round(elapsed, 3),
                  "groups": len(rows), "grants": sum(r[4] for r in rows)}))
