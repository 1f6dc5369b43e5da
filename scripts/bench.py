#!/usr/bin/env python3
"""cppnet benchmarks, side by side in one run (see scripts/bench.sh).

Topology: one underlay switch; for each mode a pair of hosts (veth underlay, MTU 1500)
with one container each behind the host's bridge. Modes:
  underlay       host to host, no overlay (the ceiling)
  kernel-hostgw  kernel routes to the peer's subnet via its underlay IP (flanneld host-gw)
  kernel-vxlan   a kernel vxlan device exactly like flanneld's flannel.1
  cppnet-vxlan, cppnet-udp, cppnet-hostgw
                 cppnet-agent with that backend (one etcd prefix per backend)
  kernel-macvlan a kernel macvlan (bridge mode) per container on the host's underlay,
                 untagged (no 8021q in this kernel): Docker's macvlan driver
  cppnet-macvlan, cppnet-vlan10
                 cppnet VLAN networks (BPF macvlan bridge) on the underlay, untagged and
                 on 802.1Q VLAN 10; containers attached by the CNI plugin
  cppnet-vxlan-nk, cppnet-hostgw-nk, cppnet-macvlan-nk, cppnet-vlan10-nk
                 the same cppnet modes with containers on netkit pairs (the CNI plugin, agent
                 --endpoint-device=netkit); n/a, with the agent's reason, on a kernel without
                 CONFIG_NETKIT. The rows above run with --endpoint-device=veth.
  underlay6, kernel-vxlan6, cppnet-vxlan6
                 the same over IPv6 (dual stack, EnableIPv6): host to host over the IPv6
                 underlay; flanneld's flannel-v6.1; cppnet-agent's VXLAN over IPv6. Their
                 RR figures come from tests/bench/tcp_rr (Debian's sockperf 3.7 has no
                 IPv6), which measures as sockperf ping-pong does; IPv6 rows are compared
                 with IPv6 bases only.
Every repeat runs all modes back to back, so machine drift cancels in the ratios;
the median of the per-repeat ratios is reported. Client and server are pinned to
different CPUs."""
import argparse
import datetime
import ipaddress
import json
import os
import re
import statistics
import subprocess
import sys
import time

from scripts import lab as L

NETKIT_MODES = ["cppnet-vxlan-nk", "cppnet-hostgw-nk", "cppnet-macvlan-nk", "cppnet-vlan10-nk"]
MODES = ["underlay", "kernel-hostgw", "kernel-vxlan", "cppnet-vxlan", "cppnet-udp", "cppnet-hostgw",
         "kernel-macvlan", "cppnet-macvlan", "cppnet-vlan10", *NETKIT_MODES, "underlay6", "kernel-vxlan6",
         "cppnet-vxlan6"]
VETH = "--endpoint-device=veth"  # the veth rows stay veth on a kernel with netkit
BASES = ("underlay", "kernel-vxlan", "kernel-macvlan", "underlay6", "kernel-vxlan6")  # ratio tables


def ipv6_mode(mode):
    return mode.endswith("6")
NA = {}  # mode -> why it cannot be measured yet
METRICS = [  # key, label, unit, higher is better
    ("tcp1_gbps", "TCP x1", "Gbit/s", True),
    ("tcp4_gbps", "TCP x4", "Gbit/s", True),
    ("rr_p50_us", "RR p50", "us", False),
    ("rr_avg_us", "RR avg", "us", False),
    ("rr_p99_us", "RR p99", "us", False),
    ("udp64_kpps", "UDP 64B", "kpps", True),
]


