#!/usr/bin/env python3
"""Migration from flanneld in place (issue 15): a host set up as flanneld's vxlan backend does
(flannel.1, its lease in etcd, containers on its bridge) is converted to cppnet with the commands
the README gives, while a container on a cppnet host pings one of its containers every 10 ms:
flanneld stopped, cppnet-agent started (it reclaims the same subnet by PublicIP and takes the
datapath over), flannel.1 deleted with its routes and FDB entries. The loss is measured."""
import ipaddress
import json
import re

from .common import L, overlay_hosts, run_scenario

PINGS = 1000  # 10 s at 10 ms
LOSS_MAX_S = 1.0


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h1, = overlay_hosts(lab, n=1)
    env = h1.subnet_env()
    fl, gw = lab.flannel_host(3, "198.19.200.0/24")
    fl.add_bridge_and_containers(gw, 1450, count=1)
    lab.flannel_sync(fl)
    L.wait_for("h1 routes to the flanneld host", lambda: "198.19.200.0/24" in h1.routes())
    a, b = h1.containers[0], fl.containers[0]
    p = a.ping(b.ip, count=2)
    c.check(f"before: {a.ip} on cppnet reaches {b.ip} behind flannel.1", p.returncode == 0, p.stdout[-200:])
    old_lease = json.loads(lab.leases()["198.19.200.0-24"])

    pinger = a.popen(["ping", "-n", "-q", "-i", "0.01", "-c", str(PINGS), "-W", "1", b.ip])
    # The README's steps: stop flanneld (nothing runs here: its kernel state and lease stay),
    # start cppnet-agent, wait until it is ready, then remove flannel.1.
    fl.start_agent()
    L.wait_for("cppnet-agent ready on the converted host",
               lambda: "Datapath attached" in fl.log() and "198.19.200.1/24" in fl.sh(
                   "cat /run/flannel/subnet.env", check=False).stdout, 20)
    fl.sh("ip link del flannel.1")
    out, _ = pinger.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    sent, got = (int(m[1]), int(m[2])) if m else (0, 0)
    loss_s = (sent - got) * 0.01
    c.check(f"migration under a 10 ms ping: {sent - got} of {sent} lost ({loss_s:.2f} s, goal <= {LOSS_MAX_S} s)",
            sent == PINGS and loss_s <= LOSS_MAX_S, out)

    lease = json.loads(lab.leases().get("198.19.200.0-24", "{}"))
    c.check("the same subnet, reclaimed by PublicIP: the key now carries cppnet's VtepMAC",
            lease.get("PublicIP") == fl.ip and lease.get("BackendData", {}).get("VtepMAC") != old_lease[
                "BackendData"]["VtepMAC"] and "Lease acquired: 198.19.200.0/24" in fl.log(), (lease, old_lease))
    L.wait_for("h1 follows the new VtepMAC",
               lambda: h1.routes()["198.19.200.0/24"]["vtep_mac"] == lease["BackendData"]["VtepMAC"])
    links = fl.sh("ip -o link show").stdout
    routes = fl.sh("ip route show").stdout
    c.check("flannel.1, its routes and FDB entries are gone", "flannel.1" not in links and "flannel.1" not in routes,
            routes)
    for src, dst in ((a, b), (b, a)):
        p = src.ping(dst.ip, count=2)
        c.check(f"after: {src.ip} reaches {dst.ip}", p.returncode == 0, p.stdout[-200:])
    n = ipaddress.ip_network(env["FLANNEL_SUBNET"], strict=False)
    c.check("the converted host's datapath routes h1's subnet", str(n) in fl.routes(), fl.routes())


if __name__ == "__main__":
    raise SystemExit(run_scenario("mig", scenario))
