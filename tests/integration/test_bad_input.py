#!/usr/bin/env python3
"""Bad input gets a clear one-line error naming the object and the cause: usage
errors exit 2; a missing interface exits 1; an unreachable etcd, a missing or bad
config keep the agent running (not ready, not busy-looping) until things are good."""
import os
import subprocess
import time

from .common import L, run_scenario


def agent_usage(c):
    cases = [
        (["--bogus"], "--bogus"),
        (["--subnet-lease-ttl=soon"], "--subnet-lease-ttl: invalid duration \"soon\""),
        (["--public-ip=198.18.0"], "--public-ip: invalid IPv4 address \"198.18.0\""),
        (["--healthz-port=70000"], "--healthz-port"),
        (["--etcd-endpoints=http://nohostport"], "--etcd-endpoints: \"nohostport\" is not host:port"),
    ]
    for args, msg in cases:
        p = subprocess.run([L.AGENT] + args, capture_output=True, text=True, timeout=10)
        c.check(f"cppnet-agent {' '.join(args)}: exit 2 and names the problem", p.returncode == 2 and msg in p.stderr,
                f"rc={p.returncode} {p.stderr!r}")
    p = subprocess.run([L.AGENT, "--help"], capture_output=True, text=True, timeout=10)
    c.check("cppnet-agent --help lists the flags", p.returncode == 0 and "--etcd-endpoints" in p.stdout
            and "--subnet-file" in p.stdout)
    p = subprocess.run([L.CTL, "show", "nothing"], capture_output=True, text=True, timeout=10)
    c.check("cppnetctl unknown command: exit 2", p.returncode == 2, p.stderr)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def scenario(lab, c):
    agent_usage(c)
    h = lab.add_host(1)

    p = h.ctl("show", "routes", check=False)
    c.check("cppnetctl before the agent ever ran: says so, exit 1", p.returncode == 1 and
            "cppnet-agent has not run on this host" in p.stderr, p.stderr)
    p = h.ctl("--bpffs-dir=/run/nothere/cppnet", "show", "routes", check=False)
    c.check("cppnetctl with a mistyped --bpffs-dir: names it, suggests no mount over it",
            p.returncode == 1 and "/run/nothere/cppnet: no such directory" in p.stderr
            and "mount -t bpf" not in p.stderr, p.stderr)
    p = h.ctl("network", "create", "-d", "bridge", "--subnet", "198.18.10.0/24", "-o", "parent=eth0", "x",
              check=False)
    c.check("cppnetctl network create with a bad driver: the argument is refused before the agent is asked",
            p.returncode == 1 and "bridge" in p.stderr and "not running" not in p.stderr, p.stderr)
    p = h.ctl("route", "add", "198.19.9.0/24", "via", "198.18.0.9", "backend", "ipip", check=False)
    c.check("cppnetctl route add with a bad backend: usage error before maps or agent", p.returncode == 2
            and "unknown backend \"ipip\"" in p.stderr, p.stderr)
    p = h.ctl("route", "add", "--help", check=False)
    c.check("cppnetctl route add --help: the syntax and examples", p.returncode == 0
            and "CIDR via IP [OPTION VALUE]..." in p.stdout and "Examples:" in p.stdout
            and "backend host-gw" in p.stdout, p.stdout)
    h.sh("umount /sys/fs/bpf")  # this lab host's own bpffs (its mount namespace)
    p = h.ctl("show", "routes", check=False)
    h.sh("mount -t bpf bpf /sys/fs/bpf")
    c.check("cppnetctl without bpffs: says how to mount it",
            p.returncode == 1 and "bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)" in p.stderr,
            p.stderr)
    p = L.run(h.cmd([L.AGENT, "--iface=eth9", f"--etcd-endpoints={L.ETCD}"]), check=False, timeout=20)
    c.check("missing interface: exit 1 naming it", p.returncode == 1 and "(--iface eth9: no such device)" in p.stderr,
            p.stderr)

    # etcd not there yet: the agent keeps retrying with backoff, without spinning.
    h.start_agent()
    L.wait_for("unreachable etcd logged", lambda: "Failed to list /coreos.com/network/" in h.log(), timeout=15)
    t0 = cpu_ticks(h.agent.pid)
    time.sleep(3)  # measuring idle CPU over a fixed window, not synchronising
    used = cpu_ticks(h.agent.pid) - t0
    c.check(f"etcd unreachable: agent alive, idle ({used} CPU ticks in 3 s)", h.agent.poll() is None and used < 30)
    c.check("etcd unreachable: error names the endpoint and status",
            "198.18.0.254:2379" in h.log() and "unavailable" in h.log())

    lab.start_etcd()
    L.wait_for("agent waits for config", lambda: "Waiting for the network config at /coreos.com/network/config"
               in h.log(), timeout=15)
    for bad, msg in [('{"Network":"198.19.0.0/16","SubnetLen":31}', "SubnetLen must be less than /31"),
                     ('{"Network":"198.19.0.0/16","Backend":{"Type":"gre"}}', 'unknown backend type "gre"'),
                     ('{"Network": ', "config: not valid JSON"),
                     ('{"Network":"198.19.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}',
                      "Backend.DirectRouting must be true or false")]:
        lab.put_config(bad)
        L.wait_for(f"log of {msg}", lambda: msg in h.log(), timeout=10)
        ready = h.sh("curl -s -w ' %{http_code}' http://127.0.0.1:9471/readyz", check=False).stdout
        c.check(f"bad config ({msg}): logged, /readyz 503, agent running",
                ready.endswith("503") and h.agent.poll() is None, ready)
    c.check("bad config: no subnet.env, no lease written",
            h.sh("test -e /run/flannel/subnet.env", check=False).returncode != 0 and not lab.leases())
    lab.put_config()
    env = h.subnet_env(timeout=15)
    c.check("good config after bad ones: lease acquired and subnet.env written", env["FLANNEL_MTU"] == "1450", env)
    L.wait_for("ready", lambda: h.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9471/readyz",
                                      check=False).stdout == "200", timeout=10)
    c.check("/readyz 200 after the good config", True)

    # Out of subnets: a second host on a network with room for one lease waits and retries.
    lab.put_config('{"Network":"198.19.0.0/16","SubnetLen":24,"SubnetMin":"198.19.210.0","SubnetMax":"198.19.210.0",'
                   '"Backend":{"Type":"vxlan"}}')
    h2 = lab.add_host(2)
    lab.etcdctl("put", "/coreos.com/network/subnets/198.19.210.0-24",
                '{"PublicIP":"198.18.0.77","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:77"}}')
    h2.start_agent()
    L.wait_for("out of subnets", lambda: "out of subnets in 198.19.0.0/16" in h2.log(), timeout=15)
    c.check("no free subnet: 'out of subnets' logged, agent keeps running", h2.agent.poll() is None)

    # --public-ip without --iface: the underlay is the interface carrying that address (the lab
    # hosts have no default route, which was the only interface tried before).
    h3 = lab.add_host(3)
    h3.start_agent(f"--public-ip={h3.ip}", config_iface=None)
    L.wait_for("h3 agent starts", lambda: "cppnet-agent starting" in h3.log() or h3.agent.poll() is not None,
               timeout=15)
    c.check("--public-ip without --iface: the interface carrying that address is the underlay",
            f"underlay eth0 ({h3.ip}," in h3.log() and h3.agent.poll() is None, h3.log()[-300:])

    # flanneld's environment variables: FLANNELD_PUBLIC_IP stands for --public-ip (the underlay
    # follows it, as above); a flanneld-only one is named and ignored.
    h3.stop_agent()
    h4 = lab.add_host(4)
    h4.start_agent(config_iface=None, env={"FLANNELD_PUBLIC_IP": h4.ip, "FLANNELD_KUBE_SUBNET_MGR": "true"})
    L.wait_for("h4 agent starts", lambda: "cppnet-agent starting" in h4.log() or h4.agent.poll() is not None,
               timeout=15)
    c.check("FLANNELD_PUBLIC_IP is read as --public-ip; FLANNELD_KUBE_SUBNET_MGR named as not ours",
            f"underlay eth0 ({h4.ip}," in h4.log() and "FLANNELD_KUBE_SUBNET_MGR is a flanneld setting"
            in h4.log() and h4.agent.poll() is None, h4.log()[-400:])

    h4.stop_agent()
    interface_selection(c, lab.add_host(5))


