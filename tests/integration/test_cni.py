#!/usr/bin/env python3
"""The cppnet CNI plugin, called the way a container runtime calls it (CNI_* environment,
network configuration on stdin): ADD attaches a container to the overlay through the
standard bridge plugin and host-local IPAM over the leased subnet, traffic crosses hosts,
CHECK passes, DEL removes every trace and is idempotent; VERSION; errors in CNI's format.
On a kernel with netkit (the guest of integration.netkit: CPPNET_IN_VM=1) the same scenario
runs with the agent giving overlay containers netkit pairs instead of veths on cni0, plus the
checks only netkit has (no bridge, local delivery by the program, the host's /32 routes)."""
import json
import os
import subprocess
import time

from .common import L, cni_call as call, container, in_netns, overlay_hosts, run_scenario, timed_transfer

NETKIT = os.environ.get("CPPNET_IN_VM") == "1"  # the agent finds netkit there (checked below)

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
    if NETKIT:
        netkit_overlay(lab, c, h1, h2, results)
    else:
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
    if not NETKIT:  # no bridge behind netkit: its options have nothing to act on
        ports = h1.sh("bridge -d link show", check=False).stdout
        c.check("\"delegate\" options reach the bridge plugin (hairpinMode false)", "hairpin off" in ports,
                ports[-300:])
    _, ns4 = container(lab, h1)
    rc, out = call(h1, "ADD", ns4, "c4", json.dumps({"cniVersion": "1.0.0", "name": "cbr0", "type": "cppnet",
                                                    "ipam": {"routes": [{"dst": "203.0.113.0/24"}]}}))
    route = in_netns(ns4, ["ip", "route", "show", "203.0.113.0/24"]).stdout
    c.check("the config's own \"ipam\" keys are honoured (a route), the range stays the leased subnet",
            rc == 0 and "203.0.113.0/24 via" in route and out.get("ips", [{}])[0].get("address", "").startswith(
                h1.subnet_env()["FLANNEL_SUBNET"].rsplit(".", 1)[0]), (out, route))
    call(h1, "DEL", ns4, "c4", json.dumps({"cniVersion": "1.0.0", "name": "cbr0", "type": "cppnet"}))
    rc, out = call(h1, "STATUS", "", "", flannel_style)
    c.check("STATUS: ready (subnet leased)", rc == 0, out)
    rc, out = call(h1, "STATUS", "", "", conf(subnetFile="/run/nonexistent.env", cniVersion="1.1.0"))
    c.check("STATUS without a subnet file: error 50 naming it", rc == 1 and out.get("code") == 50
            and "/run/nonexistent.env" in out.get("msg", ""), out)
    rc, out = call(h1, "GC", "", "", flannel_style)
    c.check("GC: success", rc == 0, out)
    rc, out = call(h1, "DEL", ns3, "c3", flannel_style)
    c.check("DEL of the flannel-style attachment", rc == 0, out)

    runtime_requests(lab, c, h1)
    saved_config(lab, c, h1)
    chaining(lab, c, h1, results[2][0], results[2][1])
    garbage_collection(lab, c, h1)
    hostport_across_hosts(lab, c, h2)


