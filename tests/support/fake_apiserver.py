#!/usr/bin/env python3
"""A fake Kubernetes API server for daft's tests (no real one can be installed here).

Besides RayClusters and pods it serves batch/v1 Jobs and ray.io/v1 RayJobs, with stand-ins for
their controllers: a Job's pod runs the Job's command for real inside the Job's image when the
config says "run_images_with": "buildah" (the image pulled from the test's registry by digest),
else the test's scripted output and exit status; a RayJob walks through the statuses the test
scripts.

It speaks the real wire protocol over HTTPS with bearer tokens: discovery, get/list of pods,
events and RayClusters, watch of pods (`?watch=true` from a list's resourceVersion: one JSON
event per line, ADDED/MODIFIED/DELETED, an ERROR 410 Expired for a version it no longer has),
server-side apply (`application/apply-patch+yaml`, per field manager),
delete with propagation, pod logs, and the websocket exec (v5/v4.channel.k8s.io: stdin 0,
stdout 1, stderr 2, status 3, close 255) and port-forward (data 2i, error 2i+1, each opened by
its port, little-endian) subprotocols. A small stand-in for KubeRay's operator makes a
RayCluster's pods; the test scripts their fate (ready, Unschedulable, ImagePullBackOff,
CrashLoopBackOff, a failed mount) through /fake/*.

The exec runs the command on this machine, in the head pod's home directory, with the
environment the test gives the pod (where the test started a real Ray head); port-forward to
a pod port reaches the local port the test maps it to (the real Ray dashboard).

Usage: fake_apiserver.py --port P --cert C --key K --token T --config FILE
FILE (JSON): {"exec_env": {...}, "home": DIR, "ports": {"8265": 43123},
              "forbid": [["create", "rayclusters"]], "no_crd": false, "expire_watches": 0}
"""

import argparse
import asyncio
import copy
import datetime
import json
import os
import signal
import random
import ssl
import string
import sys

from aiohttp import WSMsgType, web

ARGS = None
CONF = {}
STATE = {
    "rayclusters": {},  # (ns, name) -> object
    "applied": {},  # (ns, name) -> {manager: config}
    "pods": {},  # (ns, name) -> pod
    "events": [],
    "scenario": {"head": "ready", "workers": "ready", "ready_after": 0.5, "delete_after": 1.0},
    "requests": [],
    "logs": {},  # pod name -> text
    "jobs": {},  # (ns, name) -> Job
    "rayjobs": {},  # (ns, name) -> RayJob
    "pod_done": {},  # pod name -> asyncio.Event (its log is complete)
}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def suffix(n=5):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def uid():
    return "%08x-%04x-%04x-%04x-%012x" % (
        random.getrandbits(32), random.getrandbits(16), random.getrandbits(16),
        random.getrandbits(16), random.getrandbits(48))


