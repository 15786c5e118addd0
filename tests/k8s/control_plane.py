#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback for the `real_k8s` tests: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok (the kubelet's stand-in: one fake node, pod phases
by kwok's own "fast" stages) and the KubeRay operator, from the binaries tests/k8s/build.sh
built, with the KubeRay CRDs of the operator's version installed.

    control_plane.py CACHE_DIR STATE_DIR [EXTRA.json]

EXTRA (optional): {"exec_env": {NAME: VALUE}, "ports": {"8265": LOCAL_PORT}, "no_kuberay": true}:
more environment for kwok's exec (which runs "in a pod" on this machine), pod ports kwok's
port-forward maps to local ports (where a test runs a real Ray head's dashboard), and a cluster
without KubeRay (neither its CRDs nor its operator).

Everything listens on 127.0.0.1 only, on free ports. When every component is healthy it writes
STATE_DIR/ready.json (the kubeconfig's path, the API server's address, the tokens) and prints
"ready"; it then stays until SIGTERM/SIGINT or until its stdin closes, and stops every component
(each in a process group of its own, also killed if this process dies: PR_SET_PDEATHSIG).
Each component's log is STATE_DIR/<name>.log.
"""

import base64
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

CACHE, STATE = Path(sys.argv[1]), Path(sys.argv[2])
EXTRA = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}
BIN = CACHE / "bin"
PROCS = []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    # The component dies with this supervisor, whatever kills it.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setpgrp()


def start(name, args):
    log = open(STATE / f"{name}.log", "wb")
    p = subprocess.Popen([str(BIN / args[0])] + args[1:], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    PROCS.append((name, p))
    return p


def stop_all(*_):
    for name, p in reversed(PROCS):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for name, p in reversed(PROCS):
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    sys.exit(0)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def certs(d):
    """A CA, the API server's serving certificate (127.0.0.1, localhost), service-account keys."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=daft-test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver",
            "-keyout", str(d / "apiserver.key"), "-out", str(d / "apiserver.csr"))
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
                               "DNS:kubernetes.default,DNS:kubernetes.default.svc\n")
    openssl("x509", "-req", "-in", str(d / "apiserver.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.cnf"),
            "-out", str(d / "apiserver.crt"))
    openssl("genrsa", "-out", str(d / "sa.key"), "2048")
    openssl("rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub"))


def wait_for(what, check, limit, proc=None):
    deadline = time.time() + limit
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}; see its log in {STATE}")
        try:
            if check():
                return
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.2)
    raise SystemExit(f"{what} was not healthy within {limit}s ({last}); see its log in {STATE}")


class Api:
    def __init__(self, server, token, ca):
        self.server, self.token = server, token
        self.ctx = ssl.create_default_context(cafile=str(ca))

    def req(self, method, path, body=None, ctype="application/json"):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        r = urllib.request.Request(self.server + path, data=data, method=method)
        r.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            r.add_header("Content-Type", ctype)
        with urllib.request.urlopen(r, context=self.ctx, timeout=10) as resp:
            return resp.status, resp.read()

    def ok(self, path):
        try:
            return self.req("GET", path)[0] == 200
        except urllib.error.HTTPError:
            return False