def netkit_overlay(lab, c, h1, h2, results):
    """What only netkit overlay containers have: the pair itself, no bridge, the container's
    routes through the gateway at the host end's MAC, the host's route to the container, and
    containers of one host delivered to each other by the program (no bridge to switch them)."""
    ns1, ip1, res1 = results[1]
    ns2, ip2, _ = results[2]
    c.check("the agent gives overlay containers netkit devices",
            "Overlay containers (CNI): netkit devices" in h1.log(), h1.log()[-600:])
    info = json.loads(in_netns(ns1, ["ip", "-d", "-j", "link", "show", "eth0"]).stdout or "[{}]")[0]
    host_end = next((i["name"] for i in res1.get("interfaces", []) if not i.get("sandbox")), "")
    c.check("the container's interface is netkit, its host end cn…, and there is no cni0",
            info.get("linkinfo", {}).get("info_kind") == "netkit" and host_end.startswith("cn")
            and h1.sh("ip link show cni0", check=False).returncode != 0, (info.get("linkinfo"), host_end))
    gw = res1.get("ips", [{}])[0].get("gateway", "")
    routes = in_netns(ns1, ["ip", "route"]).stdout
    neigh = in_netns(ns1, ["ip", "neigh", "show", gw]).stdout
    host_mac = next((i["mac"] for i in res1.get("interfaces", []) if not i.get("sandbox")), "?")
    c.check(f"in the container: default via {gw} (a permanent neighbour at the host end's MAC), no subnet route",
            f"default via {gw}" in routes and "PERMANENT" in neigh and host_mac in neigh
            and "proto kernel" not in routes, (routes, neigh, host_mac))
    c.check("on the host: a /32 route to the container through its netkit end",
            f"{ip1} dev {host_end}" in h1.sh(f"ip route show {ip1}").stdout, h1.sh("ip route").stdout[-400:])
    p = h1.sh(f"ping -n -c 2 -W 2 {ip1}", check=False)
    c.check("the host reaches its netkit container", p.returncode == 0, p.stdout[-200:])
    # ipMasq (the bridge plugin's option, on: the agent runs without --ip-masq): what leaves
    # through the kernel carries the host's address.
    masq = h1.sh("nft list set ip cppnet_cni masq", check=False).stdout
    srv = subprocess.Popen(h2.cmd(["python3", "-c", "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
                                   "socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',5399));s.listen(1);print('up',flush=True);"
                                   "c,a=s.accept();c.sendall(a[0].encode());c.close()"]),
                           stdout=subprocess.PIPE, text=True)
    lab.pids.append(srv)
    srv.stdout.readline()
    p = in_netns(ns1, ["python3", "-c", f"import socket;s=socket.create_connection(('{h2.ip}',5399),timeout=5);"
                       "print(s.recv(100).decode())"], timeout=15)
    c.check(f"a netkit container reaches another host's underlay address through the kernel, masqueraded "
            f"(ipMasq: it is in nftables set ip cppnet_cni masq; the server sees {h1.ip})",
            ip1 in masq and p.stdout.strip() == h1.ip, (masq[-300:], p.stdout, p.stderr[-200:]))
    # Two containers on one host: the first exchange goes through the kernel (not learned yet),
    # then the program delivers straight out of the other's netkit end.
    _, ns3 = container(lab, h1)
    rc, res3 = call(h1, "ADD", ns3, "c1b", conf())
    ip3 = res3.get("ips", [{}])[0].get("address", "").split("/")[0]
    in_netns(ns3, ["ping", "-n", "-c", "1", "-W", "2", ip2], timeout=15)  # learned: it sent overlay traffic
    direct = lambda: json.loads(h1.ctl("show", "stats", "--json").stdout)["traffic"]["deliver_direct"]["packets"]  # noqa: E731
    before = direct()
    p = in_netns(ns1, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", ip3], timeout=15)
    c.check(f"two netkit containers on one host: ping {ip1} -> {ip3}, delivered by the program "
            f"({direct() - before} deliver_direct)", rc == 0 and p.returncode == 0 and direct() - before >= 3,
            p.stdout[-200:])
    secs, ok = timed_transfer(lab, ns1, ns3, ip3, 1 << 20, 5311)
    c.check("TCP between netkit containers on one host (1 MiB, sha256 matches)", ok, secs)
    secs, ok = timed_transfer(lab, ns1, ns2, ip2, 1 << 20, 5312)
    c.check("TCP from a netkit container to another host's (1 MiB, sha256 matches)", ok, secs)
    # The source check holds on netkit: another address of the subnet is dropped as bad_source.
    spoof = ip3.rsplit(".", 1)[0] + ".250"
    bad = lambda: json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]["bad_source"]["packets"]  # noqa: E731
    before = bad()
    in_netns(ns1, ["ip", "addr", "add", f"{spoof}/32", "dev", "eth0"])
    p = in_netns(ns1, ["ping", "-n", "-c", "2", "-W", "1", "-I", spoof, ip2], timeout=15)
    in_netns(ns1, ["ip", "addr", "del", f"{spoof}/32", "dev", "eth0"])
    c.check("a netkit container sending from another address is dropped (bad_source)",
            p.returncode != 0 and bad() >= before + 2, (before, bad()))
    netkit_attacks(c, h1, ns1, ip1, ns3, ip3, gw, host_mac, ip2)
    # A host whose bridge already has containers (from before netkit) keeps giving new ones veths
    # there: the two kinds of one host would not reach each other.
    h4 = lab.add_host(4)
    h4.start_agent()
    env4 = h4.subnet_env()
    (old,) = h4.add_bridge_and_containers(env4["FLANNEL_SUBNET"], env4["FLANNEL_MTU"], count=1)
    _, ns4 = container(lab, h4)
    prefix4 = env4["FLANNEL_SUBNET"].rsplit(".", 1)[0]
    rc, res4 = call(h4, "ADD", ns4, "mixed", conf(capabilities={"ips": True},
                                                    runtimeConfig={"ips": [f"{prefix4}.77/24"]}))
    ends = [i.get("name", "") for i in res4.get("interfaces", []) if not i.get("sandbox") and i.get("name") != "cni0"]
    p = in_netns(ns4, ["ping", "-n", "-c", "2", "-W", "2", old.ip], timeout=15)
    c.check("a host with containers on its bridge gives new ones veths there (one kind per host), and they "
            "reach each other", rc == 0 and ends and ends[0].startswith("veth") and p.returncode == 0,
            (rc, ends, p.returncode, res4, p.stdout[-200:]))
    call(h4, "DEL", ns4, "mixed", conf())
    # Without its program the container's end drops what it sends (netkit's peer policy); a
    # restarted agent finds the pair by its name and kind and attaches it again.
    ifindex = h1.sh(f"cat /sys/class/net/{host_end}/ifindex").stdout.strip()
    h1.sh(f"rm /sys/fs/bpf/cppnet/link_tcx_{ifindex}")
    p = in_netns(ns1, ["ping", "-n", "-c", "2", "-W", "1", ip2], timeout=15)
    c.check("netkit: without the agent's program the container sends nothing (peer policy drop)",
            p.returncode != 0, p.stdout[-200:])
    h1.stop_agent()
    h1.start_agent()
    L.wait_for("the restarted agent attached the container again", lambda: in_netns(
        ns1, ["ping", "-n", "-c", "1", "-W", "1", ip2], timeout=15).returncode == 0, 30, 0.5)
    c.check("netkit: a restarted agent attaches the overlay container again",
            h1.sh(f"test -e /sys/fs/bpf/cppnet/link_tcx_{ifindex}", check=False).returncode == 0)
    rc, out = call(h1, "DEL", ns3, "c1b", conf())
    c.check("DEL removes the netkit pair, the host's route to it and its masquerading",
            rc == 0 and h1.sh(f"ip link show {res3['interfaces'][0]['name']}", check=False).returncode != 0
            and ip3 not in h1.sh("ip route").stdout
            and ip3 not in h1.sh("nft list set ip cppnet_cni masq", check=False).stdout, out)


