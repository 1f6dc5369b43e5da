#!/usr/bin/env python3
"""cppnet demo in a namespace lab; see scripts/demo.sh."""
import json
import os
import signal
import sys
import time

from scripts import lab as L

STATE = "/run/cppnet-demo.json"


def step(text):
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(cmd, out):
    print(f"$ {cmd}\n{out.rstrip()}", flush=True)


def cleanup_kept():
    if not os.path.exists(STATE):
        print("demo: no kept lab found")
        return 0
    with open(STATE) as f:
        st = json.load(f)
    for pid in st["pids"]:  # only the processes the demo started
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    time.sleep(1)
    for pid in st["pids"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for ns in reversed(st["namespaces"]):
        L.run(["ip", "netns", "del", ns], check=False)
    os.remove(STATE)
    print(f"demo: removed lab {st['prefix']}")
    return 0

def vlan_demo(lab):
    """Two VLANs on a trunk, containers attached by the CNI plugin, isolation shown on the wire."""
    step("two hosts, each with a trunk eth1 to the same switch (802.1Q); cppnet-agent on both")
    lab.start_etcd()
    lab.put_config()
    hosts = [lab.add_host(i) for i in (1, 2)]
    lab.add_trunk(hosts)
    for h in hosts:
        h.start_agent()
        h.subnet_env()

    step("VLAN networks, Docker's syntax (parent=eth1.10: trunk eth1, VLAN 10; no kernel VLAN device)")
    for h in hosts:
        half = "198.18.{}.0/25" if h.index == 1 else "198.18.{}.128/25"
        for vid in (10, 20):
            args = ["network", "create", "-d", "macvlan", "--subnet", f"198.18.{vid}.0/24", "--gateway",
                    f"198.18.{vid}.1", "--ip-range", half.format(vid), "-o", f"parent=eth1.{vid}", f"vlan{vid}"]
            h.ctl(*args)
            print(f"[host{h.index}] cppnetctl {' '.join(args)}")
    L.wait_for("agents on the trunk", lambda: all("VLAN trunk eth1" in h.log() for h in hosts), 10)

    step("containers attached through the CNI plugin (as containerd/podman call it)")
    eps = {}
    for h in hosts:
        for vid in (10, 20):
            e = L.CniEndpoint(lab, h, f"vlan{vid}", f"h{h.index}v{vid}")
            if e.rc != 0:
                raise L.LabError(f"CNI ADD: {e.result}")
            eps[(h.index, vid)] = (e.netns, e.ip4, e.mac)
            print(f"[host{h.index}] VLAN {vid}: container {e.ip4} mac {e.mac}")

    step("same VLAN across hosts: ping; the trunk carries 802.1Q tags (tcpdump on the switch port)")
    trunk = lab.capture(["ip", "netns", "exec", lab.sw], "t2", ["vlan", "and", "icmp"])
    other = lab.capture(["nsenter", f"--net={eps[(2, 20)][0]}", "--"], "eth0")
    for vid in (10, 20):
        (ns, ip, _), (_, dst, _) = eps[(1, vid)], eps[(2, vid)]
        p = L.in_netns(ns, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", dst], timeout=20)
        show(f"[VLAN {vid} {ip}] ping -c 3 {dst}", "\n".join(p.stdout.splitlines()[-2:]))
    wire, seen = trunk.stop(), other.stop()
    show("[switch] tcpdump -e -i t2 vlan and icmp", "\n".join(wire.splitlines()[:4]))

    step("isolation: what the VLAN 20 container on host2 saw while VLAN 10 talked")
    leaked = [ln for ln in seen.splitlines() if "198.18.10." in ln or eps[(1, 10)][2] in ln]
    show("[host2 VLAN 20 container] tcpdump -e -i eth0", "\n".join(seen.splitlines()[:4]) or "(nothing)")
    print(f"frames of VLAN 10 seen on VLAN 20: {len(leaked)}")
    show("[host1] cppnetctl show vlans", hosts[0].ctl("show", "vlans").stdout)
    return 1 if leaked else 0



def main():
    if "--cleanup" in sys.argv:
        return cleanup_kept()
    keep = "--keep" in sys.argv
    if keep and os.path.exists(STATE):
        print("demo: a kept lab exists; run scripts/demo.sh --cleanup first")
        return 1
    L.require_root()
    lab = L.Lab("demo")
    if "--vlan" in sys.argv:
        try:
            lab.__enter__()
            rc = vlan_demo(lab)
            step("cleaning up")
            return rc
        finally:
            lab.close()
            left = [ns for ns in L.run(["ip", "netns", "list"]).stdout.split() if ns.startswith(lab.prefix)]
            print("demo: removed every namespace and process it created" if not left else f"demo: left {left}")
    try:
        lab.__enter__()
        step("etcd on the lab underlay (198.18.0.254), network config as flanneld reads it")
        lab.start_etcd()
        lab.put_config()
        show(f"etcdctl get {L.PREFIX}/config", lab.etcdctl("get", f"{L.PREFIX}/config").stdout)

        step("three hosts start cppnet-agent (each a network + mount namespace, underlay eth0)")
        hosts = [lab.add_host(i) for i in (1, 2, 3)]
        for h in hosts:
            h.start_agent()
        for h in hosts:
            env = h.subnet_env()
            show(f"[host{h.index}] cat /run/flannel/subnet.env", "\n".join(f"{k}={v}" for k, v in env.items()))
            # What Docker does with --bip=$FLANNEL_SUBNET --mtu=$FLANNEL_MTU.
            h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"])
            print(f"[host{h.index}] bridge cni0 {env['FLANNEL_SUBNET']}, containers "
                  + ", ".join(c.ip for c in h.containers))
        show(f"etcdctl get --prefix {L.PREFIX}/subnets/",
             "\n".join(f"{k}  {v}" for k, v in lab.leases().items()))
        L.wait_for("routes", lambda: all(len(h.routes()) == 2 for h in hosts))

        step("containers on different hosts talk over the BPF VXLAN overlay")
        a, b, c = hosts[0].containers[0], hosts[1].containers[1], hosts[2].containers[0]
        for s, d in ((a, b), (b, c), (c, a)):
            p = s.ping(d.ip, count=3, timeout=8)
            show(f"[{s.ip}] ping -c 3 {d.ip}", "\n".join(p.stdout.splitlines()[-2:]))
        sent, got = L.tcp_transfer(a, c, size=16 << 20)
        ok = sent == got
        show(f"[{a.ip}] send 16 MiB over TCP to {c.ip}",
             f"sent sha256 {sent[1][:16]}…  received sha256 {got[1][:16]}…  {'MATCH' if ok else 'MISMATCH'}")

        step("the hosts themselves reach remote containers from their overlay address (cppnet.host)")
        show("[host1] ip -o -4 addr show dev cppnet.host", hosts[0].sh("ip -o -4 addr show dev cppnet.host").stdout)
        p = hosts[0].sh(f"ping -n -c 3 -i 0.2 -W 2 {c.ip}", check=False)
        show(f"[host1] ping -c 3 {c.ip}", "\n".join(p.stdout.splitlines()[-2:]))

        step("datapath state on host1, from the pinned BPF maps")
        show("[host1] cppnetctl show routes", hosts[0].ctl("show", "routes").stdout)
        stats = json.loads(hosts[0].ctl("show", "stats", "--json").stdout)["traffic"]
        show("[host1] cppnetctl show stats (traffic)",
             "\n".join(f"{k:10} {v['packets']:>8} packets {v['bytes']:>12} bytes" for k, v in stats.items()))
        show("[host1] agent log", hosts[0].log())
        if not ok:
            print("demo: TCP transfer corrupted", file=sys.stderr)
            return 1
        if keep:
            with open(STATE, "w") as f:
                json.dump({"prefix": lab.prefix, "namespaces": lab.namespaces,
                           "pids": [p.pid for p in lab.pids] + [h.holder.pid for h in hosts]}, f)
            step("lab kept running")
            print(f"enter host1:      nsenter --target={hosts[0].holder.pid} --mount --net bash\n"
                  f"enter a container: ip netns exec {a.ns} bash\n"
                  f"remove it all:     scripts/demo.sh --cleanup")
            return 0
        step("cleaning up")
        return 0
    finally:
        if not keep:
            lab.close()
            left = [ns for ns in L.run(["ip", "netns", "list"]).stdout.split() if ns.startswith(lab.prefix)]
            print("demo: removed every namespace and process it created" if not left else f"demo: left {left}")


if __name__ == "__main__":
    sys.exit(main())
