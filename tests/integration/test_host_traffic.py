#!/usr/bin/env python3
"""The host itself and containers on other hosts, both ways, for every backend: the host's
overlay address is its subnet's .0 on cppnet.host (as flanneld's flannel.1 has it), its
route to the Network goes through that device, and the datapath delivers answers back
into the host. Also between cppnet hosts and a kernel host set up as flanneld's vxlan."""
import json

from .common import L, overlay_hosts, run_scenario


def host_side(h):
    """The host as a party to ping/TCP: its netns and its overlay address."""
    env = h.subnet_env()
    return L.Container(h.ns, env["FLANNEL_SUBNET"].replace(".1/", ".0/").split("/")[0], h)


def both_ways(c, label, h, remote_container, tcp=True, port=5100):
    me = host_side(h)
    p = me.ping(remote_container.ip)
    c.check(f"{label}: host h{h.index} ({me.ip}) -> remote container {remote_container.ip}: ping",
            p.returncode == 0, p.stdout[-200:])
    p = remote_container.ping(me.ip)
    c.check(f"{label}: remote container {remote_container.ip} -> host h{h.index} ({me.ip}): ping",
            p.returncode == 0, p.stdout[-200:])
    if not tcp:
        return
    for s, d, pt in ((me, remote_container, port), (remote_container, me, port + 1)):
        try:
            sent, got = L.tcp_transfer(s, d, size=4 << 20, port=pt)
        except L.LabError as e:
            sent, got = None, str(e)[-200:]
        c.check(f"{label}: TCP 4 MiB {s.ip} -> {d.ip}, sha256 matches", sent == got, f"{sent} {got}")


def routes_are(hosts, backend):
    return all(len(h.routes()) >= len(hosts) - 1 and all(r["backend"] == backend for r in h.routes().values())
               for h in hosts)


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    hosts = overlay_hosts(lab, 2, containers=1)
    fl, gw = lab.flannel_host(3, "198.19.200.0/24")
    fl.add_bridge_and_containers(gw, 1450, count=1)
    lab.flannel_sync(fl)
    L.wait_for("routes", lambda: all(len(h.routes()) == 2 for h in hosts))
    h1, h2 = hosts

    me = host_side(h1)
    out = h1.sh(f"ip -o addr show dev cppnet.host; ip route get {h2.containers[0].ip}").stdout
    c.check("cppnet.host holds the subnet's .0/32 and the route to a remote container uses it with that source",
            f"inet {me.ip}/32" in out and "dev cppnet.host" in out and f"src {me.ip}" in out, out)
    both_ways(c, "vxlan", h1, h2.containers[0])
    both_ways(c, "vxlan, kernel flannel host", h1, fl.containers[0], port=5110)
    # The kernel host itself (its flannel.1 address) and a cppnet container, both ways.
    fme = L.Container(fl.ns, "198.19.200.0", fl)
    p = fme.ping(h1.containers[0].ip)
    c.check("kernel flannel host (flannel.1 address) -> cppnet container: ping", p.returncode == 0, p.stdout[-200:])
    p = h1.containers[0].ping(fme.ip)
    c.check("cppnet container -> kernel flannel host's flannel.1 address: ping", p.returncode == 0, p.stdout[-200:])
    p = fme.ping(me.ip)
    c.check("kernel flannel host -> cppnet host's overlay address: ping", p.returncode == 0, p.stdout[-200:])
    st = json.loads(h1.ctl("show", "stats", "--json").stdout)["traffic"]
    c.check("counted: host_tx and deliver_host", st["host_tx"]["packets"] > 0 and st["deliver_host"]["packets"] > 0, st)
    p = h1.sh("ping -n -c 1 -W 1 198.19.250.9", check=False)
    st = json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]
    c.check("an overlay address no lease covers: no answer, counted no_route",
            p.returncode != 0 and st["no_route"]["packets"] > 0, st["no_route"])

    # Strict reverse-path filtering on the host: answers arrive on cppnet.host, the device of
    # the host's route to them, so they pass.
    h1.sh("sysctl -qw net.ipv4.conf.all.rp_filter=1 net.ipv4.conf.cppnet/host.rp_filter=1 "
          "net.ipv4.conf.eth0.rp_filter=1")
    both_ways(c, "vxlan, rp_filter=1", h1, h2.containers[0], tcp=False)
    h1.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.cppnet/host.rp_filter=0 "
          "net.ipv4.conf.eth0.rp_filter=0")
    # A restart keeps the device, its one address and the route.
    h1.stop_agent()
    h1.start_agent()
    L.wait_for("h1 ready again", lambda: "Datapath attached" in h1.log().split("cppnet-agent starting")[-1])
    out = h1.sh("ip -o -4 addr show dev cppnet.host").stdout
    c.check("after an agent restart: cppnet.host still holds exactly the one address",
            out.count("inet ") == 1 and f"inet {me.ip}/32" in out, out)
    both_ways(c, "vxlan, after a restart", h1, h2.containers[0], tcp=False)

    # The other backends, switched at run time (the kernel host speaks vxlan only).
    lab.etcdctl("del", "/coreos.com/network/subnets/198.19.200.0-24")
    for backend, want in (({"Type": "udp"}, "udp"), ({"Type": "host-gw"}, "host-gw"),
                          ({"Type": "vxlan", "DirectRouting": True}, "host-gw")):
        lab.put_config(dict(L.VXLAN_CONFIG, Backend=backend))
        L.wait_for(f"routes switched to {want}", lambda: routes_are(hosts, want), 20)
        label = backend["Type"] + (" DirectRouting" if backend.get("DirectRouting") else "")
        # The peer's MAC forgotten: the host's first packet waits for ARP and still arrives.
        h1.sh(f"ip neigh flush dev eth0 to {h2.ip}", check=False)
        both_ways(c, label, h1, h2.containers[0], port=5120)
        both_ways(c, label, h2, h1.containers[0], tcp=False)


if __name__ == "__main__":
    raise SystemExit(run_scenario("host", scenario))
