#!/usr/bin/env python3
"""VLAN networks end to end (issue 6): two hosts joined by a trunk (eth1, to a switch),
containers attached through the CNI plugin as a runtime attaches them, on VLAN 10 and
VLAN 20 of both hosts. Same-VLAN endpoints reach each other across hosts over IPv4 and
IPv6; frames carry their VLAN's 802.1Q tag on the trunk; other VLANs never see them
(captured, not only failed pings); unknown VLANs reach nobody; each mode's local
switching (bridge, private, vepa, passthru, ipvlan l2/l3); a VLAN network on the
overlay's own underlay; CNI ADD/CHECK/DEL leave nothing behind."""
import json
import re
import subprocess
import threading
import time

from .common import L, cni_call, container, in_netns, run_scenario, timed_transfer

SW = None  # argv prefix entering the switch namespace


conf = L.cni_conf
Endpoint = L.CniEndpoint


def host_veths(h):
    return set(re.findall(r"\d+: (cv[0-9a-f]+)@", h.sh("ip -o link show").stdout))


def sw_capture(lab, port, filt=()):
    return lab.capture(["ip", "netns", "exec", lab.sw], port, filt)


def create(h, *args):
    return h.ctl("network", "create", *args)


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h1, h2 = lab.add_host(1), lab.add_host(2)
    lab.add_trunk([h1, h2])
    for h in (h1, h2):
        h.start_agent()
        h.subnet_env()
        # The same networks on both hosts (Docker's local scope); h2 hands out the upper
        # half of each subnet through the runtime's IPAM config.
        create(h, "-d", "macvlan", "--subnet", "198.18.10.0/24", "--gateway", "198.18.10.1", "--ipv6",
               "--subnet", "2001:db8:10::/64", "--gateway", "2001:db8:10::1", "-o", "parent=eth1.10", "vlan10")
        create(h, "-d", "macvlan", "--subnet", "198.18.20.0/24", "-o", "parent=eth1.20", "vlan20")
    L.wait_for("agents attached to the trunk", lambda: all("VLAN trunk eth1: tc ingress" in h.log() for h in (h1, h2)), 10)

    upper10 = {"ipam": {"type": "host-local", "ranges": [
        [{"subnet": "198.18.10.0/24", "rangeStart": "198.18.10.128", "gateway": "198.18.10.1"}],
        [{"subnet": "2001:db8:10::/64", "rangeStart": "2001:db8:10::8000", "gateway": "2001:db8:10::1"}]]}}
    upper20 = {"ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.20.0/24", "rangeStart": "198.18.20.128"}]]}}
    a1 = Endpoint(lab, h1, "vlan10", "a1")
    a2 = Endpoint(lab, h2, "vlan10", "a2", **upper10)
    a3 = Endpoint(lab, h1, "vlan10", "a3")
    b1 = Endpoint(lab, h1, "vlan20", "b1")
    b2 = Endpoint(lab, h2, "vlan20", "b2", **upper20)
    c.check("CNI ADD on both hosts: addresses from the network's subnets, Docker-style MAC 02:42:<IPv4>",
            all(e.rc == 0 for e in (a1, a2, a3, b1, b2)) and a1.ip4 == "198.18.10.2" and a2.ip4 == "198.18.10.128"
            and a1.ip6 == "2001:db8:10::2" and a1.mac == "02:42:c6:12:0a:02", [a1.result, a2.result])
    route = a1.run(["ip", "route", "show", "default"]).stdout
    c.check("endpoint has a default route via the network's gateway", "via 198.18.10.1 dev eth0" in route, route)

    # Same VLAN across hosts, IPv4 and IPv6 (neighbour discovery through the trunk), with
    # the tag on the wire and nothing of it on the other VLAN's endpoints.
    trunk = sw_capture(lab, "t2")
    other = lab.capture(["nsenter", f"--net={b2.netns}", "--"], "eth0")
    p4 = a1.ping(a2.ip4)
    p6 = a1.ping(a2.ip6)
    c.check("VLAN 10: h1 endpoint reaches h2 endpoint over IPv4", p4.returncode == 0, p4.stdout[-300:])
    c.check("VLAN 10: ... and over IPv6 (NDP across the trunk)", p6.returncode == 0, p6.stdout[-300:])
    p = b1.ping(b2.ip4)
    c.check("VLAN 20: h1 endpoint reaches h2 endpoint", p.returncode == 0, p.stdout[-300:])
    wire, seen = trunk.stop(), other.stop()
    tagged = [ln for ln in wire.splitlines() if a1.mac in ln and "ICMP echo request" in ln]
    c.check("on the trunk, VLAN 10 frames carry 802.1Q tag 10", tagged and all("vlan 10," in ln for ln in tagged),
            wire[-800:])
    c.check("... and ICMPv6 neighbour discovery carries it too",
            any("vlan 10," in ln and "neighbor solicitation" in ln for ln in wire.splitlines()), wire[-800:])
    c.check("VLAN 20 frames carry tag 20",
            any("vlan 20," in ln and b1.mac in ln for ln in wire.splitlines()), wire[-800:])
    c.check("the VLAN 20 endpoint on h2 saw no frame of VLAN 10 (capture)",
            a1.mac not in seen and a2.mac not in seen and "198.18.10." not in seen and b1.mac in seen, seen[-800:])

    # Bridge mode switches between local endpoints inside the host: nothing on the wire.
    trunk = sw_capture(lab, "t1", ["icmp", "or", "(vlan", "and", "icmp)"])
    p = a1.ping(a3.ip4)
    wire = trunk.stop()
    c.check("macvlan bridge: local endpoints reach each other inside the host (nothing on the trunk)",
            p.returncode == 0 and a3.ip4 not in wire, p.stdout[-200:] + wire[-400:])

    # A frame of a VLAN no network uses, and one of VLAN 10, both to a1's MAC.
    inject = ("from scapy.all import Ether, Dot1Q, IP, ICMP, sendp\n"
              "for vid, ident in ((99, 0x9999), (10, 0x1010)):\n"
              f"    sendp(Ether(dst='{a1.mac}', src='02:42:00:00:99:99')/Dot1Q(vlan=vid)/"
              f"IP(src='198.18.10.99', dst='{a1.ip4}')/ICMP(id=ident), iface='t1', verbose=0)\n")
    cap = lab.capture(["nsenter", f"--net={a1.netns}", "--"], "eth0", ["icmp"])
    L.run(["ip", "netns", "exec", lab.sw, "/usr/bin/python3", "-c", inject])
    L.wait_for("VLAN 10 frame delivered", lambda: "id 4112" in L.run(["tcpdump", "-r", cap.path, "-nn", "-v"],
                                                                      check=False).stdout, 10)
    got = cap.stop()
    c.check("a frame of VLAN 99 (no network uses it) reaches no endpoint; VLAN 10 does",
            "id 39321" not in got and "id 4112" in got, got)

    concurrent_adds(lab, c, h1, b2)
    runtime_ranges(lab, c, h1)
    runtime_requests(lab, c, h1, a2)
    modes(lab, c, h1, h2)
    docker_options(lab, c, h1, h2)
    shared_underlay(lab, c, h1, h2)
    untagged(lab, c, h1, h2, b2)
    operations(lab, c, h1, a3, a2, b1)
    lifecycle(lab, c, h1, [a1, a2, a3, b2])


