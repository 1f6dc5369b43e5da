#!/usr/bin/env python3
"""The Debian package (issue 15): built by CPack from this build, then installed, removed and
purged with dpkg the way an operator does, in a throwaway copy of this machine's root (an
overlay over /, in a mount and network namespace of its own, so nothing on the machine
changes): FHS paths, dependencies from shlibdeps, the unit verified and its `systemd-analyze
security` exposure measured, man pages and completion installed, enabled but not started, the
datapath taken down on remove (its interfaces gone), configuration and state gone on purge with
nothing left behind."""
import os
import re
import stat
import subprocess
import sys

from .common import L, Checker

EXPOSURE_MAX = 4.0


def build_deb():
    p = subprocess.run(["cpack"], cwd=L.BUILD, capture_output=True, text=True, timeout=600)
    m = re.search(r"package: (\S+\.deb) generated", p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"cpack failed: {p.stdout[-800:]} {p.stderr[-800:]}")
    return m.group(1)


def outer(c):
    deb = build_deb()
    version = re.search(r'project\(cppnet VERSION (\S+)', open(os.path.join(L.ROOT, "CMakeLists.txt")).read())[1]
    c.check(f"cpack builds cppnet_{version}_amd64.deb", os.path.basename(deb) == f"cppnet_{version}_amd64.deb", deb)
    info = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True).stdout
    c.check("dependencies from shlibdeps (libbpf, libnl-route, gRPC, prometheus-cpp) and the CNI plugins",
            all(d in info for d in ("libbpf1", "libnl-route-3-200", "libgrpc++", "libprometheus-cpp-core",
                                    "containernetworking-plugins")), info)
    files = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True).stdout
    want = ["./usr/sbin/cppnet-agent", "./usr/bin/cppnetctl", "./usr/lib/cni/cppnet", "./opt/cni/bin/cppnet ->",
            "./lib/systemd/system/cppnet-agent.service", "./etc/default/cppnet",
            "./usr/share/doc/cppnet/examples/docker-cppnet.conf", "./usr/share/man/man8/cppnet-agent.8.gz",
            "./usr/share/man/man8/cppnetctl.8.gz", "./usr/share/man/man8/cppnet-cni.8.gz",
            "./usr/share/bash-completion/completions/cppnetctl", "./usr/lib/cppnet/cppnet-docker-opts"]
    c.check("FHS layout: agent in /usr/sbin, cppnetctl in /usr/bin, the plugin in /usr/lib/cni (linked from "
            "/opt/cni/bin), unit, /etc/default/cppnet, man pages, completion, docker example",
            all(w in files for w in want), [w for w in want if w not in files])
    # Everything else runs in a private mount + network namespace over a copy of the root.
    p = subprocess.run(["unshare", "--mount", "--net", "--fork", "--", sys.executable, "-m",
                        "tests.integration.test_package", "--inner", deb],
                       cwd=L.ROOT, capture_output=True, text=True, timeout=900)
    for line in p.stdout.splitlines():
        ok, _, rest = line.partition(" ")
        if ok in ("ok", "FAIL"):
            c.check(rest.lstrip("- "), ok == "ok")
        elif not re.match(r"\d+ passed, \d+ failed$", line):
            print(line)
    if p.returncode not in (0, 1):
        c.check("the install/remove/purge run finished", False, p.stderr[-2000:])