# Frames a hostile netkit container writes on its own eth0 (scapy, one send each: a frame the
# program drops fails the sender's transmit with ENOBUFS on netkit).
NETKIT_ATTACK = """
import sys
from scapy.all import ARP, IP, UDP, Ether, Raw, get_if_hwaddr, sendp
me, victim, gw, gw_mac, dst = sys.argv[1:6]
mac = get_if_hwaddr("eth0")
frames = 3 * [Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=mac, psrc=victim, pdst=gw)]
frames += 3 * [Ether(src="02:00:00:00:66:66", dst=gw_mac) / IP(src=me, dst=dst) / UDP(sport=7, dport=9) / Raw(b"x")]
frames += 3 * [Raw(bytes(Ether(src=mac, dst=gw_mac) / IP(src=me, dst=dst) / UDP(sport=7, dport=9))[:20])]
refused = 0
for f in frames:
    try:
        sendp(f, iface="eth0", verbose=False)
    except OSError:
        refused += 1
print(refused)
"""


def netkit_attacks(c, h1, ns1, ip1, ns3, ip3, gw, host_mac, dst):
    """A netkit container claiming its neighbour's address by ARP, sending with a forged source
    MAC, and sending truncated IPv4 frames: dropped inside its own transmit, counted, and the
    neighbour keeps working."""
    drops = lambda: json.loads(h1.ctl("show", "stats", "--json").stdout)["drops"]  # noqa: E731
    before = drops()
    p = in_netns(ns1, ["/usr/bin/python3", "-c", NETKIT_ATTACK, ip1, ip3, gw, host_mac, dst], timeout=60)
    after = drops()
    grew = {k: after[k]["packets"] - before[k]["packets"] for k in ("bad_source", "truncated")}
    c.check(f"netkit: 3 ARP replies claiming the neighbour {ip3} and 3 packets from a forged MAC are dropped as "
            f"bad_source, 3 truncated frames as truncated ({grew}; sends refused: {p.stdout.strip()})",
            p.returncode == 0 and grew["bad_source"] >= 6 and grew["truncated"] >= 3, (p.stderr[-400:], grew))
    q = in_netns(ns3, ["ping", "-n", "-c", "2", "-W", "2", dst], timeout=15)
    c.check("netkit: after the attack the neighbour still reaches the other host and the agent runs",
            q.returncode == 0 and h1.agent.poll() is None, q.stdout[-200:])


