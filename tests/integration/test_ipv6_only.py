#!/usr/bin/env python3
"""An IPv6-only overlay (EnableIPv4 false; beyond flanneld, which has none with etcd): leases are
IPv6-only keys without PublicIP, subnet.env has only the IPv6 variables, containers have only
IPv6 addresses and reach each other and the hosts over VXLAN in IPv6 and host-gw, the CNI plugin
gives an IPv6 address only, and the hosts' own IPv4 traffic is left alone."""
import json

from .common import L, ipv6_hosts, ping6, run_scenario

CONFIG = {"EnableIPv4": False, "EnableIPv6": True, "IPv6Network": "2001:db8:100::/48",
          "Backend": {"Type": "vxlan"}}


def scenario(lab, c):
    hosts, envs = ipv6_hosts(lab, CONFIG)
    for h, env in zip(hosts, envs):
        c.check(f"h{h.index} subnet.env: IPv6 variables only",
                "FLANNEL_NETWORK" not in env and "FLANNEL_SUBNET" not in env
                and env.get("FLANNEL_IPV6_NETWORK") == "2001:db8:100::/48"
                and env.get("FLANNEL_IPV6_SUBNET", "").endswith("::1/64") and env.get("FLANNEL_MTU") == "1430", env)
    leases = {k: json.loads(v) for k, v in lab.leases().items()}
    c.check("leases: IPv6-only keys, PublicIPv6 and BackendV6Data, no PublicIP",
            len(leases) == 2 and all("&" not in k and ":" in k and "PublicIP" not in v and v.get("PublicIPv6")
                                     and v.get("BackendV6Data", {}).get("VtepMAC") for k, v in leases.items()),
            leases)
    for h, env in zip(hosts, envs):
        h.add_bridge_and_containers(None, env["FLANNEL_MTU"], count=1, subnet6_gw=env["FLANNEL_IPV6_SUBNET"])
    L.wait_for("routes to both IPv6 subnets", lambda: all(len(h.routes()) == 1 for h in hosts))
    a, b = hosts[0].containers[0], hosts[1].containers[0]
    ping6(c, a, b.ip6, "container h1 -> container h2")
    ping6(c, b, a.ip6, "container h2 -> container h1")
    for s, d, port in ((a, b, 5001), (b, a, 5002)):
        sent, got = L.tcp_transfer(s, d, size=4 << 20, port=port, ipv6=True)
        c.check(f"TCP 4 MiB over IPv6 {s.ip6} -> {d.ip6}: sha256 matches", sent == got, f"{sent} {got}")
    # The host's overlay address: the IPv6 subnet's ::0 on cppnet.host.
    me = L.Container(hosts[0].ns, None, hosts[0])
    me.ip6 = envs[0]["FLANNEL_IPV6_SUBNET"].replace("::1/", "::/").split("/")[0]
    ping6(c, me, b.ip6, "host h1 -> container h2")
    ping6(c, b, me.ip6, "container h2 -> host h1")
    # The hosts' own IPv4 traffic is not the overlay's business (no drops counted for it).
    before = json.loads(hosts[1].ctl("show", "stats", "--json").stdout)["drops"]
    p = hosts[0].sh(f"ping -c 2 -W 2 {hosts[1].ip}", check=False)
    after = json.loads(hosts[1].ctl("show", "stats", "--json").stdout)["drops"]
    c.check("IPv4 between the hosts passes untouched", p.returncode == 0 and before == after, (p.stdout[-200:], after))
    # The CNI plugin on a third host (its host-local range is free): an IPv6 address only.
    h3 = lab.add_host(3, ipv6=True)
    h3.start_agent()
    L.wait_for("h3 routes to both IPv6 subnets", lambda: len(h3.routes()) == 2)
    e = L.CniEndpoint(lab, h3, "overlay", "v6only")
    c.check("CNI ADD: one IPv6 address, no IPv4", e.rc == 0 and e.ip6 and not e.ip4, e.result)
    if e.ip6:
        p = e.run(["ping", "-6", "-n", "-c", "2", "-W", "2", a.ip6])
        c.check("CNI container -> remote container: ping", p.returncode == 0, p.stdout[-300:])
    rc, out = e.delete()
    c.check("CNI DEL", rc == 0, out)
    # host-gw over IPv6 in an IPv6-only network.
    lab.put_config(dict(CONFIG, Backend={"Type": "host-gw"}))
    L.wait_for("IPv6 routes become host-gw",
               lambda: all(r.get("backend") == "host-gw" for h in hosts for r in h.routes().values()
                           if r["public_ip"] != h3.ip6))
    ping6(c, a, b.ip6, "host-gw: container h1 -> container h2")
    sent, got = L.tcp_transfer(a, b, size=4 << 20, port=5003, ipv6=True)
    c.check("host-gw: TCP 4 MiB over IPv6: sha256 matches", sent == got, f"{sent} {got}")


if __name__ == "__main__":
    raise SystemExit(run_scenario("ipv6only", scenario))
