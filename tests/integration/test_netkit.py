#!/usr/bin/env python3
"""VLAN endpoints on netkit (issue 16): the agent finds netkit in the kernel and tells the CNI
plugin, which gives each endpoint a netkit pair (the container's end dropping everything until
the agent's program is attached as BPF_NETKIT_PEER through the host end); between endpoints on
one host, to an endpoint on another host over the trunk (untagged and VLAN 10, tags seen on the
wire), the source check, CNI DEL; overlay containers on netkit (integration.cni's scenario run
on the netkit kernel; the VLAN and dual-stack scenarios again on trixie-backports' newest kernel);
and on a kernel without netkit the agent falls back to veth.
This machine's kernel has no netkit (CONFIG_NETKIT is not set): the scenario then runs in a
guest with Debian trixie's kernel (scripts/vm.py, emulated), and the fallback runs here."""
import json
import os
import sys

from .common import L, ipv6_hosts, netkit_headroom_check, run_scenario


def netkit_kernel():
    """Does this kernel create netkit devices? (The agent says so in its log.)"""
    return os.environ.get("CPPNET_IN_VM") == "1"


def vlan_pair(lab):
    """Two hosts on the lab's switch, each with an agent and a VLAN network on its underlay
    (untagged) and one on VLAN 10; returns the hosts."""
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    hosts = [lab.add_host(1), lab.add_host(2)]
    for h in hosts:
        h.start_agent()
        h.subnet_env()
    for h, rng in zip(hosts, (0, 128)):
        for name, parent, third in (("flat", "eth0", 120), ("v10", "eth0.10", 121)):
            h.ctl("network", "create", "-d", "macvlan", "--subnet", f"198.18.{third}.0/24", "--ip-range",
                  f"198.18.{third}.{rng}/25", "-o", f"parent={parent}", name)
    return hosts