class Endpoint:
    """Where a workload runs: a host namespace (underlay mode) or a container."""

    def __init__(self, argv_prefix, ip, lab):
        self.prefix, self.ip, self.lab = argv_prefix, ip, lab

    def run(self, argv, timeout=120):
        return L.run(self.prefix + argv, timeout=timeout)

    def popen(self, argv):
        p = subprocess.Popen(self.prefix + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lab.pids.append(p)
        return p


def build(lab, args):
    """Every mode's host pair, configured at once."""
    pairs = {}
    lab.start_etcd()
    cfg = dict(L.VXLAN_CONFIG, SubnetMin="198.19.10.0")
    lab.put_config(cfg)
    # kernel-hostgw (its hosts also serve the underlay mode: no programs attached there)
    g1, g2 = lab.add_host(1), lab.add_host(2)
    for h, mine, peer, peer_ip in ((g1, 1, 2, g2.ip), (g2, 2, 1, g1.ip)):
        h.add_bridge_and_containers(f"198.19.{mine}.1/24", 1500, count=1)
        h.sh(f"ip route add 198.19.{peer}.0/24 via {peer_ip}")
    pairs["underlay"] = (Endpoint(g1.cmd([]), g1.ip, lab), Endpoint(g2.cmd([]), g2.ip, lab))
    pairs["kernel-hostgw"] = tuple(Endpoint(["ip", "netns", "exec", c.ns], c.ip, lab)
                                   for c in (g1.containers[0], g2.containers[0]))
    # kernel-vxlan, exactly as flanneld configures flannel.1
    v1, _ = lab.flannel_host(3, "198.19.3.0/24")
    v2, _ = lab.flannel_host(4, "198.19.4.0/24")
    for h, n in ((v1, 3), (v2, 4)):
        h.add_bridge_and_containers(f"198.19.{n}.1/24", 1450, count=1)
    lab.flannel_sync(v1)
    lab.flannel_sync(v2)
    pairs["kernel-vxlan"] = tuple(Endpoint(["ip", "netns", "exec", c.ns], c.ip, lab)
                                  for c in (v1.containers[0], v2.containers[0]))
    # cppnet, one host pair and one etcd prefix per backend
    for n, (mode, backend) in enumerate((("cppnet-vxlan", "vxlan"), ("cppnet-udp", "udp"),
                                         ("cppnet-hostgw", "host-gw"))):
        prefix = f"/bench/{backend}"
        lab.put_config(dict(cfg, Backend={"Type": backend}), prefix=prefix)
        c1, c2 = lab.add_host(5 + 2 * n), lab.add_host(6 + 2 * n)
        for h in (c1, c2):
            h.start_agent(f"--etcd-prefix={prefix}", VETH)
        for h in (c1, c2):
            env = h.subnet_env()
            h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1)
        L.wait_for(f"{mode} routes", lambda: len(c1.routes()) == 1 and len(c2.routes()) == 1)
        pairs[mode] = tuple(Endpoint(["ip", "netns", "exec", c.ns], c.ip, lab)
                            for c in (c1.containers[0], c2.containers[0]))
    # VLAN networks. Kernel macvlan: what Docker's driver creates (untagged here).
    m1, m2 = lab.add_host(11), lab.add_host(12)
    ends = []
    for h, ip in ((m1, "198.18.110.1"), (m2, "198.18.110.2")):
        cns = f"{h.ns}c1"
        L.run(["ip", "netns", "add", cns])
        lab.namespaces.append(cns)
        L.run(["ip", "-n", h.ns, "link", "add", "mv0", "link", "eth0", "type", "macvlan", "mode", "bridge"])
        L.run(["ip", "-n", h.ns, "link", "set", "mv0", "netns", cns])
        for c in (["link", "set", "lo", "up"], ["addr", "add", f"{ip}/24", "dev", "mv0"], ["link", "set", "mv0", "up"]):
            L.run(["ip", "-n", cns, *c])
        ends.append(Endpoint(["ip", "netns", "exec", cns], ip, lab))
    pairs["kernel-macvlan"] = tuple(ends)
    # cppnet: the same as VLAN networks on the underlay, untagged and on VLAN 10.
    lab.put_config(cfg, prefix="/bench/vlan")
    p1, p2 = lab.add_host(13), lab.add_host(14)
    for h in (p1, p2):
        h.start_agent("--etcd-prefix=/bench/vlan", VETH)
        h.subnet_env()
    vlan_pairs(lab, pairs, p1, p2, (("cppnet-macvlan", "eth0", 111), ("cppnet-vlan10", "eth0.10", 100)))
    L.wait_for("cppnet VLAN trunk", lambda: all("VLAN trunk eth0" in h.log() for h in (p1, p2)), 10)
    if any(m in args.modes.split(",") for m in NETKIT_MODES):
        build_netkit(lab, cfg, pairs)
    # IPv6: flannel-v6.1 pairs (their hosts also serve underlay6) and cppnet dual stack.
    k1, _, gw1 = lab.flannel_host6(15, "198.19.15.0/24", "2001:db8:100:15::/64")
    k2, _, gw2 = lab.flannel_host6(16, "198.19.16.0/24", "2001:db8:100:16::/64")
    for h, n, gw6 in ((k1, 15, gw1), (k2, 16, gw2)):
        h.add_bridge_and_containers(f"198.19.{n}.1/24", 1430, count=1, subnet6_gw=gw6)
    lab.flannel_sync(k1)
    lab.flannel_sync(k2)
    pairs["underlay6"] = (Endpoint(k1.cmd([]), k1.ip6, lab), Endpoint(k2.cmd([]), k2.ip6, lab))
    pairs["kernel-vxlan6"] = tuple(Endpoint(["ip", "netns", "exec", c.ns], c.ip6, lab)
                                   for c in (k1.containers[0], k2.containers[0]))
    prefix = "/bench/vxlan6"
    lab.put_config(dict(cfg, EnableIPv6=True, IPv6Network="2001:db8:200::/48"), prefix=prefix)
    d1, d2 = lab.add_host(17, ipv6=True), lab.add_host(18, ipv6=True)
    for h in (d1, d2):
        h.start_agent(f"--etcd-prefix={prefix}")
    for h in (d1, d2):
        env = h.subnet_env()
        h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1,
                                    subnet6_gw=env["FLANNEL_IPV6_SUBNET"])
    L.wait_for("cppnet-vxlan6 routes", lambda: len(d1.routes()) == 2 and len(d2.routes()) == 2)
    pairs["cppnet-vxlan6"] = tuple(Endpoint(["ip", "netns", "exec", c.ns], c.ip6, lab)
                                   for c in (d1.containers[0], d2.containers[0]))
    for mode, (a, b) in pairs.items():  # sanity: the path works before it is measured
        # Polled with a deadline: a fresh IPv6 address may still be tentative (DAD), a
        # neighbour unresolved, on a loaded machine.
        try:
            L.wait_for(f"{mode}: {a.ip} reaches {b.ip}", lambda: L.run(
                a.prefix + ["ping", "-c", "1", "-W", "1", b.ip], check=False).returncode == 0, 15)
        except Exception as e:
            raise L.LabError(f"{mode}: {a.ip} cannot reach {b.ip}") from e
    return pairs