def runtime_requests(lab, c, h):
    """Static addresses a runtime asks for: runtimeConfig "ips" and CNI_ARGS IP=."""
    prefix = h.subnet_env()["FLANNEL_SUBNET"].rsplit(".", 1)[0]
    _, ns = container(lab, h)
    rc, out = call(h, "ADD", ns, "static1", conf(capabilities={"ips": True},
                                                 runtimeConfig={"ips": [f"{prefix}.77/24"]}))
    c.check("runtimeConfig ips: the container gets the requested address",
            rc == 0 and out.get("ips", [{}])[0].get("address") == f"{prefix}.77/24", out)
    call(h, "DEL", ns, "static1", conf())
    _, ns = container(lab, h)
    rc, out = call(h, "ADD", ns, "static2", conf(), args=f"IgnoreUnknown=1;IP={prefix}.78")
    c.check("CNI_ARGS IP=: the container gets the requested address",
            rc == 0 and out.get("ips", [{}])[0].get("address") == f"{prefix}.78/24", out)
    call(h, "DEL", ns, "static2", conf())
    _, ns = container(lab, h)
    rc, out = call(h, "ADD", ns, "static3", conf(runtimeConfig={"ips": ["10.9.9.9/24"]}))
    c.check("a requested address outside the leased subnet: refused by IPAM, naming it",
            rc == 1 and "10.9.9.9" in out.get("msg", ""), out)
    rc, out = call(h, "DEL", ns, "static3", conf())  # what a runtime does after a failed ADD
    c.check("... and DEL after the failed ADD leaves nothing", rc == 0 and
            in_netns(ns, ["ip", "-o", "link", "show", "eth0"]).returncode != 0, out)


