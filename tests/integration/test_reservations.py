#!/usr/bin/env python3
"""Reservations as flannel documents them (a subnet key written without TTL): the host
whose PublicIP it carries uses it as it is, and it stays without TTL through restarts,
--release-on-exit and stops, so no other host ever gets it; a reservation for a host
that is not running is routed by the others and never picked."""
import base64
import json

from .common import L, run_scenario

PREFIX = "/coreos.com/network/subnets/"
# Three subnets in the pool: 77 reserved for h1, 78 for an absent host, 79 free.
CONFIG = dict(L.VXLAN_CONFIG, SubnetMin="198.19.77.0", SubnetMax="198.19.79.0")


def lease_of(lab, key):
    """(value, etcd lease id) of a key; (None, None) when it is gone."""
    out = json.loads(lab.etcdctl("get", "-w", "json", PREFIX + key).stdout)
    kvs = out.get("kvs") or []
    if not kvs:
        return None, None
    return json.loads(base64.b64decode(kvs[0]["value"])), kvs[0].get("lease", 0)


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(CONFIG)
    h1, h2, h3 = lab.add_host(1), lab.add_host(2), lab.add_host(3)
    lab.etcdctl("put", PREFIX + "198.19.77.0-24", json.dumps({"PublicIP": h1.ip}))
    lab.etcdctl("put", PREFIX + "198.19.78.0-24", json.dumps(
        {"PublicIP": "198.18.0.99", "BackendType": "vxlan",
         "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:99"}}))

    h1.start_agent()
    c.check("h1 uses its reservation", h1.subnet_env()["FLANNEL_SUBNET"] == "198.19.77.1/24", h1.subnet_env())
    value, lease = lease_of(lab, "198.19.77.0-24")
    c.check("the reservation is rewritten with h1's data and stays without TTL (no etcd lease)",
            lease == 0 and value.get("BackendType") == "vxlan" and value.get("PublicIP") == h1.ip, (value, lease))
    h2.start_agent()
    c.check("h2 gets the free subnet, not the absent host's reservation",
            h2.subnet_env()["FLANNEL_SUBNET"] == "198.19.79.1/24", h2.subnet_env())
    L.wait_for("h2 routes both reservations", lambda: {"198.19.77.0/24", "198.19.78.0/24"} <= set(h2.routes()))
    r = h2.routes()
    c.check("the absent host's reservation is routed to its PublicIP",
            r["198.19.78.0/24"]["public_ip"] == "198.18.0.99", r)

    # Restart, then stop with --release-on-exit: the reservation stays, still without TTL.
    h1.stop_agent()
    h1.start_agent("--release-on-exit")
    L.wait_for("h1 back on its reservation", lambda: "reservation of this PublicIP" in h1.log().split("starting")[-1])
    value, lease = lease_of(lab, "198.19.77.0-24")
    c.check("after a restart: same subnet, still without TTL",
            h1.subnet_env()["FLANNEL_SUBNET"] == "198.19.77.1/24" and lease == 0, (value, lease))
    h1.stop_agent()
    value, lease = lease_of(lab, "198.19.77.0-24")
    c.check("--release-on-exit does not delete a reservation", value is not None and lease == 0, (value, lease))

    # h1 stopped: a new host finds no free subnet rather than taking either reservation.
    h3.start_agent()
    L.wait_for("h3 reports out of subnets", lambda: "out of subnets" in h3.log(), 15)
    c.check("while h1 is stopped, another host does not get its reserved subnet",
            "Lease acquired" not in h3.log() and h3.agent.poll() is None
            and lease_of(lab, "198.19.77.0-24")[0]["PublicIP"] == h1.ip
            and lease_of(lab, "198.19.78.0-24")[0]["PublicIP"] == "198.18.0.99",
            h3.log()[-300:])
    r = h2.routes()
    c.check("h2 still routes the stopped host's reservation to it", r.get("198.19.77.0/24", {}).get("public_ip") == h1.ip, r)


if __name__ == "__main__":
    raise SystemExit(run_scenario("resv", scenario))
