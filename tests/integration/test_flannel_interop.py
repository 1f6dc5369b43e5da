#!/usr/bin/env python3
"""Interoperability on the wire: one lab host is set up only with kernel tools the
way flanneld's vxlan backend configures a node (flannel.1 vxlan device, permanent
neighbour and FDB entries, onlink routes) and writes its lease in flanneld's JSON.
Containers on cppnet hosts and on that host must reach each other both ways."""
import json

from common import L, run_scenario


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config()
    cpp = [lab.add_host(1), lab.add_host(2)]
    for h in cpp:
        h.start_agent()
    for h in cpp:
        env = h.subnet_env()
        h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1)
        h.subnet = env["FLANNEL_SUBNET"].replace(".1/", ".0/")
    fl, gw = lab.flannel_host(3, "198.19.200.0/24")
    fl.add_bridge_and_containers(gw, 1450, count=2)
    lab.flannel_sync(fl)  # what flanneld does when it sees the cppnet leases

    L.wait_for("cppnet hosts route to the flannel subnet",
               lambda: all("198.19.200.0/24" in h.routes() for h in cpp))
    vtep = fl.sh("cat /sys/class/net/flannel.1/address").stdout.strip()
    r = cpp[0].routes()["198.19.200.0/24"]
    c.check("flanneld's lease installed with its VtepMAC and PublicIP", r["vtep_mac"] == vtep and r["public_ip"] == fl.ip, r)
    neigh = fl.sh("ip neigh show dev flannel.1").stdout
    c.check("flannel host has permanent neighbours for the cppnet VTEPs",
            all(h.subnet.split("/")[0] in neigh for h in cpp), neigh)

    for h in cpp:
        for a in h.containers:
            for b in fl.containers:
                p = a.ping(b.ip)
                c.check(f"cppnet {a} -> flannel {b}: ping", p.returncode == 0, p.stdout[-200:])
                p = b.ping(a.ip)
                c.check(f"flannel {b} -> cppnet {a}: ping", p.returncode == 0, p.stdout[-200:])
        a, b = h.containers[0], fl.containers[0]
        sent, got = L.tcp_transfer(a, b)
        c.check(f"TCP 2 MiB cppnet {a} -> flannel {b}: sha256 matches", sent == got, f"{sent} {got}")
        sent, got = L.tcp_transfer(b, a, port=5002)
        c.check(f"TCP 2 MiB flannel {b} -> cppnet {a}: sha256 matches", sent == got, f"{sent} {got}")

    rx = fl.sh("ip -s -j link show dev flannel.1").stdout
    stats = json.loads(rx)[0]["stats64"]
    c.check("the kernel vxlan device on the flannel host carried the traffic",
            stats["rx"]["packets"] > 0 and stats["tx"]["packets"] > 0 and stats["rx"]["errors"] == 0, stats)
    cs = json.loads(cpp[0].ctl("show", "stats", "--json").stdout)
    c.check("cppnet counted no drops talking to a kernel vxlan peer",
            all(v["packets"] == 0 for v in cs["drops"].values()), cs["drops"])


if __name__ == "__main__":
    raise SystemExit(run_scenario("flannel", scenario))
