#!/usr/bin/env python3
"""Three hosts with cppnet-agent and a real etcd: leases as flanneld writes them,
ping and TCP (checksummed) between every pair of containers on different hosts, a
host joining later, malformed leases, agent restart and lease deletion."""
import json
import signal

from .common import L, cross_pairs, run_scenario

SUBNETS = "/coreos.com/network/subnets/"


def health(host, path):
    p = host.sh(f"curl -s -o /dev/stdout -w ' %{{http_code}}' http://127.0.0.1:9471{path}", check=False)
    return p.stdout.strip()


def traffic_matrix(c, hosts, tcp=True):
    for a, b in cross_pairs(hosts):
        for s, d in ((a, b), (b, a)):
            p = s.ping(d.ip)
            c.check(f"ping {s} -> {d}", p.returncode == 0, p.stdout[-200:])
        if tcp:
            sent, got = L.tcp_transfer(a, b)
            c.check(f"TCP 2 MiB {a} -> {b}: sha256 matches", sent == got and sent[0] == str(2 << 20), f"{sent} {got}")


def scenario(lab, c):
    lab.start_etcd()
    h1 = lab.add_host(1)
    h1.start_agent()
    L.wait_for("agent waiting for config", lambda: "Waiting for the network config" in h1.log())
    c.check("no config yet: agent waits and /readyz is not 200", health(h1, "/readyz").endswith("503"),
            health(h1, "/readyz"))
    c.check("/healthz answers while waiting", health(h1, "/healthz").endswith("200"))
    lab.put_config()
    h2 = lab.add_host(2)
    h2.start_agent()
    hosts = [h1, h2]
    for h in hosts:
        env = h.subnet_env()
        c.check(f"h{h.index} subnet.env has FLANNEL_MTU=1450 and a /24 of the Network",
                env["FLANNEL_MTU"] == "1450" and env["FLANNEL_SUBNET"].startswith("198.19.")
                and env["FLANNEL_SUBNET"].endswith(".1/24") and env["FLANNEL_NETWORK"] == "198.19.0.0/16", env)
        h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"])
        h.subnet = env["FLANNEL_SUBNET"].replace(".1/", ".0/")
    leases = lab.leases()
    for h in hosts:
        v = json.loads(leases[h.subnet.replace("/", "-")])
        c.check(f"h{h.index} lease JSON as flanneld's", v["PublicIP"] == h.ip and v["BackendType"] == "vxlan"
                and v["BackendData"]["VNI"] == 1 and len(v["BackendData"]["VtepMAC"]) == 17, v)
    L.wait_for("routes", lambda: h2.subnet in h1.routes() and h1.subnet in h2.routes())
    r = h1.routes()[h2.subnet]
    c.check("cppnetctl show routes --json on h1 has h2's lease", r["public_ip"] == h2.ip and r["backend"] == "vxlan"
            and r["vni"] == 1 and r["port"] == 8472 and r["origin"] == "lease", r)
    L.wait_for("readyz 200", lambda: health(h1, "/readyz").endswith("200"))
    c.check("/readyz is 200 once leased and attached", True)
    c.check("agent log: Lease acquired", f"Lease acquired: {h1.subnet}" in h1.log())
    c.check("agent log: Subnet added X via Y", f"Subnet added: {h2.subnet} via {h2.ip}" in h1.log())

    # A host that joins later becomes reachable without restarting the others.
    pids = [h.agent.pid for h in hosts]
    h3 = lab.add_host(3)
    h3.start_agent()
    env3 = h3.subnet_env()
    h3.add_bridge_and_containers(env3["FLANNEL_SUBNET"], env3["FLANNEL_MTU"])
    h3.subnet = env3["FLANNEL_SUBNET"].replace(".1/", ".0/")
    hosts.append(h3)
    L.wait_for("h3 route on h1 and h2", lambda: h3.subnet in h1.routes() and h3.subnet in h2.routes())
    c.check("late host: others learned its subnet without a restart",
            [h.agent.pid for h in hosts[:2]] == pids and all(h.agent.poll() is None for h in hosts))
    traffic_matrix(c, hosts)

    a, b = h1.containers[0], h3.containers[1]
    server = b.popen(["iperf3", "-s", "-1", "-p", "5201"])
    L.wait_for("iperf3 server", lambda: b.exec(["ss", "-ltn"]).stdout.find(":5201") >= 0)
    p = a.exec(["iperf3", "-c", b.ip, "-p", "5201", "-t", "2", "-J"], timeout=30)
    server.wait(timeout=10)
    bps = json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"]
    c.check(f"iperf3 across the overlay: {bps / 1e9:.2f} Gbit/s", bps > 1e8, bps)

    stats = json.loads(h1.ctl("show", "stats", "--json").stdout)
    c.check("show stats: vxlan_tx and vxlan_rx counted",
            stats["traffic"]["vxlan_tx"]["packets"] > 0 and stats["traffic"]["vxlan_rx"]["packets"] > 0, stats)
    c.check("show stats: no drops on a clean run", all(v["packets"] == 0 for v in stats["drops"].values()),
            stats["drops"])
    c.check("received traffic delivered straight into the containers (bpf_redirect_peer)",
            stats["traffic"]["deliver_direct"]["packets"] > 0, stats["traffic"])
    for h in hosts:
        eps = {e["ip"]: e for e in json.loads(h.ctl("show", "endpoints", "--json").stdout)}
        want = {ct.ip for ct in h.containers}
        c.check(f"show endpoints on h{h.index}: its containers, each on its host veth",
                set(eps) == want and all(e["iface"].startswith("veth") for e in eps.values()), eps)
    cfg = json.loads(h1.ctl("show", "config", "--json").stdout)
    c.check("show config: subnet, VtepMAC and the container bridge", cfg["subnet"] == h1.subnet and cfg["ready"]
            and cfg["container_iface"] == "cni0" and cfg["vtep_mac"].startswith("0e:63"), cfg)

    # Bad leases written into etcd: skipped with a log line, never installed, no crash.
    bad = {"198.19.250.0-24": "{not json", "10.99.0.0-24": json.dumps({"PublicIP": "198.18.0.9", "BackendType": "vxlan",
           "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:09"}}),
           "198.19.251.0-24": json.dumps({"PublicIP": "198.18.0.9", "BackendType": "host-gw"}),
           "198.19.252.7-24": json.dumps({"PublicIP": "198.18.0.9"})}
    for k, v in bad.items():
        lab.etcdctl("put", SUBNETS + k, v)
    L.wait_for("skip log lines", lambda: all(f"Skipping lease {SUBNETS}{k}" in h1.log() for k in bad))
    c.check("malformed/foreign leases skipped with a reason in the log", True)
    routes = h1.routes()
    c.check("malformed/foreign leases not installed", not any(k.replace("-", "/") in routes for k in bad), routes)
    c.check("agents still running after bad leases", all(h.agent.poll() is None for h in hosts))
    mine = json.loads(h1.ctl("show", "leases", "--json").stdout)
    c.check("show leases (from the maps): this host's lease first, then the installed ones",
            mine[0].get("note") == "this host" and mine[0]["subnet"] == h1.subnet and len(mine) == len(hosts), mine)
    all_ = {r["subnet"]: r for r in json.loads(h1.ctl("show", "leases", "--json", f"--etcd-endpoints={L.ETCD}").stdout)}
    c.check("show leases --etcd-endpoints: every key in etcd, bad ones with the reason",
            h1.subnet in all_ and "note" in all_["198.19.250.0/24"] and "note" in all_["198.19.252.7-24"], all_)
    for k in bad:
        lab.etcdctl("del", SUBNETS + k)
    # Overlapping leases: the older one is routed, the newer skipped; the older gone, the newer
    # takes its place (a lease that overlaps no other is routed on its own, these are not).
    stranger = json.dumps({"PublicIP": "198.18.0.9", "BackendType": "vxlan",
                           "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:09"}})
    lab.etcdctl("put", SUBNETS + "198.19.253.0-24", stranger)
    L.wait_for("older lease routed", lambda: "198.19.253.0/24" in h1.routes())
    lab.etcdctl("put", SUBNETS + "198.19.253.0-25", stranger)
    L.wait_for("newer lease skipped", lambda: f"Skipping lease {SUBNETS}198.19.253.0-25: overlaps the older "
               "lease 198.19.253.0/24" in h1.log())
    c.check("an overlapping newer lease is skipped, the older keeps its route",
            "198.19.253.0/24" in h1.routes() and "198.19.253.0/25" not in h1.routes(), h1.routes())
    lab.etcdctl("del", SUBNETS + "198.19.253.0-24")
    L.wait_for("newer lease routed", lambda: "198.19.253.0/25" in h1.routes()
               and "198.19.253.0/24" not in h1.routes())
    c.check("the older lease deleted: the newer one is routed in its place", True)
    lab.etcdctl("del", SUBNETS + "198.19.253.0-25")
    L.wait_for("overlap test routes gone", lambda: not any(r.startswith("198.19.253.") for r in h1.routes()))

    # Agent stopped: lease stays in etcd and forwarding continues (pinned datapath).
    h3.stop_agent()
    c.check("SIGTERM leaves the lease in etcd", h3.subnet.replace("/", "-") in lab.leases())
    p = h1.containers[0].ping(h3.containers[0].ip)
    c.check("traffic to h3 continues while its agent is stopped", p.returncode == 0)
    # Operator deletes the dead host's lease: the route goes away within seconds.
    lab.etcdctl("del", SUBNETS + h3.subnet.replace("/", "-"))
    L.wait_for("route removed", lambda: h3.subnet not in h1.routes() and h3.subnet not in h2.routes(), timeout=5)
    c.check("lease deleted: route removed on h1 and h2 within 5 s", True)
    c.check("agent log: Subnet removed", f"Subnet removed: {h3.subnet}" in h1.log())
    p = h1.containers[0].ping(h3.containers[0].ip)
    c.check("no route, no traffic to the removed subnet", p.returncode != 0)

    # Restart: the agent takes its previous subnet again (from subnet.env) and traffic resumes.
    h3.start_agent()
    L.wait_for("h3 back in h1's routes", lambda: h3.subnet in h1.routes(), timeout=15)
    c.check("restarted agent reclaims the same subnet", f"Lease acquired: {h3.subnet}" in h3.log().split("starting")[-1])
    p = h1.containers[0].ping(h3.containers[0].ip, count=1)
    c.check("traffic resumes after restart", p.returncode == 0)
    # Our own lease deleted by hand while the agent runs: it is re-acquired, same subnet.
    lab.etcdctl("del", SUBNETS + h3.subnet.replace("/", "-"))
    L.wait_for("lease re-acquired", lambda: h3.subnet.replace("/", "-") in lab.leases(), timeout=10)
    c.check("own lease deleted while running: re-acquired (same subnet), no restart",
            "disappeared from etcd; re-acquiring" in h3.log() and h3.agent.poll() is None)
    L.wait_for("route back on h1", lambda: h3.subnet in h1.routes(), timeout=10)
    p = h1.containers[0].ping(h3.containers[0].ip, count=1)
    c.check("traffic flows after the re-acquisition", p.returncode == 0)
    h3.stop_agent(signal.SIGINT)
    c.check("SIGINT exits cleanly", "shutting down" in h3.log().split("starting")[-1])


if __name__ == "__main__":
    raise SystemExit(run_scenario("vxlan", scenario))
