"""Shared helpers for the namespace-lab integration tests: a checker that prints
one line per assertion and a summary, and dumps agent logs when something fails."""
import os
import subprocess
import sys
import time
import traceback

from scripts import lab as L


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   - {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL - {name} {detail}", flush=True)
        return cond

    def finish(self, lab=None, error=None):
        if error is not None:
            self.failed += 1
            print("FAIL - scenario aborted:", error, flush=True)
            traceback.print_exception(error)
        if lab is not None and self.failed:
            for h in lab.hosts.values():
                if os.path.exists(h.log_path):
                    print(f"--- agent log h{h.index} ---\n{h.log()}")
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def run_scenario(name, scenario):
    L.require_root()
    c = Checker()
    try:
        with L.Lab(name) as lab:
            try:
                scenario(lab, c)
            except Exception as e:  # report with the agents' logs while they exist, then clean up
                return c.finish(lab, e)
            return c.finish(lab)
    except Exception as e:  # the lab itself could not be built
        return c.finish(None, e)


def overlay_hosts(lab, n=2, containers=1):
    """n hosts running agents (etcd and config already in place), each with `containers`
    containers behind its bridge (0: none), once every host has a route to every other."""
    hosts = [lab.add_host(i + 1) for i in range(n)]
    for h in hosts:
        h.start_agent()
    for h in hosts:
        env = h.subnet_env()
        if containers:
            h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=containers)
    L.wait_for("routes", lambda: all(len(h.routes()) == n - 1 for h in hosts))
    return hosts


def late_join(lab, c, index, known_by, src, what):
    """A host (with one container) joins now: known_by learns its subnet and `src` reaches it."""
    h = lab.add_host(index)
    h.start_agent()
    env = h.subnet_env()
    h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1)
    before = len(known_by.routes())
    L.wait_for(f"h{index} known to h{known_by.index}", lambda: len(known_by.routes()) > before or
               h.subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0/") in known_by.routes(), 20)
    # ... and the other way round: the answer needs the new host's route to known_by.
    back = known_by.subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0/")
    L.wait_for(f"h{index} knows h{known_by.index}", lambda: back in h.routes(), 20)
    # Two tries: the first packet to a brand-new host waits for neighbour resolution on both
    # underlays and its bridge (one such ping timed out in 2 s once under CI load).
    p = src.ping(h.containers[0].ip, count=2)
    c.check(f"a host joining {what} is reachable", p.returncode == 0, p.stdout[-200:])
    return h


def cross_pairs(hosts):
    cs = [c for h in hosts for c in h.containers]
    return [(a, b) for i, a in enumerate(cs) for b in cs[i + 1:] if a.host is not b.host]


# The CNI helpers live in the lab (the demo uses them too).
cni_call, container, in_netns = L.cni_call, L.container, L.in_netns


def ipv6_hosts(lab, config, n=2):
    """etcd with `config` and n hosts with IPv6 underlays running agents; returns (hosts, their
    subnet.env)."""
    lab.start_etcd()
    lab.put_config(config)
    hosts = [lab.add_host(i + 1, ipv6=True) for i in range(n)]
    for h in hosts:
        h.start_agent()
    return hosts, [h.subnet_env() for h in hosts]


def ping6(c, a, ip6, what):
    """Two pings from container (or host) `a` to `ip6`, checked."""
    p = a.exec(["ping", "-6", "-n", "-c", "2", "-W", "2", ip6], check=False, timeout=15)
    return c.check(f"{what}: ping {ip6}", p.returncode == 0, p.stdout[-300:] + p.stderr[-200:])


def timed_transfer(lab, src_ns, dst_ns, dst_ip, size, port):
    """`size` bytes over TCP from one network namespace to another: (seconds, sha256 matches)."""
    sink = subprocess.Popen(["nsenter", f"--net={dst_ns}", "--", "python3", "-c", L.SINK, str(port), "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.pids.append(sink)
    sink.stdout.readline()  # listening
    t0 = time.monotonic()
    sent = in_netns(src_ns, ["python3", "-c", L.SOURCE, dst_ip, str(port), str(size)], timeout=60).stdout.split()
    got, _ = sink.communicate(timeout=60)
    return time.monotonic() - t0, len(sent) == 2 and sent == got.split()


# Prints a netkit device's IFLA_NETKIT_HEADROOM (Linux 6.14+ reports it; "none" before), read
# from an RTM_GETLINK answer: bookworm's iproute2 does not decode netkit.
NETKIT_HEADROOM = r"""
import socket, struct, sys
def attrs(b):
    i = 0
    while i + 4 <= len(b):
        n, t = struct.unpack_from("HH", b, i)
        if n < 4:
            return
        yield t & 0x3FFF, b[i + 4:i + n]
        i += (n + 3) & ~3
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
ifi = struct.pack("BxHiII", 0, 0, socket.if_nametoindex(sys.argv[1]), 0, 0)
s.send(struct.pack("=LHHLL", 16 + len(ifi), 18, 1, 1, 0) + ifi)  # RTM_GETLINK, NLM_F_REQUEST
msg = s.recv(65536)
found = [struct.unpack("H", v3[:2])[0] for t, v in attrs(msg[32:struct.unpack_from("=L", msg)[0]]) if t == 18
         for t2, v2 in attrs(v) if t2 == 2 for t3, v3 in attrs(v2) if t3 == 8]
print(found[0] if found else "none")
"""


def netkit_headroom_check(c, run, ifname, want, what):
    """On Linux 6.14+ the netkit pair carries the headroom the plugin asked for; before, the
    kernel ignores the request and creation works all the same."""
    got = run(["python3", "-c", NETKIT_HEADROOM, ifname]).stdout.strip()
    major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    if (major, minor) >= (6, 14):
        c.check(f"netkit {what}: headroom {want} bytes for the program's header (IFLA_NETKIT_HEADROOM)",
                got == str(want), got)
    else:
        c.check(f"netkit {what}: kernel {os.uname().release} predates netkit headroom; the pair works without it",
                got == "none", got)
