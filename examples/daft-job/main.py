"""An example Daft job: a small dataframe computation on the Ray cluster daft brought up.

`daft submit -w examples/daft-job -- python main.py` runs this on the head with RAY_ADDRESS set,
so Daft's Ray runner spreads the work over the cluster's nodes.
"""

import os

os.environ.setdefault("DAFT_PROGRESS_BAR", "0")

import daft
import ray

ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
nodes = [n for n in ray.nodes() if n["Alive"]]
print(f"ray cluster: {len(nodes)} node(s)")
daft.set_runner_ray(address=os.environ.get("RAY_ADDRESS"))

df = daft.from_pydict(
    {
        "city": ["Lisbon", "Porto", "Lisbon", "Faro", "Porto", "Lisbon"],
        "sales": [120, 80, 45, 30, 95, 60],
    }
).into_partitions(len(nodes) * 2)
totals = df.groupby("city").agg(daft.col("sales").sum().alias("total")).sort("city")
result = totals.to_pydict()
for city, total in zip(result["city"], result["total"]):
    print(f"{city}: {total}")
assert result == {"city": ["Faro", "Lisbon", "Porto"], "total": [30, 225, 175]}, result
print("daft job: OK")
