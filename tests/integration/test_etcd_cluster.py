#!/usr/bin/env python3
"""A 3-member etcd cluster with the leader killed: agents given all three endpoints
fail over, keep their leases alive, follow changes, and a host that joins afterwards
is reachable; continuous traffic never notices."""
import json
import re
import time

from .common import L, late_join, overlay_hosts, run_scenario


def scenario(lab, c):
    lab.start_etcd_cluster(3)
    lab.put_config(L.VXLAN_CONFIG)
    h1, h2 = overlay_hosts(lab)
    a, b = h1.containers[0], h2.containers[0]
    c.check("3-member cluster: agents leased through the endpoint list", len(lab.leases()) == 2, lab.leases())

    pinger = a.popen(["ping", "-n", "-q", "-i", "0.05", "-c", "200", "-W", "1", b.ip])
    leader = lab.etcd_leader()
    lab.members[leader].kill()
    lab.members[leader].wait(timeout=10)
    survivors = [u for u in lab.members if u != leader]
    lab.etcd_url = ",".join(survivors)  # etcdctl talks to the living members
    L.wait_for("new leader", lambda: lab.etcd_leader() in survivors, 30, 0.5)
    c.check(f"leader {leader} killed, a new leader elected", True)

    # Changes keep flowing to both agents: a fake lease appears on each host.
    fake = {"PublicIP": "198.18.0.9", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:09"}}
    lab.etcdctl("put", f"{L.PREFIX}/subnets/198.19.240.0-24", json.dumps(fake))
    L.wait_for("change seen by both agents", lambda: all("198.19.240.0/24" in h.routes() for h in (h1, h2)), 30)
    c.check("after the failover both agents follow etcd changes", True)
    lab.etcdctl("del", f"{L.PREFIX}/subnets/198.19.240.0-24")

    # Lease renewal goes on (TTL 60 s in the lab, renewed every 20 s): wait past one renewal.
    time.sleep(22)  # a renewal period, not synchronisation
    leases = lab.leases()
    c.check("both leases still held a renewal period after the failover", len(leases) == 2, leases)
    late_join(lab, c, 3, h1, a, "after the failover")
    out, _ = pinger.communicate(timeout=60)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    c.check(f"continuous ping across the failover: {int(m.group(1)) - int(m.group(2))} of {m.group(1)} lost",
            m and m.group(1) == m.group(2) == "200", out)


if __name__ == "__main__":
    raise SystemExit(run_scenario("etcdha", scenario))
