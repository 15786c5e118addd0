#!/usr/bin/env python3
"""EC2 simulation for daft's tests (test support code, not part of daft).

An HTTP proxy that daft's AWS SDK reaches through AWS_ENDPOINT_URL, in front of moto's EC2
server, adding what moto lacks, and a machine of its own for every instance moto launches:

- every instance is a Linux network namespace with two addresses made here: a "private" one on
  a network the instances share (a bridge in a namespace of its own) that this machine cannot
  reach, like a VPC seen from a laptop, and a "public" one on a veth pair to this machine; plus
  a mount and PID namespace with its own /tmp, /root (the login's home), /etc/ssh and
  /var/log, running OpenSSH's sshd for the login user (root) with the key pair's public key;
- RunInstances answers `pending` with a private address and no public one; DescribeInstances
  says `pending` for --delay seconds, then `running` with the public address; every address in
  an instance answer is the harness's own (moto's made-up addresses are removed: nothing may be
  sent to them);
- RunInstances of an instance type named with --no-capacity is refused with EC2's
  InsufficientInstanceCapacity (a shortage scripted per type, or per type and market as
  TYPE/spot or TYPE/on-demand, either of them in one zone as ...@ZONE);
- prices: the Price List API's GetProducts (AWSPriceListService, JSON) answers in its real
  document shape for the types given with --price TYPE=USD (on-demand, Linux), and
  DescribeSpotPriceHistory for those given with --spot-price TYPE=USD (that price in zone a,
  80 % of it in zone b); every GetProducts is logged (`GetProducts TYPE`);
- ClientToken is idempotent (the same token returns the same instances) and a token longer than
  64 characters is refused, as EC2 does;
- once `running`, the instance's user data runs as root inside it, once, like cloud-init, with
  its output in /var/log/cloud-init-output.log there;
- a terminated instance loses its namespaces and every process in them;
- a spot interruption a test can trigger: the simulation's own action SimInterruptSpot
  (InstanceId=...) marks an instance so that, once terminated (the test's TerminateInstances),
  it is described with EC2's reason for it, Server.SpotInstanceTermination;
- an instance launched with an instance profile gets credentials for it from an instance
  metadata service (IMDSv2: the token PUT, `iam/security-credentials/ROLE`), served for that
  instance alone on its public link's far end, and reaches the simulated EC2 API there too. Its
  sessions are told both addresses (AWS_EC2_METADATA_SERVICE_ENDPOINT, AWS_ENDPOINT_URL): the
  simulation's difference from EC2, where they are 169.254.169.254 and the regional endpoint.
  No credentials of this machine's are ever given to an instance.

The namespaces reach no network but the shared private one: the instances install Python
packages from this machine's uv cache (shared, UV_OFFLINE=1), warmed at start.

Usage: ec2_sim.py --moto URL --port PORT --dir DIR [--delay SECS] [--prefix NAME]
       [--no-capacity TYPE[/MARKET][@ZONE]]... [--price TYPE=USD]... [--spot-price TYPE=USD]...
Writes DIR/ready when it serves; SIGTERM tears everything down.
"""

import argparse
import base64
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET



def ns_of(root):
    """The answer's XML namespace as ElementTree writes it ("{uri}"), registered as the default
    so answers go back without prefixes."""
    if root.tag.startswith("{"):
        uri = root.tag[1:].split("}")[0]
        ET.register_namespace("", uri)
        return "{" + uri + "}"
    return ""

MACHINE_DIR = "/run/daft-sim-machine"
KEEP_DIR = "/run/daft-sim-keep"
IP_RE = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\b")


def sh(cmd, check=True, **kw):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed ({r.returncode}): {r.stderr.strip()}")
    return r


