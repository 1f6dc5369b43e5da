#!/usr/bin/env python3
"""Network-namespace lab for cppnet: an underlay switch with etcd, hosts running
cppnet-agent (or configured like flanneld with kernel tools), containers on each
host's bridge. Everything carries a unique prefix and is removed on exit.

Safety (DESIGN.md §6): nothing is attached to or changed in the root network
namespace; every address is in 198.18.0.0/15; only PIDs started here are killed.
"""
import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("CPPNET_BUILD_DIR", os.path.join(ROOT, "build"))
# The programs under test; CPPNET_AGENT/CPPNET_CTL/CPPNET_CNI name others (e.g. an older
# build, to measure it with the same benchmark).
AGENT = os.environ.get("CPPNET_AGENT", os.path.join(BUILD, "agent", "daemon", "cppnet-agent"))
CTL = os.environ.get("CPPNET_CTL", os.path.join(BUILD, "cli", "cppnetctl", "cppnetctl"))
CNI = os.environ.get("CPPNET_CNI", os.path.join(BUILD, "cli", "cni", "cppnet"))  # the CNI plugin
SWITCH_IP = "198.18.0.254"
ETCD = f"http://{SWITCH_IP}:2379"
PREFIX = "/coreos.com/network"
# Agents lease from 198.19.1.0–198.19.199.0; 198.19.200.0 and up are left for leases
# that tests write by hand (flanneld hosts, malformed leases), so they never collide.
VXLAN_CONFIG = {"Network": "198.19.0.0/16", "SubnetLen": 24, "SubnetMax": "198.19.199.0",
                "Backend": {"Type": "vxlan", "VNI": 1, "Port": 8472}}


class LabError(Exception):
    pass