def scenario(lab, c):
    hosts = vlan_pair(lab)
    h1, h2 = hosts
    L.wait_for("agents chose the endpoint device", lambda: all("VLAN endpoints:" in h.log() for h in hosts), 30)
    c.check("the agent finds netkit in the kernel", "VLAN endpoints: netkit devices" in h1.log(), h1.log()[-600:])
    a = L.CniEndpoint(lab, h1, "flat", "nka")
    b = L.CniEndpoint(lab, h1, "flat", "nkb")
    r = L.CniEndpoint(lab, h2, "flat", "nkr")
    c.check("CNI ADD on netkit: three endpoints", all(e.rc == 0 for e in (a, b, r)),
            [e.result for e in (a, b, r)])
    kind = a.run(["ip", "-d", "-j", "link", "show", "eth0"]).stdout
    info = json.loads(kind)[0] if kind.strip().startswith("[") else {}
    c.check("the container's interface is a netkit device with the endpoint's MAC",
            info.get("linkinfo", {}).get("info_kind") == "netkit" and info.get("address") == a.mac, kind[:400])
    netkit_headroom_check(c, a.run, "eth0", 4, "VLAN endpoint")
    for src, dst, what in ((a, b, "between endpoints on one host"), (a, r, "to an endpoint on another host"),
                           (r, b, "from another host")):
        p = src.ping(dst.ip4)
        c.check(f"netkit: ping {what} ({src.ip4} -> {dst.ip4})", p.returncode == 0, p.stdout[-300:])
    p = a.run(["ping", "-n", "-c", "3", "-i", "0.2", "-s", "1400", "-W", "2", r.ip4])
    c.check("netkit: 1400-byte pings to another host", p.returncode == 0, p.stdout[-300:])
    t1 = L.CniEndpoint(lab, h1, "v10", "nkt1")
    t2 = L.CniEndpoint(lab, h2, "v10", "nkt2")
    cap = lab.capture(h1.cmd([]), "eth0")
    p = t1.ping(t2.ip4)
    wire = cap.stop()
    tagged = [ln for ln in wire.splitlines() if t1.mac in ln and "ICMP echo request" in ln]
    c.check("netkit on VLAN 10: ping across hosts, tagged 10 on the wire",
            p.returncode == 0 and tagged and all("vlan 10," in ln for ln in tagged), (p.stdout[-200:], wire[-600:]))
    # ipvlan on netkit: l2 (the endpoints carry the trunk's MAC) and l3 (routed, the container's
    # end NOARP), on one host and across hosts.
    for h, rng in zip(hosts, (0, 128)):
        for name, mode, third in (("ipl2", "l2", 122), ("ipl3", "l3", 123)):
            h.ctl("network", "create", "-d", "ipvlan", "--subnet", f"198.18.{third}.0/24", "--ip-range",
                  f"198.18.{third}.{rng}/25", "-o", "parent=eth0.22" if mode == "l2" else "parent=eth0.23",
                  "-o", f"ipvlan_mode={mode}", name)
    trunk_mac = L.run(h1.cmd(["cat", "/sys/class/net/eth0/address"])).stdout.strip()
    for name, mode in (("ipl2", "l2"), ("ipl3", "l3")):
        x, y = L.CniEndpoint(lab, h1, name, f"{name}x"), L.CniEndpoint(lab, h1, name, f"{name}y")
        z = L.CniEndpoint(lab, h2, name, f"{name}z")
        link = x.run(["ip", "link", "show", "eth0"]).stdout
        shape = x.mac == trunk_mac if mode == "l2" else "NOARP" in link
        p, q = x.ping(y.ip4), x.ping(z.ip4)
        c.check(f"netkit, ipvlan {mode}: {'the trunk MAC' if mode == 'l2' else 'NOARP'}, local and "
                f"cross-host pings", all(e.rc == 0 for e in (x, y, z)) and shape and p.returncode == 0
                and q.returncode == 0, (x.result, link, p.stdout[-200:], q.stdout[-200:]))
    before = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["vlan_bad_source"]["packets"]
    a.run(["ip", "addr", "add", "198.18.120.77/24", "dev", "eth0"])
    p = a.run(["ping", "-n", "-c", "2", "-W", "1", "-I", "198.18.120.77", b.ip4])
    after = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["vlan_bad_source"]["packets"]
    c.check("netkit: a spoofed source is dropped as vlan_bad_source", p.returncode != 0 and after >= before + 2,
            (before, after))
    # Without the agent's program the container's end drops what it sends (netkit's peer policy):
    # the pinned link removed, b is cut off; a restarted agent attaches it again.
    host_end = b.result["interfaces"][0]["name"]
    ifindex = L.run(h1.cmd(["cat", f"/sys/class/net/{host_end}/ifindex"])).stdout.strip()
    L.run(h1.cmd(["rm", f"/sys/fs/bpf/cppnet/link_tcx_{ifindex}"]))
    p = b.ping(r.ip4)
    c.check("netkit: without the endpoint program the container sends nothing (peer policy drop)",
            p.returncode != 0, p.stdout[-200:])
    h1.stop_agent()
    h1.start_agent()
    L.wait_for("restarted agent", lambda: h1.log().count("VLAN endpoints: netkit") >= 2, 30)
    p = b.ping(r.ip4, count=3)
    c.check("netkit: a restarted agent attaches the endpoint again", p.returncode == 0, p.stdout[-200:])

    def netkits():
        return L.run(h1.cmd(["ip", "-d", "link", "show"])).stdout.count(" netkit ")
    before = netkits()
    rc, _ = a.delete()
    c.check("CNI DEL removes the netkit pair", rc == 0 and netkits() == before - 1, (before, netkits()))


def overlay_dual_stack(lab, c):
    """Dual-stack overlay containers on netkit: an IPv4 and an IPv6 address each, IPv6 across
    hosts both ways and between containers of one host (delivered by the program), the host's
    /128 route to its container."""
    from .test_ipv6 import CONFIG
    hosts, _ = ipv6_hosts(lab, CONFIG)
    h1, h2 = hosts
    L.wait_for("IPv6 routes", lambda: all(len([s for s in h.routes() if ":" in s]) == 1 for h in hosts), 30)
    a, b = L.CniEndpoint(lab, h1, "overlay", "d1"), L.CniEndpoint(lab, h1, "overlay", "d2")
    r = L.CniEndpoint(lab, h2, "overlay", "d3")
    c.check("dual-stack CNI ADD on netkit: an IPv4 and an IPv6 address each",
            all(e.rc == 0 and e.ip4 and e.ip6 for e in (a, b, r)), [e.result for e in (a, b, r)])
    kind = a.run(["ip", "-d", "link", "show", "eth0"]).stdout
    c.check("the container's interface is netkit", " netkit " in kind, kind[:300])
    netkit_headroom_check(c, a.run, "eth0", 70, "overlay container")
    for src, dst, what in ((a, r, "across hosts"), (r, a, "from another host"), (b, r, "across hosts")):
        p = src.run(["ping", "-6", "-n", "-c", "2", "-i", "0.2", "-W", "2", dst.ip6])
        c.check(f"netkit, IPv6 {what}: {src.ip6} -> {dst.ip6}", p.returncode == 0, p.stdout[-200:])
    direct = lambda: json.loads(h1.ctl("show", "stats", "--json").stdout)["traffic"]["deliver_direct"]["packets"]  # noqa: E731
    before = direct()
    p = a.run(["ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", b.ip6])
    c.check(f"netkit, IPv6 on one host: {a.ip6} -> {b.ip6}, delivered by the program ({direct() - before} "
            "deliver_direct)", p.returncode == 0 and direct() - before >= 3, p.stdout[-200:])
    p = a.ping(r.ip4)
    c.check("netkit, dual stack: IPv4 across hosts too", p.returncode == 0, p.stdout[-200:])
    host_end = a.result["interfaces"][0]["name"]
    route = h1.sh(f"ip -6 route show {a.ip6}").stdout
    p = h1.sh(f"ping -6 -n -c 2 -W 2 {a.ip6}", check=False)
    c.check("the host reaches its container over IPv6 (a /128 route through the netkit end)",
            host_end in route and p.returncode == 0, (route, p.stdout[-200:]))


