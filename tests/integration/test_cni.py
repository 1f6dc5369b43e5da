#!/usr/bin/env python3
"""The cppnet CNI plugin, called the way a container runtime calls it (CNI_* environment,
network configuration on stdin): ADD attaches a container to the overlay through the
standard bridge plugin and host-local IPAM over the leased subnet, traffic crosses hosts,
CHECK passes, DEL removes every trace and is idempotent; VERSION; errors in CNI's format."""
import json

from .common import L, cni_call as call, container, in_netns, overlay_hosts, run_scenario

def conf(**extra):
    return json.dumps({"cniVersion": "1.0.0", "name": "cppnet-overlay", "type": "cppnet", "network": "overlay", **extra})


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h1, h2 = overlay_hosts(lab, containers=0)

    rc, out = call(h1, "VERSION", "", "", "")
    c.check("VERSION lists 1.0.0", rc == 0 and "1.0.0" in out.get("supportedVersions", []), out)

    results = {}
    for h in (h1, h2):
        _, ns = container(lab, h)
        rc, out = call(h, "ADD", ns, f"c{h.index}", conf())
        ip = out.get("ips", [{}])[0].get("address", "")
        subnet = h.subnet_env()["FLANNEL_SUBNET"]
        c.check(f"ADD on h{h.index}: result with an address of the leased subnet {subnet}",
                rc == 0 and ip.startswith(subnet.rsplit(".", 1)[0] + ".") and out.get("cniVersion") == "1.0.0", out)
        results[h.index] = (ns, ip.split("/")[0], out)
    link = in_netns(results[1][0], ["ip", "-o", "link", "show", "eth0"]).stdout.split()
    mtu = link[link.index("mtu") + 1] if "mtu" in link else link
    c.check("the container's MTU is FLANNEL_MTU", mtu == h1.subnet_env()["FLANNEL_MTU"], mtu)
    L.wait_for("agent attached to cni0", lambda: h1.config().get("container_iface") == "cni0", 10)
    p = in_netns(results[1][0], ["ping", "-n", "-c", "2", "-W", "2", results[2][1]], timeout=15)
    c.check("containers made by the CNI plugin reach each other across hosts", p.returncode == 0, p.stdout[-200:])

    ns1, ip1, res1 = results[1]
    rc, out = call(h1, "CHECK", ns1, "c1", conf(prevResult=res1))
    c.check("CHECK with the ADD result passes", rc == 0, out)
    learned = lambda: ip1 in h1.ctl("show", "endpoints").stdout  # noqa: E731
    c.check("the container is learned for direct delivery", learned())
    rc, out = call(h1, "DEL", ns1, "c1", conf())
    # The veth's removal is a netlink event: the agent forgets the endpoint at once.
    L.wait_for("endpoint forgotten after DEL", lambda: not learned(), 2, 0.02)
    gone = in_netns(ns1, ["ip", "-o", "link", "show", "eth0"]).returncode != 0
    leases = h1.sh("ls /run/cppnet/ipam/cppnet-overlay 2>/dev/null", check=False).stdout.split()
    c.check("DEL removes the interface and releases the address", rc == 0 and gone and ip1 not in leases,
            (rc, out, leases))
    rc, out = call(h1, "DEL", ns1, "c1", conf())
    c.check("DEL again: nothing to do, success", rc == 0, out)

    # Errors in CNI's format: {"code", "msg"} on stdout, exit status 1.
    errors = [
        (conf(network="vlan99"), 7, "network vlan99 not found"),
        (conf(delegate={"type": "ipvlan"}), 7, "delegate type \"ipvlan\" is not supported"),
        (conf(delegate="x"), 7, "field \"delegate\" must be an object"),
        ("{not json", 6, "not a JSON object"),
        (conf(cniVersion="9.9.9"), 1, "cniVersion 9.9.9 is not supported"),
        (conf(subnetFile="/run/nonexistent.env"), 5, "/run/nonexistent.env"),
    ]
    for stdin, code, msg in errors:
        rc, out = call(h1, "ADD", ns1, "c9", stdin)
        c.check(f"error {code}: {msg}", rc == 1 and out.get("code") == code and msg in out.get("msg", ""), out)
    rc, out = call(h1, "", ns1, "c9", conf())
    c.check("no CNI_COMMAND: error 4", rc == 1 and out.get("code") == 4, out)

    # flannel's CNI configurations name no network (the overlay is meant); CNI 1.1.0:
    # STATUS, GC, and 1.1.0 results; flannel's "delegate" options reach the bridge plugin.
    rc, out = call(h1, "VERSION", "", "", "")
    c.check("VERSION lists 1.1.0", "1.1.0" in out.get("supportedVersions", []), out)
    flannel_style = json.dumps({"cniVersion": "1.1.0", "name": "cbr0", "type": "cppnet",
                                "delegate": {"hairpinMode": False}})
    _, ns3 = container(lab, h1)
    rc, out = call(h1, "ADD", ns3, "c3", flannel_style)
    c.check("a flannel-style config without \"network\" (cniVersion 1.1.0): ADD on the overlay",
            rc == 0 and out.get("cniVersion") == "1.1.0" and out.get("ips"), out)
    ports = h1.sh("bridge -d link show", check=False).stdout
    c.check("\"delegate\" options reach the bridge plugin (hairpinMode false)", "hairpin off" in ports, ports[-300:])
    rc, out = call(h1, "STATUS", "", "", flannel_style)
    c.check("STATUS: ready (subnet leased)", rc == 0, out)
    rc, out = call(h1, "STATUS", "", "", conf(subnetFile="/run/nonexistent.env", cniVersion="1.1.0"))
    c.check("STATUS without a subnet file: error 50 naming it", rc == 1 and out.get("code") == 50
            and "/run/nonexistent.env" in out.get("msg", ""), out)
    rc, out = call(h1, "GC", "", "", flannel_style)
    c.check("GC: success", rc == 0, out)
    rc, out = call(h1, "DEL", ns3, "c3", flannel_style)
    c.check("DEL of the flannel-style attachment", rc == 0, out)


if __name__ == "__main__":
    raise SystemExit(run_scenario("cni", scenario))