def run(cmd, check=True, timeout=60, input=None):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def wait_for(what, fn, timeout=20.0, interval=0.1):
    """Poll fn() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except LabError as e:
            last = e
        time.sleep(interval)
    raise LabError(f"timed out after {timeout}s waiting for {what} (last: {last})")


class Host:
    def __init__(self, lab, index, ns):
        self.lab, self.index, self.ns = lab, index, ns
        self.ip = f"198.18.0.{index}"
        self.ip6 = None  # its underlay IPv6 address (add_host(ipv6=True))
        self.holder = None   # process owning this host's mount namespace
        self.agent = None
        self.log_path = os.path.join(lab.dir, f"agent-h{index}.log")
        self.containers = []

    def cmd(self, argv):
        """argv run inside this host: its netns and its private mounts (bpffs, /run)."""
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--net", "--"] + list(argv)

    def sh(self, script, check=True, timeout=60):
        return run(self.cmd(["sh", "-c", script]), check=check, timeout=timeout)

    def start_agent(self, *extra, config_iface="eth0", env=None):
        args = [AGENT, f"--etcd-endpoints={self.lab.etcd_url}", "--subnet-lease-ttl=60s",
                "--subnet-lease-renew-margin=1"] + ([f"--iface={config_iface}"] if config_iface else []) + list(extra)
        log = open(self.log_path, "a")
        self.agent = subprocess.Popen(self.cmd(args), stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=None if env is None else {**os.environ, **env})
        self.lab.pids.append(self.agent)
        return self.agent

    def stop_agent(self, sig=signal.SIGTERM):
        if self.agent and self.agent.poll() is None:
            self.agent.send_signal(sig)
            try:
                self.agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def subnet_env(self, timeout=30):
        def read():
            p = self.sh("cat /run/flannel/subnet.env 2>/dev/null", check=False)
            return p.stdout if "FLANNEL_SUBNET=" in p.stdout or "FLANNEL_IPV6_SUBNET=" in p.stdout else None
        text = wait_for(f"subnet.env on h{self.index}", read, timeout)
        return dict(line.split("=", 1) for line in text.split())

    def ctl(self, *args, check=True):
        return run(self.cmd([CTL] + list(args)), check=check)

    def routes(self):
        p = self.ctl("show", "routes", "--json", check=False)
        return {r["subnet"]: r for r in json.loads(p.stdout)} if p.returncode == 0 else {}

    def add_bridge_and_containers(self, subnet_cidr_gw, mtu, count=2, subnet6_gw=None):
        """As Docker does with --bip=$FLANNEL_SUBNET --mtu=$FLANNEL_MTU: bridge cni0 + veths.
        subnet6_gw (FLANNEL_IPV6_SUBNET): dual stack, the containers get ::2, ::3, ... too;
        subnet_cidr_gw None: IPv6 only."""
        iface = ipaddress.ip_interface(subnet_cidr_gw) if subnet_cidr_gw else None
        net = iface.network if iface else None
        self.sh(f"ip link add cni0 type bridge && ip link set cni0 mtu {mtu} && "
                + (f"ip addr add {subnet_cidr_gw} dev cni0 && " if iface else "") + "ip link set cni0 up")
        iface6 = ipaddress.ip_interface(subnet6_gw) if subnet6_gw else None
        if iface6:
            self.sh(f"ip -6 addr add {subnet6_gw} dev cni0 nodad")
        for j in range(count):
            cns = f"{self.ns}c{j + 1}"
            run(["ip", "netns", "add", cns])
            self.lab.namespaces.append(cns)
            addr = net.network_address + 2 + j if net else None
            run(["ip", "-n", self.ns, "link", "add", f"veth{j + 1}", "mtu", str(mtu), "type", "veth",
                 "peer", "name", "eth0", "mtu", str(mtu), "netns", cns])
            self.sh(f"ip link set veth{j + 1} master cni0 && ip link set veth{j + 1} up")
            steps = [["link", "set", "lo", "up"], ["link", "set", "eth0", "up"]]
            if net:
                steps += [["addr", "add", f"{addr}/{net.prefixlen}", "dev", "eth0"],
                          ["route", "add", "default", "via", str(iface.ip)]]
            for c in steps:
                run(["ip", "-n", cns, *c])
            ctr = Container(cns, str(addr) if addr else None, self)
            if iface6:
                ctr.ip6 = str(iface6.network.network_address + 2 + j)
                for c in (["-6", "addr", "add", f"{ctr.ip6}/{iface6.network.prefixlen}", "dev", "eth0", "nodad"],
                          ["-6", "route", "add", "default", "via", str(iface6.ip)]):
                    run(["ip", "-n", cns, *c])
            self.containers.append(ctr)
        if self.agent is not None:  # what an operator checks: the agent has taken the bridge
            wait_for(f"h{self.index} agent to attach to cni0", lambda: self.config().get("container_iface") == "cni0")
        return self.containers

    def config(self):
        p = self.ctl("show", "config", "--json", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else {}


class Container:
    def __init__(self, ns, ip, host):
        self.ns, self.ip, self.host = ns, ip, host
        self.ip6 = None

    def exec(self, argv, **kw):
        return run(["ip", "netns", "exec", self.ns] + list(argv), **kw)

    def ping(self, ip, count=1, timeout=5):
        return self.exec(["ping", "-n", "-c", str(count), "-W", "2", ip], check=False, timeout=timeout + 5)

    def popen(self, argv):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns] + list(argv), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.host.lab.pids.append(p)
        return p

    def __repr__(self):
        return f"{self.ns}({self.ip})"


PACE_DEV = "cppnet.pace"  # abi.h CPPNET_PACE_DEV

SINK = r"""
import hashlib, socket, sys
v6 = len(sys.argv) > 2 and sys.argv[2] == "6"
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if v6 else "0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(30)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = r"""
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[3]))
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def tcp_transfer(src, dst, size=2 << 20, port=5001, ipv6=False):
    """Send `size` random bytes src→dst over TCP (to dst.ip, or dst.ip6); returns (sent,
    received) as (len, sha256)."""
    sink = dst.popen(["python3", "-c", SINK, str(port), "6" if ipv6 else "4"])
    try:
        line = sink.stdout.readline()
        if "listening" not in line:
            raise LabError(f"sink in {dst} did not start: {sink.stderr.read()}")
        to = dst.ip6 if ipv6 else dst.ip
        sent = src.exec(["python3", "-c", SOURCE, to, str(port), str(size)], timeout=60).stdout.split()
        out, _ = sink.communicate(timeout=30)
        return tuple(sent), tuple(out.split())
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()


ROOT_PASSWORD = "lab-root-pw"
AGENT_PASSWORD = "lab-agent-pw"