def saved_config(lab, c, h):
    """ADD keeps the delegated configuration (flannel's dataDir contract), so DEL releases the
    address even when subnet.env is gone by then."""
    _, ns = container(lab, h)
    rc, out = call(h, "ADD", ns, "keep1", conf())
    ip = out.get("ips", [{}])[0].get("address", "").split("/")[0]
    saved = h.sh("cat /var/lib/cni/cppnet/keep1-eth0", check=False).stdout
    c.check("ADD saved the delegated bridge configuration in /var/lib/cni/cppnet/<id>-<ifname>",
            rc == 0 and json.loads(saved or "{}").get("type") == "bridge", saved[:200])
    env = h.sh("cat /run/flannel/subnet.env").stdout
    h.sh("rm /run/flannel/subnet.env")
    try:
        rc, out = call(h, "DEL", ns, "keep1", conf())
        leases = h.sh("ls /run/cppnet/ipam/cppnet-overlay", check=False).stdout.split()
        gone = h.sh("test -e /var/lib/cni/cppnet/keep1-eth0", check=False).returncode != 0
        c.check("DEL without subnet.env: address released from the saved configuration, file removed",
                rc == 0 and ip and ip not in leases and gone, (rc, out, leases))
    finally:
        h.sh(f"cat > /run/flannel/subnet.env <<'EOF'\n{env}EOF")
    _, ns = container(lab, h)
    rc, out = call(h, "ADD", ns, "../../x", conf())
    c.check("a container ID that is no plain name: error 4, nothing attached",
            rc == 1 and out.get("code") == 4 and in_netns(ns, ["ip", "-o", "link", "show", "eth0"]).returncode != 0,
            out)


def plugin(h, type_, command, netns, cid, stdin):
    """A standard plugin from CNI_PATH, chained after cppnet as a runtime runs a conflist."""
    env = [f"CNI_COMMAND={command}", f"CNI_CONTAINERID={cid}", f"CNI_NETNS={netns}", "CNI_IFNAME=eth0",
           f"CNI_PATH={L.CNI_PATH}"]
    p = L.run(h.cmd(["env", *env, f"{L.CNI_PATH}/{type_}"]), check=False, input=stdin)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip().startswith("{") else {"raw": p.stdout + p.stderr})