def cni_endpoint(lab, h, mode, network, cid):
    """A container attached to `network` on host h by the CNI plugin, as an Endpoint."""
    e = L.CniEndpoint(lab, h, network, cid)
    if e.rc != 0:
        raise L.LabError(f"{mode}: CNI ADD: {e.result}")
    return Endpoint(["nsenter", f"--net={e.netns}", "--"], e.ip4, lab)


def vlan_pairs(lab, pairs, p1, p2, modes):
    """For each (mode, parent, third octet): a macvlan VLAN network on both hosts (198.18.<third>.0/24,
    each host its half) with one container each."""
    for mode, parent, third in modes:
        for h, rng in ((p1, 0), (p2, 128)):
            h.ctl("network", "create", "-d", "macvlan", "--subnet", f"198.18.{third}.0/24", "--ip-range",
                  f"198.18.{third}.{rng}/25", "-o", f"parent={parent}", f"n{third}")
        pairs[mode] = tuple(cni_endpoint(lab, h, mode, f"n{third}", f"bench{third}") for h in (p1, p2))


def build_netkit(lab, cfg, pairs):
    """The netkit rows: a host pair per overlay backend with containers from the CNI plugin, the
    VLAN networks on the vxlan pair. An agent told --endpoint-device=netkit exits on a kernel
    without netkit: its reason marks the rows n/a."""
    hosts = {}
    for n, (mode, backend) in enumerate((("cppnet-vxlan-nk", "vxlan"), ("cppnet-hostgw-nk", "host-gw"))):
        prefix = f"/bench/nk-{backend}"
        lab.put_config(dict(cfg, Backend={"Type": backend}), prefix=prefix)
        c1, c2 = lab.add_host(19 + 2 * n), lab.add_host(20 + 2 * n)
        for h in (c1, c2):
            h.start_agent(f"--etcd-prefix={prefix}", "--endpoint-device=netkit")
        try:
            L.wait_for("netkit agents", lambda: all(h.agent.poll() is not None or "VLAN endpoints:" in h.log()
                                                    for h in (c1, c2)), 30)
        except L.LabError as e:
            raise L.LabError(f"{e}; agent logs: {c1.log()[-800:]} {c2.log()[-800:]}") from e
        if c1.agent.poll() is not None:
            why = next((ln.split(" E ", 1)[-1] for ln in c1.log().splitlines() if "netkit" in ln),
                       f"the agent exited ({c1.agent.returncode})")
            for m in NETKIT_MODES:
                NA[m] = why
            return
        for h in (c1, c2):
            h.subnet_env()
        L.wait_for(f"{mode} routes", lambda: len(c1.routes()) == 1 and len(c2.routes()) == 1)
        pairs[mode] = tuple(cni_endpoint(lab, h, mode, "overlay", f"bench{mode}") for h in (c1, c2))
        hosts[backend] = (c1, c2)
    vlan_pairs(lab, pairs, *hosts["vxlan"], (("cppnet-macvlan-nk", "eth0", 112),
                                              ("cppnet-vlan10-nk", "eth0.10", 101)))