def status(code, reason, message, details=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return web.json_response(body, status=code)


def forbidden(verb, resource, ns, group=""):
    return status(403, "Forbidden",
                  f'{resource}{"." + group if group else ""} is forbidden: User "alice" cannot {verb} '
                  f'resource "{resource}" in API group "{group}" in the namespace "{ns}"',
                  {"group": group, "kind": resource})


def allowed(verb, resource):
    return [verb, resource] not in CONF.get("forbid", [])


def merge(base, patch):
    """Deep merge for server-side apply's union of the managers' configurations."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def matches(labels, selector):
    if not selector:
        return True
    for part in selector.split(","):
        if "!=" in part:
            k, v = part.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in part:
            k, v = part.split("=", 1)
            k = k.rstrip("=")
            if labels.get(k) != v:
                return False
        elif labels.get(part) is None:
            return False
    return True


# ---- the stand-in operator -------------------------------------------------------------

def pod_status(fate, role, started, t=None, ip=None):
    """The status a pod of `fate` shows `started` seconds after it was made (`t`: its transition
    time, `ip`: its address; both the pod's own, so an unchanged pod stays unchanged)."""
    ready_after = STATE["scenario"].get("ready_after", 0.5)
    t = t or now()
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": t}
    if fate == "unschedulable":
        return {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "lastTransitionTime": t,
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are "
                       "available: 3 No preemption victims found for incoming pod."}]}
    container = "ray-head" if role == "head" else "ray-worker"
    if fate == "imagepull":
        return {"phase": "Pending", "conditions": [scheduled], "containerStatuses": [{
            "name": container, "image": "", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff",
                                  "message": 'Back-off pulling image "rayproject/ray:no-such-tag"'}}}]}
    if fate == "crashloop":
        return {"phase": "Running", "conditions": [scheduled,
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": t}],
                "containerStatuses": [{
                    "name": container, "image": "", "imageID": "", "ready": False, "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff",
                                          "message": "back-off 1m20s restarting failed container"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}
    if fate == "failedmount" or started < ready_after:
        return {"phase": "Pending", "conditions": [scheduled], "containerStatuses": [{
            "name": container, "image": "", "imageID": "", "ready": False, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    return {"phase": "Running", "podIP": ip or "10.244.0.%d" % random.randint(2, 250), "startTime": t,
            "conditions": [scheduled, {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                           {"type": "Ready", "status": "True", "lastTransitionTime": t}],
            "containerStatuses": [{"name": container, "image": "", "imageID": "", "ready": True,
                                   "restartCount": 0, "started": True,
                                   "state": {"running": {"startedAt": t}}}]}


def make_pod(ns, cluster, rc, role, group=None):
    spec = rc["spec"]["headGroupSpec"] if role == "head" else next(
        g for g in rc["spec"].get("workerGroupSpecs", []) if g["groupName"] == group)
    template = spec["template"]
    name = f"{cluster}-head-{suffix()}" if role == "head" else f"{cluster}-{group}-worker-{suffix()}"
    labels = dict(template.get("metadata", {}).get("labels", {}))
    labels.update({"ray.io/cluster": cluster, "ray.io/node-type": role,
                   "ray.io/group": "headgroup" if role == "head" else group,
                   "app.kubernetes.io/created-by": "kuberay-operator"})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "uid": uid(), "labels": labels,
                        "creationTimestamp": now(), "resourceVersion": "1",
                        "ownerReferences": [{"apiVersion": "ray.io/v1", "kind": "RayCluster",
                                             "name": cluster, "uid": rc["metadata"]["uid"],
                                             "controller": True}]},
           "spec": copy.deepcopy(template.get("spec", {})),
           "status": {"phase": "Pending"}}
    pod["_made"] = asyncio.get_event_loop().time()
    pod["_ip"] = "10.244.0.%d" % random.randint(2, 250)
    pod["_fate"] = STATE["scenario"].get("head" if role == "head" else "workers", "ready")
    pod["_template"] = json.dumps(template, sort_keys=True)
    STATE["pods"][(ns, name)] = pod
    if pod["_fate"] == "failedmount":
        STATE["events"].append({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{name}.{suffix(8)}", "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
            "reason": "FailedMount", "type": "Warning", "lastTimestamp": now(),
            "message": 'MountVolume.SetUp failed for volume "data" : configmap "training-data" not found'})
    if pod["_fate"] == "crashloop":
        STATE["logs"][name] = ("Traceback (most recent call last):\n"
                               "  File \"/home/ray/start.py\", line 3, in <module>\n"
                               "ModuleNotFoundError: No module named 'missing_dependency'\n")


def reconcile(ns, cluster):
    """What KubeRay does for one RayCluster: a head pod, the worker replicas, Recreate on a
    changed template."""
    rc = STATE["rayclusters"].get((ns, cluster))
    pods = {k: p for k, p in STATE["pods"].items()
            if k[0] == ns and p["metadata"]["labels"].get("ray.io/cluster") == cluster
            and "deletionTimestamp" not in p["metadata"]}
    if rc is None or "deletionTimestamp" in rc["metadata"]:
        return
    # Recreate: a pod whose template changed goes.
    recreate = rc["spec"].get("upgradeStrategy", {}).get("type") == "Recreate"
    heads = [k for k, p in pods.items() if p["metadata"]["labels"]["ray.io/node-type"] == "head"]
    head_tpl = json.dumps(rc["spec"]["headGroupSpec"]["template"], sort_keys=True)
    for k in heads:
        if recreate and pods[k]["_template"] != head_tpl:
            STATE["pods"].pop(k)
            heads.remove(k)
    if not heads:
        make_pod(ns, cluster, rc, "head")
    for g in rc["spec"].get("workerGroupSpecs", []):
        tpl = json.dumps(g["template"], sort_keys=True)
        mine = [k for k, p in pods.items()
                if p["metadata"]["labels"].get("ray.io/group") == g["groupName"]
                and p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
        if recreate:
            for k in list(mine):
                if pods[k]["_template"] != tpl:
                    STATE["pods"].pop(k)
                    mine.remove(k)
        want = int(g.get("replicas", 0))
        for k in mine[want:]:
            STATE["pods"].pop(k)
        for _ in range(want - len(mine)):
            make_pod(ns, cluster, rc, "worker", g["groupName"])


async def operator_loop():
    while True:
        await asyncio.sleep(0.2)
        t = asyncio.get_event_loop().time()
        # Deleted RayClusters: pods first (foreground), then the object.
        for key, rc in list(STATE["rayclusters"].items()):
            if "deletionTimestamp" in rc["metadata"]:
                ns, name = key
                for pk, p in list(STATE["pods"].items()):
                    if pk[0] == ns and p["metadata"]["labels"].get("ray.io/cluster") == name:
                        p["metadata"].setdefault("deletionTimestamp", now())
                        p.setdefault("_deleted_at", t)
                        if t - p["_deleted_at"] > STATE["scenario"].get("delete_after", 1.0):
                            STATE["pods"].pop(pk)
                if not any(pk[0] == ns and p["metadata"]["labels"].get("ray.io/cluster") == name
                           for pk, p in STATE["pods"].items()):
                    STATE["rayclusters"].pop(key)
                    STATE["applied"].pop(key, None)
        for p in STATE["pods"].values():
            if p["_fate"] == "job":
                continue  # (run by run_job_pod / run_rayjob)
            p["status"] = pod_status(p["_fate"], p["metadata"]["labels"]["ray.io/node-type"], t - p["_made"],
                                     p["metadata"]["creationTimestamp"], p["_ip"])
            for c in p["status"].get("containerStatuses", []):
                c["image"] = next((x.get("image", "") for x in p["spec"].get("containers", [])
                                   if x["name"] == c["name"]), "")


def public(obj):
    return {k: v for k, v in obj.items() if not k.startswith("_")}


# ---- resource versions and the watch of pods ------------------------------------------------
# Pods change in place (the stand-in operator and kubelet); `observe` compares them with what it
# saw last, gives each changed pod the next resourceVersion and logs the change as a watch event.

WATCH = {"rev": 1, "seen": {}, "log": []}  # seen: key -> (text, object); log: (rev, type, ns, object)
WATCH_LOG_MAX = 500


def observe():
    current = {}
    for key, p in STATE["pods"].items():
        obj = public(p)
        meta = dict(obj["metadata"])
        meta.pop("resourceVersion", None)
        current[key] = (json.dumps(dict(obj, metadata=meta), sort_keys=True), p)
    for key, (text, p) in current.items():
        before = WATCH["seen"].get(key)
        if before is None or before[0] != text:
            WATCH["rev"] += 1
            p["metadata"]["resourceVersion"] = str(WATCH["rev"])
            WATCH["log"].append((WATCH["rev"], "ADDED" if before is None else "MODIFIED", key[0],
                                 copy.deepcopy(public(p))))
    for key in set(WATCH["seen"]) - set(current):
        WATCH["rev"] += 1
        gone = copy.deepcopy(public(WATCH["seen"][key][1]))
        gone["metadata"]["resourceVersion"] = str(WATCH["rev"])
        WATCH["log"].append((WATCH["rev"], "DELETED", key[0], gone))
    WATCH["seen"] = {k: (text, p) for k, (text, p) in current.items()}
    del WATCH["log"][:-WATCH_LOG_MAX]


async def observer_loop():
    while True:
        await asyncio.sleep(0.05)
        observe()


async def pods_watch(request, ns, sel):
    """`GET …/pods?watch=true`: the changes after `resourceVersion`, one JSON object per line,
    until `timeoutSeconds` (or the client goes)."""
    observe()
    since = request.query.get("resourceVersion") or str(WATCH["rev"])
    rev = int(since) if since.isdigit() else 0
    timeout = min(int(request.query.get("timeoutSeconds", "300")), 300)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    oldest = WATCH["log"][0][0] if WATCH["log"] else WATCH["rev"] + 1
    # ("expire_watches": N in the config: the first N watches are answered 410, as a server
    # that compacted its history does.)
    expire = CONF.get("expire_watches", 0) > len(STATE.get("watches", []))
    if expire or (rev < oldest - 1 and rev < WATCH["rev"]):
        STATE.setdefault("watches", []).append({"namespace": ns, "labelSelector": sel,
                                                "resourceVersion": since, "expired": True})
        await resp.write((json.dumps({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"too old resource version: {rev} ({oldest - 1})", "reason": "Expired",
            "code": 410}}) + "\n").encode())
        return resp
    record = {"namespace": ns, "labelSelector": sel, "resourceVersion": since, "sent": 0, "expired": False}
    STATE.setdefault("watches", []).append(record)
    deadline = asyncio.get_event_loop().time() + timeout
    while asyncio.get_event_loop().time() < deadline:
        for (r, kind, n, obj) in WATCH["log"]:
            if r > rev and n == ns and matches(obj["metadata"].get("labels", {}), sel):
                await resp.write((json.dumps({"type": kind, "object": obj}) + "\n").encode())
                record["sent"] += 1
        rev = max(rev, WATCH["rev"])
        await asyncio.sleep(0.05)
    return resp


# ---- HTTP ----------------------------------------------------------------------------------

@web.middleware
async def auth(request, handler):
    if request.path.startswith("/fake/"):
        return await handler(request)
    STATE["requests"].append({"method": request.method, "path": request.path,
                              "query": dict(request.query),
                              "content_type": request.headers.get("Content-Type", "")})
    if request.headers.get("Authorization") != f"Bearer {ARGS.token}":
        return status(401, "Unauthorized", "Unauthorized")
    return await handler(request)


async def discovery_core(request):
    return web.json_response({"kind": "APIVersions", "versions": ["v1"],
                              "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})


async def discovery_groups(request):
    groups = [] if CONF.get("no_crd") else [{"name": "ray.io", "versions": [{"groupVersion": "ray.io/v1", "version": "v1"}],
                                             "preferredVersion": {"groupVersion": "ray.io/v1", "version": "v1"}}]
    return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


async def discovery_ray(request):
    if CONF.get("no_crd"):
        return status(404, "NotFound", "the server could not find the requested resource")
    verbs = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]
    return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "ray.io/v1",
                              "resources": [
                                  {"name": "rayclusters", "singularName": "raycluster", "namespaced": True,
                                   "kind": "RayCluster", "verbs": verbs},
                                  {"name": "rayclusters/status", "singularName": "", "namespaced": True,
                                   "kind": "RayCluster", "verbs": ["get", "patch", "update"]},
                                  {"name": "rayjobs", "singularName": "rayjob", "namespaced": True,
                                   "kind": "RayJob", "verbs": verbs}]})


async def discovery_batch(request):
    verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1",
                              "resources": [{"name": "jobs", "singularName": "job", "namespaced": True,
                                             "kind": "Job", "verbs": verbs}]})


async def version(request):
    return web.json_response({"major": "1", "minor": "34", "gitVersion": "v1.34.0-fake", "platform": "linux/amd64"})


def not_found(resource, name, group=""):
    return status(404, "NotFound", f'{resource}{"." + group if group else ""} "{name}" not found',
                  {"name": name, "group": group, "kind": resource})


async def raycluster_list(request):
    ns = request.match_info["ns"]
    if CONF.get("no_crd"):
        return status(404, "NotFound", "the server could not find the requested resource")
    if not allowed("list", "rayclusters"):
        return forbidden("list", "rayclusters", ns, "ray.io")
    sel = request.query.get("labelSelector", "")
    items = [public(o) for (n, _), o in STATE["rayclusters"].items()
             if n == ns and matches(o["metadata"].get("labels", {}), sel)]
    return web.json_response({"apiVersion": "ray.io/v1", "kind": "RayClusterList",
                              "metadata": {"resourceVersion": "1"}, "items": items})


async def raycluster_get(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    if CONF.get("no_crd"):
        return status(404, "NotFound", "the server could not find the requested resource")
    if not allowed("get", "rayclusters"):
        return forbidden("get", "rayclusters", ns, "ray.io")
    o = STATE["rayclusters"].get((ns, name))
    if o is None:
        return not_found("rayclusters", name, "ray.io")
    return web.json_response(public(o))


async def raycluster_patch(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    if CONF.get("no_crd"):
        return status(404, "NotFound", "the server could not find the requested resource")
    ct = request.headers.get("Content-Type", "")
    if ct != "application/apply-patch+yaml":
        return status(415, "UnsupportedMediaType", f"the fake serves server-side apply only, not {ct}")
    manager = request.query.get("fieldManager")
    if not manager:
        return status(422, "Invalid", "PATCH, fieldManager: Required value: is required for apply patch")
    exists = (ns, name) in STATE["rayclusters"]
    if not allowed("patch" if exists else "create", "rayclusters"):
        return forbidden("patch" if exists else "create", "rayclusters", ns, "ray.io")
    body = json.loads(await request.text())  # JSON is YAML
    if body.get("apiVersion") != "ray.io/v1" or body.get("kind") != "RayCluster":
        return status(400, "BadRequest", "apiVersion/kind must be ray.io/v1 RayCluster")
    if body.get("metadata", {}).get("name") != name:
        return status(400, "BadRequest", "the name of the object does not match the name on the URL")
    if body.get("metadata", {}).get("namespace") not in (None, ns):
        return status(400, "BadRequest", "the namespace of the object does not match the namespace on the URL")
    applied = STATE["applied"].setdefault((ns, name), {})
    applied[manager] = body
    merged = {}
    for cfg in applied.values():
        merged = merge(merged, cfg)
    old = STATE["rayclusters"].get((ns, name))
    meta = merged.setdefault("metadata", {})
    meta["namespace"] = ns
    if old:
        for k in ("uid", "creationTimestamp", "deletionTimestamp"):
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
        meta["generation"] = old["metadata"]["generation"] + (1 if old.get("spec") != merged.get("spec") else 0)
        merged["status"] = old.get("status", {})
    else:
        meta.update({"uid": uid(), "creationTimestamp": now(), "generation": 1})
        merged["status"] = {}
    meta["resourceVersion"] = str(random.randint(1000, 99999))
    meta["managedFields"] = [{"manager": m, "operation": "Apply", "apiVersion": "ray.io/v1",
                              "fieldsType": "FieldsV1", "time": now()} for m in applied]
    STATE["rayclusters"][(ns, name)] = merged
    reconcile(ns, name)
    return web.json_response(public(merged), status=200 if old else 201)


async def raycluster_delete(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    if not allowed("delete", "rayclusters"):
        return forbidden("delete", "rayclusters", ns, "ray.io")
    o = STATE["rayclusters"].get((ns, name))
    if o is None:
        return not_found("rayclusters", name, "ray.io")
    body = {}
    text = await request.text()
    if text:
        body = json.loads(text)
    policy = body.get("propagationPolicy") or request.query.get("propagationPolicy")
    STATE.setdefault("deletes", []).append({"name": name, "propagationPolicy": policy})
    o["metadata"]["deletionTimestamp"] = now()
    if policy == "Foreground":
        o["metadata"]["finalizers"] = ["foregroundDeletion"]
    return web.json_response(public(o), status=202 if policy == "Foreground" else 200)


async def pods_list(request):
    ns = request.match_info["ns"]
    verb = "watch" if request.query.get("watch") in ("true", "1") else "list"
    if not allowed(verb, "pods"):
        return forbidden(verb, "pods", ns)
    sel = request.query.get("labelSelector", "")
    if verb == "watch":
        return await pods_watch(request, ns, sel)
    observe()
    items = [public(p) for (n, _), p in STATE["pods"].items()
             if n == ns and matches(p["metadata"].get("labels", {}), sel)]
    limit = int(request.query.get("limit", "0") or 0)
    if limit:
        items = items[:limit]
    return web.json_response({"apiVersion": "v1", "kind": "PodList",
                              "metadata": {"resourceVersion": str(WATCH["rev"])}, "items": items})


async def pod_get(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    p = STATE["pods"].get((ns, name))
    return web.json_response(public(p)) if p else not_found("pods", name)


async def pod_log(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    if (ns, name) not in STATE["pods"]:
        return not_found("pods", name)
    text = STATE["logs"].get(name, "")
    if request.query.get("follow") == "true":
        return await pod_log_follow(request, name, text)
    tail = request.query.get("tailLines")
    if tail:
        text = "".join(text.splitlines(keepends=True)[-int(tail):])
    return web.Response(text=text, content_type="text/plain")


async def events_list(request):
    ns = request.match_info["ns"]
    field = request.query.get("fieldSelector", "")
    want = field.split("=", 1)[1] if field.startswith("involvedObject.name=") else None
    items = [e for e in STATE["events"] if e["metadata"]["namespace"] == ns
             and (want is None or e["involvedObject"]["name"] == want)]
    return web.json_response({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": items})


def head_pod_ok(ns, name):
    p = STATE["pods"].get((ns, name))
    return p is not None and p["status"].get("phase") == "Running"


async def pod_exec(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    if not allowed("create", "pods/exec"):
        return forbidden("create", "pods/exec", ns)
    if not head_pod_ok(ns, name):
        return status(400, "BadRequest", f"pod {name} is not running")
    ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
    await ws.prepare(request)
    cmd = request.query.getall("command")
    home = CONF["home"]
    os.makedirs(home, exist_ok=True)
    env = dict(CONF.get("exec_env", {}))
    env["HOME"] = home
    STATE.setdefault("execs", []).append({"pod": name, "container": request.query.get("container"),
                                          "protocol": ws.ws_protocol, "command": cmd})
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=home, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True)

    async def pump(stream, ch):
        while True:
            data = await stream.read(65536)
            if not data:
                return
            await ws.send_bytes(bytes([ch]) + data)

    async def from_client():
        async for msg in ws:
            if msg.type == WSMsgType.BINARY and msg.data:
                ch, data = msg.data[0], msg.data[1:]
                if ch == 0 and proc.stdin and not proc.stdin.is_closing():
                    proc.stdin.write(data)
                    await proc.stdin.drain()
                elif ch == 255 and data[:1] == b"\x00" and proc.stdin:
                    proc.stdin.close()
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
        # The client went away: the command loses its stdin, as in a real pod.
        if proc.stdin and not proc.stdin.is_closing():
            proc.stdin.close()

    reader = asyncio.ensure_future(from_client())
    await asyncio.gather(pump(proc.stdout, 1), pump(proc.stderr, 2))
    rc = await proc.wait()
    if rc == 0:
        st = {"metadata": {}, "status": "Success"}
    else:
        st = {"metadata": {}, "status": "Failure",
              "message": f"command terminated with non-zero exit code: error executing command [{' '.join(cmd[:2])} ...], exit code {rc}",
              "reason": "NonZeroExitCode",
              "details": {"causes": [{"reason": "ExitCode", "message": str(rc)}]}}
    try:
        await ws.send_bytes(bytes([3]) + json.dumps(st).encode())
        await ws.close()
    except Exception:
        pass
    reader.cancel()
    return ws


async def pod_portforward(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    if not allowed("create", "pods/portforward"):
        return forbidden("create", "pods/portforward", ns)
    if not head_pod_ok(ns, name):
        return status(400, "BadRequest", f"pod {name} is not running")
    ports = [int(x) for p in request.query.getall("ports") for x in p.split(",")]
    ws = web.WebSocketResponse(protocols=("v4.channel.k8s.io", "portforward.k8s.io"))
    await ws.prepare(request)
    STATE.setdefault("forwards", []).append({"pod": name, "ports": ports})
    conns = []
    for i, port in enumerate(ports):
        for ch in (2 * i, 2 * i + 1):
            await ws.send_bytes(bytes([ch]) + port.to_bytes(2, "little"))
        target = CONF.get("ports", {}).get(str(port))
        try:
            r, w = await asyncio.open_connection("127.0.0.1", int(target))
        except Exception as e:
            await ws.send_bytes(bytes([2 * i + 1]) + f"error forwarding port {port} to pod {name}: {e}".encode())
            r = w = None
        conns.append((r, w))

    async def to_client(i, r):
        while True:
            data = await r.read(65536)
            if not data:
                break
            await ws.send_bytes(bytes([2 * i]) + data)
        await ws.close()

    tasks = [asyncio.ensure_future(to_client(i, r)) for i, (r, _) in enumerate(conns) if r]
    async for msg in ws:
        if msg.type == WSMsgType.BINARY and len(msg.data) > 1:
            ch = msg.data[0]
            if ch % 2 == 0 and ch // 2 < len(conns) and conns[ch // 2][1]:
                conns[ch // 2][1].write(msg.data[1:])
                await conns[ch // 2][1].drain()
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
    for t in tasks:
        t.cancel()
    for _, w in conns:
        if w:
            w.close()
    return ws


# ---- Jobs and RayJobs ----------------------------------------------------------------------

def job_pod(ns, job_name, job, template, extra_labels=None):
    name = f"{job_name}-{suffix()}"
    labels = dict(template.get("metadata", {}).get("labels", {}))
    labels.update({"job-name": job_name, "batch.kubernetes.io/job-name": job_name,
                   "controller-uid": job["metadata"]["uid"]})
    labels.update(extra_labels or {})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "uid": uid(), "labels": labels,
                        "creationTimestamp": now(), "resourceVersion": "1"},
           "spec": copy.deepcopy(template.get("spec", {})), "status": {"phase": "Pending"}}
    pod["_made"] = asyncio.get_event_loop().time()
    pod["_fate"] = "job"
    pod["_template"] = ""
    STATE["pods"][(ns, name)] = pod
    STATE["logs"][name] = ""
    STATE["pod_done"][name] = asyncio.Event()
    return pod


def job_pod_status(phase, fate=None, code=None):
    t = now()
    if fate == "imagepull":
        return pod_status("imagepull", "job", 0)
    if fate == "unschedulable":
        return pod_status("unschedulable", "job", 0)
    st = {"phase": phase, "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": t}]}
    if phase == "Running":
        st["containerStatuses"] = [{"name": "main", "image": "", "imageID": "", "ready": True, "restartCount": 0,
                                    "state": {"running": {"startedAt": t}}}]
    elif phase in ("Succeeded", "Failed"):
        st["containerStatuses"] = [{"name": "main", "image": "", "imageID": "", "ready": False, "restartCount": 0,
                                    "state": {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}]
    return st


async def run_job_pod(ns, job, pod):
    """What the kubelet does for a Job's pod: run its container (in its image, with buildah, when
    configured), collect its output, record its end; then the Job controller's bookkeeping."""
    name = pod["metadata"]["name"]
    fate = STATE["scenario"].get("job", "run")
    if fate in ("imagepull", "unschedulable"):
        pod["status"] = job_pod_status("Pending", fate)
        return
    await asyncio.sleep(0.3)
    pod["status"] = job_pod_status("Running")
    job["status"] = {"active": 1, "startTime": now()}
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
    code = 0
    if CONF.get("run_images_with") == "buildah":
        image = container["image"]
        STATE.setdefault("ran_images", []).append(image)
        benv = dict(os.environ, **CONF.get("buildah_env", {}))
        proc = await asyncio.create_subprocess_exec(
            "buildah", "from", "--tls-verify=false", "--quiet", image, env=benv,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        ctr = out.decode().strip()
        if proc.returncode != 0:
            STATE["logs"][name] += f"(fake kubelet: cannot pull {image}: {err.decode()})\n"
            code = 125
        else:
            args = ["buildah", "run"]
            for k, v in env.items():
                args += ["--env", f"{k}={v}"]
            args += [ctr, "--"] + container.get("command", []) + container.get("args", [])
            # (Its own process group: deleting the pod stops it all, as a kubelet does.)
            proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE, env=benv,
                                                        stderr=asyncio.subprocess.STDOUT,
                                                        start_new_session=True)
            STATE.setdefault("procs", {})[name] = proc
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                STATE["logs"][name] += line.decode(errors="replace")
            code = await proc.wait()
            await (await asyncio.create_subprocess_exec("buildah", "rm", ctr, env=benv,
                                                        stdout=asyncio.subprocess.DEVNULL,
                                                        stderr=asyncio.subprocess.DEVNULL)).wait()
    else:
        for line in STATE["scenario"].get("job_log", "hello from the job\n").splitlines(keepends=True):
            STATE["logs"][name] += line
            await asyncio.sleep(0.05)
        code = int(STATE["scenario"].get("job_exit", 0))
    pod["status"] = job_pod_status("Succeeded" if code == 0 else "Failed", code=code)
    STATE["pod_done"][name].set()
    t = now()
    if code == 0:
        job["status"] = {"succeeded": 1, "startTime": t, "completionTime": t,
                         "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                                        {"type": "Complete", "status": "True", "lastTransitionTime": t}]}
    else:
        job["status"] = {"failed": 1, "startTime": t,
                         "conditions": [{"type": "FailureTarget", "status": "True", "lastTransitionTime": t,
                                         "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"},
                                        {"type": "Failed", "status": "True", "lastTransitionTime": t,
                                         "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}


def apply_object(store, ns, name, body, manager):
    applied = STATE["applied"].setdefault((ns, name), {})
    applied[manager] = body
    merged = {}
    for cfg in applied.values():
        merged = merge(merged, cfg)
    old = store.get((ns, name))
    meta = merged.setdefault("metadata", {})
    meta["namespace"] = ns
    if old:
        for k in ("uid", "creationTimestamp"):
            meta[k] = old["metadata"][k]
        merged["status"] = old.get("status", {})
    else:
        meta.update({"uid": uid(), "creationTimestamp": now()})
        merged["status"] = {}
    meta["resourceVersion"] = str(random.randint(1000, 99999))
    store[(ns, name)] = merged
    return merged, old is None


def applier(api_version, kind, store, resource, group, on_create):
    """A PATCH handler doing server-side apply of `kind` into STATE[store]; `on_create(ns, name,
    obj)` plays the object's controller when the apply creates it."""
    async def handler(request):
        ns, name = request.match_info["ns"], request.match_info["name"]
        if request.headers.get("Content-Type") != "application/apply-patch+yaml" or not request.query.get("fieldManager"):
            return status(415, "UnsupportedMediaType", "server-side apply with a fieldManager only")
        if not allowed("create", resource):
            return forbidden("create", resource, ns, group)
        body = json.loads(await request.text())
        if body.get("apiVersion") != api_version or body.get("kind") != kind or body["metadata"]["name"] != name:
            return status(400, "BadRequest", f"not this {api_version} {kind}")
        obj, created = apply_object(STATE.setdefault(store, {}), ns, name, body, request.query["fieldManager"])
        if created:
            on_create(ns, name, obj)
        return web.json_response(public(obj), status=201 if created else 200)
    return handler


def start_job(ns, name, job):
    pod = job_pod(ns, name, job, job["spec"]["template"])
    asyncio.ensure_future(run_job_pod(ns, job, pod))


async def job_get(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    j = STATE["jobs"].get((ns, name))
    return web.json_response(public(j)) if j else not_found("jobs", name, "batch")


async def job_delete(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    j = STATE["jobs"].pop((ns, name), None)
    if j is None:
        return not_found("jobs", name, "batch")
    text = await request.text()
    STATE.setdefault("deletes", []).append({"name": name, "propagationPolicy": (json.loads(text) if text else {}).get("propagationPolicy")})
    for k, p in list(STATE["pods"].items()):
        if p["metadata"]["labels"].get("job-name") == name:
            STATE["pods"].pop(k)
            stop_pod_process(k[1])
    return web.json_response(public(j))


def stop_pod_process(pod):
    """A deleted pod's container stops (its whole process group), as a kubelet stops it."""
    proc = STATE.get("procs", {}).pop(pod, None)
    if proc is not None and proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


async def run_rayjob(ns, name, rj):
    """KubeRay's RayJob controller, as the test scripts it: a cluster with a head pod, a
    submitter Job's pod printing the scripted log, the scripted statuses one after another."""
    cluster = f"{name}-raycluster-{suffix()}"
    rj["status"] = {"jobDeploymentStatus": "Initializing", "rayClusterName": cluster}
    head = job_pod(ns, f"{cluster}-head", rj, rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"],
                   {"ray.io/cluster": cluster, "ray.io/node-type": "head"})
    head["metadata"]["labels"].pop("job-name")
    head["status"] = job_pod_status("Running")
    STATE["logs"][head["metadata"]["name"]] = "head: ray started\n"
    STATE["pod_done"][head["metadata"]["name"]].set()
    sub = job_pod(ns, name, rj, {"metadata": {}, "spec": {"containers": [{"name": "ray-job-submitter"}]}})
    sub["status"] = job_pod_status("Running")
    for deployment, job_status, extra in STATE["scenario"].get("rayjob", [["Running", "RUNNING", {}], ["Complete", "SUCCEEDED", {}]]):
        await asyncio.sleep(0.5)
        rj["status"].update({"jobDeploymentStatus": deployment, "jobStatus": job_status})
        rj["status"].update(extra)
    for line in STATE["scenario"].get("job_log", "submitter: job done\n").splitlines(keepends=True):
        STATE["logs"][sub["metadata"]["name"]] += line
    sub["status"] = job_pod_status("Succeeded", code=0)
    STATE["pod_done"][sub["metadata"]["name"]].set()


async def run_experiment(ns, name, exp):
    """Katib's controller, as the test scripts it: one trial pod whose log says the first
    value of every parameter, then the scripted conditions one after another."""
    exp["status"] = {"conditions": []}
    spec = exp["spec"]
    first = {p["name"]: p["feasibleSpace"].get("list", [p["feasibleSpace"].get("min")])[0] for p in spec["parameters"]}
    trial = f"{name}-{suffix(8)}"
    pod = job_pod(ns, trial, exp, spec["trialTemplate"]["trialSpec"]["spec"]["template"],
                  {"katib.kubeflow.org/experiment": name, "katib.kubeflow.org/trial": trial})
    pod["status"] = job_pod_status("Running")
    cmd = " ".join(pod["spec"]["containers"][0]["command"])
    for k, v in first.items():
        cmd = cmd.replace("${trialParameters.%s}" % k, str(v))
    STATE["logs"][pod["metadata"]["name"]] = f"trial ran: {cmd}\naccuracy=0.93\n"
    for ty, reason, message in STATE["scenario"].get("katib", [["Running", "ExperimentRunning", "running"], ["Succeeded", "ExperimentGoalReached", "goal reached"]]):
        await asyncio.sleep(0.4)
        exp["status"]["conditions"].append({"type": ty, "status": "True", "reason": reason, "message": message,
                                            "lastTransitionTime": now()})
    exp["status"]["currentOptimalTrial"] = {
        "bestTrialName": trial,
        "parameterAssignments": [{"name": k, "value": str(v)} for k, v in first.items()],
        "observation": {"metrics": [{"name": spec["objective"]["objectiveMetricName"], "latest": "0.93", "max": "0.93", "min": "0.93"}]}}
    pod["status"] = job_pod_status("Succeeded", code=0)
    STATE["pod_done"][pod["metadata"]["name"]].set()


async def experiment_get(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    j = STATE.get("experiments", {}).get((ns, name))
    return web.json_response(public(j)) if j else not_found("experiments", name, "kubeflow.org")


async def rayjob_get(request):
    ns, name = request.match_info["ns"], request.match_info["name"]
    j = STATE["rayjobs"].get((ns, name))
    return web.json_response(public(j)) if j else not_found("rayjobs", name, "ray.io")


async def pod_log_follow(request, name, text_now):
    """`follow=true`: the log as it grows, until the pod's container has ended."""
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    sent = 0
    done = STATE["pod_done"].get(name)
    while True:
        text = STATE["logs"].get(name, "")
        if len(text) > sent:
            await resp.write(text[sent:].encode())
            sent = len(text)
            # Scripted: a stream cut short after its first lines (an API server or kubelet that
            # drops a long log stream); the client must open it again.
            if STATE["scenario"].get("cut_log_streams", 0) > 0:
                STATE["scenario"]["cut_log_streams"] -= 1
                STATE.setdefault("cut_streams", []).append(name)
                break
        if done is None or (done.is_set() and sent >= len(STATE["logs"].get(name, ""))):
            break
        await asyncio.sleep(0.1)
    await resp.write_eof()
    return resp


async def access_review(request):
    """SelfSubjectAccessReview: allowed unless the test forbids [verb, resource[/subresource]]."""
    body = await request.json()
    attrs = body.get("spec", {}).get("resourceAttributes", {})
    resource = attrs.get("resource", "")
    if attrs.get("subresource"):
        resource += "/" + attrs["subresource"]
    ok = allowed(attrs.get("verb", ""), resource)
    body["status"] = {"allowed": ok}
    if not ok:
        body["status"]["reason"] = "no RBAC policy matched"
    STATE.setdefault("reviews", []).append(attrs)
    return web.json_response(body, status=201)


# ---- control ------------------------------------------------------------------------------

async def fake_scenario(request):
    STATE["scenario"].update(await request.json())
    return web.json_response(STATE["scenario"])


async def fake_config(request):
    CONF.update(await request.json())
    return web.json_response({"ok": True})


async def fake_state(request):
    return web.json_response({
        "rayclusters": [public(o) for o in STATE["rayclusters"].values()],
        "applied": {f"{k[0]}/{k[1]}": v for k, v in STATE["applied"].items()},
        "pods": [public(p) for p in STATE["pods"].values()],
        "requests": STATE["requests"], "deletes": STATE.get("deletes", []),
        "execs": STATE.get("execs", []), "forwards": STATE.get("forwards", []),
        "jobs": [public(j) for j in STATE["jobs"].values()],
        "rayjobs": [public(j) for j in STATE["rayjobs"].values()],
        "ran_images": STATE.get("ran_images", []), "watches": STATE.get("watches", []),
        "experiments": [public(j) for j in STATE.get("experiments", {}).values()],
        "cut_streams": STATE.get("cut_streams", []),
    })


async def fake_kill_head(request):
    """The head pod goes away and KubeRay makes another (a restarted head)."""
    for k, p in list(STATE["pods"].items()):
        if p["metadata"]["labels"].get("ray.io/node-type") == "head":
            STATE["pods"].pop(k)
            reconcile(k[0], p["metadata"]["labels"]["ray.io/cluster"])
    return web.json_response({"ok": True})


def main():
    global ARGS, CONF
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--config", required=True)
    ARGS = ap.parse_args()
    with open(ARGS.config) as f:
        CONF = json.load(f)
    app = web.Application(middlewares=[auth])
    ns = "/namespaces/{ns}"
    app.add_routes([
        web.get("/version", version),
        web.get("/api", discovery_core),
        web.get("/apis", discovery_groups),
        web.get("/apis/ray.io/v1", discovery_ray),
        web.get("/apis/batch/v1", discovery_batch),
        web.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", access_review),
        web.get(f"/apis/batch/v1{ns}/jobs/{{name}}", job_get),
        web.patch(f"/apis/batch/v1{ns}/jobs/{{name}}", applier("batch/v1", "Job", "jobs", "jobs", "batch", start_job)),
        web.delete(f"/apis/batch/v1{ns}/jobs/{{name}}", job_delete),
        web.get(f"/apis/ray.io/v1{ns}/rayjobs/{{name}}", rayjob_get),
        web.get(f"/apis/kubeflow.org/v1beta1{ns}/experiments/{{name}}", experiment_get),
        web.patch(f"/apis/kubeflow.org/v1beta1{ns}/experiments/{{name}}", applier(
            "kubeflow.org/v1beta1", "Experiment", "experiments", "experiments", "kubeflow.org",
            lambda ns_, n, o: asyncio.ensure_future(run_experiment(ns_, n, o)))),
        web.patch(f"/apis/ray.io/v1{ns}/rayjobs/{{name}}", applier("ray.io/v1", "RayJob", "rayjobs", "rayjobs", "ray.io",
                                                                    lambda ns_, n, o: asyncio.ensure_future(run_rayjob(ns_, n, o)))),
        web.get(f"/apis/ray.io/v1{ns}/rayclusters", raycluster_list),
        web.get(f"/apis/ray.io/v1{ns}/rayclusters/{{name}}", raycluster_get),
        web.patch(f"/apis/ray.io/v1{ns}/rayclusters/{{name}}", raycluster_patch),
        web.delete(f"/apis/ray.io/v1{ns}/rayclusters/{{name}}", raycluster_delete),
        web.get(f"/api/v1{ns}/pods", pods_list),
        web.get(f"/api/v1{ns}/pods/{{name}}", pod_get),
        web.get(f"/api/v1{ns}/pods/{{name}}/log", pod_log),
        web.get(f"/api/v1{ns}/pods/{{name}}/exec", pod_exec),
        web.get(f"/api/v1{ns}/pods/{{name}}/portforward", pod_portforward),
        web.get(f"/api/v1{ns}/events", events_list),
        web.post("/fake/scenario", fake_scenario),
        web.post("/fake/config", fake_config),
        web.get("/fake/state", fake_state),
        web.post("/fake/kill-head", fake_kill_head),
    ])

    async def start_operator(app):
        app["operator"] = asyncio.ensure_future(operator_loop())
        app["observer"] = asyncio.ensure_future(observer_loop())

    app.on_startup.append(start_operator)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    print(f"fake_apiserver listening on 127.0.0.1:{ARGS.port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=ARGS.port, ssl_context=ctx, print=None,
                access_log=None, handle_signals=True)


if __name__ == "__main__":
    sys.exit(main())