class Machine:
    """One instance: netns + mount/PID namespaces with sshd, made here."""

    def __init__(self, sim, instance_id, n, pubkey, user_data, profile=None):
        self.sim = sim
        self.profile = profile
        self.server = None
        self.id = instance_id
        self.n = n
        self.pubkey = pubkey
        self.user_data = user_data
        self.private = f"10.77.{n // 250}.{n % 250 + 2}"
        self.public = f"198.18.{n // 60}.{(n % 60) * 4 + 2}"
        self.public_gw = f"198.18.{n // 60}.{(n % 60) * 4 + 1}"
        self.netns = f"{sim.prefix}-i{n}"
        self.dir = os.path.join(sim.dir, f"i{n}-{instance_id}")
        self.launched = time.time()
        self.init_pid = None
        self.user_data_done = False
        self.gone = False

    def create(self):
        d = self.dir
        for sub in ("home/.ssh", "etc-ssh", "log", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "home"), 0o700)
        with open(os.path.join(d, "home/.ssh/authorized_keys"), "w") as f:
            f.write(self.pubkey + "\n")
        os.chmod(os.path.join(d, "home/.ssh/authorized_keys"), 0o600)
        # The image's own host key (as an AMI's first boot makes): daft's user data replaces it.
        sh(f"ssh-keygen -q -t ed25519 -N '' -f {d}/etc-ssh/ssh_host_ed25519_key")
        ns, vpc = self.netns, self.sim.vpc
        a, b = f"{self.sim.prefix[:6]}p{self.n}", f"{self.sim.prefix[:6]}q{self.n}"
        c, e = f"{self.sim.prefix[:6]}v{self.n}", f"{self.sim.prefix[:6]}w{self.n}"
        sh(f"ip netns add {ns}")
        sh(f"ip -n {ns} link set lo up")
        # eth0: the private network (a bridge in the VPC namespace); first, as on EC2.
        sh(f"ip link add {c} type veth peer name {e}")
        sh(f"ip link set {c} netns {ns}")
        sh(f"ip -n {ns} link set {c} name eth0")
        sh(f"ip -n {ns} addr add {self.private}/16 dev eth0")
        sh(f"ip -n {ns} link set eth0 up")
        sh(f"ip link set {e} netns {vpc}")
        sh(f"ip -n {vpc} link set {e} master br0")
        sh(f"ip -n {vpc} link set {e} up")
        # eth1: the public address, reachable from this machine only.
        sh(f"ip link add {a} type veth peer name {b}")
        sh(f"ip link set {b} netns {ns}")
        sh(f"ip -n {ns} link set {b} name eth1")
        sh(f"ip -n {ns} addr add {self.public}/30 dev eth1")
        sh(f"ip -n {ns} link set eth1 up")
        sh(f"ip addr add {self.public_gw}/30 dev {a}")
        sh(f"ip link set {a} up")
        self.host_veth = a
        self.serve_metadata()
        cfg = os.path.join(d, "sshd_config")
        env = self.sim.session_env(self)
        with open(cfg, "w") as f:
            f.write(
                f"ListenAddress {self.public}:22\nHostKey /etc/ssh/ssh_host_ed25519_key\n"
                f"AuthorizedKeysFile /root/.ssh/authorized_keys\nPasswordAuthentication no\n"
                f"KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin yes\n"
                f"PidFile /tmp/sshd.pid\nSubsystem sftp internal-sftp\nAllowTcpForwarding yes\n"
                f"MaxStartups 100\nMaxSessions 100\nLogLevel ERROR\nSetEnv {env}\n"
            )
        # The machine's "init": private mounts, then sshd; everything in its PID namespace dies
        # with it.
        # The machine's own directory is seen at /run/daft-sim-machine inside (its real path may
        # be under /tmp, which the machine gets a fresh one of).
        M = MACHINE_DIR
        # The machine's own /root (the login's home), with this machine's Python (pyenv) and
        # uv cache kept visible inside it.
        keep = []
        for i, path in enumerate(self.sim.shared_dirs()):
            os.makedirs(f"{KEEP_DIR}/{i}", exist_ok=True)
            keep.append((f"{KEEP_DIR}/{i}", path))
        save = "".join(f"mount --bind {p} {k} && " for k, p in keep)
        restore = "".join(f"mkdir -p {p} && mount --bind {k} {p} && " for k, p in keep)
        init = (
            f"mount --make-rprivate / && "
            f"mount --bind {d} {M} && "
            f"{save}"
            f"mount --bind {M}/home /root && "
            f"{restore}"
            f"mount --bind {M}/etc-ssh /etc/ssh && "
            f"mount --bind {M}/log /var/log && "
            f"mount --bind {M}/tmp /tmp && chmod 1777 /tmp && "
            f"mkdir -p /run/sshd && "
            f"exec /usr/sbin/sshd -D -e -f {M}/sshd_config"
        )
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--pid", "--fork",
             "--mount-proc", "sh", "-c", init],
            stdin=subprocess.DEVNULL,
            stdout=open(os.path.join(d, "init.log"), "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.init = p
        # The unshare's child (pid 1 of the machine) is what nsenter targets.
        deadline = time.time() + 10
        while time.time() < deadline and self.init_pid is None:
            r = sh(f"pgrep -P {p.pid}", check=False)
            if r.stdout.strip():
                self.init_pid = int(r.stdout.split()[0])
            else:
                time.sleep(0.05)
        if self.init_pid is None:
            raise RuntimeError(f"machine {self.id} did not start")

    def serve_metadata(self):
        """This instance's own view of the EC2 API and its metadata service, on its public
        link's far end (the host side): credentials of its instance profile, nobody else's."""
        machine, sim = self, self.sim

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def answer(self, status, body, ctype="text/plain"):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                if self.path == "/latest/api/token":
                    self.answer(200, b"sim-imds-token-" + machine.id.encode())
                else:
                    self.answer(404, b"")

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") != f"sim-imds-token-{machine.id}":
                    return self.answer(401, b"")
                base = "/latest/meta-data/iam/security-credentials/"
                if machine.profile is None or not self.path.startswith(base):
                    return self.answer(404, b"")
                role = machine.profile
                if self.path.rstrip("/") == base.rstrip("/"):
                    return self.answer(200, role.encode())
                if self.path[len(base):].strip("/") != role:
                    return self.answer(404, b"")
                sim.log(f"IMDS: credentials of instance profile {role} to {machine.id}")
                expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 6 * 3600))
                creds = {"Code": "Success", "Type": "AWS-HMAC", "LastUpdated": expires,
                         "AccessKeyId": f"ASIASIM{machine.n:06d}", "SecretAccessKey": "sim-secret",
                         "Token": f"sim-session-{machine.id}", "Expiration": expires}
                self.answer(200, json.dumps(creds).encode(), "application/json")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization", "")
                key = auth.split("Credential=")[1].split("/")[0] if "Credential=" in auth else "-"
                action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0]
                sim.log(f"EC2 API from {machine.id}: {action} with key {key}")
                try:
                    status, out = sim.handle(body, dict(self.headers))
                except Exception as e:  # an answer, never a hang
                    status, out = sim.error("InternalError", str(e))
                self.answer(status, out, "text/xml")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer((self.public_gw, sim.port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def run_user_data(self):
        """cloud-init: the user data, as root, once, in the machine; output to its log."""
        if self.user_data_done or self.gone:
            return
        self.user_data_done = True
        path = os.path.join(self.dir, "user-data")
        with open(path, "wb") as f:
            f.write(self.user_data)
        os.chmod(path, 0o700)
        env = dict(self.sim.base_env())
        env["HOME"] = "/root"
        subprocess.Popen(
            ["nsenter", "-t", str(self.init_pid), "-m", "-n", "-p", "sh", "-c",
             f"exec sh {MACHINE_DIR}/user-data > /var/log/cloud-init-output.log 2>&1"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def destroy(self):
        if self.gone:
            return
        self.gone = True
        if self.server is not None:
            # Closed before the next instance may take this one's addresses. (Never from its
            # own serving thread: requests run in threads of their own.)
            self.server.shutdown()
            self.server.server_close()
        try:
            if self.init_pid:
                os.kill(self.init_pid, signal.SIGKILL)  # pid 1 of the machine: all of it goes
        except ProcessLookupError:
            pass
        try:
            self.init.kill()
            self.init.wait(timeout=10)
        except Exception:
            pass
        sh(f"ip netns del {self.netns}", check=False)
        sh(f"ip link del {getattr(self, 'host_veth', 'none')}", check=False)
        self.sim.log(f"terminated {self.id}: namespace {self.netns} removed")


class Sim:
    def __init__(self, args):
        self.moto = args.moto.rstrip("/")
        self.port = args.port
        self.dir = args.dir
        self.delay = args.delay
        self.prefix = args.prefix
        self.no_capacity = set(args.no_capacity)
        self.prices = dict(p.split("=", 1) for p in args.price)
        self.spot_prices = dict(p.split("=", 1) for p in args.spot_price)
        self.interrupted = set()  # instance ids whose spot capacity EC2 took back
        self.vpc = f"{self.prefix}-vpc"
        self.lock = threading.RLock()
        self.machines = {}  # instance id -> Machine
        self.tokens = {}  # client token -> raw moto RunInstances answer
        self.keys = {}  # key pair name -> public key
        self.next = 0
        self.logf = open(os.path.join(self.dir, "sim.log"), "a")
        os.makedirs(MACHINE_DIR, exist_ok=True)
        sh(f"ip netns add {self.vpc}")
        sh(f"ip -n {self.vpc} link add br0 type bridge")
        sh(f"ip -n {self.vpc} link set br0 up")
        sh(f"ip -n {self.vpc} link set lo up")

    def log(self, msg):
        self.logf.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
        self.logf.flush()

    def base_env(self):
        keep = ("PATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "UV_CACHE_DIR",
                "PYENV_ROOT", "PYENV_VERSION")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env["UV_OFFLINE"] = "1"
        env.setdefault("UV_CACHE_DIR", os.path.expanduser("~/.cache/uv"))
        return env

    def shared_dirs(self):
        """This machine's directories every instance sees in its own /root: the Python
        installation (pyenv) and uv's cache."""
        dirs = []
        for p in (os.environ.get("PYENV_ROOT", "/root/.pyenv"), self.base_env()["UV_CACHE_DIR"]):
            if p.startswith("/root/") and os.path.isdir(p):
                dirs.append(p)
        return dirs

    def session_env(self, machine):
        env = self.base_env()
        env["HOME"] = "/root"
        # (The simulation's addresses for the EC2 API and the metadata service: see the top.)
        env["AWS_ENDPOINT_URL"] = f"http://{machine.public_gw}:{self.port}"
        env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = f"http://{machine.public_gw}:{self.port}/"
        return " ".join(f"{k}={v}" for k, v in sorted(env.items()) if " " not in v and '"' not in v)

    def addresses(self):
        with self.lock:
            return {m.public for m in self.machines.values()} | {m.private for m in self.machines.values()}

    # --- answers -----------------------------------------------------------------------------

    def rewrite_instances(self, xml_text):
        """Every instance item: the harness's addresses and the simulated state."""
        root = ET.fromstring(xml_text)
        NS = ns_of(root)
        now = time.time()
        for item in root.iter(f"{NS}item"):
            iid = item.find(f"{NS}instanceId")
            if iid is None:
                continue
            m = self.machines.get(iid.text)
            state = item.find(f"{NS}instanceState")
            for tag in ("networkInterfaceSet", "dnsName", "privateDnsName", "ipAddress",
                        "privateIpAddress", "association"):
                for el in list(item.findall(f"{NS}{tag}")):
                    item.remove(el)
            name = state.find(f"{NS}name").text if state is not None else "terminated"
            if iid.text in self.interrupted and name in ("terminated", "shutting-down"):
                reason = item.find(f"{NS}stateReason")
                if reason is None:
                    reason = ET.SubElement(item, f"{NS}stateReason")
                for el in list(reason):
                    reason.remove(el)
                ET.SubElement(reason, f"{NS}code").text = "Server.SpotInstanceTermination"
                ET.SubElement(reason, f"{NS}message").text = (
                    "Server.SpotInstanceTermination: Spot instance termination")
            if m is None or name in ("terminated", "shutting-down", "stopped", "stopping"):
                continue
            running = now - m.launched >= self.delay
            state.find(f"{NS}name").text = "running" if running else "pending"
            state.find(f"{NS}code").text = "16" if running else "0"
            ET.SubElement(item, f"{NS}privateIpAddress").text = m.private
            if running:
                ET.SubElement(item, f"{NS}ipAddress").text = m.public
        out = ET.tostring(root, encoding="unicode")
        # Nothing else that looks like an address leaves here.
        mine = self.addresses()
        return IP_RE.sub(lambda x: x.group(0) if x.group(0) in mine else "0.0.0.0", out)

    def error(self, code, message):
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>sim</RequestID></Response>")
        return 400, body.encode()

    def handle(self, body, headers):
        params = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        action = params.get("Action", [""])[0]
        one = lambda k: params.get(k, [None])[0]
        if action == "RunInstances":
            token = one("ClientToken")
            if token is not None and len(token) > 64:
                return self.error("InvalidParameterValue",
                                  f"Value ({token}) for parameter clientToken is invalid. "
                                  "Length exceeds maximum of 64 characters")
            itype = one("InstanceType")
            market = "spot" if one("InstanceMarketOptions.MarketType") == "spot" else "on-demand"
            zone = one("Placement.AvailabilityZone")
            short = {itype, f"{itype}/{market}"}
            if zone:
                short |= {f"{itype}@{zone}", f"{itype}/{market}@{zone}"}
            if short & self.no_capacity:
                # The simulation's scripted shortage (moto has capacity for everything).
                self.log(f"RunInstances: no {market} capacity for {itype} in {zone or 'any zone'} (scripted)")
                message = ("There is no Spot capacity available that matches your request."
                           if market == "spot" else
                           f"We currently do not have sufficient {itype} capacity in the "
                           "Availability Zone you requested. Our system will be working on "
                           "provisioning additional capacity.")
                return 500, self.error("InsufficientInstanceCapacity", message)[1]
            self.log(f"RunInstances: {itype} {market} in {zone or 'any zone'}")
            with self.lock:
                if token and token in self.tokens:
                    self.log(f"RunInstances: token {token} seen: same instances")
                    raw = self.tokens[token]
                else:
                    status, raw = self.forward(body, headers)
                    if status != 200:
                        return status, raw
                    if token:
                        self.tokens[token] = raw
                    key = self.keys.get(one("KeyName"), "")
                    ud = base64.b64decode(one("UserData") or "")
                    # (The profile's role has the profile's name in the tests' IAM.)
                    profile = one("IamInstanceProfile.Name") or (
                        (one("IamInstanceProfile.Arn") or "").rsplit("/", 1)[-1] or None)
                    root = ET.fromstring(raw)
                    NS = ns_of(root)
                    for iid in root.iter(f"{NS}instanceId"):
                        if iid.text in self.machines:
                            continue
                        # The lowest free place: a terminated instance's addresses are handed to
                        # the next one, as EC2 recycles public addresses.
                        used = {x.n for x in self.machines.values() if not x.gone}
                        n = next(k for k in range(1, 10000) if k not in used)
                        m = Machine(self, iid.text, n, key, ud, profile)
                        self.machines[iid.text] = m
                        m.create()
                        self.log(f"launched {iid.text}: public {m.public} private {m.private} machine i{m.n}")
                        threading.Timer(self.delay, m.run_user_data).start()
                return 200, self.rewrite_instances(raw.decode()).encode()
        if action == "SimInterruptSpot":
            # The simulation's own control action (not EC2's): see the top.
            iid = one("InstanceId")
            with self.lock:
                self.interrupted.add(iid)
            self.log(f"spot interruption of {iid} (scripted)")
            return 200, b"<SimInterruptSpotResponse/>"
        if action == "DescribeSpotPriceHistory":
            types = [v[0] for k, v in params.items() if k.startswith("InstanceType.")]
            known = [t for t in types if t in self.spot_prices]
            if known:
                return 200, self.spot_history(known, region_of(headers)).encode()
        if action == "ImportKeyPair":
            material = base64.b64decode(one("PublicKeyMaterial") or "").decode().strip()
            self.keys[one("KeyName")] = material
        if action == "TerminateInstances":
            ids = [v[0] for k, v in params.items() if k.startswith("InstanceId.")]
            with self.lock:
                for i in ids:
                    if i in self.machines:
                        self.machines[i].destroy()
        status, raw = self.forward(body, headers)
        if action in ("DescribeInstances",) and status == 200:
            with self.lock:
                return status, self.rewrite_instances(raw.decode()).encode()
        return status, raw

    def spot_history(self, types, region):
        items = []
        for t in types:
            price = float(self.spot_prices[t])
            for zone, p in ((f"{region}a", price), (f"{region}b", price * 0.8)):
                items.append(
                    f"<item><instanceType>{t}</instanceType><productDescription>Linux/UNIX"
                    f"</productDescription><spotPrice>{p:.6f}</spotPrice><timestamp>"
                    f"{time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime())}</timestamp>"
                    f"<availabilityZone>{zone}</availabilityZone></item>")
        return ('<?xml version="1.0" encoding="UTF-8"?><DescribeSpotPriceHistoryResponse '
                'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>sim</requestId>'
                f"<spotPriceHistorySet>{''.join(items)}</spotPriceHistorySet>"
                "<nextToken/></DescribeSpotPriceHistoryResponse>")

    def price_list(self, target, body):
        """The Price List API (JSON 1.1): GetProducts for the types given with --price."""
        if target != "AWSPriceListService.GetProducts":
            return 400, {"__type": "InvalidParameterException", "Message": f"not simulated: {target}"}
        req = json.loads(body or b"{}")
        f = {x["Field"]: x["Value"] for x in req.get("Filters", [])}
        itype = f.get("instanceType", "")
        self.log(f"GetProducts {itype}")
        docs = []
        if itype in self.prices and f.get("operatingSystem", "Linux") == "Linux":
            sku = "SIM" + re.sub(r"[^A-Z0-9]", "", itype.upper())
            docs.append(json.dumps({
                "product": {"productFamily": "Compute Instance", "sku": sku, "attributes": {
                    "instanceType": itype, "regionCode": f.get("regionCode", ""),
                    "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
                    "capacitystatus": "Used", "servicecode": "AmazonEC2"}},
                "serviceCode": "AmazonEC2", "version": "sim", "publicationDate": "2026-11-01T00:00:00Z",
                "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
                    "offerTermCode": "JRTCKXETXF", "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z",
                    "termAttributes": {},
                    "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                        "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "unit": "Hrs",
                        "beginRange": "0", "endRange": "Inf", "appliesTo": [],
                        "description": f"${self.prices[itype]} per On Demand Linux {itype} Instance Hour",
                        "pricePerUnit": {"USD": f"{float(self.prices[itype]):.10f}"}}}}}}}))
        return 200, {"FormatVersion": "aws_v1", "PriceList": docs}

    def forward(self, body, headers):
        req = urllib.request.Request(self.moto + "/", data=body, method="POST")
        for k, v in headers.items():
            if k.lower() not in ("host", "content-length", "connection", "accept-encoding"):
                req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def teardown(self):
        with self.lock:
            for m in self.machines.values():
                m.destroy()
        sh(f"ip netns del {self.vpc}", check=False)
        self.log("torn down")