def make_pki(d):
    """A throw-away CA, a server certificate for etcd on the switch and a client certificate."""
    os.makedirs(d, exist_ok=True)
    f = {n: os.path.join(d, n) for n in ("ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(["openssl", "req", "-x509", *ec, "-keyout", f["ca.key"], "-out", f["ca.crt"], "-subj", "/CN=cppnet-lab-ca",
         "-days", "2"])
    for name, ext in (("server", f"subjectAltName=IP:{SWITCH_IP},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        csr, extfile = os.path.join(d, f"{name}.csr"), os.path.join(d, f"{name}.ext")
        with open(extfile, "w") as fh:
            fh.write(ext + "\n")
        run(["openssl", "req", *ec, "-keyout", f[f"{name}.key"], "-out", csr, "-subj", f"/CN=cppnet-{name}"])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", f["ca.crt"], "-CAkey", f["ca.key"], "-CAcreateserial",
             "-out", f[f"{name}.crt"], "-days", "2", "-extfile", extfile])
    return f


class Capture:
    """tcpdump writing a pcap inside a namespace (prefix_argv enters it); returns once it
    listens. stop() gives the frames as `tcpdump -e` prints them (802.1Q tags included)."""
    def __init__(self, lab, prefix_argv, iface, filt=()):
        self.path = os.path.join(lab.dir, f"cap-{secrets.token_hex(4)}.pcap")
        self.p = subprocess.Popen(list(prefix_argv) + ["tcpdump", "-i", iface, "-Z", "root", "--immediate-mode", "-U", "-nn", "-w", self.path, *filt],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lab.pids.append(self.p)
        line = self.p.stderr.readline()
        if "listening" not in line:
            raise LabError(f"tcpdump on {iface}: {line}")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            self.p.wait(timeout=10)
        return run(["tcpdump", "-r", self.path, "-e", "-nn"], check=False).stdout


class Lab:
    def __init__(self, name="lab"):
        self.prefix = f"cpn{secrets.token_hex(3)}"
        self.dir = tempfile.mkdtemp(prefix=f"cppnet-{name}-")
        self.sw = f"{self.prefix}-sw"
        self.namespaces = []
        self.cleanups = []
        self.pids = []
        self.hosts = {}
        self.etcd = None
        self.etcd_url = ETCD
        self.etcdctl_flags = []  # TLS files and credentials, once etcd is started with them
        self.pki = {}

    # --- lifecycle -----------------------------------------------------------
    def __enter__(self):
        try:
            self._setup_switch()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for fn in reversed(self.cleanups):  # e.g. a runtime's containers, while their hosts exist
            with contextlib.suppress(Exception):
                fn()
        for p in reversed(self.pids):  # only processes this lab started
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + 10
        for p in self.pids:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for h in self.hosts.values():
            if h.holder and h.holder.poll() is None:
                h.holder.kill()
                h.holder.wait()
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces.clear()
        if os.environ.get("CPPNET_KEEP_LOGS") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- topology --------------------------------------------------------------
    def _setup_switch(self):
        run(["ip", "netns", "add", self.sw])
        self.namespaces.append(self.sw)
        for c in (["link", "set", "lo", "up"], ["link", "add", "br0", "type", "bridge"],
                  ["addr", "add", f"{SWITCH_IP}/24", "dev", "br0"], ["link", "set", "br0", "up"]):
            run(["ip", "-n", self.sw, *c])

    def start_etcd(self, tls=False, auth=False):
        """etcd on the switch. tls: HTTPS with client certificates (files in self.pki);
        auth: authentication enabled, user "cppnet" (password AGENT_PASSWORD) may read
        and write the network prefix."""
        data = os.path.join(self.dir, "etcd")
        log = open(os.path.join(self.dir, "etcd.log"), "w")
        extra = []
        if tls:
            self.pki = make_pki(os.path.join(self.dir, "pki"))
            self.etcd_url = f"https://{SWITCH_IP}:2379"
            extra = ["--cert-file", self.pki["server.crt"], "--key-file", self.pki["server.key"],
                     "--trusted-ca-file", self.pki["ca.crt"], "--client-cert-auth"]
            self.etcdctl_flags = ["--cacert", self.pki["ca.crt"], "--cert", self.pki["client.crt"],
                                  "--key", self.pki["client.key"]]
        self.etcd = self._etcd("lab", data, self.etcd_url, "http://127.0.0.1:2380", "lab=http://127.0.0.1:2380", log,
                               extra)
        wait_for("etcd to serve", lambda: self.etcdctl("endpoint", "health", check=False).returncode == 0, 30, 0.2)
        if auth:
            for cmd in (["user", "add", f"root:{ROOT_PASSWORD}", "--interactive=false"],
                        ["role", "add", "cppnet"],
                        ["role", "grant-permission", "cppnet", "--prefix=true", "readwrite", PREFIX + "/"],
                        ["user", "add", f"cppnet:{AGENT_PASSWORD}", "--interactive=false"],
                        ["user", "grant-role", "cppnet", "cppnet"],
                        ["auth", "enable"]):
                self.etcdctl(*cmd)
            self.etcdctl_flags += ["--user", f"root:{ROOT_PASSWORD}"]

    def _etcd(self, name, data, client_url, peer_url, cluster, log, extra):
        """One etcd member in the switch namespace."""
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.sw, "etcd", "--name", name, "--data-dir", data,
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", cluster, "--logger", "zap", "--log-level", "error", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pids.append(p)
        return p

    def start_etcd_cluster(self, n=3):
        """n etcd members on the switch (198.18.0.251, .252, …); agents get all of them."""
        ips = [f"198.18.0.{251 + i}" for i in range(n)]
        for ip in ips:
            run(["ip", "-n", self.sw, "addr", "add", f"{ip}/24", "dev", "br0"])
        cluster = ",".join(f"m{i}=http://{ip}:2380" for i, ip in enumerate(ips))
        self.members = {}
        for i, ip in enumerate(ips):
            log = open(os.path.join(self.dir, f"etcd-m{i}.log"), "w")
            self.members[f"http://{ip}:2379"] = self._etcd(f"m{i}", os.path.join(self.dir, f"etcd-m{i}"),
                                                           f"http://{ip}:2379", f"http://{ip}:2380", cluster, log,
                                                           ["--initial-cluster-state", "new"])
        self.etcd_url = ",".join(self.members)
        wait_for("etcd cluster to serve",
                 lambda: self.etcdctl("endpoint", "health", "--cluster", check=False).returncode == 0, 60, 0.3)

    def etcd_leader(self):
        """Client URL of the current leader, None during an election."""
        p = self.etcdctl("endpoint", "status", "-w", "json", check=False)
        st = json.loads(p.stdout) if p.returncode == 0 else []
        # During an election a member reports no leader (the field is left out of the JSON).
        return next((e["Endpoint"] for e in st if e.get("Status", {}).get("leader")
                     and e["Status"]["leader"] == e["Status"].get("header", {}).get("member_id")), None)

    def stop_etcd(self):
        """etcd down (its data stays: start_etcd() brings the same cluster back)."""
        self.etcd.terminate()
        self.etcd.wait(timeout=15)

    def etcdctl(self, *args, check=True):
        return run(["ip", "netns", "exec", self.sw, "etcdctl", f"--endpoints={self.etcd_url}", *self.etcdctl_flags,
                    *args], check=check)

    def put_config(self, cfg=None, prefix=PREFIX):
        self.etcdctl("put", f"{prefix}/config", cfg if isinstance(cfg, str) else json.dumps(cfg or VXLAN_CONFIG))

    def leases(self):
        out = self.etcdctl("get", "--prefix", f"{PREFIX}/subnets/").stdout.splitlines()
        return {out[i].rsplit("/", 1)[1]: out[i + 1] for i in range(0, len(out) - 1, 2)}

    def add_host(self, index, mtu=1500, ip=None, ipv6=False):
        """ipv6: the underlay also gets 2001:db8::<index>/64 and the host forwards IPv6."""
        ns = f"{self.prefix}-h{index}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        h = Host(self, index, ns)
        h.ip = ip or h.ip
        run(["ip", "-n", self.sw, "link", "add", f"p{index}", "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.sw, "link", "set", f"p{index}", "master", "br0", "up"])
        for c in (["link", "set", "lo", "up"], ["link", "set", "eth0", "mtu", str(mtu)],
                  ["addr", "add", f"{h.ip}/24", "dev", "eth0"], ["link", "set", "eth0", "up"]):
            run(["ip", "-n", ns, *c])
        # The host routes between underlay and its bridge, as a Docker host does.
        for k in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", k])
        if ipv6:
            h.ip6 = f"2001:db8::{index}"
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{h.ip6}/64", "dev", "eth0", "nodad"])
        # Own mount namespace: sysfs of this netns, private bpffs, private /run (subnet.env,
        # agent pid), /etc/cppnet (VLAN networks) and /var/lib/cni (the CNI plugin's saved
        # configurations); the empty mount points are all the machine gets.
        os.makedirs("/etc/cppnet", exist_ok=True)
        os.makedirs("/var/lib/cni", exist_ok=True)
        h.holder = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             "mount -t bpf bpf /sys/fs/bpf && mount -t tmpfs tmpfs /run && mkdir -p /run/flannel && "
             "mount -t tmpfs tmpfs /etc/cppnet && mount -t tmpfs tmpfs /var/lib/cni && "
             "echo ready && exec sleep 86400"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if h.holder.stdout.readline().strip() != "ready":
            raise LabError(f"mount namespace of {ns}: {h.holder.stderr.read()}")
        self.hosts[index] = h
        return h

    def add_trunk(self, hosts, name="eth1"):
        """A second link from each host to the switch (bridge br1 there): a VLAN trunk."""
        if not run(["ip", "-n", self.sw, "link", "show", "br1"], check=False).returncode == 0:
            for c in (["link", "add", "br1", "type", "bridge"], ["link", "set", "br1", "up"]):
                run(["ip", "-n", self.sw, *c])
        for h in hosts:
            run(["ip", "-n", self.sw, "link", "add", f"t{h.index}", "type", "veth", "peer", "name", name, "netns", h.ns])
            run(["ip", "-n", self.sw, "link", "set", f"t{h.index}", "master", "br1", "up"])
            run(["ip", "-n", h.ns, "link", "set", name, "up"])

    def capture(self, prefix_argv, iface, filt=()):
        return Capture(self, prefix_argv, iface, filt)

    def flannel_host(self, index, subnet, vni=1, port=8472, ttl=600, lease=True):
        """A host configured only with kernel tools, as flanneld's vxlan backend does
        (lease=False: a VTEP that publishes nothing, reachable only by static route)."""
        h = self.add_host(index)
        net = ipaddress.ip_network(subnet)
        h.sh(f"ip link add flannel.{vni} type vxlan id {vni} local {h.ip} dev eth0 dstport {port} nolearning && "
             f"ip link set flannel.{vni} mtu 1450 && ip addr add {net.network_address}/32 dev flannel.{vni} && "
             f"ip link set flannel.{vni} up")
        h.vtep_mac = h.sh(f"cat /sys/class/net/flannel.{vni}/address").stdout.strip()
        if lease:
            lease_id = self.etcdctl("lease", "grant", str(ttl)).stdout.split()[1]
            value = json.dumps({"PublicIP": h.ip, "PublicIPv6": None, "BackendType": "vxlan",
                                "BackendData": {"VNI": vni, "VtepMAC": h.vtep_mac}})
            self.etcdctl("put", f"--lease={lease_id}", f"{PREFIX}/subnets/{net.network_address}-{net.prefixlen}", value)
        h.flannel_vni = vni
        return h, f"{net.network_address + 1}/{net.prefixlen}"

    def flannel_host6(self, index, subnet, subnet6, vni=1, port=8472, ttl=600):
        """A dual-stack host as flanneld's vxlan backend sets one up: flannel.<vni> over IPv4 and
        flannel-v6.<vni> over IPv6 (each with its subnet's first address), the lease key
        "v4&v6" with PublicIPv6 and BackendV6Data. Returns (host, IPv4 gateway, IPv6 gateway)."""
        h = self.add_host(index, ipv6=True)
        net, net6 = ipaddress.ip_network(subnet), ipaddress.ip_network(subnet6)
        h.sh(f"ip link add flannel.{vni} type vxlan id {vni} local {h.ip} dev eth0 dstport {port} nolearning && "
             f"ip link set flannel.{vni} mtu 1450 && ip addr add {net.network_address}/32 dev flannel.{vni} && "
             f"ip link set flannel.{vni} up && "
             f"ip link add flannel-v6.{vni} type vxlan id {vni} local {h.ip6} dev eth0 dstport {port} nolearning && "
             f"ip link set flannel-v6.{vni} mtu 1430 && "
             f"ip -6 addr add {net6.network_address}/128 dev flannel-v6.{vni} nodad && "
             f"ip link set flannel-v6.{vni} up")
        h.vtep_mac = h.sh(f"cat /sys/class/net/flannel.{vni}/address").stdout.strip()
        h.vtep_mac6 = h.sh(f"cat /sys/class/net/flannel-v6.{vni}/address").stdout.strip()
        lease_id = self.etcdctl("lease", "grant", str(ttl)).stdout.split()[1]
        value = json.dumps({"PublicIP": h.ip, "PublicIPv6": h.ip6, "BackendType": "vxlan",
                            "BackendData": {"VNI": vni, "VtepMAC": h.vtep_mac},
                            "BackendV6Data": {"VNI": vni, "VtepMAC": h.vtep_mac6}})
        key = f"{net.network_address}-{net.prefixlen}&{net6.network_address}-{net6.prefixlen}"
        self.etcdctl("put", f"--lease={lease_id}", f"{PREFIX}/subnets/{key}", value)
        h.flannel_vni = vni
        return h, f"{net.network_address + 1}/{net.prefixlen}", f"{net6.network_address + 1}/{net6.prefixlen}"

    def flannel_udp_host(self, index, subnet, network="198.19.0.0/16", port=8285, ttl=600):
        """A host set up as flanneld's udp backend does: TUN device flannel0 holding the
        subnet's .0 address with the Network's prefix, MTU underlay - 28, a userspace
        forwarder (tests/integration/flannel_udp_proxy.py) and its lease in flanneld's
        udp JSON. Start the forwarder with flannel_udp_start once the peers are known."""
        h = self.add_host(index)
        net, cluster = ipaddress.ip_network(subnet), ipaddress.ip_network(network)
        h.sh("ip tuntap add dev flannel0 mode tun && ip link set flannel0 mtu 1472 && "
             f"ip addr add {net.network_address}/{cluster.prefixlen} dev flannel0 && ip link set flannel0 up")
        lease_id = self.etcdctl("lease", "grant", str(ttl)).stdout.split()[1]
        self.etcdctl("put", f"--lease={lease_id}", f"{PREFIX}/subnets/{net.network_address}-{net.prefixlen}",
                     json.dumps({"PublicIP": h.ip, "BackendType": "udp"}))
        h.flannel_udp_port = port
        return h, f"{net.network_address + 1}/{net.prefixlen}"

    def flannel_udp_start(self, h):
        """The forwarder, with a route per lease of another host (what flanneld learns from etcd)."""
        routes = [f"{k.replace('-', '/')}={json.loads(v)['PublicIP']}" for k, v in self.leases().items()
                  if json.loads(v)["PublicIP"] != h.ip]
        script = os.path.join(ROOT, "tests", "integration", "flannel_udp_proxy.py")
        p = subprocess.Popen(h.cmd(["python3", script, "flannel0", str(h.flannel_udp_port), "1472", *routes]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pids.append(p)
        if p.stdout.readline().strip() != "ready":
            raise LabError(f"udp forwarder on h{h.index}: {p.stderr.read()}")
        return p

    def flannel_sync(self, h):
        """What flanneld does on every lease event: neighbour, FDB and onlink route per peer."""
        dev = f"flannel.{h.flannel_vni}"
        for key, value in self.leases().items():
            lease = json.loads(value)
            if lease["PublicIP"] == h.ip:
                continue
            net = ipaddress.ip_network(key.split("&")[0].replace("-", "/"))
            mac = lease["BackendData"]["VtepMAC"]
            h.sh(f"ip neigh replace {net.network_address} lladdr {mac} dev {dev} nud permanent && "
                 f"bridge fdb replace {mac} dev {dev} dst {lease['PublicIP']} self permanent && "
                 f"ip route replace {net} via {net.network_address} dev {dev} onlink")
            if "&" in key and lease.get("PublicIPv6") and h.ip6:  # flannel-v6.<vni>, the same way
                dev6 = f"flannel-v6.{h.flannel_vni}"
                net6 = ipaddress.ip_network(key.split("&", 1)[1].rsplit("-", 1)[0] + "/" + key.rsplit("-", 1)[1])
                mac6 = lease["BackendV6Data"]["VtepMAC"]
                h.sh(f"ip -6 neigh replace {net6.network_address} lladdr {mac6} dev {dev6} nud permanent && "
                     f"bridge fdb replace {mac6} dev {dev6} dst {lease['PublicIPv6']} self permanent && "
                     f"ip -6 route replace {net6} via {net6.network_address} dev {dev6} onlink")


CNI_PATH = "/usr/lib/cni"


def runtime_host(host, rootfs):
    """What a container runtime needs on a lab host: the machine's cgroups (the netns's fresh
    sysfs hides them; v2 or v1) and a busybox root filesystem at `rootfs`."""
    host.sh("mountpoint -q /sys/fs/cgroup || { "
            "if [ \"$(stat -f -c %T /proc/1/root/sys/fs/cgroup)\" = cgroup2fs ]; then "
            "mount -t cgroup2 cgroup2 /sys/fs/cgroup; else mount -t tmpfs cgroup /sys/fs/cgroup && "
            "for c in $(awk 'NR>1 && $4==1 {print $1}' /proc/cgroups); do mkdir -p /sys/fs/cgroup/$c && "
            "mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done; fi; }")
    host.sh(f"mkdir -p {rootfs}/bin {rootfs}/tmp && cp /bin/busybox {rootfs}/bin/ && for x in sh ping sleep ip "
            f"cat httpd wget sha256sum dd head mkdir; do ln -sf busybox {rootfs}/bin/$x; done")


class Docker:
    """dockerd from Debian on a lab host, as flannel's docs set it up: --bip and --mtu from
    subnet.env, its own data/exec roots and socket under /run/docker, busybox imported."""

    def __init__(self, host):
        self.host, self.dir = host, "/run/docker"
        runtime_host(host, "/run/docker/rootfs")
        env = host.subnet_env()
        self.log = open(os.path.join(host.lab.dir, f"dockerd-h{host.index}.log"), "w")
        p = subprocess.Popen(host.cmd([
            "dockerd", "--data-root", f"{self.dir}/data", "--exec-root", f"{self.dir}/exec", "--pidfile",
            f"{self.dir}/docker.pid", "-H", f"unix://{self.dir}/docker.sock", f"--bip={env['FLANNEL_SUBNET']}",
            f"--mtu={env['FLANNEL_MTU']}", "--storage-driver", "vfs", "--default-ulimit", "nofile=1024:1024",
            "--userland-proxy=false"]), stdout=self.log, stderr=subprocess.STDOUT)
        host.lab.pids.append(p)  # stopped after close() removed the containers
        host.lab.cleanups.append(self.close)
        wait_for(f"dockerd on h{host.index}", lambda: self("info", check=False).returncode == 0, 60)
        run(host.cmd(["sh", "-c", f"tar -C {self.dir}/rootfs -c . | docker -H unix://{self.dir}/docker.sock "
                                  "import - busybox-lab"]))

    def __call__(self, *args, check=True, timeout=60):
        return run(self.host.cmd(["docker", "-H", f"unix://{self.dir}/docker.sock", *args]), check=check,
                   timeout=timeout)

    def run_container(self, name, *cmd):
        self("run", "-d", "--name", name, "busybox-lab", *cmd)
        return self("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name).stdout.strip()

    def exec(self, name, *cmd, check=False):
        return self("exec", name, *cmd, check=check)

    def close(self):
        self("rm", "-f", "-v", *self("ps", "-aq", check=False).stdout.split(), check=False, timeout=120)


class Podman:
    """podman on a lab host, as an operator runs it with the CNI backend: private storage,
    containers.conf and network configs under /run/podman (the host's own tmpfs), cgroups
    mounted into the host's mount namespace, containers from a busybox root filesystem."""

    ROOTFS = "/run/podman/rootfs"

    def __init__(self, host):
        self.host, self.dir = host, "/run/podman"
        host.lab.cleanups.append(self.close)
        hard = int(run(["sh", "-c", "ulimit -Hn"]).stdout.strip() or 1024)
        self.ulimits = ["--ulimit", f"nofile={min(1024, hard)}:{min(1024, hard)}", "--ulimit", "nproc=1024:1024"]
        runtime_host(host, self.ROOTFS)
        conf = (f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{CNI_PATH}", "{os.path.dirname(CNI)}"]\n'
                f'network_config_dir = "{self.dir}/net.d"\n[engine]\ncgroup_manager = "cgroupfs"\n'
                f'events_logger = "file"\nruntime = "crun"\ntmp_dir = "{self.dir}/tmp"\n')
        host.sh(f"mkdir -p {self.dir}/net.d {self.dir}/tmp && cat > {self.dir}/containers.conf <<'EOF'\n{conf}EOF")

    def close(self):
        """Removes the containers (CNI DEL included); conmon and container processes that
        outlive that (this lab started them through podman) are killed by their pid files."""
        self("rm", "-f", "-a", "-t", "0", check=False, timeout=120)
        pids = self.host.sh(f"cat {self.dir}/runroot/vfs-containers/*/userdata/conmon.pid "
                            f"{self.dir}/runroot/vfs-containers/*/userdata/pidfile 2>/dev/null", check=False)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def network(self, name, plugin):
        """A CNI network for podman: a conflist with one plugin entry."""
        text = json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": [plugin]})
        self.host.sh(f"cat > {self.dir}/net.d/{name}.conflist <<'EOF'\n{text}\nEOF")

    def __call__(self, *args, check=True, timeout=60):
        return run(self.host.cmd(["env", f"CONTAINERS_CONF={self.dir}/containers.conf", "podman", "--root",
                                  f"{self.dir}/root", "--runroot", f"{self.dir}/runroot", "--storage-driver", "vfs",
                                  *args]), check=check, timeout=timeout)

    def run_container(self, name, network, *cmd):
        self("run", "-d", *self.ulimits, "--name", name, "--network", network, "--rootfs", self.ROOTFS, *cmd)
        return self.ip(name, network)

    def ip(self, name, network):
        return self("inspect", name, "--format", f"{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}").stdout.strip()

    def exec(self, name, *cmd, check=False):
        return self("exec", name, *cmd, check=check)



def cni_call(host, command, netns, cid, stdin, ifname="eth0", args=""):
    """The cppnet CNI plugin run as a runtime runs it: CNI_* environment, config on stdin."""
    env = [f"CNI_COMMAND={command}", f"CNI_CONTAINERID={cid}", f"CNI_NETNS={netns}", f"CNI_IFNAME={ifname}",
           f"CNI_PATH={CNI_PATH}"] + ([f"CNI_ARGS={args}"] if args else [])
    p = subprocess.run(host.cmd(["env", *env, CNI]), input=stdin, capture_output=True, text=True, timeout=30)
    try:
        out = json.loads(p.stdout) if p.stdout.strip() else {}
    except json.JSONDecodeError:
        out = {"raw": p.stdout}
    return p.returncode, out


def container(lab, host):
    """A container's network namespace as a runtime holds it: a process's /proc/PID/ns/net."""
    p = subprocess.Popen(host.cmd(["unshare", "--net", "sleep", "infinity"]), stdin=subprocess.DEVNULL)
    lab.pids.append(p)
    wait_for("container netns", lambda: subprocess.run(["readlink", f"/proc/{p.pid}/ns/net"], capture_output=True,
                                                         text=True).stdout != subprocess.run(
        ["readlink", f"/proc/{host.holder.pid}/ns/net"], capture_output=True, text=True).stdout, 5, 0.05)
    return p, f"/proc/{p.pid}/ns/net"


def in_netns(netns, argv, **kw):
    return subprocess.run(["nsenter", f"--net={netns}", "--", *argv], capture_output=True, text=True, **kw)


def cni_conf(network, **extra):
    """The network configuration a runtime passes for a cppnet network."""
    return json.dumps({"cniVersion": "1.0.0", "name": network, "type": "cppnet", "network": network, **extra})


class CniEndpoint:
    """A container attached to a cppnet network through the CNI plugin, as a runtime does."""

    def __init__(self, lab, host, network, cid, **extra):
        self.host, self.network, self.cid = host, network, cid
        self.proc, self.netns = container(lab, host)
        self.rc, self.result = cni_call(host, "ADD", self.netns, cid, cni_conf(network, **extra))
        ips = [i["address"].split("/")[0] for i in self.result.get("ips", [])]
        self.ip4 = next((a for a in ips if ":" not in a), None)
        self.ip6 = next((a for a in ips if ":" in a), None)
        self.mac = next((i.get("mac") for i in self.result.get("interfaces", []) if i.get("sandbox")), None)

    def run(self, argv, **kw):
        return in_netns(self.netns, argv, timeout=30, **kw)

    def ping(self, ip, count=2):
        return self.run(["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", ip])

    def delete(self):
        return cni_call(self.host, "DEL", self.netns, self.cid, cni_conf(self.network))


def require_root():
    if os.geteuid() != 0:
        print("SKIP: the namespace lab needs root")
        raise SystemExit(77)
    for tool in ("etcd", "etcdctl", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} is not installed (scripts/install-deps.sh)")
            raise SystemExit(77)
    for b in (AGENT, CTL):
        if not os.path.exists(b):
            raise SystemExit(f"{b} is not built")
