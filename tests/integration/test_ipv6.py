#!/usr/bin/env python3
"""Dual stack as flanneld runs it with etcd (EnableIPv6): two cppnet hosts and one host set up
with kernel tools as flanneld's vxlan backend does (flannel.1 and flannel-v6.1), each underlay
with an IPv4 and an IPv6 address. Checks the leases and subnet.env a flanneld user knows, IPv6
and IPv4 between containers of every pair of hosts both ways (ping, checksummed TCP), ICMPv6
packet-too-big, host-gw over IPv6, and that the IPv6 datapath enforces the same boundaries as
the IPv4 one (a container's spoofed source, a peer's packet from another peer's subnet)."""
import json

from .common import L, ipv6_hosts, ping6, run_scenario

CONFIG = {"Network": "198.19.0.0/16", "SubnetLen": 24, "EnableIPv6": True,
          "IPv6Network": "2001:db8:100::/48", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}
FL_SUBNET, FL_SUBNET6 = "198.19.3.0/24", "2001:db8:100:3::/64"


def stats(h):
    return json.loads(h.ctl("show", "stats", "--json").stdout)


def pings(c, a, b, what):
    ping6(c, a, b.ip6, f"{what} from {a.ip6}")
    p = a.ping(b.ip)
    c.check(f"{what}: IPv4 ping {a.ip} -> {b.ip} still works", p.returncode == 0, p.stdout[-200:])


def tcp6(c, a, b, what, port):
    sent, got = L.tcp_transfer(a, b, size=4 << 20, port=port, ipv6=True)
    c.check(f"{what}: TCP 4 MiB over IPv6 {a.ip6} -> {b.ip6}: sha256 matches", sent == got, f"{sent} {got}")


def scenario(lab, c):
    cpp, envs = ipv6_hosts(lab, CONFIG)
    for h, env in zip(cpp, envs):
        c.check(f"h{h.index} subnet.env: FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET as flanneld writes them",
                env.get("FLANNEL_IPV6_NETWORK") == "2001:db8:100::/48"
                and env.get("FLANNEL_IPV6_SUBNET", "").endswith("::1/64")
                and env["FLANNEL_IPV6_SUBNET"].startswith("2001:db8:100:"), env)
        c.check(f"h{h.index} subnet.env: MTU leaves room for VXLAN over IPv6 (1500 - 70)",
                env.get("FLANNEL_MTU") == "1430", env)
    leases = lab.leases()
    mine = {k: json.loads(v) for k, v in leases.items()}
    c.check("leases: dual-stack keys \"v4&v6\" with PublicIPv6 and BackendV6Data (flanneld's form)",
            len(mine) == 2 and all("&" in k and v.get("PublicIPv6") in (cpp[0].ip6, cpp[1].ip6)
                                   and v.get("BackendV6Data", {}).get("VtepMAC") for k, v in mine.items()), mine)

    fl, gw, gw6 = lab.flannel_host6(3, FL_SUBNET, FL_SUBNET6)
    for h, env in zip(cpp, envs):
        h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=2,
                                    subnet6_gw=env["FLANNEL_IPV6_SUBNET"])
    fl.add_bridge_and_containers(gw, 1430, count=1, subnet6_gw=gw6)
    lab.flannel_sync(fl)
    L.wait_for("cppnet hosts route to every IPv6 subnet",
               lambda: all(FL_SUBNET6 in h.routes() and len([s for s in h.routes() if ":" in s]) == 2
                           for h in cpp))
    r = cpp[0].routes()[FL_SUBNET6]
    c.check("route to flanneld's IPv6 subnet: its PublicIPv6 and flannel-v6.1's VtepMAC, outer checksum on",
            r.get("public_ip") == fl.ip6 and r.get("vtep_mac") == fl.vtep_mac6 and r.get("outer_csum"), r)

    a1, a2 = cpp[0].containers
    b1 = cpp[1].containers[0]
    f1 = fl.containers[0]
    pings(c, a1, b1, "cppnet h1 -> cppnet h2")
    pings(c, b1, a1, "cppnet h2 -> cppnet h1")
    pings(c, a1, a2, "same host")
    tcp6(c, a1, b1, "cppnet -> cppnet", 5001)
    tcp6(c, b1, a1, "cppnet -> cppnet", 5002)
    pings(c, a1, f1, "cppnet -> flanneld-style host")
    pings(c, f1, a1, "flanneld-style host -> cppnet")
    tcp6(c, a1, f1, "cppnet -> flannel-v6.1", 5003)
    tcp6(c, f1, a1, "flannel-v6.1 -> cppnet", 5004)
    link = json.loads(fl.sh("ip -s -j link show dev flannel-v6.1").stdout)[0]["stats64"]
    c.check("the kernel's flannel-v6.1 carried the IPv6 traffic without errors",
            link["rx"]["packets"] > 0 and link["tx"]["packets"] > 0 and link["rx"]["errors"] == 0, link)
    udp6 = fl.sh("cat /proc/net/snmp6").stdout
    errs = {k: int(v) for k, v in (l.split() for l in udp6.splitlines()) if k in ("Udp6InCsumErrors", "Udp6InErrors")}
    c.check("flanneld-style host: no UDP6 checksum errors (cppnet filled the outer checksum)",
            all(v == 0 for v in errs.values()), errs)
    t = stats(cpp[0])["traffic"]
    c.check("cppnet counted VXLAN over IPv6 both ways", t["vxlan_tx"]["packets"] > 0 and t["vxlan_rx"]["packets"] > 0, t)

    host_side(c, cpp, envs, b1, f1)
    cni(lab, c, a1)
    packet_too_big(lab, c, cpp[0], a2, b1)
    trust(lab, c, cpp, fl, a1, a2, b1)
    host_gw(lab, c, cpp, a1, b1)
    masquerade(lab, c, cpp, a1)
    renumber(lab, c, cpp, a1, b1)


