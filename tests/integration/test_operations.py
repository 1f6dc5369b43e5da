#!/usr/bin/env python3
"""Operations: --ip-masq (containers reach addresses outside the cluster network
through the host's address, overlay traffic keeps its source, the nftables table goes
away when the flag does) and systemd notifications (READY=1, WATCHDOG=1, STOPPING=1)
observed through a NOTIFY_SOCKET this test provides."""
import json
import os
import socket
import subprocess
import tempfile

from .common import L, run_scenario


def capture_sources(ns, iface, bpf_filter, action):
    """Source addresses of the first packet matching `bpf_filter` on `iface` in netns `ns`."""
    p = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-n", "-l", "-c", "1", bpf_filter],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        L.wait_for("tcpdump listening", lambda: "listening" in p.stderr.readline(), 10, 0)
        action()
        out, _ = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # "12:00:00.000000 IP 198.18.0.1 > 198.18.0.254: ICMP echo request, ..."
    return [line.split(" IP ", 1)[1].split(" > ")[0] for line in out.splitlines() if " IP " in line]


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    with tempfile.TemporaryDirectory(prefix="cppnet-notify-") as tmp:
        sock_path = os.path.join(tmp, "notify.sock")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(sock_path)
        notify.settimeout(0.2)
        messages = []

        def drain():
            while True:
                try:
                    messages.append(notify.recv(4096).decode())
                except socket.timeout:
                    return messages

        h1, h2 = lab.add_host(1), lab.add_host(2)
        h1.start_agent("--ip-masq", env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "2000000"})
        h2.start_agent()
        for h in (h1, h2):
            env = h.subnet_env()
            h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1)
        L.wait_for("routes", lambda: len(h1.routes()) == 1 and len(h2.routes()) == 1)

        L.wait_for("READY=1", lambda: any("READY=1" in m for m in drain()), 10, 0)
        ready = next(m for m in messages if "READY=1" in m)
        c.check("sd_notify: READY=1 with the lease in STATUS", f"STATUS=Lease {h1.subnet_env()['FLANNEL_SUBNET']}"
                .replace(".1/", ".0/") in ready, ready)
        L.wait_for("WATCHDOG=1 twice", lambda: sum(m == "WATCHDOG=1" for m in drain()) >= 2, 10, 0)
        c.check("sd_notify: WATCHDOG=1 at half of WATCHDOG_USEC", True)

        # --ip-masq
        c.check("subnet.env: FLANNEL_IPMASQ=true", h1.subnet_env()["FLANNEL_IPMASQ"] == "true", h1.subnet_env())
        rules = h1.sh("nft list table ip cppnet").stdout
        c.check("nftables table ip cppnet has flanneld's masquerade rules",
                "ip saddr 198.19.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random" in rules
                and "ip saddr 198.19.0.0/16 ip daddr 198.19.0.0/16 return" in rules, rules)
        a, b = h1.containers[0], h2.containers[0]
        srcs = capture_sources(lab.sw, "br0", f"icmp and dst host {L.SWITCH_IP}",
                               lambda: a.ping(L.SWITCH_IP))
        c.check(f"masqueraded: a container's ping to {L.SWITCH_IP} (outside the Network) leaves as the host's"
                " address", srcs == [h1.ip], srcs)
        p = a.ping(L.SWITCH_IP, count=2)
        c.check("masqueraded: the reply comes back to the container", p.returncode == 0, p.stdout[-200:])
        srcs = capture_sources(b.ns, "eth0", f"icmp and src host {a.ip}", lambda: a.ping(b.ip))
        c.check("overlay traffic keeps the container's address", srcs == [a.ip], srcs)
        p = h2.containers[0].ping(L.SWITCH_IP)
        c.check("without --ip-masq (h2) the outside cannot answer the overlay address", p.returncode != 0)

        # SIGTERM: STOPPING=1; restarted without --ip-masq: the table goes away.
        drain()
        h1.agent.terminate()
        h1.agent.wait(timeout=10)
        c.check("sd_notify: STOPPING=1 on SIGTERM", any("STOPPING=1" in m for m in drain()), messages[-3:])
        h1.start_agent()
        L.wait_for("masquerade table removed",
                   lambda: h1.sh("nft list table ip cppnet", check=False).returncode != 0, 10)
        c.check("restarted without --ip-masq: the nftables table is removed", True)
        p = a.ping(b.ip)
        c.check("overlay still works after the restart", p.returncode == 0, p.stdout[-200:])
        notify.close()

    # Upgrade across a map layout change: a pinned map of another shape (as an older
    # version left it) is replaced, the agent starts and forwards.
    h2.agent.terminate()
    h2.agent.wait(timeout=10)
    h2.sh("rm /sys/fs/bpf/cppnet/cppnet_stats && bpftool map create /sys/fs/bpf/cppnet/cppnet_stats "
          "type percpu_array key 4 value 16 entries 3 name cppnet_stats")
    h2.start_agent()
    warning = "Pinned map cppnet_stats in /sys/fs/bpf/cppnet had another layout"
    L.wait_for("h2 agent up again", lambda: "Datapath attached" in h2.log().split(warning)[-1]
               if warning in h2.log() else False, 15)
    c.check("upgrade: a pinned map with an old layout is replaced, with a warning", True)
    # The container veths carry the previous agent's program (counting into the replaced
    # map) until the new agent re-attaches them in its first tick: wait for that.
    def flows():
        p = b.ping(a.ip)
        stats = json.loads(h2.ctl("show", "stats", "--json").stdout)["traffic"]
        return (p, stats) if p.returncode == 0 and stats["vxlan_tx"]["packets"] > 0 else None
    try:
        p, stats = L.wait_for("traffic counted by the new agent's maps", flows, 10, 0.2)
    except L.LabError as e:
        p, stats = None, str(e)
    c.check("upgrade: traffic flows and the new counters count", p is not None, stats)

    # Uninstall: stop the agent, then cppnet-agent --cleanup removes every trace.
    h1.agent.terminate()
    h1.agent.wait(timeout=10)
    h1.start_agent("--ip-masq", "--decap=xdp")
    L.wait_for("masq + XDP in place", lambda: h1.sh("nft list table ip cppnet", check=False).returncode == 0
               and "prog/xdp" in h1.sh("ip -d link show eth0").stdout, 10)
    h1.agent.terminate()
    h1.agent.wait(timeout=10)
    p = L.run(h1.cmd([L.AGENT, "--cleanup"]), check=False, timeout=30)
    c.check("--cleanup: exit 0, lists what it removed", p.returncode == 0 and "tc ingress filter on eth0" in p.stdout
            and "tc ingress filter on cni0" in p.stdout and "tcx program on ifindex" in p.stdout
            and "XDP program on eth0" in p.stdout and "cppnet_routes" in p.stdout, p.stdout + p.stderr)
    left = {
        "tc filters": h1.sh("for d in eth0 cni0 veth1; do tc filter show dev $d ingress; done").stdout.strip(),
        "xdp": "prog/xdp" in h1.sh("ip -d link show eth0").stdout,
        "pins": h1.sh("ls /sys/fs/bpf/cppnet 2>/dev/null", check=False).stdout.strip(),
        "nft": h1.sh("nft list table ip cppnet", check=False).returncode == 0,
        "subnet.env": h1.sh("test -e /run/flannel/subnet.env", check=False).returncode == 0,
    }
    c.check("--cleanup: no tc filter, XDP program, pinned map, nftables table or subnet file left",
            not any(left.values()), left)
    p = h1.ctl("show", "routes", check=False)
    c.check("after --cleanup cppnetctl says the agent has not run", p.returncode == 1 and "has not run" in p.stderr,
            p.stderr)
    p = L.run(h1.cmd([L.AGENT, "--cleanup"]), check=False, timeout=30)
    c.check("--cleanup again: nothing to do, exit 0", p.returncode == 0 and "removed" not in p.stdout.replace(
        "cppnet datapath removed", ""), p.stdout)


if __name__ == "__main__":
    raise SystemExit(run_scenario("ops", scenario))