def interface_selection(c, h):
    """flanneld's --iface (repeatable, name or address), --iface-regex (addresses, then names),
    --iface-can-reach, in that order; a second interface ul1 (198.18.9.1/24) to choose."""
    h.sh("ip link add ul1 type veth peer name ul1p && ip addr add 198.18.9.1/24 dev ul1 && "
         "ip link set ul1p up && ip link set ul1 up")

    def start(*args, env=None):
        before = len(h.log()) if os.path.exists(h.log_path) else 0
        h.start_agent("--release-on-exit", *args, config_iface=None, env=env)
        L.wait_for("agent starts or exits", lambda: "cppnet-agent starting" in h.log()[before:]
                   or h.agent.poll() is not None, timeout=15)
        out = h.log()[before:]
        rc = h.agent.poll()
        h.stop_agent()
        return out, rc

    cases = [
        (["--iface=nope0", "--iface=ul1"], None, "--iface ul1", "--iface nope0: no such device"),
        (["--iface=198.18.7.7", "--iface=198.18.9.1"], None, "--iface 198.18.9.1",
         "--iface 198.18.7.7: no interface has this address"),
        (["--iface-regex=^zz", "--iface-regex=^ul1$"], None, "--iface-regex ^ul1$",
         "--iface-regex ^zz: matches no interface name or address"),
        (["--iface-regex=198\.18\.9\."], None, "--iface-regex 198\.18\.9\.", ""),
        (["--iface-can-reach=198.18.9.77"], None, "--iface-can-reach 198.18.9.77", ""),
        (["--iface=nope0", "--iface-can-reach=198.18.9.77"], None, "--iface-can-reach 198.18.9.77", ""),
        ([], {"FLANNELD_IFACE_REGEX": "^ul1$"}, "--iface-regex ^ul1$", ""),
        ([], {"CPPNET_IFACE": "nope0,ul1"}, "--iface ul1", ""),
    ]
    for args, env, how, note in cases:
        out, rc = start(*args, env=env)
        c.check(f"{' '.join(args) or env}: underlay ul1 (198.18.9.1) chosen by {how}",
                rc is None and f"Underlay ul1 chosen by {how}\n" in out and "underlay ul1 (198.18.9.1," in out
                and note in out, out[-400:])
    out, rc = start("--iface=nope0", "--iface-regex=^zz")
    c.check("nothing matches: exit 1 naming what was tried", rc == 1 and
            "no interface matches the interfaces and/or regexes provided (--iface nope0: no such device; "
            "--iface-regex ^zz: matches no interface name or address)" in out, out[-400:])
    out, rc = start("--iface-regex=(ul")
    c.check("a bad regex: exit 1 naming it", rc == 1 and "--iface-regex \"(ul\": invalid regular expression" in out,
            out[-400:])


if __name__ == "__main__":
    raise SystemExit(run_scenario("badinput", scenario))
