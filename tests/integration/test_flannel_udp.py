#!/usr/bin/env python3
"""A mixed udp cluster: two cppnet hosts and one host set up as flanneld's udp backend
(TUN device flannel0 + a userspace forwarder reading and writing raw IP packets, its
lease in flanneld's udp JSON). Containers reach each other both ways with ping and
checksummed TCP; a userspace peer sees only finished checksums and MTU-sized packets,
while traffic between the cppnet hosts keeps its offloads."""
import json

from .common import L, overlay_hosts, run_scenario


SOFT = "cppnet.soft"


def soft_tx(h):
    return json.loads(h.sh(f"ip -s -j link show dev {SOFT}").stdout)[0]["stats64"]["tx"]["packets"]


def transfer(c, src, dst, what, port):
    try:
        sent, got = L.tcp_transfer(src, dst, size=4 << 20, port=port)
    except L.LabError as e:
        return c.check(f"TCP 4 MiB {what}: sha256 matches", False, str(e)[-300:])
    return c.check(f"TCP 4 MiB {what}: sha256 matches", sent == got, f"{sent} {got}")


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(dict(L.VXLAN_CONFIG, Backend={"Type": "udp"}))
    cpp = overlay_hosts(lab, 2, containers=1)
    fl, gw = lab.flannel_udp_host(3, "198.19.200.0/24")
    fl.add_bridge_and_containers(gw, 1472, count=1)
    L.wait_for("cppnet hosts route to the flanneld udp subnet",
               lambda: all(h.routes().get("198.19.200.0/24", {}).get("public_ip") == fl.ip for h in cpp))
    proxy = lab.flannel_udp_start(fl)
    h1, h2 = cpp
    r = h1.routes()
    c.check("the flanneld host's route is marked userspace_peer, the cppnet peer's is not",
            r["198.19.200.0/24"].get("userspace_peer") is True
            and r[h2.subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0/")].get("userspace_peer") is False, r)
    lease = json.loads(lab.leases()[h1.subnet_env()["FLANNEL_SUBNET"].replace(".1/", ".0-").replace("/", "")])
    c.check("cppnet's udp lease marks its datapath for its peers (flanneld ignores it)",
            lease.get("BackendData") == {"CppnetDatapath": 1} and lease["BackendType"] == "udp", lease)

    b = fl.containers[0]
    for h in cpp:
        a = h.containers[0]
        p = a.ping(b.ip)
        c.check(f"cppnet {a} -> flanneld-udp {b}: ping", p.returncode == 0, p.stdout[-200:])
        p = b.ping(a.ip)
        c.check(f"flanneld-udp {b} -> cppnet {a}: ping", p.returncode == 0, p.stdout[-200:])
        transfer(c, a, b, f"cppnet {a} -> flanneld-udp {b}", 5001)
        transfer(c, b, a, f"flanneld-udp {b} -> cppnet {a}", 5002)
    errs = b.exec(["nstat", "-az", "TcpInCsumErrors"], check=False).stdout
    c.check("the flanneld-side container counted no TCP checksum errors",
            "TcpInCsumErrors" in errs and all(l.split()[1] == "0" for l in errs.splitlines()
                                              if l.startswith("TcpInCsumErrors")), errs)
    a1, a2 = cpp[0].containers[0], cpp[1].containers[0]
    soft = soft_tx(h1)
    c.check(f"{SOFT} carried the packets for the flanneld host", soft > 0, soft)
    transfer(c, a1, a2, "between the cppnet hosts", 5003)
    c.check(f"traffic between cppnet hosts keeps its offloads: it does not pass {SOFT}",
            soft_tx(h1) - soft < 10, (soft, soft_tx(h1)))
    proxy.terminate()
    out, _ = proxy.communicate(timeout=10)
    c.check("the flanneld forwarder never got a datagram larger than its MTU (no GSO leaked)",
            "oversized" not in out, out[-300:])


if __name__ == "__main__":
    raise SystemExit(run_scenario("fludp", scenario))
