#!/usr/bin/env python3
"""VLAN network definitions (issue 6, first part): `cppnetctl network create|list|show|
delete` with Docker's syntax and error wording, kept in /etc/cppnet/networks.d and
loaded by the agent; refused while no agent runs. (Traffic: test_vlan_datapath.py.)"""
import json

from .common import L, run_scenario


def scenario(lab, c):
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h = lab.add_host(1)
    p = h.ctl("network", "create", "--subnet", "10.10.90.0/24", "-o", "parent=eth0.19", "vlan19", check=False)
    c.check("network create without a running agent: refused, exit 1", p.returncode == 1
            and "cppnet-agent is not running" in p.stderr, p.stderr)
    h.start_agent()
    h.subnet_env()
    for args in (["-d", "macvlan", "-o", "parent=eth0.19", "--subnet=10.10.90.0/24", "--gateway=10.10.90.1", "vlan19"],
                 ["-d", "macvlan", "-o", "parent=eth0.20", "--subnet=192.168.20.0/24", "--gateway=192.168.20.1",
                  "--subnet=2001:db8:20::/64", "--gateway=2001:db8:20::1", "--ipv6", "-o", "macvlan_mode=private",
                  "vlan20"],
                 ["-d", "ipvlan", "--subnet", "10.10.10.0/24", "--ip-range", "10.10.10.0/25",
                  "--aux-address", "docker1=10.10.10.101", "-o", "parent=eth0.30", "-o", "ipvlan_mode=l3", "ipv30"]):
        p = h.ctl("network", "create", *args, check=False)
        c.check(f"network create {args[-1]} (Docker's syntax)", p.returncode == 0 and p.stdout.strip() == args[-1],
                p.stdout + p.stderr)
    nets = {n["name"]: n for n in json.loads(h.ctl("network", "list", "--json").stdout)}
    c.check("network list --json: name, driver, mode, parent, vlan, subnets, gateways",
            nets.get("vlan20") == {"name": "vlan20", "driver": "macvlan", "mode": "private", "parent": "eth0.20",
                                   "vlan": 20, "subnets": ["192.168.20.0/24", "2001:db8:20::/64"],
                                   "gateways": ["192.168.20.1", "2001:db8:20::1"], "internal": False}
            and nets["ipv30"]["mode"] == "l3" and nets["vlan19"]["vlan"] == 19, nets)
    L.wait_for("agent loaded the networks", lambda: all(f"VLAN network {n}:" in h.log() for n in nets), 10)
    c.check("the agent loads the definitions when they change",
            "VLAN network vlan20: macvlan private on eth0, VLAN 20" in h.log(), h.log()[-400:])
    bad = [
        (["-o", "parent=eth0.5000", "--subnet=10.1.0.0/24", "x"], "vlan id must be between 1-4094, received: 5000"),
        (["-o", "parent=eth9.10", "--subnet=10.1.0.0/24", "x"], "parent interface was not found on the host: eth9"),
        (["-d", "ipvlan", "-o", "parent=eth0.30", "--subnet=10.1.0.0/24", "x"],
         "network ipv30 is already using parent interface eth0.30"),
        (["-o", "parent=eth0.40", "--subnet=10.2.0.0/24", "--gateway=10.1.0.1", "x"],
         "invalid gateway 10.1.0.1: parent subnet 10.2.0.0/24 doesn't contain this address"),
        (["-o", "parent=eth0.40", "--subnet=10.2.0.0/24", "--ip-range=10.3.0.0/25", "x"], "invalid ip-range 10.3.0.0/25"),
        (["-o", "parent=eth0.40", "--subnet=10.2.0.0/24", "vlan19"], "network with name vlan19 already exists"),
    ]
    for args, want in bad:
        p = h.ctl("network", "create", *args, check=False)
        c.check(f"network create error: {want}", p.returncode == 1 and want in p.stderr, p.stderr)
    p = h.ctl("network", "create", "--bogus", "x", check=False)
    c.check("network create with an unknown flag: exit 2", p.returncode == 2, p.stderr)
    p = h.ctl("network", "show", "vlan19", "--json")
    c.check("network show --json", json.loads(p.stdout)["parent"] == "eth0.19", p.stdout)
    p = h.ctl("network", "delete", "vlan19", "ipv30", check=False)
    left = [n["name"] for n in json.loads(h.ctl("network", "list", "--json").stdout)]
    c.check("network delete removes the definitions", p.returncode == 0 and left == ["vlan20"], (p.stderr, left))
    p = h.ctl("network", "delete", "vlan19", check=False)
    c.check("network delete of an unknown network: exit 1 naming it", p.returncode == 1
            and "network vlan19 not found" in p.stderr, p.stderr)


if __name__ == "__main__":
    raise SystemExit(run_scenario("vlannet", scenario))
