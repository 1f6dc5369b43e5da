#!/usr/bin/env python3
"""The package on a Debian bookworm system running real systemd as PID 1 (issue 15): a root
built with debootstrap from the Debian mirror, the .deb installed into it with apt, then booted
(systemd as PID 1 of new pid, mount, network, UTS and IPC namespaces; /proc/sys read-only but
for net, as systemd-nspawn does) with a link to the lab's switch and etcd. There the hardened
unit starts through READY=1, the agent leases a subnet and forwards, `systemctl restart` keeps
the lease and loses nothing under a 10 ms ping, the watchdog restarts a stalled agent, and
`apt purge` leaves nothing. Needs the Debian mirror (CPPNET_DEBIAN_MIRROR overrides it)."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time

from .common import L, overlay_hosts, run_scenario
from .test_package import build_deb

MIRROR = os.environ.get("CPPNET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BOOT_IP = "198.18.0.50"

# PID 1 of the new namespaces: the root's mounts, then systemd.
BOOT = r"""set -e
R=$1
mount --make-rprivate /
mount --bind $R $R
mount -t proc proc $R/proc
mount --bind $R/proc/sys $R/proc/sys
mount --bind $R/proc/sys/net $R/proc/sys/net
mount -o remount,bind,ro $R/proc/sys
mount -t sysfs -o ro sysfs $R/sys
# What systemd mounts at boot on a host (an API file system) but leaves to the container manager.
mount -t bpf -o mode=0700 bpf $R/sys/fs/bpf
mount -t tmpfs -o mode=755 tmpfs $R/dev
for d in null zero full random urandom tty; do touch $R/dev/$d; mount --bind /dev/$d $R/dev/$d; done
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
ln -sf pts/ptmx $R/dev/ptmx
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs tmpfs $R/run
mount -t tmpfs tmpfs $R/tmp
# Shared, as a container manager leaves it (systemd does not do this itself in a container): the
# bpffs the unit's ExecStartPre mounts must reach the agent's sandbox.
mount --make-rshared $R
hostname cppnet-boot
export container=cppnet-boot-test
exec chroot $R /lib/systemd/systemd
"""


def build_root(root, deb):
    p = subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=systemd,systemd-sysv,dbus,iproute2,iputils-ping,curl,procps",
                        "bookworm", root, MIRROR], capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"debootstrap: {p.stdout[-600:]} {p.stderr[-600:]}")
    shutil.copy(deb, f"{root}/tmp/cppnet.deb")
    # apt inside the root (its own mounts), with the machine's network for the mirror.
    return subprocess.run(
        ["unshare", "--mount", "--fork", "sh", "-c",
         f"mount -t proc proc {root}/proc && mount --rbind /dev {root}/dev && "
         f"chroot {root} sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
         f"apt-get install -y -qq /tmp/cppnet.deb'"], capture_output=True, text=True, timeout=900)


def own_cgroups(name):
    """A fresh child of this process's cgroup in every hierarchy (v1 controllers, name=systemd,
    the v2 tree): the booted systemd gets it as its cgroup namespace's root, so everything it
    creates stays below it. Returns the directories."""
    mounts = {}
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        sep = f.index("-")
        if f[sep + 1] in ("cgroup", "cgroup2"):
            opts = set(f[sep + 3].split(","))
            mounts[f[4]] = (f[sep + 1], opts)
    dirs = []
    for line in open("/proc/self/cgroup"):
        _, ctrls, path = line.strip().split(":", 2)
        want = set(ctrls.split(",")) if ctrls else None
        for mnt, (fstype, opts) in mounts.items():
            if (want is None and fstype == "cgroup2") or (want and want <= opts and fstype == "cgroup"):
                d = os.path.join(mnt + path, name)
                os.makedirs(d, exist_ok=True)
                for knob in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty until copied
                    if os.path.exists(f"{d}/{knob}") and not open(f"{d}/{knob}").read().strip():
                        with open(f"{d}/{knob}", "w") as f:
                            f.write(open(f"{os.path.dirname(d)}/{knob}").read())
                dirs.append(d)
                break
    return dirs


def remove_cgroups(dirs):
    for top in dirs:
        for d, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(d)
            except OSError:
                pass


class Booted:
    """The booted system: commands run inside all its namespaces and its root."""

    def __init__(self, lab, root):
        self.root = root
        script = os.path.join(lab.dir, "boot.sh")
        with open(script, "w") as f:
            f.write(BOOT)
        self.cgroups = own_cgroups(f"{lab.prefix}-boot")
        join = " && ".join(f"echo $$ > {d}/cgroup.procs" for d in self.cgroups)
        self.unshare = subprocess.Popen(
            ["sh", "-c", f"{join} && exec unshare --cgroup --pid --mount --net --uts --ipc --fork sh {script} {root}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        lab.pids.append(self.unshare)
        self.pid = None
        lab.cleanups.append(self.stop)  # also when a check fails
        L.wait_for("systemd as PID 1", self._find_pid, 20)

    def stop(self):
        """Ends the booted system: SIGKILL to PID 1 of its pid namespace ends every process in it
        (all started by this test); then its cgroups go."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 20
            while os.path.exists(f"/proc/{self.pid}") and time.monotonic() < deadline:
                time.sleep(0.1)  # the kernel reaping the namespace (no event to wait on)
            self.pid = None
        with contextlib.suppress(Exception):
            self.unshare.wait(timeout=10)
        remove_cgroups(self.cgroups)

    def _find_pid(self):
        kids = subprocess.run(["pgrep", "-P", str(self.unshare.pid)], capture_output=True, text=True).stdout.split()
        if kids and os.readlink(f"/proc/{kids[0]}/exe").endswith("systemd"):
            self.pid = int(kids[0])
        return self.pid is not None

    def sh(self, cmd, timeout=120):
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", "-n", "-u", "-i", "-r", "-w",
                               "sh", "-c", cmd], capture_output=True, text=True, timeout=timeout)

    def popen(self, argv):
        return subprocess.Popen(["nsenter", "-t", str(self.pid), "-m", "-p", "-n", "-u", "-i", "-r", "-w", *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def prop(self, name):
        return self.sh(f"systemctl show -p {name} --value cppnet-agent").stdout.strip()


def ping_loss(out):
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def scenario(lab, c):
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is missing (scripts/install-deps.sh installs it)")
    deb = build_deb()
    root = f"/var/tmp/{lab.prefix}-root"
    lab.cleanups.append(lambda: shutil.rmtree(root, ignore_errors=True))
    p = build_root(root, deb)
    c.check("a bookworm root from debootstrap, the .deb installed with apt (dependencies from the mirror)",
            p.returncode == 0, p.stdout[-500:] + p.stderr[-800:])
    lab.start_etcd()
    lab.put_config(L.VXLAN_CONFIG)
    h1, = overlay_hosts(lab, n=1)
    a = h1.containers[0]

    box = Booted(lab, root)
    L.wait_for("systemd running", lambda: box.sh("systemctl is-system-running").stdout.strip()
               in ("running", "degraded"), 60)
    state = box.sh("systemctl is-system-running; systemctl --failed --no-legend").stdout
    c.check("systemd boots as PID 1 (no failed units)", state.split()[0] == "running", state)
    # Enabled by the package, so it started at boot, and failed: nothing is configured yet.
    c.check("installed enabled: started at boot, and without settings it says what is missing",
            box.sh("systemctl is-enabled cppnet-agent").stdout.strip() == "enabled"
            and "name the underlay with --iface" in box.sh("journalctl -u cppnet-agent --no-pager").stdout)
    box.sh("systemctl stop cppnet-agent; systemctl reset-failed cppnet-agent")
    # Its link to the switch, as a host's eth0.
    L.run(["ip", "-n", lab.sw, "link", "add", "pboot", "type", "veth", "peer", "name", "eth0", "netns",
           str(box.pid)])
    L.run(["ip", "-n", lab.sw, "link", "set", "pboot", "master", "br0", "up"])
    box.sh(f"ip link set lo up && ip addr add {BOOT_IP}/24 dev eth0 && ip link set eth0 up && "
           "sysctl -qw net.ipv4.ip_forward=1")
    box.sh(f"printf 'CPPNET_ETCD_ENDPOINTS={lab.etcd_url}\\nCPPNET_IFACE=eth0\\nCPPNET_SUBNET_LEASE_TTL=60s\\n"
           "CPPNET_SUBNET_LEASE_RENEW_MARGIN=1\\n' >> /etc/default/cppnet")

    t0 = time.monotonic()
    p = box.sh("systemctl start cppnet-agent", timeout=60)
    secs = time.monotonic() - t0
    active = box.sh("systemctl is-active cppnet-agent").stdout.strip()
    c.check(f"systemctl start: active through READY=1 ({secs:.1f} s), in the hardened sandbox",
            p.returncode == 0 and active == "active", p.stderr + box.sh("journalctl -u cppnet-agent -n 30").stdout)
    senv = box.sh("cat /run/flannel/subnet.env").stdout
    subnet = re.search(r"FLANNEL_SUBNET=(\S+)", senv)
    leases = {k: json.loads(v) for k, v in lab.leases().items()}
    mine = [k for k, v in leases.items() if v.get("PublicIP") == BOOT_IP]
    c.check("the agent leased a subnet (etcd key with its PublicIP, subnet.env written)",
            subnet is not None and len(mine) == 1, (senv, leases))
    if not subnet or not mine:
        return
    host_addr = subnet[1].split("/")[0].rsplit(".", 1)[0] + ".0"
    L.wait_for("h1 routes to the booted host", lambda: mine[0].replace("-", "/") in h1.routes(), 20)
    p = a.ping(host_addr, count=3)
    c.check(f"forwarding: a container on h1 reaches the booted host's overlay address {host_addr}",
            p.returncode == 0, p.stdout[-200:])
    prio = box.sh("journalctl -u cppnet-agent -o json --no-pager | grep -c '\"PRIORITY\":\"6\"'").stdout.strip()
    c.check(f"its log lines reach the journal with their priority ({prio} at info)", prio.isdigit() and int(prio) > 0,
            prio)

    pinger = a.popen(["ping", "-n", "-q", "-i", "0.01", "-c", "300", "-W", "1", host_addr])
    time.sleep(0.5)  # let the ping run before the restart (a measurement window)
    p = box.sh("systemctl restart cppnet-agent", timeout=60)
    out, _ = pinger.communicate(timeout=60)
    sent, got = ping_loss(out)
    again = [k for k, v in {k: json.loads(v) for k, v in lab.leases().items()}.items() if v.get("PublicIP") == BOOT_IP]
    c.check(f"systemctl restart under a 10 ms ping: {sent - got} of {sent} lost, the same lease kept",
            p.returncode == 0 and sent == 300 and got == sent and again == mine, (out, again))

    # The watchdog: with WatchdogSec=4 a stalled agent (SIGSTOP) is killed and started again.
    box.sh("mkdir -p /etc/systemd/system/cppnet-agent.service.d && printf '[Service]\\nWatchdogSec=4\\n' > "
           "/etc/systemd/system/cppnet-agent.service.d/wd.conf && systemctl daemon-reload && "
           "systemctl restart cppnet-agent", timeout=60)
    pid0, n0 = box.prop("MainPID"), int(box.prop("NRestarts") or 0)
    time.sleep(6)  # longer than WatchdogSec: the agent must ping meanwhile (a measurement window)
    c.check("the agent pings the watchdog (still the same process after 6 s with WatchdogSec=4)",
            box.prop("MainPID") == pid0 and box.prop("ActiveState") == "active")
    box.sh(f"kill -STOP {pid0}")
    L.wait_for("watchdog restart", lambda: int(box.prop("NRestarts") or 0) > n0
               and box.prop("ActiveState") == "active" and box.prop("MainPID") not in ("0", pid0), 30)
    log = box.sh("journalctl -u cppnet-agent --no-pager | tail -n 40").stdout
    c.check("a stalled agent: systemd's watchdog kills it and starts it again", "Watchdog timeout" in log
            or "watchdog" in log.lower(), log[-600:])
    box.sh("rm -rf /etc/systemd/system/cppnet-agent.service.d && systemctl daemon-reload")

    p = box.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq cppnet", timeout=120)
    links = box.sh("ip -o link show").stdout
    left = box.sh("ls -d /etc/cppnet /etc/default/cppnet /usr/sbin/cppnet-agent /lib/systemd/system/cppnet-agent.service "
                  "/sys/fs/bpf/cppnet /run/flannel/subnet.env 2>/dev/null; dpkg -l cppnet 2>/dev/null | grep ^ii").stdout
    c.check("apt purge: the agent stopped, its datapath and files gone",
            p.returncode == 0 and "cppnet.host" not in links and not left.strip(), (p.stderr[-300:], links, left))
    box.stop()
    left = [d for d in box.cgroups if os.path.exists(d)]
    c.check("the booted system ended, its cgroups removed", not left, left)


def mirror_reachable():
    return subprocess.run(["curl", "-sf", "--max-time", "30", "-o", "/dev/null",
                           f"{MIRROR}/dists/bookworm/Release"]).returncode == 0


if __name__ == "__main__":
    if os.geteuid() == 0 and not mirror_reachable():
        # Not a pass: ctest reports it as skipped (SKIP_RETURN_CODE 77), the reason printed.
        print(f"SKIP: the Debian mirror {MIRROR} is unreachable (set CPPNET_DEBIAN_MIRROR)")
        raise SystemExit(77)
    raise SystemExit(run_scenario("boot", scenario))