def chaining(lab, c, h, remote_ns, remote_ip):
    """portmap and bandwidth after cppnet, as in flannel's conflist; `remote_ns` is a container on
    another host."""
    proc, ns = container(lab, h)
    rc, res = call(h, "ADD", ns, "chain1", conf())
    ip = res.get("ips", [{}])[0].get("address", "").split("/")[0]
    host_if = [i for i in res.get("interfaces", []) if not i.get("sandbox") and
               i.get("name", "").startswith("cn" if NETKIT else "veth")]
    c.check(f"overlay result lists the host {'netkit end' if NETKIT else 'veth'} (for chained plugins)",
            rc == 0 and host_if, res)
    pm = {"cniVersion": "1.0.0", "name": "cppnet-overlay", "type": "portmap", "capabilities": {"portMappings": True},
          "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
          "prevResult": res}
    rc, out = plugin(h, "portmap", "ADD", ns, "chain1", json.dumps(pm))
    c.check("portmap chained after cppnet: ADD succeeds", rc == 0, out)
    srv = subprocess.Popen(["nsenter", f"--net={ns}", "--", "python3", "-c",
                            "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                            "s.bind(('0.0.0.0',80));s.listen(1);print('up',flush=True);c,_=s.accept();"
                            "c.sendall(b'hello from '+c.getsockname()[0].encode());c.close()"],
                           stdout=subprocess.PIPE, text=True)
    lab.pids.append(srv)
    srv.stdout.readline()
    p = L.run(["ip", "netns", "exec", lab.sw, "python3", "-c",
               f"import socket;s=socket.create_connection(('{h.ip}',18080),timeout=5);print(s.recv(100).decode())"],
              check=False)
    c.check(f"a client outside the cluster reaches the container through {h.ip}:18080 (DNAT)",
            f"hello from {ip}" in p.stdout, p.stdout + p.stderr)
    if NETKIT:
        # The bandwidth plugin finds the host end as the container interface's veth peer: it
        # refuses netkit (README: rates need --endpoint-device veth).
        bw = {"cniVersion": "1.0.0", "name": "cppnet-overlay", "type": "bandwidth",
              "runtimeConfig": {"bandwidth": {"ingressRate": 8000000, "ingressBurst": 80000}}, "prevResult": res}
        rc, out = plugin(h, "bandwidth", "ADD", ns, "chain1", json.dumps(bw))
        c.check("the bandwidth plugin refuses a netkit container (it needs a veth), nothing half-made",
                rc != 0 and "veth" in json.dumps(out), out)
        plugin(h, "portmap", "DEL", ns, "chain1", json.dumps(pm))
        rc, out = call(h, "DEL", ns, "chain1", conf())
        c.check("DEL of the chain", rc == 0, out)
        return
    bw = {"cniVersion": "1.0.0", "name": "cppnet-overlay", "type": "bandwidth", "capabilities": {"bandwidth": True},
          "runtimeConfig": {"bandwidth": {"ingressRate": 8000000, "ingressBurst": 80000,
                                          "egressRate": 8000000, "egressBurst": 80000}}, "prevResult": res}
    rc, out = plugin(h, "bandwidth", "ADD", ns, "chain1", json.dumps(bw))
    qdisc = h.sh(f"tc qdisc show dev {host_if[0]['name'] if host_if else 'none'}", check=False).stdout
    c.check("bandwidth chained after cppnet (ingress and egress rate): tbf and the ingress qdisc on the host "
            "veth (cppnet's program there is a tcx link, no clsact in the way)",
            rc == 0 and "tbf" in qdisc and "qdisc ingress" in qdisc and "clsact" not in qdisc, (out, qdisc))
    # The rate holds for overlay traffic too: the datapath delivers through the tbf (straight
    # into the namespace would skip it). 2 MiB at 8 Mbit/s take 2.1 s; unshaped, a few ms.
    L.wait_for("the agent sees the tbf", lambda: "ingress rate (delivered" in h.log(), 10)
    secs, ok = timed_transfer(lab, remote_ns, ns, ip, 2 << 20, 5301)
    c.check(f"ingress rate enforced for traffic from another host (2 MiB in {secs:.2f} s, >= 1.5 s)",
            ok and secs >= 1.5, secs)
    # The egress rate: the container's packets, checked, go on to the plugin's ifb, then the
    # kernel forwards them through cppnet.host onto the overlay.
    L.wait_for("the agent sees the ingress qdisc", lambda: "egress rate (its packets" in h.log(), 10)
    secs, ok = timed_transfer(lab, ns, remote_ns, remote_ip, 2 << 20, 5302)
    c.check(f"egress rate enforced for traffic to another host (2 MiB in {secs:.2f} s, >= 1.5 s, sha256 matches)",
            ok and secs >= 1.5, secs)
    for t, stdin in (("bandwidth", bw), ("portmap", pm)):
        plugin(h, t, "DEL", ns, "chain1", json.dumps(stdin))
    rc, out = call(h, "DEL", ns, "chain1", conf())
    c.check("DEL of the chain", rc == 0, out)


def hostport_across_hosts(lab, c, h2):
    """A container on another host reaching a hostPort, nothing masquerading it (its bridge's
    ipMasq off, as flannel's CNI config sets it with FLANNEL_IPMASQ=true): the packet arrives
    from the container's own address, is translated by portmap's DNAT, and the answer (to a
    container address, which the datapath would send itself) must go back through the kernel's
    conntrack to leave with the host's address as source. The bridge's egress program records
    the translated flow; the container side hands its answers to the kernel (nat_reply)."""
    h3 = lab.add_host(3)
    h3.start_agent()
    L.wait_for("h3 routes", lambda: len(h3.routes()) >= 2)  # h1, h2 (and h4 on netkit)
    _, ns = container(lab, h3)
    rc, res = call(h3, "ADD", ns, "hp1", conf())
    pm = {"cniVersion": "1.0.0", "name": "cppnet-overlay", "type": "portmap", "capabilities": {"portMappings": True},
          "runtimeConfig": {"portMappings": [{"hostPort": 18081, "containerPort": 81, "protocol": "tcp"}]},
          "prevResult": res}
    rc2, out = plugin(h3, "portmap", "ADD", ns, "hp1", json.dumps(pm))
    srv = subprocess.Popen(["nsenter", f"--net={ns}", "--", "python3", "-c",
                            "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
                            "s.bind(('0.0.0.0',81));s.listen(1);print('up',flush=True);c,_=s.accept();"
                            "c.sendall(b'hello across '+c.recv(100));c.close()"], stdout=subprocess.PIPE, text=True)
    lab.pids.append(srv)
    srv.stdout.readline()
    _, remote_ns = container(lab, h2)
    call(h2, "ADD", remote_ns, "hp2", conf(delegate={"ipMasq": False}))
    before = json.loads(h3.ctl("show", "stats", "--json").stdout)["traffic"]["nat_reply"]["packets"]
    p = in_netns(remote_ns, ["python3", "-c", f"import socket;s=socket.create_connection(('{h3.ip}',18081),"
                             "timeout=5);s.sendall(b'x'*3000);print(s.recv(100).decode())"])
    after = json.loads(h3.ctl("show", "stats", "--json").stdout)["traffic"]["nat_reply"]["packets"]
    c.check(f"a container on another host reaches a hostPort ({h3.ip}:18081) unmasqueraded; the "
            f"container's answers went back through conntrack ({after - before} nat_reply packets)",
            rc == 0 and rc2 == 0 and "hello across x" in p.stdout and after - before >= 2,
            (out, p.stdout, p.stderr[-200:]))


