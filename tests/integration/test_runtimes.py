#!/usr/bin/env python3
"""A real container runtime drives the CNI plugin: podman from Debian (CNI backend,
containers from a busybox root filesystem, private storage and configuration) on two lab
hosts, attaching containers to the overlay and to a VLAN network. Addresses from the lease,
ping and a checksummed HTTP transfer across hosts, `podman restart` keeps one address,
`podman rm` runs DEL and leaves nothing behind."""
import shutil

from .common import L, overlay_hosts, run_scenario


def blob_transfer(c, pa, a, pb, b, ip_b, what):
    """4 MiB of random bytes served by busybox httpd in b, fetched with wget by a: sha256 both sides."""
    pb.exec(b, "sh", "-c", "mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/blob bs=1024 count=4096 2>/dev/null "
                           "&& httpd -p 8080 -h /tmp/www", check=True)
    want = pb.exec(b, "sha256sum", "/tmp/www/blob").stdout.split()[:1]
    got = L.wait_for(f"{what}: HTTP transfer", lambda: pa.exec(
        a, "sh", "-c", f"wget -q -O - http://{ip_b}:8080/blob | sha256sum").stdout.split()[:1] or None, 15)
    c.check(f"{what}: 4 MiB over TCP (busybox httpd -> wget), sha256 matches", want and got == want, (want, got))


def scenario(lab, c):
    if not shutil.which("podman") or not shutil.which("crun"):
        print("SKIP: podman/crun not installed (scripts/install-deps.sh installs them)")
        raise SystemExit(77)
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h1, h2 = overlay_hosts(lab, 2, containers=0)
    lab.add_trunk([h1, h2])
    pods = {}
    for h in (h1, h2):
        pods[h] = L.Podman(h)
        pods[h].network("cppnet", {"type": "cppnet"})
    p1, p2 = pods[h1], pods[h2]

    ip_a = p1.run_container("a", "cppnet", "sleep", "600")
    ip_b = p2.run_container("b", "cppnet", "sleep", "600")
    for h, ip in ((h1, ip_a), (h2, ip_b)):
        prefix = h.subnet_env()["FLANNEL_SUBNET"].rsplit(".", 1)[0] + "."
        c.check(f"podman run on h{h.index}: the container's address is from the lease ({prefix}0/24)",
                ip.startswith(prefix), ip)
    p = p1.exec("a", "ping", "-c", "2", "-W", "2", ip_b)
    c.check("podman containers on two hosts ping each other over the overlay", p.returncode == 0, p.stdout[-200:])
    blob_transfer(c, p1, "a", p2, "b", ip_b, "overlay")

    p1("restart", "-t", "1", "a")
    ip_again = p1.ip("a", "cppnet")
    held = h1.sh("ls /run/cppnet/ipam/cppnet", check=False).stdout.split()
    addrs = [x for x in held if x[0].isdigit()]
    c.check("podman restart: the container comes back with one address, one held in IPAM",
            ip_again and len(addrs) == 1 and addrs[0] == ip_again, (ip_again, held))
    p = p1.exec("a", "ping", "-c", "1", "-W", "2", ip_b)
    c.check("... and reaches the other host again", p.returncode == 0, p.stdout[-200:])

    # A VLAN network, defined on both hosts (h2 hands out the upper half).
    for h, rng in ((h1, "198.18.120.0/25"), (h2, "198.18.120.128/25")):
        h.ctl("network", "create", "-d", "macvlan", "--subnet", "198.18.120.0/24", "--ip-range", rng,
              "-o", "parent=eth1.120", "vlan120")
        pods[h].network("vlan120", {"type": "cppnet", "network": "vlan120"})
    ip_v1 = p1.run_container("v1", "vlan120", "sleep", "600")
    ip_v2 = p2.run_container("v2", "vlan120", "sleep", "600")
    c.check("podman on a VLAN network: addresses from each host's --ip-range",
            ip_v1.startswith("198.18.120.") and int(ip_v1.split(".")[3]) < 128
            and int(ip_v2.split(".")[3]) >= 128, (ip_v1, ip_v2))
    p = p1.exec("v1", "ping", "-c", "2", "-W", "2", ip_v2)
    c.check("podman containers on the VLAN network reach each other across the trunk", p.returncode == 0,
            p.stdout[-200:])
    blob_transfer(c, p1, "v1", p2, "v2", ip_v2, "VLAN 120")

    # podman rm: DEL for every attachment; nothing of them stays on the host.
    veths = lambda h: [x for x in h.sh("ls /sys/class/net").stdout.split() if x.startswith(("veth", "cv"))]  # noqa
    for name in ("a", "v1"):
        p1("rm", "-f", "-t", "1", name)
    held = h1.sh("ls /run/cppnet/ipam/cppnet /run/cppnet/ipam/vlan120", check=False).stdout.split()
    saved = h1.sh("ls /var/lib/cni/cppnet", check=False).stdout.split()
    vl = h1.ctl("show", "vlans", "--json").stdout
    c.check("podman rm: veths gone, addresses released, saved configuration removed, endpoint unregistered",
            not veths(h1) and not [x for x in held if x[0].isdigit()] and not saved and ip_v1 not in vl,
            (veths(h1), held, saved))

    docker(lab, c, p2, ip_b)


def docker(lab, c, podman, podman_ip):
    """dockerd on two more hosts, started as flannel's docs say: --bip=$FLANNEL_SUBNET
    --mtu=$FLANNEL_MTU; the agent takes docker0 and its ports."""
    if not shutil.which("dockerd"):
        return c.check("dockerd installed (scripts/install-deps.sh)", False)
    hosts = [lab.add_host(3), lab.add_host(4)]
    for h in hosts:
        h.start_agent()
    L.wait_for("routes to all four hosts", lambda: all(len(h.routes()) == 3 for h in hosts), 20)
    d3, d4 = L.Docker(hosts[0]), L.Docker(hosts[1])
    for h in hosts:
        env = h.subnet_env()
        link = h.sh("ip -o -4 addr show dev docker0").stdout
        L.wait_for(f"h{h.index} agent attaches to docker0", lambda h=h: h.config().get("container_iface") == "docker0", 10)
        c.check(f"dockerd on h{h.index}: docker0 carries FLANNEL_SUBNET {env['FLANNEL_SUBNET']}",
                f"inet {env['FLANNEL_SUBNET']}" in link, link)
    ip3 = d3.run_container("d3", "sleep", "600")
    ip4 = d4.run_container("d4", "sleep", "600")
    mtu = d3.exec("d3", "cat", "/sys/class/net/eth0/mtu").stdout.strip()
    c.check("a docker container's MTU is FLANNEL_MTU (--mtu)", mtu == hosts[0].subnet_env()["FLANNEL_MTU"], mtu)
    p = d3.exec("d3", "ping", "-c", "2", "-W", "2", ip4)
    c.check("docker containers on two hosts ping each other over the overlay", p.returncode == 0, p.stdout[-200:])
    blob_transfer(c, d3, "d3", d4, "d4", ip4, "docker")
    p = d3.exec("d3", "ping", "-c", "2", "-W", "2", podman_ip)
    q = podman.exec("b", "ping", "-c", "2", "-W", "2", ip3)
    c.check("a docker container and a podman container on other hosts reach each other",
            p.returncode == 0 and q.returncode == 0, p.stdout[-150:] + q.stdout[-150:])


if __name__ == "__main__":
    raise SystemExit(run_scenario("rt", scenario))