def fallback(lab, c):
    hosts = vlan_pair(lab)
    h1, h2 = hosts
    L.wait_for("agent chose the endpoint device", lambda: "VLAN endpoints:" in h1.log(), 30)
    c.check("without netkit in the kernel the agent says so and uses veth",
            "netkit is not available" in h1.log() and "VLAN endpoints: veth devices" in h1.log(), h1.log()[-600:])
    a, r = L.CniEndpoint(lab, h1, "flat", "vea"), L.CniEndpoint(lab, h2, "flat", "ver")
    kind = a.run(["ip", "-d", "-j", "link", "show", "eth0"]).stdout
    c.check("the endpoint is a veth", '"info_kind":"veth"' in kind, kind[:300])
    p = a.ping(r.ip4)
    c.check("veth endpoints reach each other across hosts", p.returncode == 0, p.stdout[-300:])
    # Asked for netkit on a kernel without it, an agent says why and exits 1 (at once: it used to
    # hang now and then, its health server stopped before it ran).
    h3 = lab.add_host(3)
    for _ in range(3):
        h3.start_agent("--endpoint-device=netkit")
        try:
            L.wait_for("the agent exits", lambda: h3.agent.poll() is not None, 10, 0.05)
        except L.LabError:
            h3.stop_agent()
            break
    c.check("--endpoint-device=netkit without netkit in the kernel: the agent exits 1 naming CONFIG_NETKIT "
            "(three times, each within 10 s)", h3.agent is not None and h3.agent.returncode == 1
            and h3.log().count("needs a kernel with CONFIG_NETKIT") == 3, h3.log()[-600:])


def main():
    if netkit_kernel():
        return run_scenario("netkit", scenario) | run_scenario("nk6", overlay_dual_stack)
    rc = run_scenario("nkfallback", fallback)
    from scripts import vm
    sys.stdout.flush()
    try:
        build = os.environ.get("CPPNET_BUILD_DIR", L.BUILD)
        # The VLAN scenario, then the CNI plugin's overlay scenario (test_cni) on netkit.
        env = f"CPPNET_IN_VM=1 CPPNET_BUILD_DIR={build}"
        inner, out = vm.run(f"{env} {sys.executable} -m tests.integration.test_netkit; a=$?; "
                            f"{env} {sys.executable} -m tests.integration.test_cni; b=$?; "
                            "[ $a -eq 0 ] && [ $b -eq 0 ]", timeout=1700)
    except SystemExit as e:  # no qemu, or the kernel could not be fetched: the fallback's result stands
        print(f"netkit scenario not run (exit {e.code}): see the line above", flush=True)
        return rc
    print(out, flush=True)
    # The VLAN scenario once more on the newest kernel of trixie-backports: what newer kernels
    # add (netkit headroom, 6.14) and change.
    try:
        newer, out = vm.run(f"{env} {sys.executable} -m tests.integration.test_netkit", timeout=900,
                            suite="trixie-backports")
    except SystemExit as e:
        print(f"netkit scenario on trixie-backports' kernel not run (exit {e.code}): see the line above", flush=True)
        newer = 0
    print(out, flush=True)
    return rc or inner or newer


if __name__ == "__main__":
    raise SystemExit(main())