def concurrent_adds(lab, c, h1, remote):
    """Runtimes attach containers in parallel: 6 ADDs at once into one network."""
    nss = [container(lab, h1) for _ in range(6)]
    codes, results = parallel_adds(h1, [(f"par{i}", netns) for i, (_, netns) in enumerate(nss)], "vlan20")
    ips = [r.get("ips", [{}])[0].get("address", "").split("/")[0] for r in results]
    c.check("6 concurrent CNI ADDs into one network: all succeed with distinct addresses",
            codes == [0] * 6 and len(set(ips)) == 6 and all(ips), results)
    shown = json.loads(h1.ctl("show", "vlans", "--json").stdout)
    v20 = next(n for n in shown if n["name"] == "vlan20")
    c.check("... all 6 registered (flood list and addresses)", len(v20["endpoints"]) == 7, v20)
    first = nss[0][1]
    bad = [ip for ip in ips[1:] + [remote.ip4]
           if in_netns(first, ["ping", "-n", "-c", "1", "-W", "2", ip], timeout=10).returncode != 0]
    c.check("... and each reaches the others (ARP broadcast to every one) and the other host", not bad, bad)
    for i, (_, netns) in enumerate(nss):
        cni_call(h1, "DEL", netns, f"par{i}", conf("vlan20"))

    # The same container attached twice at once (a runtime retrying): one ADD wins, the
    # other is refused and leaves the winner's veth and address alone.
    _, netns = container(lab, h1)
    codes, outs = parallel_adds(h1, [("dup", netns)] * 2, "vlan20")
    won = [o for rc, o in zip(codes, outs) if rc == 0]
    ip = won[0]["ips"][0]["address"].split("/")[0] if len(won) == 1 else None
    reach = ip and in_netns(netns, ["ping", "-n", "-c", "1", "-W", "2", remote.ip4], timeout=10).returncode == 0
    addr = in_netns(netns, ["ip", "-o", "-4", "addr", "show", "eth0"]).stdout
    c.check("two concurrent ADDs of one container: one wins, the other is refused and the winner keeps its veth, "
            "address and traffic", len(won) == 1 and reach and ip in addr, (outs, addr))
    cni_call(h1, "DEL", netns, "dup", conf("vlan20"))


