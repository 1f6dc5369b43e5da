#!/usr/bin/env python3
"""Interoperability on the wire: one lab host is set up only with kernel tools the
way flanneld's vxlan backend configures a node (flannel.1 vxlan device, permanent
neighbour and FDB entries, onlink routes) and writes its lease in flanneld's JSON.
Containers on cppnet hosts and on that host must reach each other both ways."""
import json

from .common import L, run_scenario


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
        sent, got = L.tcp_transfer(a, b, size=4 << 20)
        c.check(f"TCP 4 MiB cppnet {a} -> flannel {b}: sha256 matches", sent == got, f"{sent} {got}")
        sent, got = L.tcp_transfer(b, a, size=4 << 20, port=5002)
        c.check(f"TCP 4 MiB flannel {b} -> cppnet {a}: sha256 matches", sent == got, f"{sent} {got}")

    rx = fl.sh("ip -s -j link show dev flannel.1").stdout
    stats = json.loads(rx)[0]["stats64"]
    c.check("the kernel vxlan device on the flannel host carried the traffic",
            stats["rx"]["packets"] > 0 and stats["tx"]["packets"] > 0 and stats["rx"]["errors"] == 0, stats)
    cs = json.loads(cpp[0].ctl("show", "stats", "--json").stdout)
    c.check("cppnet counted no drops talking to a kernel vxlan peer",
            all(v["packets"] == 0 for v in cs["drops"].values()), cs["drops"])

    static_routes(lab, c, cpp)


def static_routes(lab, c, cpp):
    """A kernel VTEP that publishes no lease, reached with `cppnetctl route add`."""
    h1, h2 = cpp
    f2, gw2 = lab.flannel_host(4, "198.19.202.0/24", lease=False)
    f2.add_bridge_and_containers(gw2, 1450, count=1)
    lab.flannel_sync(f2)
    net = "198.19.202.0/24"
    p = h1.ctl("route", "add", net, "via", f2.ip, "vtep-mac", f2.vtep_mac, check=False)
    c.check("route add: accepted", p.returncode == 0, p.stderr)
    r = h1.routes().get(net, {})
    c.check("route list: static entry with the given VtepMAC", r.get("origin") == "static"
            and r.get("vtep_mac") == f2.vtep_mac and r.get("public_ip") == f2.ip, r)
    a, b = h1.containers[0], f2.containers[0]
    p = a.ping(b.ip)
    c.check("static route carries traffic to the lease-less VTEP", p.returncode == 0, p.stdout[-200:])
    # A lease for the same subnet: h2 installs it, h1 keeps its static entry.
    key = "/coreos.com/network/subnets/198.19.202.0-24"
    lab.etcdctl("put", key, json.dumps({"PublicIP": "198.18.0.77", "BackendType": "vxlan",
                                       "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:77"}}))
    L.wait_for("h2 installs the lease route", lambda: h2.routes().get(net, {}).get("public_ip") == "198.18.0.77")
    r = h1.routes().get(net, {})
    c.check("static entry survives a lease for the same subnet", r.get("origin") == "static"
            and r.get("public_ip") == f2.ip, r)
    lab.etcdctl("del", key)
    L.wait_for("h2 removes it", lambda: net not in h2.routes())
    # A dual-stack flanneld host's lease ("v4key&v6key", PublicIPv6, BackendV6Data): its IPv4
    # subnet is routed, not skipped as before ("invalid prefix").
    dual = "/coreos.com/network/subnets/198.19.253.0-24&2001:db8:100:fd::-64"
    lab.etcdctl("put", dual, json.dumps({
        "PublicIP": "198.18.0.78", "PublicIPv6": "2001:db8::78", "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:78"},
        "BackendV6Data": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:79"}}))
    L.wait_for("h2 routes the dual-stack lease's IPv4 subnet",
               lambda: h2.routes().get("198.19.253.0/24", {}).get("public_ip") == "198.18.0.78")
    c.check("a dual-stack flanneld lease (v4key&v6key) is routed for its IPv4 subnet",
            "Skipping lease" not in h2.log().split("198.19.253.0-24")[-1], h2.log()[-300:])
    lab.etcdctl("del", dual)
    L.wait_for("h2 removes the dual-stack route", lambda: "198.19.253.0/24" not in h2.routes())
    c.check("static entry survives that lease's deletion", h1.routes().get(net, {}).get("origin") == "static")
    # The agent keeps static routes (routes.json) and restores them: even after --cleanup
    # removed the pinned maps, a new agent puts the route back.
    h1.stop_agent()
    L.run(h1.cmd([L.AGENT, "--cleanup"]), timeout=30)
    h1.start_agent()
    L.wait_for("h1 restores its static route", lambda: h1.routes().get(net, {}).get("origin") == "static", 15)
    L.wait_for("h1 re-attaches its bridge", lambda: h1.config().get("container_iface") == "cni0", 15)
    p = a.ping(b.ip)
    c.check("static route restored by a new agent from routes.json carries traffic",
            p.returncode == 0 and "Static routes: 1 restored" in h1.log(), p.stdout[-200:] + h1.log()[-300:])
    p = h1.ctl("route", "del", h2.subnet, check=False)
    c.check("route del of a lease route: refused, exit 1", p.returncode == 1 and "a lease route" in p.stderr, p.stderr)
    p = h1.ctl("route", "add", "10.9.0.0/24", "via", f2.ip, check=False)
    c.check("route add outside the Network: refused naming it", p.returncode == 1
            and "outside the Network 198.19.0.0/16" in p.stderr, p.stderr)
    p = h1.ctl("route", "add", net, "through", f2.ip, check=False)
    c.check("route add with bad syntax: usage, exit 2", p.returncode == 2 and "usage: route add" in p.stderr, p.stderr)
    p = h1.ctl("route", "del", net, check=False)
    c.check("route del: static route removed", p.returncode == 0 and net not in h1.routes(), p.stderr)
    p = a.ping(b.ip)
    c.check("no route after route del: no traffic", p.returncode != 0)


if __name__ == "__main__":
    raise SystemExit(run_scenario("flannel", scenario))