def main():
    STATE.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    certs(STATE)
    admin, narrow = base64.b16encode(os.urandom(16)).decode().lower(), base64.b16encode(os.urandom(16)).decode().lower()
    (STATE / "tokens.csv").write_text(
        f'{admin},daft-admin,uid-admin,"system:masters"\n{narrow},daft-narrow,uid-narrow,"daft-testers"\n')

    client, peer = free_port(), free_port()
    etcd = start("etcd", ["etcd", "--name", "default", "--data-dir", str(STATE / "etcd"),
                          "--listen-client-urls", f"http://127.0.0.1:{client}",
                          "--advertise-client-urls", f"http://127.0.0.1:{client}",
                          "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-cluster", f"default=http://127.0.0.1:{peer}",
                          "--listen-metrics-urls", f"http://127.0.0.1:{free_port()}",
                          "--log-level", "warn"])
    wait_for("etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=2).status == 200,
             60, etcd)

    port = free_port()
    server = f"https://127.0.0.1:{port}"
    apiserver = start("kube-apiserver", [
        "kube-apiserver", "--etcd-servers", f"http://127.0.0.1:{client}",
        "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(port),
        "--endpoint-reconciler-type", "none",
        "--tls-cert-file", str(STATE / "apiserver.crt"), "--tls-private-key-file", str(STATE / "apiserver.key"),
        "--client-ca-file", str(STATE / "ca.crt"),
        "--service-account-issuer", "https://kubernetes.default.svc",
        "--service-account-key-file", str(STATE / "sa.pub"),
        "--service-account-signing-key-file", str(STATE / "sa.key"),
        "--token-auth-file", str(STATE / "tokens.csv"),
        "--authorization-mode", "RBAC",
        "--service-cluster-ip-range", "10.96.0.0/16",
        "--allow-privileged=true", "--enable-priority-and-fairness=false", "--profiling=false",
    ])
    api = Api(server, admin, STATE / "ca.crt")
    wait_for("kube-apiserver", lambda: api.ok("/readyz"), 120, apiserver)

    ca_data = base64.b64encode((STATE / "ca.crt").read_bytes()).decode()

    def kubeconfig(path, user, token):
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "real",
            "clusters": [{"name": "real", "cluster": {"server": server, "certificate-authority-data": ca_data}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": user, "namespace": "default"}}],
        }))
        path.chmod(0o600)
        return path

    admin_kc = kubeconfig(STATE / "admin.kubeconfig", "daft-admin", admin)
    narrow_kc = kubeconfig(STATE / "narrow.kubeconfig", "daft-narrow", narrow)

    kcm = start("kube-controller-manager", [
        "kube-controller-manager", "--kubeconfig", str(admin_kc), "--leader-elect=false",
        "--bind-address", "127.0.0.1", "--secure-port", "0",
        "--service-account-private-key-file", str(STATE / "sa.key"),
        "--root-ca-file", str(STATE / "ca.crt"), "--use-service-account-credentials=false",
    ])
    scheduler = start("kube-scheduler", [
        "kube-scheduler", "--kubeconfig", str(admin_kc), "--leader-elect=false",
        "--bind-address", "127.0.0.1", "--secure-port", "0",
    ])

    # The KubeRay CRDs (too big for client-side apply: server-side apply, as the docs say).
    # (Each file is GROUP_PLURAL.yaml: the CRD is PLURAL.GROUP.)
    crds = [] if EXTRA.get("no_kuberay") else sorted((CACHE / "crds").glob("*.yaml"))
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{1}.{0}".format
    crds = [(crd, crd_path(*crd.name.removesuffix(".yaml").split("_", 1))) for crd in crds]
    for crd, path in crds:
        api.req("PATCH", f"{path}?fieldManager=daft-tests&force=true", crd.read_bytes(), "application/apply-patch+yaml")
    for crd, path in crds:
        wait_for(f"CRD {path.rsplit('/', 1)[1]}",
                 lambda p=path: b'"Established","status":"True"' in api.req("GET", p)[1].replace(b" ", b""),
                 60)

    # kwok: the fast pod and node stages of its own module and its node heartbeat, one fake node.
    # (With its heartbeat: without one the node controller finds the node's status stale after
    # 40 s, and the node loses its Ready condition and its address.)
    stages = b"\n---\n".join(p.read_bytes() for p in sorted((CACHE / "stages" / "pod" / "fast").glob("pod-*.yaml"))
                             + sorted((CACHE / "stages" / "node" / "fast").glob("node-*.yaml"))
                             + [CACHE / "stages" / "node" / "heartbeat" / "node-heartbeat.yaml"])
    # Exec into any pod runs the command on this machine, in STATE/pod-home (its HOME): what a
    # test needs of a pod's shell (daft prepares the head pod for jobs through it).
    home = STATE / "pod-home"
    home.mkdir(exist_ok=True)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), **EXTRA.get("exec_env", {})}
    cluster_exec = json.dumps({
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterExec", "metadata": {"name": "local"},
        "spec": {"execs": [{"local": {"workDir": str(home), "envs": [
            {"name": k, "value": v} for k, v in env.items()]}}]},
    }).encode()
    docs = [stages, cluster_exec]
    if EXTRA.get("ports"):
        docs.append(json.dumps({
            "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "local"},
            "spec": {"forwards": [{"ports": [int(pod)], "target": {"port": int(local), "address": "127.0.0.1"}}
                                  for pod, local in EXTRA["ports"].items()]},
        }).encode())
    (STATE / "kwok.yaml").write_bytes(b"\n---\n".join(docs) + b"\n")
    kwok_port = free_port()
    kwok = start("kwok", [
        "kwok", "--kubeconfig", str(admin_kc), "--config", str(STATE / "kwok.yaml"),
        "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--server-address", f"127.0.0.1:{kwok_port}", "--node-port", str(kwok_port),
        "--node-ip", "127.0.0.1", "--cidr", "10.244.0.0/16",
    ])
    node = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "kwok-node-0", "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"type": "kwok", "kubernetes.io/hostname": "kwok-node-0"}},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                   "capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"}},
    }
    api.req("POST", "/api/v1/nodes", node)
    wait_for("kwok's node", lambda: b'"type":"Ready","status":"True"' in api.req(
        "GET", "/api/v1/nodes/kwok-node-0")[1].replace(b" ", b""), 60, kwok)

    if not EXTRA.get("no_kuberay"):
        operator = start("ray-operator", [
            "ray-operator", "--kubeconfig", str(admin_kc), "--enable-leader-election=false",
            "--metrics-addr", f"127.0.0.1:{free_port()}",
            "--health-probe-bind-address", f"127.0.0.1:{(probe := free_port())}",
        ])
        wait_for("the KubeRay operator", lambda: urllib.request.urlopen(
            f"http://127.0.0.1:{probe}/readyz", timeout=2).status == 200, 60, operator)

    ready = {
        "server": server, "kubeconfig": str(admin_kc), "narrow_kubeconfig": str(narrow_kc),
        "admin_token": admin, "narrow_token": narrow, "ca": str(STATE / "ca.crt"),
        "pod_home": str(home),
        "pids": {name: p.pid for name, p in PROCS},
    }
    (STATE / "ready.json").write_text(json.dumps(ready, indent=2))
    print("ready", flush=True)

    # Stay until told to stop (a signal, or the test's end of our stdin), or a component dies.
    threading.Thread(target=lambda: (sys.stdin.read(), os.kill(os.getpid(), signal.SIGTERM)), daemon=True).start()
    while True:
        for name, p in PROCS:
            if p.poll() is not None:
                print(f"{name} exited with status {p.returncode}", file=sys.stderr, flush=True)
                stop_all()
        time.sleep(0.5)


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        for name, p in PROCS:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        raise