def region_of(headers):
    """The region a request was signed for (`Credential=KEY/DATE/REGION/SERVICE/...`)."""
    m = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", headers.get("Authorization", ""))
    return m.group(1) if m else "us-east-1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moto", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--delay", type=float, default=3.0)
    ap.add_argument("--prefix", default=f"dsim{os.getpid()}")
    ap.add_argument("--no-capacity", action="append", default=[],
                    help="TYPE or TYPE/MARKET RunInstances refuses with InsufficientInstanceCapacity")
    ap.add_argument("--price", action="append", default=[], help="TYPE=USD: on-demand price")
    ap.add_argument("--spot-price", action="append", default=[], help="TYPE=USD: spot price")
    args = ap.parse_args()
    sim = Sim(args)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            target = self.headers.get("X-Amz-Target", "")
            if target.startswith("AWSPriceListService."):
                try:
                    status, doc = sim.price_list(target, body)
                except Exception as e:  # an answer, never a hang
                    sim.log(f"error: {e!r}")
                    status, doc = 500, {"__type": "InternalError", "Message": str(e)}
                out = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
                return
            try:
                status, out = sim.handle(body, dict(self.headers))
            except Exception as e:  # an answer, never a hang
                sim.log(f"error: {e!r}")
                status, out = sim.error("InternalError", str(e))
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), H)

    def stop(*_):
        threading.Thread(target=srv.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(os.path.join(args.dir, "ready"), "w") as f:
        f.write(json.dumps({"pid": os.getpid(), "prefix": args.prefix}))
    try:
        srv.serve_forever()
    finally:
        sim.teardown()


if __name__ == "__main__":
    main()