def renumber(lab, c, cpp, a1, b1):
    """The underlay's IPv6 address changes (renumbering): the agent re-publishes its lease with
    the new PublicIPv6, peers follow, traffic flows again."""
    h2 = cpp[1]
    new = "2001:db8::22"
    h2.sh(f"ip -6 addr add {new}/64 dev eth0 nodad && ip -6 addr del {h2.ip6}/64 dev eth0")
    L.wait_for("h1 routes h2's IPv6 subnet via the new address",
               lambda: any(r.get("public_ip") == new for s, r in cpp[0].routes().items() if ":" in s))
    leases = [json.loads(v) for v in lab.leases().values()]
    c.check("renumbered underlay: the lease carries the new PublicIPv6",
            any(l.get("PublicIPv6") == new for l in leases), leases)
    ping6(c, a1, b1.ip6, "after renumbering h2's underlay")


def masquerade(lab, c, cpp, a1):
    """--ip-masq on a dual-stack host: flanneld's rules for each family (nftables ip and ip6
    tables); a container's IPv6 packet to an address outside the overlay leaves from the host."""
    h1, h2 = cpp
    h1.stop_agent()
    h1.start_agent("--ip-masq")
    L.wait_for("ip6 cppnet table", lambda: h1.sh("nft list table ip6 cppnet", check=False).returncode == 0)
    rules = h1.sh("nft list table ip6 cppnet").stdout
    c.check("--ip-masq: nftables table ip6 cppnet with flanneld's rules for the IPv6Network",
            "2001:db8:100::/48" in rules and "masquerade" in rules and "ff00::/8" in rules
            and h1.sh("nft list table ip cppnet", check=False).returncode == 0, rules)
    cap = lab.capture(h2.cmd([]), "eth0", ["icmp6 and ip6[40] == 128"])
    p = a1.exec(["ping", "-6", "-n", "-c", "1", "-W", "2", h2.ip6], check=False, timeout=10)
    seen = cap.stop()
    c.check("a container's IPv6 packet to the underlay leaves masqueraded (source: the host's PublicIPv6)",
            p.returncode == 0 and f"{h1.ip6} > {h2.ip6}" in seen, seen[-300:])


def host_side(c, cpp, envs, b1, f1):
    """The host's own IPv6 traffic: its overlay address is its IPv6 subnet's ::0 on cppnet.host
    (as flanneld's flannel-v6.1 holds it), with the route to the IPv6Network through it."""
    h1, env = cpp[0], envs[0]
    me = L.Container(h1.ns, env["FLANNEL_SUBNET"].replace(".1/", ".0/").split("/")[0], h1)
    me.ip6 = env["FLANNEL_IPV6_SUBNET"].replace("::1/", "::/").split("/")[0]
    addrs = h1.sh("ip -6 -br addr show dev cppnet.host").stdout
    c.check("cppnet.host holds the IPv6 subnet's ::0/128", f"{me.ip6}/128" in addrs, addrs)
    route = h1.sh(f"ip -6 route get {b1.ip6}").stdout
    c.check("the host's route to remote IPv6 containers: cppnet.host, source ::0",
            "dev cppnet.host" in route and f"src {me.ip6}" in route, route)
    for remote, what in ((b1, "cppnet"), (f1, "flannel-v6.1")):
        ping6(c, me, remote.ip6, f"host h1 -> {what} container")
        ping6(c, remote, me.ip6, f"{what} container {remote.ip6} -> host h1")
        sent, got = L.tcp_transfer(me, remote, size=4 << 20, port=5200, ipv6=True)
        c.check(f"host h1 -> {what} container: TCP 4 MiB over IPv6, sha256 matches", sent == got, f"{sent} {got}")
        sent, got = L.tcp_transfer(remote, me, size=4 << 20, port=5201, ipv6=True)
        c.check(f"{what} container -> host h1: TCP 4 MiB over IPv6, sha256 matches", sent == got, f"{sent} {got}")


