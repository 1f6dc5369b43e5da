#!/usr/bin/env python3
"""What operators fear from flanneld, tested: an agent restart under continuous ping
loses nothing; etcd down for 20 s loses nothing, costs no CPU, and the cluster
converges after it returns (a host that joins then is reachable); compaction during a
watch; two agents racing for the last subnet; an underlay link flap; the container
bridge deleted and recreated."""
import json
import os
import re
import signal
import time

from .common import L, late_join, overlay_hosts, run_scenario


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ping_loss(out):
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h1, h2 = overlay_hosts(lab)
    a, b = h1.containers[0], h2.containers[0]
    subnet1 = h1.subnet_env()["FLANNEL_SUBNET"]

    # 1. Agent restart under a continuous ping: forwarding never stops.
    pinger = a.popen(["ping", "-n", "-q", "-i", "0.01", "-c", "300", "-W", "1", b.ip])
    time.sleep(0.5)  # part of the measurement window: traffic before the restart
    h1.agent.terminate()
    h1.agent.wait(timeout=10)
    starts = h1.log().count("cppnet-agent starting")
    h1.start_agent()
    L.wait_for("h1 ready again", lambda: h1.log().count("cppnet-agent starting") > starts
               and "Datapath attached" in h1.log().split("cppnet-agent starting")[-1], 15)
    out, _ = pinger.communicate(timeout=30)
    sent, got = ping_loss(out)
    c.check(f"agent restart under ping every 10 ms: {sent - got} of {sent} lost", sent == 300 and got == sent, out)
    c.check("restart kept the subnet", h1.subnet_env()["FLANNEL_SUBNET"] == subnet1)

    # 2. etcd down for 20 s under a continuous ping.
    pinger = a.popen(["ping", "-n", "-q", "-i", "0.05", "-c", "500", "-W", "1", b.ip])
    cpu0 = [cpu_seconds(h.agent.pid) for h in (h1, h2)]
    lab.stop_etcd()
    time.sleep(20)  # the outage itself (a measurement window, not synchronisation)
    cpu = [cpu_seconds(h.agent.pid) - c0 for h, c0 in zip((h1, h2), cpu0)]
    c.check(f"etcd down 20 s: agents used {cpu[0]:.2f} s / {cpu[1]:.2f} s of CPU (no busy loop)",
            max(cpu) < 1.0, cpu)
    c.check("etcd down: agents keep running", all(h.agent.poll() is None for h in (h1, h2)))
    up = h1.sh("curl -s http://127.0.0.1:9471/metrics | grep '^cppnet_etcd_up '", check=False).stdout.split()
    c.check("etcd down: /metrics says cppnet_etcd_up 0", up == ["cppnet_etcd_up", "0"], up)
    lab.start_etcd()
    out, _ = pinger.communicate(timeout=60)
    sent, got = ping_loss(out)
    c.check(f"etcd outage under ping every 50 ms: {sent - got} of {sent} lost", sent == 500 and got == sent, out)
    L.wait_for("etcd reachable again logged", lambda: all("is reachable again" in h.log() for h in (h1, h2)), 20)
    c.check("agents reconnect and say so", True)
    m = dict(line.rsplit(" ", 1) for line in h1.sh("curl -s http://127.0.0.1:9471/metrics").stdout.splitlines()
             if line and not line.startswith("#"))
    c.check("/metrics after the outage: etcd errors and reconnects counted, etcd up again, leases, the "
            "lease's expiry and sync latency (histogram) reported, the build named",
            float(m["cppnet_etcd_errors_total"]) > 0 and float(m["cppnet_etcd_reconnects_total"]) > 0
            and m["cppnet_etcd_up"] == "1" and 0 < float(m["cppnet_lease_expiry_seconds"]) <= 86400
            and any(k.startswith("cppnet_build_info{version=") for k in m)
            and m["cppnet_leases"] == "2" and float(m["cppnet_sync_duration_seconds_count"]) > 0
            and 'cppnet_sync_duration_seconds_bucket{le="+Inf"}' in m
            and m["cppnet_routes"] == "1" and float(m['cppnet_bytes_total{counter="vxlan_tx"}']) > 0,
            {k: v for k, v in m.items() if "packets" not in k and "bytes" not in k})
    late_join(lab, c, 3, h1, a, "after the outage")

    # 3. Compaction while the watches are live: no relist loop, changes keep arriving.
    fake = {"PublicIP": "198.18.0.9", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:09"}}
    for i in range(5):
        lab.etcdctl("put", f"{L.PREFIX}/subnets/198.19.240.0-24", json.dumps(dict(fake, PublicIP=f"198.18.0.{20 + i}")))
    rev = json.loads(lab.etcdctl("get", f"{L.PREFIX}/config", "-w", "json").stdout)["header"]["revision"]
    lab.etcdctl("compact", str(rev))
    lab.etcdctl("put", f"{L.PREFIX}/subnets/198.19.241.0-24", json.dumps(fake))
    L.wait_for("change after compaction", lambda: "198.19.241.0/24" in h1.routes(), 10)
    r = h1.routes()
    c.check("compaction: later changes still arrive, the latest value of each lease is installed",
            r["198.19.240.0/24"]["public_ip"] == "198.18.0.24", r.get("198.19.240.0/24"))
    time.sleep(1)  # a window in which a relist loop would show up in the log
    c.check("compaction: no relist loop", h1.log().count("relisting") <= 1, h1.log().count("relisting"))
    # A watch that has to resume from a compacted revision: h1 frozen while etcd
    # restarts and the history it missed is compacted away; it relists.
    h1.agent.send_signal(signal.SIGSTOP)
    lab.stop_etcd()
    lab.start_etcd()
    lab.etcdctl("del", f"{L.PREFIX}/subnets/198.19.240.0-24")
    lab.etcdctl("put", f"{L.PREFIX}/subnets/198.19.242.0-24", json.dumps(fake))
    rev = json.loads(lab.etcdctl("get", f"{L.PREFIX}/config", "-w", "json").stdout)["header"]["revision"]
    lab.etcdctl("compact", str(rev))
    h1.agent.send_signal(signal.SIGCONT)
    L.wait_for("h1 relisted", lambda: "198.19.242.0/24" in h1.routes() and "198.19.240.0/24" not in h1.routes(), 20)
    c.check("resuming from a compacted revision: the agent relists and ends up equal to etcd",
            "compacted" in h1.log() and "relisting" in h1.log(), h1.log()[-600:])
    for k in ("198.19.241.0-24", "198.19.242.0-24"):
        lab.etcdctl("del", f"{L.PREFIX}/subnets/{k}")

    # 4. Underlay link flap on h2: traffic resumes without the agent's help.
    h2.sh("ip link set eth0 down && ip link set eth0 up")
    L.wait_for("ping after link flap", lambda: a.ping(b.ip).returncode == 0, 15, 0.2)
    c.check("underlay link down/up: traffic resumes", True)

    # 5. Container bridge deleted and recreated (Docker restarting): re-attached.
    old = h2.config()["container_ifindex"]
    h2.sh(f"ip link del cni0 && ip link add cni0 type bridge && ip link set cni0 mtu {h2.subnet_env()['FLANNEL_MTU']} && "
          f"ip addr add {h2.subnet_env()['FLANNEL_SUBNET']} dev cni0 && ip link set veth1 master cni0 && "
          "ip link set cni0 up")
    L.wait_for("new bridge attached", lambda: h2.config().get("container_ifindex") not in (old, None, 0), 5)
    L.wait_for("ping through the new bridge", lambda: b.ping(a.ip).returncode == 0, 10, 0.2)
    c.check("bridge recreated: the agent attached to it within seconds and traffic flows",
            "Container side: tc ingress and egress on cni0" in h2.log().split("cppnet-agent starting")[-1])

    # 6. PublicIP changes: the same subnet is re-published under the new address, never
    #    a second lease. While the agent runs, and while it is down.
    def leases_of_h1():
        return {k: json.loads(v)["PublicIP"] for k, v in lab.leases().items()
                if k == subnet1.replace(".1/", ".0-")}
    for new_ip, running in (("198.18.0.31", True), ("198.18.0.41", False)):
        if not running:
            h1.agent.terminate()
            h1.agent.wait(timeout=10)
        old_ip = h1.ip
        h1.sh(f"ip addr del {old_ip}/24 dev eth0 && ip addr add {new_ip}/24 dev eth0")
        h1.ip = new_ip
        if not running:
            h1.start_agent()
        L.wait_for(f"lease re-published with {new_ip}", lambda: list(leases_of_h1().values()) == [new_ip], 10)
        n = sum(1 for v in lab.leases().values() if json.loads(v)["PublicIP"] in (old_ip, new_ip))
        c.check(f"PublicIP {old_ip} -> {new_ip} ({'agent running' if running else 'while the agent was down'}): "
                "same subnet, one lease", n == 1 and h1.subnet_env()["FLANNEL_SUBNET"] == subnet1, lab.leases())
        L.wait_for("peer route follows", lambda: h2.routes().get(subnet1.replace(".1/", ".0/"), {}).get("public_ip")
                   == new_ip, 10)
        L.wait_for("ping after the PublicIP change", lambda: b.ping(a.ip).returncode == 0, 10, 0.2)
        c.check(f"PublicIP {new_ip}: peers follow and traffic flows", True)

    # 7. Two agents racing for the last free subnet.
    race = "/race"
    lab.put_config(dict(L.VXLAN_CONFIG, SubnetMin="198.19.77.0", SubnetMax="198.19.77.0"), prefix=race)
    h4, h5 = lab.add_host(4), lab.add_host(5)
    for h in (h4, h5):
        h.start_agent(f"--etcd-prefix={race}")
    L.wait_for("one winner", lambda: any("Lease acquired" in h.log() for h in (h4, h5)), 15)
    L.wait_for("loser says so", lambda: any("out of subnets" in h.log() for h in (h4, h5)), 15)
    keys = lab.etcdctl("get", "--prefix", "--keys-only", f"{race}/subnets/").stdout.split()
    winner, loser = (h4, h5) if "Lease acquired" in h4.log() else (h5, h4)
    c.check("race for the last subnet: exactly one lease, one winner, the other logs 'out of subnets'",
            keys == [f"{race}/subnets/198.19.77.0-24"] and "Lease acquired" not in loser.log()
            and loser.agent.poll() is None, (keys, loser.log()[-300:]))
    winner.agent.terminate()
    winner.agent.wait(timeout=10)
    lab.etcdctl("del", f"{race}/subnets/198.19.77.0-24")
    L.wait_for("loser acquires it", lambda: "Lease acquired: 198.19.77.0/24" in loser.log(), 20)
    c.check("the other agent kept trying and got the subnet once it was free", True)


if __name__ == "__main__":
    raise SystemExit(run_scenario("resil", scenario))
