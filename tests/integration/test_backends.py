#!/usr/bin/env python3
"""The udp and host-gw backends and switching backends at run time: container
traffic across hosts (ping, checksummed TCP), the wire format on the underlay, the
MTU in subnet.env, flanneld's lease JSON, and a host-gw peer off our L2 segment."""
import json
import subprocess
import time

from .common import L, run_scenario

SUBNETS = "/coreos.com/network/subnets/"


def config(backend):
    return dict(L.VXLAN_CONFIG, Backend=backend)


def capture(lab, port, bpf_filter, action, count=2):
    """tcpdump on the switch port towards a host while `action` runs: hex of each packet from the IP header."""
    p = subprocess.Popen(["ip", "netns", "exec", lab.sw, "tcpdump", "-i", port, "-n", "-l", "-x", "-c", str(count),
                          bpf_filter], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.pids.append(p)
    L.wait_for("tcpdump listening", lambda: "listening" in p.stderr.readline(), 10, 0)
    action()
    out, _ = p.communicate(timeout=15)
    packets, cur = [], ""
    for line in out.splitlines():
        if line.startswith("\t0x"):
            cur += "".join(line.split(":", 1)[1].split())
        elif cur:
            packets.append(bytes.fromhex(cur))
            cur = ""
    if cur:
        packets.append(bytes.fromhex(cur))
    return packets


def traffic(c, a, b, label):
    for s, d in ((a, b), (b, a)):
        p = s.ping(d.ip)
        c.check(f"{label}: ping {s.ip} -> {d.ip}", p.returncode == 0, p.stdout[-200:])
    for s, d, port in ((a, b, 5001), (b, a, 5002)):
        sent, got = L.tcp_transfer(s, d, port=port)
        c.check(f"{label}: TCP 2 MiB {s.ip} -> {d.ip}, sha256 matches", sent == got, f"{sent} {got}")


def path_mtu(c, host, a, b, mtu):
    """Container left at MTU 1500 (Docker without --mtu): too-big DF packets get ICMP
    fragmentation-needed with the overlay MTU, and TCP still gets through."""
    host.sh("ip link set cni0 mtu 1500 && for v in $(ls /sys/class/net | grep ^veth); do ip link set $v mtu 1500; done")
    a.exec(["ip", "link", "set", "eth0", "mtu", "1500"])
    p = a.exec(["ping", "-n", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", b.ip], check=False)
    c.check(f"MTU 1500 container: ping -M do -s 1472 reports frag needed (mtu = {mtu}), no timeout",
            f"mtu = {mtu}" in p.stdout + p.stderr, (p.stdout + p.stderr)[-300:])
    stats = json.loads(host.ctl("show", "stats", "--json").stdout)
    c.check("frag-needed counted", stats["traffic"]["frag_needed_tx"]["packets"] > 0, stats["traffic"])
    sent, got = L.tcp_transfer(a, b, port=5003)
    c.check("MTU 1500 container: TCP 2 MiB across, sha256 matches", sent == got, f"{sent} {got}")
    a.exec(["ip", "link", "set", "eth0", "mtu", str(mtu)])


def routes_are(hosts, backend):
    return all(len(h.routes()) == len(hosts) - 1 and all(r["backend"] == backend for r in h.routes().values())
               for h in hosts)


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(config({"Type": "udp"}))
    hosts = [lab.add_host(1), lab.add_host(2)]
    # Both decapsulation paths: XDP on h1 (forced), tc on h2 (auto on a veth underlay).
    hosts[0].start_agent("--decap=xdp")
    hosts[1].start_agent()
    for h in hosts:
        env = h.subnet_env()
        c.check(f"udp: h{h.index} FLANNEL_MTU is underlay - 28", env["FLANNEL_MTU"] == "1472", env)
        h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1)
        h.subnet = env["FLANNEL_SUBNET"].replace(".1/", ".0/")
    lease = json.loads(lab.leases()[hosts[0].subnet.replace("/", "-")])
    c.check("udp: lease as flanneld's udp backend writes it, plus the CppnetDatapath mark",
            lease["BackendType"] == "udp" and lease["BackendData"] == {"CppnetDatapath": 1} and lease["PublicIP"] == hosts[0].ip, lease)
    L.wait_for("udp routes", lambda: routes_are(hosts, "udp"))
    r = hosts[0].routes()[hosts[1].subnet]
    c.check("udp: route to the peer on port 8285", r["port"] == 8285 and r["public_ip"] == hosts[1].ip, r)
    a, b = hosts[0].containers[0], hosts[1].containers[0]
    traffic(c, a, b, "udp")
    for h in hosts:
        t = json.loads(h.ctl("show", "stats", "--json").stdout)["traffic"]
        c.check(f"udp: h{h.index} delivers straight into the container once it is learned",
                t["deliver_direct"]["packets"] > 0 and t["udp_rx"]["packets"] > 0, t)
    pkts = capture(lab, "p2", f"udp dst port 8285 and dst host {hosts[1].ip}", lambda: a.ping(b.ip, count=2))
    ok = len(pkts) == 2 and all(p[9] == 17 and p[22:24] == (8285).to_bytes(2, "big") and p[28] == 0x45
                                and ".".join(map(str, p[28 + 12:28 + 16])) == a.ip
                                and ".".join(map(str, p[28 + 16:28 + 20])) == b.ip for p in pkts)
    c.check("udp on the wire: UDP to port 8285 whose payload is the inner IPv4 packet", ok, [p[:48].hex() for p in pkts])
    path_mtu(c, hosts[0], a, b, 1472)

    # Switch the backend at run time: leases are re-published, no agent restarts.
    pids = [h.agent.pid for h in hosts]
    lab.put_config(config({"Type": "vxlan"}))
    L.wait_for("vxlan leases", lambda: all(json.loads(v)["BackendType"] == "vxlan" for v in lab.leases().values()), 10)
    L.wait_for("vxlan routes", lambda: routes_are(hosts, "vxlan"), 10)
    c.check("udp -> vxlan: leases re-published and routes switched, same agents",
            [h.agent.pid for h in hosts] == pids and all("re-published" in h.log() for h in hosts))
    p = a.ping(b.ip, count=2)
    c.check("udp -> vxlan: ping works after the switch", p.returncode == 0, p.stdout[-200:])
    c.check("vxlan: XDP decapsulation on h1 (--decap=xdp), none on h2 (tc on a veth underlay)",
            "prog/xdp" in hosts[0].sh("ip -d link show eth0").stdout
            and "prog/xdp" not in hosts[1].sh("ip -d link show eth0").stdout)
    c.check("udp -> vxlan: subnet.env now has the vxlan MTU", hosts[0].subnet_env()["FLANNEL_MTU"] == "1450")
    path_mtu(c, hosts[0], a, b, 1450)

    # Measure the disruption of the switch: 400 pings 10 ms apart across it.
    pinger = a.popen(["ping", "-n", "-q", "-i", "0.01", "-c", "400", "-W", "1", b.ip])
    time.sleep(1)  # part of the measurement window: traffic flows before the switch
    lab.put_config(config({"Type": "host-gw"}))
    L.wait_for("host-gw routes", lambda: routes_are(hosts, "host-gw"), 10)
    out, _ = pinger.communicate(timeout=30)
    received = int(out.split(" received")[0].split(",")[-1])
    gap_ms = (400 - received) * 10
    c.check(f"vxlan -> host-gw switch: {400 - received} of 400 pings lost (~{gap_ms} ms of disruption)",
            gap_ms <= 2000, out[-200:])
    c.check("vxlan -> host-gw: routes switched", all(r["public_ip"] in (hosts[0].ip, hosts[1].ip)
                                                      for h in hosts for r in h.routes().values()))
    c.check("host-gw: FLANNEL_MTU is the underlay MTU", hosts[0].subnet_env()["FLANNEL_MTU"] == "1500")
    L.wait_for("XDP detached", lambda: all("prog/xdp" not in h.sh("ip -d link show eth0").stdout for h in hosts), 10)
    c.check("host-gw: no XDP program left on the underlay (nothing to decapsulate)", True)
    traffic(c, a, b, "host-gw")
    pkts = capture(lab, "p2", f"icmp and host {b.ip}", lambda: a.ping(b.ip, count=1))
    c.check("host-gw on the wire: container packets routed unencapsulated",
            len(pkts) == 2 and all(p[9] == 1 for p in pkts), [p[:20].hex() for p in pkts])

    # A host-gw peer that is not on our L2 segment: skipped with a clear error, nothing breaks.
    far = lab.add_host(3, ip="198.18.1.3")
    # It reaches etcd (host routes both ways), but shares no prefix with the other hosts.
    far.sh(f"ip route add {L.SWITCH_IP}/32 dev eth0")
    L.run(["ip", "-n", lab.sw, "route", "add", "198.18.1.3/32", "dev", "br0"])
    far.start_agent()
    far_subnet = far.subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0/")
    L.wait_for("unreachable logged", lambda: "network is unreachable" in hosts[0].log(), 10)
    line = next(l for l in hosts[0].log().splitlines() if "network is unreachable" in l)
    c.check("host-gw peer off-segment: error names the subnet and PublicIP",
            far_subnet in line and "198.18.1.3" in line, line)
    c.check("host-gw peer off-segment: no route, agents keep running",
            far_subnet not in hosts[0].routes() and all(h.agent.poll() is None for h in hosts + [far]))
    metrics = hosts[0].sh("curl -s http://127.0.0.1:9471/metrics").stdout
    c.check("host-gw peer off-segment: counted in cppnet_leases_skipped", "cppnet_leases_skipped 1" in metrics,
            metrics[:300])
    c.check("/metrics exports the datapath counters by name",
            'cppnet_packets_total{counter="hostgw_tx"}' in metrics
            and 'cppnet_drops_total{reason="too_big"}' in metrics, metrics[-400:])
    traffic(c, a, b, "host-gw after the off-segment peer")

    # vxlan with DirectRouting: the same-segment peer host-gw style, the other by vxlan.
    far.sh("ip route add 198.18.0.0/24 dev eth0")  # L2 reachable, but no shared prefix
    for h in hosts:
        h.sh("ip route add 198.18.1.3/32 dev eth0")
    far.add_bridge_and_containers(far.subnet_env()["FLANNEL_SUBNET"], 1450, count=1)
    lab.put_config(config({"Type": "vxlan", "DirectRouting": True}))
    L.wait_for("mixed routes", lambda: hosts[0].routes().get(hosts[1].subnet, {}).get("backend") == "host-gw"
               and hosts[0].routes().get(far_subnet, {}).get("backend") == "vxlan", 15)
    c.check("DirectRouting: same-segment peer host-gw, off-segment peer vxlan (per peer)", True)
    c.check("DirectRouting: host-gw entry carries no tunnel port", hosts[0].routes()[hosts[1].subnet]["port"] == 0)
    traffic(c, a, b, "DirectRouting same segment")
    traffic(c, a, far.containers[0], "DirectRouting across segments (vxlan)")


if __name__ == "__main__":
    raise SystemExit(run_scenario("backends", scenario))