def cni(lab, c, remote):
    """The CNI plugin on a new dual-stack host: one address of each family from the lease
    (flannel's CNI plugin gives the same), and IPv6 across hosts."""
    h = lab.add_host(4, ipv6=True)
    h.start_agent()
    L.wait_for("h4 routes to the IPv6 subnets", lambda: len([s for s in h.routes() if ":" in s]) == 3)
    e = L.CniEndpoint(lab, h, "overlay", "ipv6ctr")
    env = h.subnet_env()
    c.check("CNI ADD on a dual-stack host: an IPv4 and an IPv6 address from the lease",
            e.rc == 0 and e.ip4 and e.ip6 and e.ip6.startswith(env["FLANNEL_IPV6_SUBNET"].split("::")[0]),
            e.result)
    if e.ip6:
        p = e.run(["ping", "-6", "-n", "-c", "2", "-W", "2", remote.ip6])
        c.check("CNI container -> remote container over IPv6: ping", p.returncode == 0, p.stdout[-300:])
    rc, out = e.delete()
    left = h.sh("ls /run/cppnet/ipam/overlay", check=False).stdout.split()
    c.check("CNI DEL releases both addresses", rc == 0 and not any(":" in f or f[0].isdigit() for f in left),
            (out, left))


def packet_too_big(lab, c, h, a, b):
    """A container whose MTU exceeds FLANNEL_MTU learns the path MTU from an ICMPv6 packet-too-big."""
    veth = "veth2"
    h.sh(f"ip link set {veth} mtu 1500")
    a.exec(["ip", "link", "set", "eth0", "mtu", "1500"])
    before = stats(h)["traffic"]["packet_too_big_tx"]["packets"]
    p = a.exec(["ping", "-6", "-n", "-c", "1", "-W", "2", "-s", "1440", "-M", "do", b.ip6], check=False, timeout=15)
    after = stats(h)["traffic"]["packet_too_big_tx"]["packets"]
    c.check("too-big IPv6 packet answered with ICMPv6 packet-too-big", after > before, (before, after))
    route = a.exec(["ip", "-6", "route", "get", b.ip6], check=False).stdout
    c.check("the container's route cache learned mtu 1430", "mtu 1430" in route, route + p.stdout[-200:])
    p = a.exec(["ping", "-6", "-n", "-c", "2", "-W", "2", "-s", "1440", b.ip6], check=False, timeout=15)
    c.check("big pings get through after path-MTU discovery", p.returncode == 0, p.stdout[-300:])


def trust(lab, c, cpp, fl, a1, a2, b1):
    h1 = cpp[0]
    # A container sending from its neighbour's IPv6 address.
    d0 = stats(h1)["drops"]["bad_source"]["packets"]
    a1.exec(["ip", "-6", "addr", "add", f"{a2.ip6}/128", "dev", "eth0", "nodad"])
    p = a1.exec(["ping", "-6", "-n", "-c", "1", "-W", "1", "-I", a2.ip6, b1.ip6], check=False, timeout=10)
    a1.exec(["ip", "-6", "addr", "del", f"{a2.ip6}/128", "dev", "eth0"])
    d1 = stats(h1)["drops"]["bad_source"]["packets"]
    c.check("container sending from another container's IPv6 address: dropped (bad_source)",
            p.returncode != 0 and d1 > d0, (p.returncode, d0, d1))
    # A peer (the flanneld-style host) sending VXLAN over IPv6 from another peer's subnet.
    vtep = h1.config().get("vtep_mac")
    mac = h1.sh("cat /sys/class/net/eth0/address").stdout.strip()
    script = (
        "from scapy.all import *\n"
        f"p = Ether(dst='{mac}')/IPv6(src='{fl.ip6}', dst='{h1.ip6}')/UDP(sport=40000, dport=8472)/"
        f"VXLAN(vni=1, flags=8)/Ether(dst='{vtep}')/IPv6(src='{b1.ip6}', dst='{a1.ip6}')/ICMPv6EchoRequest()\n"
        "sendp(p, iface='eth0', count=3, verbose=False)\n")
    d0 = stats(h1)["drops"]["bad_inner_source"]["packets"]
    L.run(fl.cmd(["/usr/bin/python3", "-c", script]), timeout=60)
    L.wait_for("h1 drops the forged packets",
               lambda: stats(h1)["drops"]["bad_inner_source"]["packets"] >= d0 + 3, timeout=10)
    c.check("peer sending from another peer's IPv6 subnet: dropped (bad_inner_source)", True)


def host_gw(lab, c, cpp, a1, b1):
    cfg = dict(CONFIG, Backend={"Type": "host-gw"})
    lab.put_config(cfg)
    L.wait_for("h1's IPv6 route to h2 becomes host-gw",
               lambda: any(":" in s and r.get("backend") == "host-gw" for s, r in cpp[0].routes().items()))
    pings(c, a1, b1, "host-gw")
    tcp6(c, a1, b1, "host-gw", 5005)
    t = stats(cpp[0])["traffic"]
    c.check("IPv6 routed host-gw (hostgw_tx counted)", t["hostgw_tx"]["packets"] > 0, t)


if __name__ == "__main__":
    raise SystemExit(run_scenario("ipv6", scenario))
