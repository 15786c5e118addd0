#!/usr/bin/env python3
"""`daft up` of a RayCluster with 1 head + 4 workers to the head ready, and `daft down` to its
pods gone, against the real control plane (tests/k8s: etcd, kube-apiserver, the scheduler, the
controller manager, kwok, the KubeRay operator), each as a ratio to the floor the components
set: the same RayCluster applied (and deleted, foreground) with raw API calls, polled every
50 ms until the head pod is Ready (until no pod is left).

    DAFT_BIN=target/debug/daft BENCH_RUNS=3 python3 bench/k8s_up.py

Writes bench/k8s_up.json. Needs the control plane built (bash tests/k8s/build.sh).
"""

import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAFT = Path(os.environ.get("DAFT_BIN", ROOT / "target" / "release" / "daft"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
WORKERS = 4


def main():
    cache = subprocess.run(["bash", str(ROOT / "tests/k8s/build.sh")], check=True,
                           capture_output=True, text=True).stdout.strip().splitlines()[-1]
    tmp = Path(tempfile.mkdtemp(prefix="daft-k8s-bench-"))
    state = tmp / "cp"
    sup = subprocess.Popen([sys.executable, str(ROOT / "tests/k8s/control_plane.py"), cache, str(state)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for line in sup.stdout:
            if line.strip() == "ready":
                break
        ready = json.loads((state / "ready.json").read_text())
        ctx = ssl.create_default_context(cafile=ready["ca"])

        def api(method, path, body=None, ctype="application/json"):
            r = urllib.request.Request(ready["server"] + path, method=method,
                                       data=None if body is None else body.encode())
            r.add_header("Authorization", f"Bearer {ready['admin_token']}")
            if body is not None:
                r.add_header("Content-Type", ctype)
            with urllib.request.urlopen(r, context=ctx, timeout=20) as resp:
                return json.loads(resp.read() or b"{}")

        def pods(name):
            return api("GET", f"/api/v1/namespaces/default/pods?labelSelector=ray.io%2Fcluster%3D{name}")["items"]

        def head_ready(name):
            for p in pods(name):
                if p["metadata"]["labels"].get("ray.io/node-type") == "head":
                    return any(c["type"] == "Ready" and c["status"] == "True"
                               for c in p.get("status", {}).get("conditions", []))
            return False

        env = {**os.environ, "KUBECONFIG": ready["kubeconfig"], "DAFT_HOME": str(tmp / "daft-home"),
               "HOME": str(tmp)}
        cfg = tmp / "k8s.toml"
        cfg.write_text(f'[setup]\nname = "bench"\nprovider = "kubernetes"\nnumber_of_workers = {WORKERS}\n\n'
                       '[setup.kubernetes]\nnamespace = "default"\nready_timeout = "120s"\n')
        # The manifest daft applies, for the floor (dry run prints it).
        manifest = None
        up_d, down_d, up_f, down_f = [], [], [], []
        for i in range(RUNS):
            t = time.perf_counter()
            subprocess.run([str(DAFT), "up", "-c", str(cfg), "--yes"], env=env, check=True, capture_output=True)
            up_d.append(time.perf_counter() - t)
            if manifest is None:
                rc = api("GET", "/apis/ray.io/v1/namespaces/default/rayclusters/bench")
                manifest = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
                            "metadata": {"name": "floor", "namespace": "default"}, "spec": rc["spec"]}
            t = time.perf_counter()
            subprocess.run([str(DAFT), "down", "-c", str(cfg), "--yes"], env=env, check=True, capture_output=True)
            down_d.append(time.perf_counter() - t)
            # The floor: the same RayCluster by raw API calls, polled every 50 ms.
            t = time.perf_counter()
            api("PATCH", "/apis/ray.io/v1/namespaces/default/rayclusters/floor?fieldManager=bench&force=true",
                json.dumps(manifest), "application/apply-patch+yaml")
            while not head_ready("floor"):
                time.sleep(0.05)
            up_f.append(time.perf_counter() - t)
            t = time.perf_counter()
            api("DELETE", "/apis/ray.io/v1/namespaces/default/rayclusters/floor",
                json.dumps({"propagationPolicy": "Foreground"}))
            while pods("floor") or api("GET", "/apis/ray.io/v1/namespaces/default/rayclusters")["items"]:
                time.sleep(0.05)
            down_f.append(time.perf_counter() - t)
        res = {
            "workers": WORKERS, "runs": RUNS, "binary": str(DAFT),
            "daft_up_s": up_d, "floor_up_s": up_f, "daft_down_s": down_d, "floor_down_s": down_f,
            "up_ratio": statistics.median(up_d) / statistics.median(up_f),
            "down_ratio": statistics.median(down_d) / statistics.median(down_f),
        }
        (ROOT / "bench" / "k8s_up.json").write_text(json.dumps(res, indent=2) + "\n")
        print(f"up (1 head + {WORKERS} workers, head ready): daft {statistics.median(up_d):.2f} s, "
              f"floor {statistics.median(up_f):.2f} s (x{res['up_ratio']:.2f}); "
              f"down (pods gone): daft {statistics.median(down_d):.2f} s, floor {statistics.median(down_f):.2f} s "
              f"(x{res['down_ratio']:.2f})")
    finally:
        sup.stdin.close()
        sup.wait(timeout=30)


if __name__ == "__main__":
    main()