def parallel_adds(h, containers, network):
    """CNI ADDs started at once, one per (container id, netns): exit codes and results."""
    procs = []
    for cid, netns in containers:
        env = ["CNI_COMMAND=ADD", f"CNI_CONTAINERID={cid}", f"CNI_NETNS={netns}", "CNI_IFNAME=eth0",
               f"CNI_PATH={L.CNI_PATH}"]
        procs.append(subprocess.Popen(h.cmd(["env", *env, L.CNI]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True))
    for p in procs:
        p.stdin.write(conf(network))
        p.stdin.close()
    results = [json.loads(p.stdout.read() or "{}") for p in procs]
    for p in procs:
        p.wait(timeout=30)
    return [p.returncode for p in procs], results


def runtime_ranges(lab, c, h1):
    """IPAM ranges a runtime supplies must fit the network: inside its subnets, never
    covering its gateway."""
    cases = [({"subnet": "198.18.99.0/24"}, "is outside the subnets of network vlan10"),
             ({"subnet": "198.18.10.0/24", "rangeStart": "198.18.10.1", "gateway": "198.18.10.254"},
              "covers the gateway 198.18.10.1 of network vlan10")]
    for rng, msg in cases:
        e = Endpoint(lab, h1, "vlan10", "rng", ipam={"type": "host-local", "ranges": [[rng]]})
        c.check(f"runtime IPAM range {rng}: CNI error 7 '{msg}', nothing attached",
                e.rc == 1 and e.result.get("code") == 7 and msg in e.result.get("msg", ""), e.result)


def runtime_requests(lab, c, h1, remote):
    """Static addresses a runtime asks for, the host veth in the result, bandwidth chained."""
    e = Endpoint(lab, h1, "vlan10", "st1", capabilities={"ips": True},
                 runtimeConfig={"ips": ["198.18.10.99/24"]})
    c.check("runtimeConfig ips on a VLAN network: the requested address", e.rc == 0 and e.ip4 == "198.18.10.99",
            e.result)
    host_if = [i for i in e.result.get("interfaces", []) if not i.get("sandbox")]
    c.check("the result lists the host veth first (no sandbox) and the addresses on the container's interface",
            host_if and host_if[0]["name"].startswith("cv") and e.result["ips"][0]["interface"] == 1
            and e.result["interfaces"][1].get("sandbox") == e.netns, e.result)
    bw = {"cniVersion": "1.0.0", "name": "vlan10", "type": "bandwidth", "capabilities": {"bandwidth": True},
          "runtimeConfig": {"bandwidth": {"ingressRate": 8000000, "ingressBurst": 80000,
                                          "egressRate": 8000000, "egressBurst": 80000}}, "prevResult": e.result}
    env = [f"CNI_COMMAND=ADD", "CNI_CONTAINERID=st1", f"CNI_NETNS={e.netns}", "CNI_IFNAME=eth0",
           f"CNI_PATH={L.CNI_PATH}"]
    p = L.run(h1.cmd(["env", *env, f"{L.CNI_PATH}/bandwidth"]), check=False, input=json.dumps(bw))
    qdisc = h1.sh(f"tc qdisc show dev {host_if[0]['name'] if host_if else 'none'}", check=False).stdout
    c.check("bandwidth chained after a VLAN endpoint (ingress and egress rate): tbf and the plugin's ingress "
            "qdisc on its host veth (the endpoint program is a tcx link, no clsact)",
            p.returncode == 0 and "tbf" in qdisc and "qdisc ingress" in qdisc and "clsact" not in qdisc,
            p.stdout + qdisc)
    pg = e.ping(remote.ip4)
    c.check("... and the shaped endpoint still reaches the other host", pg.returncode == 0, pg.stdout[-200:])
    # Both rates hold: 2 MiB at 8 Mbit/s take 2.1 s or more; unshaped, a few ms.
    secs, ok = timed_transfer(lab, remote.netns, e.netns, e.ip4, 2 << 20, 5401)
    c.check(f"ingress rate enforced for traffic from the other host (2 MiB in {secs:.2f} s, >= 1.5 s)",
            ok and secs >= 1.5, secs)
    L.wait_for("the agent reads the egress rate", lambda: "egress rate 8000000 bit/s" in h1.log(), 10)
    paced = lambda: json.loads(h1.ctl("show", "stats", "--json").stdout)["traffic"]["vlan_paced"]["packets"]  # noqa
    before = paced()
    secs, ok = timed_transfer(lab, e.netns, remote.netns, remote.ip4, 2 << 20, 5402)
    sent = h1.sh(f"tc -s class show dev {L.PACE_DEV}", check=False).stdout
    c.check(f"egress rate enforced for traffic to the other host: the endpoint's frames paced by an htb class "
            f"with the plugin's rate (2 MiB in {secs:.2f} s, >= 1.5 s, sha256 matches; {paced() - before} frames "
            "through " + L.PACE_DEV + ")", ok and secs >= 1.5 and paced() > before and "rate 8Mbit" in sent,
            (secs, sent[-400:]))
    L.run(h1.cmd(["env", *[v.replace("ADD", "DEL") for v in env], f"{L.CNI_PATH}/bandwidth"]), check=False,
          input=json.dumps(bw))
    L.wait_for("the rate goes with the plugin's qdiscs", lambda: "egress rate removed" in h1.log(), 10)
    secs, ok = timed_transfer(lab, e.netns, remote.netns, remote.ip4, 2 << 20, 5403)
    c.check(f"without the plugin's qdiscs the endpoint sends unshaped again (2 MiB in {secs:.2f} s, < 1 s)",
            ok and secs < 1.0, secs)
    e.delete()
    e = Endpoint(lab, h1, "vlan10", "st2", args={"cni": {"ips": ["198.18.10.98"]}})
    c.check("args.cni.ips on a VLAN network: the requested address", e.rc == 0 and e.ip4 == "198.18.10.98", e.result)
    e.delete()


def through_switch(lab, c, h1, network, vid, label):
    """Two local endpoints of a vepa network: their traffic leaves tagged and the switch's hairpin
    brings it back."""
    v1, v2 = Endpoint(lab, h1, network, f"{network}1"), Endpoint(lab, h1, network, f"{network}2")
    trunk = sw_capture(lab, "t1", ["icmp", "or", "(vlan", "and", "icmp)"])
    p = v1.ping(v2.ip4)
    wire = trunk.stop()
    c.check(f"{label}: local endpoints talk through the switch (hairpin), tagged on the wire",
            p.returncode == 0 and any(f"vlan {vid}," in ln and v2.ip4 in ln for ln in wire.splitlines()),
            p.stdout[-200:] + wire[-400:])
    return v1, v2


def modes(lab, c, h1, h2):
    # private: no local switching, and the switch's reflection is not accepted either.
    create(h1, "-d", "macvlan", "--subnet", "198.18.30.0/24", "-o", "parent=eth1.30", "-o", "macvlan_mode=private", "priv")
    create(h1, "-d", "macvlan", "--subnet", "198.18.40.0/24", "-o", "parent=eth1.40", "-o", "macvlan_mode=vepa", "vepa")
    create(h1, "-d", "macvlan", "--subnet", "198.18.50.0/24", "-o", "parent=eth1.50", "-o", "macvlan_mode=passthru", "pt")
    create(h1, "-d", "ipvlan", "--subnet", "198.18.60.0/24", "--ipv6", "--subnet", "2001:db8:60::/64",
           "-o", "parent=eth1.60", "ipv60")
    create(h2, "-d", "ipvlan", "--subnet", "198.18.60.0/24", "--ip-range", "198.18.60.128/25", "--ipv6", "--subnet",
           "2001:db8:60::/64", "-o", "parent=eth1.60", "ipv60")
    for h in (h1, h2):
        create(h, "-d", "ipvlan", "--subnet", "198.18.70.0/24", "--ipv6", "--subnet", "2001:db8:70::/64", "-o",
               "parent=eth1.70", "-o", "ipvlan_mode=l3", "ipv70")
    # The switch port reflects frames back to their sender, as a VEPA switch does.
    L.run(["ip", "netns", "exec", lab.sw, "bridge", "link", "set", "dev", "t1", "hairpin", "on"])
    p1, p2 = Endpoint(lab, h1, "priv", "p1"), Endpoint(lab, h1, "priv", "p2")
    p = p1.ping(p2.ip4, count=1)
    c.check("macvlan private: local endpoints cannot reach each other", p.returncode != 0 and p1.rc == 0 and p2.rc == 0,
            p.stdout[-200:])
    through_switch(lab, c, h1, "vepa", 40, "macvlan vepa")
    t1 = Endpoint(lab, h1, "pt", "t1")
    t2 = Endpoint(lab, h1, "pt", "t2")
    c.check("macvlan passthru: the first endpoint attaches, a second is refused naming the network",
            t1.rc == 0 and t2.rc == 1 and "network pt is in macvlan passthru mode" in t2.result.get("msg", ""),
            t2.result)
    gone = h1.sh(f"ls /run/cppnet/ipam/pt", check=False).stdout.split()
    c.check("... and the refused ADD left no address allocated", t1.ip4 in gone and len(
        [x for x in gone if x.startswith("198.")]) == 1, gone)

    i1, i3 = Endpoint(lab, h1, "ipv60", "i1"), Endpoint(lab, h1, "ipv60", "i3")
    i2 = Endpoint(lab, h2, "ipv60", "i2", ipam={"type": "host-local", "ranges": [
        [{"subnet": "198.18.60.0/24", "rangeStart": "198.18.60.128"}],
        [{"subnet": "2001:db8:60::/64", "rangeStart": "2001:db8:60::8000"}]]})
    h1mac = h1.sh("cat /sys/class/net/eth1/address").stdout.strip()
    c.check("ipvlan l2: endpoints share the parent's MAC", i1.mac == h1mac and i3.mac == h1mac, (i1.mac, h1mac))
    p, q = i1.ping(i2.ip4), i1.ping(i3.ip4)
    c.check("ipvlan l2: reaches the other host's endpoint and the local one (demultiplexed by IP)",
            p.returncode == 0 and q.returncode == 0, p.stdout[-200:] + q.stdout[-200:])
    p = i1.ping(i2.ip6)
    c.check("ipvlan l2: ... and over IPv6 (neighbour discovery with the shared MAC)", p.returncode == 0,
            p.stdout[-200:])

    l1, l2 = Endpoint(lab, h1, "ipv70", "l1"), Endpoint(lab, h1, "ipv70", "l2")
    trunk = sw_capture(lab, "t1", ["arp", "or", "(vlan", "and", "arp)"])
    p = l1.ping(l2.ip4)
    wire = trunk.stop()
    route = l1.run(["ip", "route", "show", "default"]).stdout
    link = l1.run(["ip", "link", "show", "eth0"]).stdout
    c.check("ipvlan l3: endpoints are routed to each other, default route via the device, NOARP",
            p.returncode == 0 and route.startswith("default dev eth0") and "NOARP" in link, p.stdout[-200:] + route + link)
    c.check("ipvlan l3: local endpoints need no ARP: none on the wire",
            not any("vlan 70" in ln or "198.18.70." in ln for ln in wire.splitlines()), wire[-400:])

    # Across hosts, the hosts route for their l3 endpoints: each answers ARP/ND for its
    # endpoints (proxy) and resolves next hops itself; the endpoints never broadcast.
    l4 = Endpoint(lab, h2, "ipv70", "l4", ipam={"type": "host-local", "ranges": [
        [{"subnet": "198.18.70.0/24", "rangeStart": "198.18.70.128"}],
        [{"subnet": "2001:db8:70::/64", "rangeStart": "2001:db8:70::8000"}]]})
    trunk = sw_capture(lab, "t1", ["vlan", "70"])
    p4 = l1.run(["ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", l4.ip4])
    p6 = l1.run(["ping", "-n", "-c", "3", "-i", "0.3", "-W", "2", l4.ip6])
    wire = trunk.stop()
    c.check("ipvlan l3: endpoints on different hosts reach each other over IPv4 and IPv6 (first packet resolves "
            "the next hop)", p4.returncode == 0 and p6.returncode == 0, p4.stdout[-200:] + p6.stdout[-200:])
    h2mac = h2.sh("cat /sys/class/net/eth1/address").stdout.strip()
    arp = [ln for ln in wire.splitlines() if "ARP" in ln]
    nd = [ln for ln in wire.splitlines() if "neighbor" in ln]
    c.check("... ARP and neighbour discovery on VLAN 70 come from the hosts' trunk MACs, answers by proxy",
            arp and nd and all(ln.split()[1] in (h1mac, h2mac) for ln in arp + nd)
            and any("is-at " + h2mac in ln for ln in arp) and any("advertisement" in ln for ln in nd), wire[-1200:])
    stats = json.loads(h2.ctl("show", "stats", "--json").stdout)["traffic"]
    c.check("show stats counts the answers (vlan_proxy)", stats["vlan_proxy"]["packets"] >= 2, stats)


def docker_options(lab, c, h1, h2):
    """Docker's other VLAN options: ipvlan_flag private/vepa, ipvlan_mode l3s, IPv6-only
    networks (--ipv4=false), several subnets with their own --ip-range and --gateway."""
    for h in (h1, h2):
        create(h, "-d", "ipvlan", "--subnet", "198.18.110.0/24", "-o", "parent=eth1.110", "-o", "ipvlan_flag=private",
               "ipvpriv")
        create(h, "-d", "macvlan", "--ipv4=false", "--ipv6", "--subnet", "2001:db8:113::/64", "-o", "parent=eth1.113",
               "v6only")
    create(h1, "-d", "ipvlan", "--subnet", "198.18.111.0/24", "-o", "parent=eth1.111", "-o", "ipvlan_flag=vepa", "ipvvepa")
    create(h1, "-d", "ipvlan", "--subnet", "198.18.112.0/24", "-o", "parent=eth1.112", "-o", "ipvlan_mode=l3s", "ipvl3s")
    create(h1, "-d", "macvlan", "--subnet", "198.18.114.0/24", "--subnet", "198.18.115.0/24",
           "--ip-range", "198.18.115.64/26", "--ip-range", "198.18.114.192/26", "--gateway", "198.18.115.254",
           "-o", "parent=eth1.114", "multi")
    upper = lambda net: {"ipam": {"type": "host-local", "ranges": [[{"subnet": net, "rangeStart": net.replace(  # noqa: E731
        ".0/24", ".128")}]]}}
    a, b = Endpoint(lab, h1, "ipvpriv", "pr1"), Endpoint(lab, h1, "ipvpriv", "pr2")
    r = Endpoint(lab, h2, "ipvpriv", "pr3", **upper("198.18.110.0/24"))
    before = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["vlan_private"]["packets"]
    # Broadcast (ARP) never reaches a local neighbour either; a known MAC gets the unicast sent.
    a.run(["ip", "neigh", "replace", b.ip4, "lladdr", b.mac, "dev", "eth0"])
    p, q = a.ping(b.ip4, count=1), a.ping(r.ip4)
    after = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["vlan_private"]["packets"]
    c.check("ipvlan_flag=private: local endpoints cannot reach each other (vlan_private), the other host's can",
            p.returncode != 0 and q.returncode == 0 and after > before,
            (p.stdout[-150:], q.stdout[-150:], before, after, a.result, r.result))
    v1, v2 = through_switch(lab, c, h1, "ipvvepa", 111, "ipvlan_flag=vepa")
    s1, s2 = Endpoint(lab, h1, "ipvl3s", "s1"), Endpoint(lab, h1, "ipvl3s", "s2")
    p = s1.ping(s2.ip4)
    c.check("ipvlan_mode=l3s: routed like l3 (the agent logs that netfilter does not see it)",
            s1.rc == 0 and p.returncode == 0 and "l3s is forwarded as l3" in h1.log(), p.stdout[-200:])
    x1 = Endpoint(lab, h1, "v6only", "x1")
    x2 = Endpoint(lab, h2, "v6only", "x2", ipam={"type": "host-local", "ranges": [
        [{"subnet": "2001:db8:113::/64", "rangeStart": "2001:db8:113::8000"}]]})
    p = x1.ping(x2.ip6)
    c.check("IPv6-only network (--ipv4=false): endpoints get only IPv6 and reach each other across hosts",
            x1.ip4 is None and x1.ip6 and p.returncode == 0, (x1.result, p.stdout[-200:]))
    m = Endpoint(lab, h1, "multi", "mu1")
    route = m.run(["ip", "route", "show", "default"]).stdout
    c.check("several subnets with their own --ip-range: the address comes from the first subnet's range",
            m.rc == 0 and m.ip4 and m.ip4.startswith("198.18.114.19") and "via 198.18.114.1 " in route,
            (m.result, route))
    # No -o parent: as Docker, an internal network of this host's endpoints only.
    create(h1, "-d", "macvlan", "--subnet", "198.18.116.0/24", "lone")
    create(h1, "-d", "ipvlan", "--subnet", "198.18.117.0/24", "lone2")
    o1, o2 = Endpoint(lab, h1, "lone", "o1"), Endpoint(lab, h1, "lone", "o2")
    q1, q2 = Endpoint(lab, h1, "lone2", "q1"), Endpoint(lab, h1, "lone2", "q2")
    route = o1.run(["ip", "route", "show", "default"]).stdout
    p, q = o1.ping(o2.ip4), q1.ping(q2.ip4)
    c.check("network without parent (macvlan and ipvlan): local endpoints reach each other, no default route",
            o1.rc == 0 and q1.rc == 0 and p.returncode == 0 and q.returncode == 0 and route.strip() == "",
            (o1.result, p.stdout[-150:], q.stdout[-150:], route))
    before = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["vlan_no_parent"]["packets"]
    o1.run(["ip", "neigh", "replace", "198.18.116.99", "lladdr", "02:42:00:00:00:99", "dev", "eth0"])
    trunk = sw_capture(lab, "t1")
    p = o1.ping("198.18.116.99", count=1)
    o1.ping("198.18.116.98", count=1)  # unanswered ARP: flooded to the local endpoints only
    wire = trunk.stop()
    after = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["vlan_no_parent"]["packets"]
    c.check("... nothing they send leaves the host (vlan_no_parent), not even ARP",
            p.returncode != 0 and after > before and o1.mac not in wire, (before, after, wire[-300:]))
    for e in (a, b, r, v1, v2, s1, s2, x1, x2, m, o1, o2, q1, q2):
        e.delete()
    for h, names in ((h1, ("ipvpriv", "v6only", "ipvvepa", "ipvl3s", "multi", "lone", "lone2")),
                     (h2, ("ipvpriv", "v6only"))):
        for name in names:
            h.ctl("network", "delete", name)


def shared_underlay(lab, c, h1, h2):
    """The overlay's underlay (eth0) as trunk too: one tc program on it does both."""
    for h, rng in ((h1, "198.18.80.0/25"), (h2, "198.18.80.128/25")):
        create(h, "-d", "macvlan", "--subnet", "198.18.80.0/24", "--ip-range", rng, "-o", "parent=eth0.80", "u80")
    L.wait_for("agents attached the underlay as trunk", lambda: all(
        "VLAN trunk eth0: tc ingress (shared with the overlay underlay)" in h.log() for h in (h1, h2)), 10)
    u1, u2 = Endpoint(lab, h1, "u80", "u1"), Endpoint(lab, h2, "u80", "u2")
    p = u1.ping(u2.ip4)
    c.check("VLAN network on the overlay's underlay: endpoints reach each other", p.returncode == 0, p.stdout[-200:])
    p = L.run(h1.cmd(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", h2.ip]), check=False)
    c.check("... and the host's own traffic on it still passes", p.returncode == 0, p.stdout[-200:])
    filters = h1.sh("tc filter show dev eth0 ingress").stdout
    c.check("one tc program on the shared interface (cppnet_tc_underlay)",
            filters.count(" handle ") == 1 and "name cppnet_tc_under" in filters, filters)


def untagged(lab, c, h1, h2, vlan20_remote):
    """parent=eth1: the network is the trunk's untagged traffic."""
    create(h1, "-d", "macvlan", "--subnet", "198.18.90.0/24", "--ip-range", "198.18.90.0/25", "--aux-address",
           "router=198.18.90.2", "--internal", "-o", "parent=eth1", "flat")
    create(h2, "-d", "macvlan", "--subnet", "198.18.90.0/24", "--ip-range", "198.18.90.128/25", "-o", "parent=eth1",
           "flat")
    f1, f2 = Endpoint(lab, h1, "flat", "f1"), Endpoint(lab, h2, "flat", "f2")
    route = f1.run(["ip", "route", "show", "default"]).stdout
    c.check("--aux-address is never handed out; --internal: no default route",
            f1.ip4 == "198.18.90.3" and route.strip() == "", (f1.ip4, route))
    trunk = sw_capture(lab, "t1", ["icmp", "or", "(vlan", "and", "icmp)"])
    p = f1.ping(f2.ip4)
    wire = trunk.stop()
    lines = [ln for ln in wire.splitlines() if f2.ip4 in ln]
    c.check("untagged network (parent=eth1): endpoints reach each other, frames leave without a tag",
            p.returncode == 0 and lines and not any("802.1Q" in ln for ln in lines), p.stdout[-200:] + wire[-400:])

    # VLAN hopping: the untagged endpoint sends a frame already tagged VID 20 to the
    # VLAN 20 endpoint on h2; and frames from addresses that are not its own.
    before = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]
    target = vlan20_remote
    cap = lab.capture(["nsenter", f"--net={target.netns}", "--"], "eth0", ["icmp"])
    far = lab.capture(["nsenter", f"--net={f2.netns}", "--"], "eth0", ["icmp"])
    hop = ("from scapy.all import Ether, Dot1Q, Dot1AD, IP, ICMP, sendp\n"
           f"e = Ether(src='{f1.mac}', dst='{target.mac}')\n"
           f"sendp([e/Dot1Q(vlan=20)/IP(src='{f1.ip4}', dst='{target.ip4}')/ICMP(id=0x2020)] * 3 + "
           f"[e/Dot1AD(vlan=20)/Dot1Q(vlan=20)/IP(src='{f1.ip4}', dst='{target.ip4}')/ICMP(id=0x2121)] * 3, "
           "iface='eth0', verbose=0)\n"
           f"s = Ether(src='{f1.mac}', dst='{f2.mac}')\n"
           f"sendp([s/IP(src='{f2.ip4}', dst='{f2.ip4}')/ICMP(id=0x3030), s/IP(src='198.18.90.77', dst='{f2.ip4}')/"
           "ICMP(id=0x3131)] * 3, iface='eth0', verbose=0)\n")
    f1.run(["/usr/bin/python3", "-c", hop])
    p = f1.ping(f2.ip4, count=1)  # something that does arrive, so the captures have run
    got, got_far = cap.stop(), far.stop()
    after = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]
    c.check("an untagged network's endpoint sending frames tagged VLAN 20 (802.1Q, QinQ): none reaches the VLAN 20 "
            "endpoint on the other host, dropped as vlan_tagged_by_endpoint",
            "id 8224" not in got and "id 8481" not in got and after["vlan_tagged_by_endpoint"]["packets"] -
            before["vlan_tagged_by_endpoint"]["packets"] >= 6, got[-300:])
    c.check("... and its frames from another endpoint's or an unassigned address are dropped (vlan_bad_source)",
            p.returncode == 0 and "id 12336" not in got_far and "id 12593" not in got_far and
            after["vlan_bad_source"]["packets"] - before["vlan_bad_source"]["packets"] >= 6, got_far[-300:])
    # The definition removed by hand under an attached endpoint: DEL still removes it.
    h1.sh("rm /etc/cppnet/networks.d/flat.json")
    before = host_veths(h1)
    rc, out = f1.delete()
    c.check("CNI DEL after the network's definition vanished: endpoint removed from maps and host",
            rc == 0 and f1.mac not in h1.ctl("show", "vlans", "--json").stdout and len(before - host_veths(h1)) == 1,
            out)


def operations(lab, c, h1, local, remote, doomed):
    """Agent restart under traffic; an endpoint whose namespace vanished without CNI DEL."""
    ping = subprocess.Popen(["nsenter", f"--net={local.netns}", "--", "ping", "-n", "-i", "0.02", "-c", "150", "-W", "1",
                             remote.ip4], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lab.pids.append(ping)
    h1.stop_agent()
    h1.start_agent()
    L.wait_for("agent restarted", lambda: h1.log().count("VLAN trunk eth1: tc ingress") >= 2, 15)
    out, _ = ping.communicate(timeout=30)
    c.check("agent restart under a 20 ms ping between VLAN endpoints: no loss", " 0% packet loss" in out,
            out[-300:])
    # The plugin asks the agent for every map write: an ADD during an agent restart waits
    # for the agent (up to 10 s) and then completes.
    h1.stop_agent()
    late = []
    t = threading.Thread(target=lambda: late.append(Endpoint(lab, h1, "vlan10", "late")))
    t.start()
    time.sleep(1)  # the agent stays down for a second while the ADD waits (a restart, modelled)
    h1.start_agent()
    t.join(timeout=30)
    ok = bool(late) and late[0].rc == 0
    p = late[0].ping(remote.ip4) if ok else None
    c.check("CNI ADD during an agent restart waits for the agent and completes",
            ok and p.returncode == 0, late[0].result if late else "no result")
    # The trunk deleted and recreated (a NIC reset, a re-plugged link): endpoints follow it.
    L.run(["ip", "-n", h1.ns, "link", "del", "eth1"])
    L.wait_for("agent reports the missing trunk", lambda: "trunk eth1: no such device" in h1.log(), 10)
    orphan = Endpoint(lab, h1, "vlan10", "orphan")
    c.check("CNI ADD while the trunk is missing: error naming the parent, no address taken",
            orphan.rc == 1 and "parent eth1.10" in orphan.result.get("msg", "")
            and "orphan" not in h1.sh("cat /run/cppnet/ipam/vlan10/* 2>/dev/null", check=False).stdout, orphan.result)
    lab.add_trunk([h1])
    L.wait_for("agent follows the recreated trunk", lambda: "was recreated" in h1.log(), 15)
    p = local.ping(remote.ip4)
    c.check("trunk deleted (reported) and recreated: the agent moves its endpoints to it, traffic resumes",
            p.returncode == 0 and "endpoint(s) moved to it" in h1.log() and "VLAN trunk eth1 is back" in h1.log(),
            p.stdout[-200:] + h1.log()[-300:])
    doomed.proc.kill()
    doomed.proc.wait()
    L.wait_for("vanished endpoint forgotten", lambda: doomed.mac not in h1.ctl("show", "vlans", "--json").stdout, 20)
    c.check("an endpoint whose container vanished without CNI DEL is removed from the maps by the agent",
            "is gone; removed from the maps" in h1.log(), h1.log()[-400:])


def lifecycle(lab, c, h1, eps):
    shown = json.loads(h1.ctl("show", "vlans", "--json").stdout)
    v10 = next(n for n in shown if n["name"] == "vlan10")
    a1 = next(e for e in v10["endpoints"] if e["mac"] == eps[0].mac)
    c.check("cppnetctl show vlans: networks, endpoints, MACs, IPs, counters",
            v10["vlan"] == 10 and v10["parent"] == "eth1.10" and eps[0].ip4 in a1["ips"] and eps[0].ip6 in a1["ips"]
            and a1["tx_packets"] > 0 and a1["rx_packets"] > 0, v10)
    text = h1.ctl("show", "vlans").stdout
    c.check("show vlans (table) lists the endpoint", eps[0].mac in text and "macvlan bridge" in text, text)
    a1e = eps[0]
    rc, out = cni_call(h1, "ADD", a1e.netns, a1e.cid, conf("vlan10"))
    p = a1e.ping(eps[1].ip4, count=1)
    c.check("a repeated ADD is refused and leaves the attached endpoint working",
            rc == 1 and "is already attached" in out.get("msg", "") and p.returncode == 0, (out, p.stdout[-200:]))
    rc, out = cni_call(h1, "CHECK", a1e.netns, a1e.cid, conf("vlan10", prevResult=a1e.result))
    c.check("CNI CHECK with the ADD result passes", rc == 0, out)
    before = host_veths(h1)
    rc, out = a1e.delete()
    after = host_veths(h1)
    shown = json.loads(h1.ctl("show", "vlans", "--json").stdout)
    v10 = next(n for n in shown if n["name"] == "vlan10")
    leases = h1.sh("ls /run/cppnet/ipam/vlan10", check=False).stdout
    c.check("CNI DEL: veth gone, endpoint gone from the maps, addresses released",
            rc == 0 and len(before - after) == 1 and all(e["mac"] != a1e.mac for e in v10["endpoints"])
            and a1e.ip4 not in leases and a1e.ip6 not in leases,
            (rc, out, before - after, v10, leases))
    rc, out = a1e.delete()
    c.check("CNI DEL again: nothing to do, success", rc == 0, out)
    rc, out = cni_call(h1, "CHECK", a1e.netns, a1e.cid, conf("vlan10", prevResult=a1e.result))
    c.check("CNI CHECK after DEL fails naming the missing veth", rc == 1 and "is missing" in out.get("msg", ""), out)
    p = eps[2].ping(eps[1].ip4, count=1)
    c.check("the other endpoints keep working", p.returncode == 0, p.stdout[-200:])
    p = h1.ctl("network", "delete", "vlan10", check=False)
    c.check("network delete with attached endpoints: refused as Docker does",
            p.returncode == 1 and "error while removing network: network vlan10 has active endpoints" in p.stderr,
            p.stderr)

    # No agent: the plugin waits its bounded time, then answers "try again later".
    h1.stop_agent()
    t0 = time.monotonic()
    rc, out = cni_call(h1, "ADD", eps[2].netns, "noagent", conf("vlan10"))
    waited = time.monotonic() - t0
    c.check("CNI ADD without a running agent: error 11 after a bounded wait (10 s)",
            rc == 1 and out.get("code") == 11 and "cppnet-agent is not running" in out.get("msg", "")
            and 9 < waited < 20, (out, waited))
    # Uninstall: every VLAN trace (trunk and endpoint programs, pinned program and maps).
    p = L.run(h1.cmd([L.AGENT, "--cleanup"]), check=False, timeout=30)
    filters = h1.sh("for d in $(ls /sys/class/net); do tc filter show dev $d ingress; done").stdout
    pins = h1.sh("ls /sys/fs/bpf/cppnet 2>/dev/null", check=False).stdout
    c.check("--cleanup removes the trunk and endpoint programs and the pinned maps and program",
            p.returncode == 0 and "tc ingress filter on eth1" in p.stdout and "cppnet" not in filters and not pins.strip(),
            p.stdout + filters + pins)


if __name__ == "__main__":
    raise SystemExit(run_scenario("vlan_datapath", scenario))