def sh(root, cmd, **kw):
    return subprocess.run(["chroot", root, "/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=300, **kw)


def inner(deb):
    c = Checker()
    work = "/mnt"  # a tmpfs over it exists in this mount namespace only: no trace on the machine
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", work], check=True)
    upper, wd, root = (os.path.join(work, d) for d in ("upper", "work", "root"))
    for d in (upper, wd, root):
        os.mkdir(d)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={upper},workdir={wd}", root],
                   check=True)
    subprocess.run(["mount", "-t", "proc", "proc", f"{root}/proc"], check=True)
    subprocess.run(["mount", "-t", "sysfs", "sysfs", f"{root}/sys"], check=True)
    subprocess.run(["mount", "--rbind", "/dev", f"{root}/dev"], check=True)
    for d in ("run", "tmp"):
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", f"{root}/{d}"], check=True)
    subprocess.run(["cp", deb, f"{root}/tmp/cppnet.deb"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    p = sh(root, "dpkg -i /tmp/cppnet.deb")
    c.check("dpkg -i installs it", p.returncode == 0, p.stdout[-500:] + p.stderr[-500:])
    v = sh(root, "cppnet-agent --version; cppnetctl --version; /opt/cni/bin/cppnet --version 2>&1")
    c.check("the installed programs say their version (agent, cppnetctl, the plugin through /opt/cni/bin)",
            v.stdout.count("0.") >= 3 and "cppnet-agent " in v.stdout and "CNI cppnet plugin" in v.stdout,
            v.stdout + v.stderr)
    wants = os.path.lexists(f"{root}/etc/systemd/system/multi-user.target.wants/cppnet-agent.service")
    c.check("enabled (multi-user.target wants it), not started", wants)
    p = sh(root, "systemd-analyze verify /lib/systemd/system/cppnet-agent.service")
    c.check("systemd-analyze verify: the unit is clean (ExecStart exists, man page found)",
            p.returncode == 0 and not p.stderr.strip(), p.stderr[-800:])
    p = sh(root, "systemd-analyze security --offline=true cppnet-agent.service")
    m = re.search(r"Overall exposure level for cppnet-agent\.service: ([\d.]+)", p.stdout + p.stderr)
    level = float(m.group(1)) if m else 99
    c.check(f"systemd-analyze security: exposure {level} (<= {EXPOSURE_MAX})", level <= EXPOSURE_MAX,
            (p.stdout + p.stderr)[-600:])
    p = sh(root, "man -w cppnet-agent cppnetctl cppnet-cni")
    c.check("man pages found by man", p.returncode == 0 and p.stdout.count(".8.gz") == 3, p.stdout + p.stderr)
    helpvars = set(re.findall(r"CPPNET_[A-Z0-9_]+", sh(root, "cppnet-agent --help").stdout))
    default = open(f"{root}/etc/default/cppnet").read()
    missing = sorted(v for v in helpvars if v not in default)
    c.check(f"/etc/default/cppnet names every one of the agent's {len(helpvars)} variables", helpvars and not missing,
            missing)
    with open(f"{root}/tmp/subnet.env", "w") as f:
        f.write("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n")
    p = sh(root, "/usr/lib/cppnet/cppnet-docker-opts /tmp/subnet.env /tmp/docker && cat /tmp/docker")
    c.check("cppnet-docker-opts: --bip and --mtu from subnet.env, Docker's masquerading off when the agent's is on",
            p.stdout.strip() == 'DOCKER_NETWORK_OPTIONS="--bip=10.5.7.1/24 --ip-masq=false --mtu=1450"',
            p.stdout + p.stderr)
    dropin = open(f"{root}/usr/share/doc/cppnet/examples/docker-cppnet.conf").read()
    c.check("the Docker drop-in keeps dockerd's stock options (-H fd://, --containerd)",
            "-H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS $DOCKER_NETWORK_OPTIONS" in dropin)

    # State as a running host has it: the agent's interfaces, VLAN networks, the plugin's store,
    # an edited /etc/default/cppnet.
    subprocess.run(["ip", "link", "add", "cppnet.host", "type", "veth", "peer", "name", "cppnet.soft"], check=True)
    sh(root, "mkdir -p /etc/cppnet/networks.d /var/lib/cni/cppnet /run/cppnet/ipam && "
             "echo '{}' > /etc/cppnet/networks.d/vlan10.json && echo x > /var/lib/cni/cppnet/c1-eth0 && "
             "echo 'CPPNET_ETCD_ENDPOINTS=http://10.0.0.10:2379' >> /etc/default/cppnet")
    p = sh(root, "dpkg -r cppnet")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    c.check("dpkg -r: removed, the datapath taken down (cppnet-agent --cleanup: cppnet.host/cppnet.soft gone)",
            p.returncode == 0 and not os.path.exists(f"{root}/usr/sbin/cppnet-agent") and "cppnet.host" not in links,
            p.stdout[-400:] + p.stderr[-400:] + links)
    c.check("dpkg -r keeps the configuration (/etc/default/cppnet as edited, /etc/cppnet)",
            "10.0.0.10" in open(f"{root}/etc/default/cppnet").read()
            and os.path.exists(f"{root}/etc/cppnet/networks.d/vlan10.json"))
    p = sh(root, "dpkg -P cppnet")
    left = []  # in the upper dir: what changed; whiteouts (0/0 character devices) are deletions
    for d, dirs, files in os.walk(upper):
        for n in files + dirs:
            full = os.path.join(d, n)
            st = os.lstat(full)
            path = os.path.relpath(full, upper)
            whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            # dpkg's own records and man-db's page cache (systemd-analyze verify ran man) aside
            if "cppnet" in n and not whiteout and not path.startswith(
                    ("var/lib/dpkg/", "var/log/", "var/cache/man/", "tmp/")):
                left.append(path)
    c.check("dpkg -P: configuration and state gone, nothing of cppnet left on the root (overlay's upper dir)",
            p.returncode == 0 and not left and not os.path.exists(f"{root}/etc/default/cppnet")
            and not os.path.exists(f"{root}/etc/cppnet") and not os.path.exists(f"{root}/var/lib/cni/cppnet")
            and not os.path.lexists(f"{root}/etc/systemd/system/multi-user.target.wants/cppnet-agent.service"),
            (p.stdout[-300:], p.stderr[-300:], left))
    return c.finish()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--inner":
        return inner(sys.argv[2])
    L.require_root()
    c = Checker()
    try:
        outer(c)
    except Exception as e:  # noqa: BLE001
        return c.finish(None, e)
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