def garbage_collection(lab, c, h):
    """CNI 1.1 GC: attachments not listed as valid give back their addresses."""
    cfg = {"cniVersion": "1.1.0", "name": "gcnet", "type": "cppnet"}
    addrs = {}
    for cid in ("gc1", "gc2"):
        _, ns = container(lab, h)
        rc, out = call(h, "ADD", ns, cid, json.dumps(cfg))
        addrs[cid] = out.get("ips", [{}])[0].get("address", "").split("/")[0]
    held = lambda: h.sh("ls /run/cppnet/ipam/gcnet", check=False).stdout.split()  # noqa: E731
    before = held()
    rc, out = call(h, "GC", "", "", json.dumps({**cfg, "cni.dev/valid-attachments": [
        {"containerID": "gc1", "ifname": "eth0"}]}))
    after = held()
    saved = h.sh("ls /var/lib/cni/cppnet", check=False).stdout.split()
    c.check("GC: the unlisted attachment's address is released and its saved configuration removed",
            rc == 0 and addrs["gc2"] in before and addrs["gc2"] not in after and addrs["gc1"] in after
            and "gc2-eth0" not in saved and "gc1-eth0" in saved, (out, before, after, saved))
    # A hostile configuration pointing GC at files that are no host-local store, or at a store
    # with a file that is no allocation: nothing of them is removed.
    h.sh("mkdir -p /run/victim/etc /run/cppnet/ipam/gcnet && printf 'root:x:0:0\\n' > /run/victim/etc/passwd && "
         "printf 'gcz\\r\\neth0' > /run/cppnet/ipam/gcnet/notes")
    rc, out = call(h, "GC", "", "", json.dumps({"cniVersion": "1.1.0", "name": "etc", "type": "cppnet",
                                                 "network": "vlan10", "ipam": {"dataDir": "/run/victim"},
                                                 "cni.dev/valid-attachments": []}))
    rc2, _ = call(h, "GC", "", "", json.dumps({**cfg, "cni.dev/valid-attachments": [
        {"containerID": "gc1", "ifname": "eth0"}]}))
    c.check("GC from a hostile config touches no file that is not a host-local allocation",
            h.sh("ls /run/victim/etc", check=False).stdout.split() == ["passwd"] and "notes" in held()
            and addrs["gc1"] in held(), (rc, out, rc2, held()))
    rc, out = call(h, "GC", "", "", json.dumps({**cfg, "cni.dev/valid-attachments": "x"}))
    c.check("GC with a malformed valid-attachments: error 7, nothing released",
            rc == 1 and out.get("code") == 7 and addrs["gc1"] in held(), out)


if __name__ == "__main__":
    raise SystemExit(run_scenario("cni", scenario))