def pinned(cpu, argv):
    return ["taskset", "-c", str(cpu)] + argv


def iperf_tcp(a, b, streams, secs):
    srv = b.popen(pinned(0, ["iperf3", "-s", "-1", "-p", "5201"]))
    L.wait_for("iperf3 server", lambda: ":5201" in b.run(["ss", "-ltn"]).stdout, 10, 0.05)
    out = a.run(pinned(1, ["iperf3", "-c", b.ip, "-p", "5201", "-t", str(secs), "-P", str(streams), "-J"]),
                timeout=secs + 30)
    srv.wait(timeout=10)
    return json.loads(out.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf_udp64(a, b, secs):
    srv = b.popen(pinned(0, ["iperf3", "-s", "-1", "-p", "5202"]))
    L.wait_for("iperf3 server", lambda: ":5202" in b.run(["ss", "-ltn"]).stdout, 10, 0.05)
    out = a.run(pinned(1, ["iperf3", "-c", b.ip, "-p", "5202", "-u", "-l", "64", "-b", "0", "-t", str(secs), "-J"]),
                timeout=secs + 30)
    srv.wait(timeout=10)
    s = json.loads(out.stdout)["end"]["sum"]
    return (s["packets"] - s["lost_packets"]) / s["seconds"] / 1e3


TCP_RR = os.path.join(L.BUILD, "tests", "tcp_rr")


def tcp_rr(a, b, secs):
    """RR over IPv6: tests/bench/tcp_rr, one-way latency in microseconds as sockperf reports."""
    srv = b.popen(pinned(0, [TCP_RR, "server", b.ip, "11112"]))
    try:
        if "listening" not in srv.stdout.readline():
            raise L.LabError(f"tcp_rr server on {b.ip}: {srv.stderr.read()}")
        r = json.loads(a.run(pinned(1, [TCP_RR, "client", b.ip, "11112", str(secs)]), timeout=secs + 30).stdout)
    finally:
        if srv.poll() is None:
            srv.terminate()
        srv.wait(timeout=10)
    return r["avg_us"], r["p50_us"], r["p99_us"]


def sockperf_rr(a, b, secs):
    srv = b.popen(pinned(0, ["sockperf", "server", "--tcp", "-i", b.ip, "-p", "11111"]))
    try:
        L.wait_for("sockperf server", lambda: ":11111" in b.run(["ss", "-ltn"]).stdout, 10, 0.05)
        out = a.run(pinned(1, ["sockperf", "ping-pong", "--tcp", "-i", b.ip, "-p", "11111", "-m", "64", "-t", str(secs)]),
                    timeout=secs + 30).stdout
    finally:
        srv.terminate()
        srv.wait(timeout=10)
    # sockperf reports one-way latency (half the round trip), in microseconds.
    avg = float(re.search(r"avg-lat(?:ency)?=\s*([\d.]+)", out).group(1))
    p50 = float(re.search(r"percentile 50\.000 =\s*([\d.]+)", out).group(1))
    p99 = float(re.search(r"percentile 99\.000 =\s*([\d.]+)", out).group(1))
    return avg, p50, p99


def cpu_busy(window=0.5):
    """Fraction of all CPUs' time spent busy over `window` seconds (/proc/stat)."""
    def sample():
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(f), f[3] + f[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(max_wait=5):
    """Wait (bounded) until the CPUs are idle (under 10 % busy over half a second):
    the 1-minute load average lags far behind, so the current CPU use decides.
    Returns (busy fraction last seen, 1-minute load) for the log."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy()
        if busy < 0.10 or time.monotonic() > deadline:
            return busy, float(open("/proc/loadavg").read().split()[0])


class Profile:
    """A system-wide CPU profile (perf record -a -g, cpu-clock) around one measurement, saved as
    DIR/<name>.data with a per-CPU summary DIR/<name>.txt: the busy share of each CPU and its
    top symbols (self time). The client runs on CPU 1, the server on CPU 0; on veth the sender's
    CPU also does the softirq work of every hop up to the receiving socket."""

    IDLE = ("pv_native_safe_halt", "default_idle", "native_safe_halt", "cpuidle", "acpi_idle", "mwait_idle",
            "do_idle", "poll_idle", "arch_cpu_idle", "default_idle_call")

    def __init__(self, directory, name):
        self.dir, self.name = directory, name

    def __enter__(self):
        if not self.dir:
            return self
        os.makedirs(self.dir, exist_ok=True)
        self.data = os.path.join(self.dir, self.name + ".data")
        self.proc = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-a", "-g",
                                      "-o", self.data], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        # perf has opened its events once it created the file's header
        L.wait_for("perf record", lambda: self.proc.poll() is not None or os.path.exists(self.data), 10, 0.05)
        if self.proc.poll() is not None:
            raise L.LabError(f"perf record: {self.proc.stderr.read().strip()}")
        return self

    # Where a packet's time goes, inclusive (with what they call), as a share of each CPU.
    STAGES = ("tcp_sendmsg", "tcp_recvmsg", "udp_sendmsg", "net_rx_action", "process_backlog", "veth_xmit",
              "tcf_classify", "tcx_run", "skb_do_redirect", "bpf_skb_adjust_room", "pskb_expand_head",
              "__skb_gso_segment", "br_handle_frame", "vxlan_xmit", "vxlan_rcv", "ip_forward", "sock_def_readable",
              "_copy_from_iter", "_copy_to_iter")

    def _report(self, cpu, *how):
        out = L.run(["perf", "report", "-i", self.data, "--stdio", "-g", "none", "--cpu", str(cpu), "--sort", "sym",
                     "--percent-limit", "0.2", *how], timeout=300).stdout
        return [(float(m.group(1)), m.group(2)) for m in re.finditer(r"^\s+([\d.]+)%.*?\[.\]\s+(\S+)", out, re.M)]

    def __exit__(self, *exc):
        if not self.dir:
            return False
        self.proc.send_signal(2)  # SIGINT: perf writes its data and exits
        self.proc.wait(timeout=60)
        lines = []
        for cpu in range(os.cpu_count()):
            own = self._report(cpu, "--no-children")
            idle = sum(p for p, sym in own if sym.startswith(self.IDLE))
            lines.append(f"CPU {cpu}: busy {100 - idle:.1f} %; self time, top symbols:")
            lines += [f"  {p:5.1f} %  {sym}" for p, sym in own if not sym.startswith(self.IDLE)][:20]
            incl = dict((sym, p) for p, sym in self._report(cpu, "--children"))
            lines.append(f"CPU {cpu}: inclusive, by stage:")
            lines += [f"  {incl[s]:5.1f} %  {s}" for s in self.STAGES if s in incl]
            lines += [f"  {p:5.1f} %  {sym}" for sym, p in incl.items() if sym.startswith("bpf_prog_")]
        with open(os.path.join(self.dir, self.name + ".txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
        return False


def measure(pair, secs, rr_secs, profile=None, name=""):
    a, b = pair
    with Profile(profile, f"{name}-tcp1"):
        r = {"tcp1_gbps": iperf_tcp(a, b, 1, secs)}
    r["tcp4_gbps"] = iperf_tcp(a, b, 4, secs)
    rr = tcp_rr if ":" in b.ip else sockperf_rr
    r["rr_avg_us"], r["rr_p50_us"], r["rr_p99_us"] = rr(a, b, rr_secs)
    with Profile(profile, f"{name}-udp64"):
        r["udp64_kpps"] = iperf_udp64(a, b, rr_secs)
    return r


CP_BENCH = os.path.join(L.BUILD, "tests", "cp_bench")
BPF_BENCH = os.path.join(L.BUILD, "tests", "bpf_bench")


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return int(fields[11]) + int(fields[12]), rss_kb


# Writes one lease overlapping another (10.0.0.0/25 over cp_bench's 10.0.0.64/26) n times at `rate`
# per second with a new PublicIP each time, through etcd's JSON gateway on one connection.
FLOOD = r"""
import base64, http.client, json, sys, time, urllib.parse
n, rate, url = int(sys.argv[1]), float(sys.argv[2]), urllib.parse.urlparse(sys.argv[3])
conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
key = base64.b64encode(b"/coreos.com/network/subnets/10.0.0.0-25").decode()
t0 = time.monotonic()
for i in range(n):
    time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    v = json.dumps({"PublicIP": f"198.18.9.{i % 200 + 1}", "BackendType": "vxlan"}).encode()
    conn.request("POST", "/v3/kv/put", json.dumps({"key": key, "value": base64.b64encode(v).decode()}))
    conn.getresponse().read()
conn.request("POST", "/v3/kv/deleterange", json.dumps({"key": key}))
conn.getresponse().read()
"""


def control_plane(leases, changes, rate, idle_window=10):
    """Start-up sync of `leases` existing leases, RSS and idle CPU, then lease→map latency of
    `changes` lease writes and deletions at `rate` per second, and that latency (20 changes/s)
    while another writer floods an overlapping lease at 200 writes/s."""
    with L.Lab("cpbench") as lab:
        lab.start_etcd()
        # cp_bench writes /26 subnets from 10.0.0.64 up (data only: no packet goes to them);
        # the agent leases above them.
        lab.put_config({"Network": "10.0.0.0/8", "SubnetLen": 26, "SubnetMin": "10.200.0.0",
                        "Backend": {"Type": "vxlan"}})
        h = lab.add_host(1)
        env = {**os.environ, "CPPNET_ETCD_ENDPOINTS": L.ETCD}
        t_fill = time.monotonic()
        subprocess.run(h.cmd([CP_BENCH, "fill", str(leases)]), check=True, env=env, timeout=1200)
        print(f"  {leases} leases written in {time.monotonic() - t_fill:.0f} s", flush=True)
        t0 = time.monotonic_ns()
        h.start_agent()
        done = subprocess.run(h.cmd([CP_BENCH, "wait-count", str(leases), "60"]), check=True, env=env,
                              capture_output=True, text=True, timeout=90)
        sync_s = (int(done.stdout) - t0) / 1e9
        time.sleep(min(2, idle_window))  # let start-up work settle before measuring idle cost
        cpu0, _ = proc_stat(h.agent.pid)
        time.sleep(idle_window)  # a measurement window, not synchronisation
        cpu1, rss_kb = proc_stat(h.agent.pid)
        idle_cpu_pct = 100.0 * (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") / idle_window
        lat = subprocess.run(h.cmd([CP_BENCH, "latency", str(changes), str(leases + 1), str(rate)]), env=env,
                             capture_output=True, text=True, timeout=900)
        if lat.returncode != 0:
            raise L.LabError(f"cp_bench latency: {lat.stderr or lat.stdout}")
        _, rss_after_kb = proc_stat(h.agent.pid)
        # The same latency while an etcd writer floods a lease that overlaps another (each of its
        # writes changes which lease wins, so routes are computed from all leases).
        lat_n, flood_rate = max(20, changes // 10), 200
        flood_n = lat_n * flood_rate // 20  # as long as the latency run (20 changes/s)
        fl = subprocess.Popen(h.cmd([sys.executable, "-c", FLOOD, str(flood_n), str(flood_rate), L.ETCD]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lab.pids.append(fl)
        under = subprocess.run(h.cmd([CP_BENCH, "latency", str(lat_n), str(leases + changes + 1),
                                      "20"]), env=env, capture_output=True, text=True, timeout=900)
        out, err = fl.communicate(timeout=300)
        if fl.returncode != 0 or not under.stdout.strip():
            raise L.LabError(f"flood: {err[-300:]} {under.stderr[-300:]}")
        flood = {f"flood_{k}": v for k, v in json.loads(under.stdout).items()}
        return {"leases": leases, "startup_sync_s": round(sync_s, 3), "rss_mb": round(rss_kb / 1024, 1),
                "idle_cpu_percent": round(idle_cpu_pct, 2), **json.loads(lat.stdout),
                "rss_after_changes_mb": round(rss_after_kb / 1024, 1), "flood_puts_per_s": flood_rate, **flood}


def reaction(quick):
    """How fast the agent follows the host: a host's first container (bridge created after the
    agent started) to its first cross-host reply, a new veth to its program, an underlay address
    change to the lease re-published; and what an idle agent does (strace)."""
    with L.Lab("react") as lab:
        lab.start_etcd()
        lab.put_config({"Network": "198.19.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}})
        h1, h2 = lab.add_host(1), lab.add_host(2)
        for h in (h1, h2):
            h.start_agent()
        env2 = h2.subnet_env()
        peer = h2.add_bridge_and_containers(env2["FLANNEL_SUBNET"], env2["FLANNEL_MTU"], count=1)[0]
        env1 = h1.subnet_env()
        L.wait_for("h1 route to h2", lambda: any(r["public_ip"] == h2.ip for r in h1.routes().values()))
        # The first container of h1: bridge and veth appear now; ping every 2 ms from the moment
        # the veth is on the bridge (as a runtime starts the container right after).
        gw = ipaddress.ip_interface(env1["FLANNEL_SUBNET"])
        cns = f"{h1.ns}c1"
        L.run(["ip", "netns", "add", cns])
        lab.namespaces.append(cns)
        h1.sh(f"ip link add cni0 type bridge && ip link set cni0 mtu {env1['FLANNEL_MTU']} && "
              f"ip addr add {gw} dev cni0 && ip link set cni0 up")
        L.run(["ip", "-n", h1.ns, "link", "add", "veth1", "mtu", env1["FLANNEL_MTU"], "type", "veth",
               "peer", "name", "eth0", "netns", cns])
        L.run(["ip", "-n", cns, "addr", "add", f"{gw.network.network_address + 2}/24", "dev", "eth0"])
        L.run(["ip", "-n", cns, "link", "set", "eth0", "up"])
        L.run(["ip", "-n", cns, "route", "add", "default", "via", str(gw.ip)])
        h1.sh("ip link set veth1 master cni0 && ip link set veth1 up")
        t0 = time.time()
        out = L.run(["ip", "netns", "exec", cns, "ping", "-n", "-D", "-i", "0.002", "-c", "100", "-W", "1",
                     peer.ip], check=False, timeout=30).stdout
        replies = [(int(m.group(2)), float(m.group(1)))
                   for m in re.finditer(r"\[([0-9.]+)\].*icmp_seq=(\d+)", out)]
        first = {"first_reply_ms": round((replies[0][1] - t0) * 1000, 1) if replies else None,
                 "lost_before_first_reply": replies[0][0] - 1 if replies else None}
        env = {**os.environ, "CPPNET_ETCD_ENDPOINTS": L.ETCD}
        n = 3 if quick else 20
        att = subprocess.run(h1.cmd([CP_BENCH, "attach", str(n), "cni0"]), env=env, capture_output=True,
                             text=True, timeout=120)
        if att.returncode != 0:
            raise L.LabError(f"cp_bench attach: {att.stderr or att.stdout}")
        # Idle: nothing changes for the window; count the agent's netlink requests and
        # directory/file lookups.
        window = 1 if quick else 10
        time.sleep(1)  # let the last veth's removal settle; a measurement gap, not synchronisation
        trace = os.path.join(lab.dir, "idle.strace")
        st = subprocess.Popen(["strace", "-f", "-qq", "-yy", "-e",
                               "trace=sendto,sendmsg,getdents64,openat,newfstatat,statx",
                               "-o", trace, "-p", str(h1.agent.pid)])
        lab.pids.append(st)
        time.sleep(window)  # the measurement window
        st.terminate()
        st.wait(timeout=10)
        lines = open(trace).read().splitlines() if os.path.exists(trace) else []
        idle = {"idle_window_s": window,
                "idle_netlink_requests": sum("NETLINK" in ln and "send" in ln for ln in lines),
                "idle_dir_and_file_lookups": sum(any(c in ln for c in ("getdents64(", "openat(", "stat"))
                                                 for ln in lines)}
        rep = subprocess.run(["ip", "netns", "exec", lab.sw, CP_BENCH, "republish", str(2 if quick else 10),
                              h1.ns, "eth0", h1.ip, "198.18.0.101"], env=env, capture_output=True, text=True,
                             timeout=300)
        if rep.returncode != 0:
            raise L.LabError(f"cp_bench republish: {rep.stderr or rep.stdout}")
        return {**first, **json.loads(att.stdout), **idle, **json.loads(rep.stdout)}


def report(samples, modes):
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    lines = []
    hdr = f"{'mode':17}" + "".join(f"{label + ' (' + unit + ')':>17}" for _, label, unit, _ in METRICS)
    lines.append(hdr)
    for mode in MODES:
        if mode in NA:
            lines.append(f"{mode:17}  n/a: {NA[mode]}")
            continue
        if mode not in modes:
            continue
        row = f"{mode:17}"
        for key, *_ in METRICS:
            row += f"{med([s[mode][key] for s in samples]):>17.2f}"
        lines.append(row)
    for base in [b for b in BASES if b in modes]:
        lines.append(f"\nratio to {base} (median of per-repeat ratios; >1 is better for throughput/rate, <1 for latency)")
        lines.append(hdr)
        for mode in (m for m in modes if ipv6_mode(m) == ipv6_mode(base)):
            row = f"{mode:17}"
            for key, *_ in METRICS:
                row += f"{med([s[mode][key] / s[base][key] for s in samples]):>17.2f}"
            lines.append(row)
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10, help="TCP throughput duration")
    ap.add_argument("--rr-seconds", type=int, default=3, help="latency and UDP rate duration")
    ap.add_argument("--out", default=os.path.join(L.BUILD, "bench", "results.json"))
    ap.add_argument("--parts", default="datapath,micro,control",
                    help="comma list of: datapath (the mode table), micro (BPF_PROG_TEST_RUN), control")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of modes to measure (default: all)")
    ap.add_argument("--leases", type=int, default=100000)
    ap.add_argument("--changes", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=100, help="lease changes per second in the latency run")
    ap.add_argument("--profile", metavar="DIR",
                    help="record a CPU profile (perf record -a -g) of each mode's single-stream TCP and 64-byte UDP "
                         "runs into DIR, with a per-CPU top-symbol summary (<mode>-<test>-r<repeat>.txt)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (ctest bench.quick): every part and mode once, about a second each")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.seconds, args.rr_seconds, args.leases, args.changes = 1, 1, 1, 200, 50
    L.require_root()
    parts = args.parts.split(",")
    result = {"date": datetime.datetime.utcnow().isoformat() + "Z", "kernel": os.uname().release,
              "cpus": os.cpu_count(), "args": vars(args)}
    if "micro" in parts:
        out = L.run([BPF_BENCH, "10000" if args.quick else "1000000"], timeout=300).stdout
        result["micro"] = json.loads(out)
        print("BPF_PROG_TEST_RUN ns/packet:", json.dumps(result["micro"]["ns_per_packet"]), flush=True)
    if "control" in parts:
        result["control_plane"] = control_plane(args.leases, args.changes, args.rate, 1 if args.quick else 10)
        print("control plane:", json.dumps(result["control_plane"]), flush=True)
        result["reaction"] = reaction(args.quick)
        print("reaction:", json.dumps(result["reaction"]), flush=True)
    if "datapath" in parts:
        datapath(args, result)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nresults and raw samples: {args.out}")
    if args.quick:  # the smoke test: every figure was measured
        figures = [v for m in result.get("samples", [{}])[0].values() for v in m.values()]
        figures += list(result.get("micro", {}).get("ns_per_packet", {}).values())
        if not figures or any(not v or v <= 0 for v in figures):
            sys.exit("bench --quick: a figure is missing or zero")


def datapath(args, result):
    wanted = args.modes.split(",")
    samples, loads = [], []
    with L.Lab("bench") as lab:
        pairs = build(lab, args)
        modes = [m for m in MODES if m not in NA and m in wanted]  # netkit rows: known after build
        for rep in range(args.repeats):
            busy, load = wait_quiet()
            loads.append({"cpu_busy": round(busy, 3), "loadavg_1m": load})
            print(f"repeat {rep + 1}/{args.repeats} (CPU busy {busy * 100:.0f} %, load {load:.2f})", flush=True)
            s = {}
            for mode in modes:
                s[mode] = measure(pairs[mode], args.seconds, args.rr_seconds, args.profile, f"{mode}-r{rep + 1}")
                print(f"  {mode:17} " + "  ".join(f"{k}={v:.2f}" for k, v in s[mode].items()), flush=True)
            samples.append(s)
    text = report(samples, modes)
    print("\n" + text, flush=True)
    result.update({"quiet_before_repeat": loads, "not_available": NA, "samples": samples, "table": text})


if __name__ == "__main__":
    main()
