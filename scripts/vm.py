#!/usr/bin/env python3
"""Runs a command on a newer kernel: a guest (qemu, emulated) booting Debian trixie's kernel with this
machine's own files as its root (9p, read-only, under a tmpfs overlay), for what this kernel
lacks (netkit: CONFIG_NETKIT is not set here). The guest sees the same /work, build and tools;
what it writes stays in the guest. Output and exit status come back through a shared directory.

  python3 -m scripts.vm [--modules m1,m2] -- COMMAND...     (exit status 77: no qemu or no mirror)

The kernel package is downloaded once into build/vm (CPPNET_DEBIAN_MIRROR overrides the mirror,
CPPNET_VM_SUITE the suite: "trixie-backports" has newer kernels).
CPPNET_VM_ACCEL, CPPNET_VM_CPU and CPPNET_VM_APPEND override qemu's -accel (tcg,thread=multi),
-cpu (qemu64) and the
kernel command line: on a machine whose /dev/kvm runs stock kernels, "kvm" would make the guest
fast enough to measure. This machine's /dev/kvm is kvm-pvm (PVM: guests must be PVM kernels; a
stock kernel stops in its decompressor, "kvm-pvm: INTERNAL_ERROR in batch emul" in dmesg)."""
import argparse
import glob
import lzma
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build")
VM_DIR = os.path.join(BUILD, "vm")
MIRROR = os.environ.get("CPPNET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = os.environ.get("CPPNET_VM_SUITE", "trixie")
# Loaded before the root is mounted (9p over virtio); the rest come from the kernel's own
# module tree, shared with the guest.
EARLY = ["netfs", "9pnet", "9pnet_virtio", "9p", "overlay"]
# What the project's labs use (built into this machine's kernel, modules in Debian's).
DEFAULT_MODULES = ["veth", "bridge", "vxlan", "macvlan", "tun", "sch_ingress", "cls_bpf", "sch_htb",
                   "sch_tbf", "act_mirred", "cls_u32", "cls_matchall", "ifb", "nf_tables",
                   "nft_chain_nat", "nft_masq", "nf_conntrack", "br_netfilter"]

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {early}; do insmod /m/$m.ko || echo "cppnet-vm: insmod $m failed"; done
mkdir -p /lower /upper /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=1048576,cache=loose hostroot /lower
mount -t tmpfs -o size=75% tmpfs /upper; mkdir -p /upper/u /upper/w
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w /newroot
mkdir -p /newroot/lib/modules/{kver} /newroot/run/cppnet-vm
mount -t 9p -o trans=virtio,version=9p2000.L,ro kmods /newroot/lib/modules/{kver}
mount -t 9p -o trans=virtio,version=9p2000.L results /newroot/run/cppnet-vm
exec switch_root /newroot /bin/sh /run/cppnet-vm/run.sh
"""

RUN = r"""#!/bin/sh
# In the guest, as PID 1: the host's root (writes go to the guest's memory) with the guest's own
# /proc, /sys and /dev.
exec > /run/cppnet-vm/out 2>&1
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
[ -e /proc/self ] || mount -t proc proc /proc
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
for d in /run/netns /run/cppnet /run/flannel; do mkdir -p $d; done
mount -t bpf bpf /sys/fs/bpf; mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up
export HOME=/root PATH={path}:/usr/sbin:/sbin
for m in {modules}; do modprobe $m || echo "cppnet-vm: modprobe $m failed" >&2; done
cd {cwd}
echo "cppnet-vm: kernel $(uname -r)" >&2
( {command} )
echo $? > /run/cppnet-vm/rc
sync
poweroff -f
"""


def skip(why):
    print(f"cppnet-vm: skipped: {why}", file=sys.stderr)
    sys.exit(77)


def installed(kdir):
    """(vmlinuz, module tree, version) of the kernel unpacked in kdir, or None: /boot/vmlinuz-*
    or, in Debian's newer layout, vmlinuz beside the modules."""
    have = sorted(glob.glob(os.path.join(kdir, "boot", "vmlinuz-*")))
    if have:
        kver = os.path.basename(have[-1])[len("vmlinuz-"):]
        return have[-1], os.path.join(kdir, "usr", "lib", "modules", kver), kver
    have = sorted(glob.glob(os.path.join(kdir, "usr", "lib", "modules", "*", "vmlinuz")))
    if have:
        return have[-1], os.path.dirname(have[-1]), os.path.basename(os.path.dirname(have[-1]))
    return None


def kernel(suite=SUITE):
    """vmlinuz and module tree of the suite's newest amd64 kernel, downloaded once."""
    kdir = os.path.join(VM_DIR, "kernel" if suite == "trixie" else f"kernel-{suite}")
    if found := installed(kdir):
        return found
    os.makedirs(VM_DIR, exist_ok=True)
    try:
        with urllib.request.urlopen(f"{MIRROR}/dists/{suite}/main/binary-amd64/Packages.xz", timeout=60) as r:
            index = lzma.decompress(r.read()).decode()
    except OSError as e:
        skip(f"cannot read {MIRROR} ({e})")
    pkgs = {}
    for stanza in index.split("\n\n"):
        f = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" in f:
            pkgs[f["Package"]] = f
    best = None
    for p, f in pkgs.items():
        if (p.startswith("linux-image-") and p.endswith(("-amd64-unsigned", "-amd64")) and p[12].isdigit()
                and "cloud" not in p and "-rt-" not in p):
            key = [int(x) if x.isdigit() else x for x in f["Version"].replace("-", ".").split(".")]
            if best is None or key > best[0]:
                best = (key, p)
    if not best:
        skip(f"no amd64 kernel package in {suite}")
    # Newer Debian kernels split the image package: vmlinuz in linux-binary-*, modules in
    # linux-modules-*, both named in its Depends.
    deps = [alt.split()[0] for dep in pkgs[best[1]].get("Depends", "").split(",") for alt in dep.split("|")]
    for p in [best[1]] + [d for d in deps if d.startswith(("linux-binary-", "linux-modules-")) and d in pkgs]:
        deb = os.path.join(VM_DIR, os.path.basename(pkgs[p]["Filename"]))
        print(f"cppnet-vm: downloading {pkgs[p]['Filename']}", file=sys.stderr)
        urllib.request.urlretrieve(f"{MIRROR}/{pkgs[p]['Filename']}", deb)
        subprocess.run(["dpkg-deb", "-x", deb, kdir], check=True)
        os.unlink(deb)
    found = installed(kdir)
    if not found:
        skip(f"{best[1]} brought no vmlinuz")
    vmlinuz, modules, kver = found
    # The package leaves modules.dep to its postinst: made here, for the guest's modprobe.
    subprocess.run(["depmod", "-b", os.path.join(kdir, "usr"), kver], check=True)
    return vmlinuz, modules, kver


def initrd(modules_dir, kver, work):
    """busybox, the early modules (decompressed) and /init, as a newc cpio."""
    d = os.path.join(work, "initrd")
    for sub in ("bin", "m", "proc", "sys", "dev"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(d, "bin", "busybox"))
    for m in EARLY:
        found = glob.glob(os.path.join(modules_dir, "kernel", "**", f"{m}.ko*"), recursive=True)
        if not found:
            skip(f"module {m} not in {modules_dir}")
        data = open(found[0], "rb").read()
        if found[0].endswith(".xz"):
            data = lzma.decompress(data)
        open(os.path.join(d, "m", f"{m}.ko"), "wb").write(data)
    init = os.path.join(d, "init")
    open(init, "w").write(INIT.replace("{early}", " ".join(EARLY)).replace("{kver}", kver))
    os.chmod(init, 0o755)
    out = os.path.join(work, "initrd.cpio")
    files = subprocess.run(["find", "."], cwd=d, capture_output=True, text=True, check=True).stdout
    with open(out, "wb") as f:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=d, input=files.encode(), stdout=f, check=True)
    return out


def run(command, modules=DEFAULT_MODULES, cwd=ROOT, memory_mb=6144, timeout=3600, attempts=2, suite=SUITE):
    """(exit status, output) of `command` (a shell string) in the guest. A guest whose kernel
    died before the command began (emulated SMP now and then trips the kernel's own code
    patching at boot: "Oops: int3") is booted again, up to `attempts` times."""
    for attempt in range(attempts):
        rc, out = run_once(command, modules, cwd, memory_mb, timeout, suite)
        never_ran = rc == 125 and out.startswith(NO_RESULT)  # no output of the command at all
        if not never_ran or attempt + 1 == attempts:
            return rc, out
        print(f"cppnet-vm: the guest's kernel died before the command began; booting again\n{out[-1500:]}",
              file=sys.stderr, flush=True)


NO_RESULT = "\ncppnet-vm: the guest ended without a result"


def run_once(command, modules, cwd, memory_mb, timeout, suite):
    """One guest boot: (exit status, output); 125 when the guest ended without a result."""
    if not shutil.which("qemu-system-x86_64"):
        skip("qemu-system-x86_64 is not installed (scripts/install-deps.sh)")
    vmlinuz, modules_dir, kver = kernel(suite)
    with tempfile.TemporaryDirectory(prefix="cppnet-vm-") as work:
        results = os.path.join(work, "results")
        os.makedirs(results)
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        script = (RUN.replace("{modules}", " ".join(modules)).replace("{path}", shlex.quote(path))
                  .replace("{cwd}", shlex.quote(cwd)).replace("{command}", command))
        open(os.path.join(results, "run.sh"), "w").write(script)
        rd = initrd(modules_dir, kver, work)
        console = os.path.join(work, "console.log")
        # TCG, not KVM: this machine's nested KVM stops the guest kernel early (an instruction
        # its emulator lacks); functional tests only, nothing is measured in the guest.
        # A plain x86-64 CPU: with "max" (every feature TCG emulates) the guest kernel died now
        # and then ("Oops: int3" in its code patching at boot, a corrupt EFLAGS after an
        # interrupt), with both one and many TCG threads.
        accel = os.environ.get("CPPNET_VM_ACCEL", "tcg,thread=multi")
        cpu = os.environ.get("CPPNET_VM_CPU", "qemu64")
        argv = ["qemu-system-x86_64", "-accel", accel, "-cpu", cpu, "-smp", str(os.cpu_count() or 2),
                "-m", str(memory_mb), "-nographic", "-no-reboot", "-kernel", vmlinuz, "-initrd", rd,
                "-append", os.environ.get("CPPNET_VM_APPEND", "console=ttyS0 panic=-1 quiet"),
                "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
                "-virtfs", f"local,path={modules_dir},mount_tag=kmods,security_model=none,readonly=on",
                "-virtfs", f"local,path={results},mount_tag=results,security_model=none",
                "-nic", "none", "-serial", f"file:{console}", "-monitor", "none", "-display", "none"]
        try:
            q = subprocess.run(argv, timeout=timeout, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, check=False)
        except subprocess.TimeoutExpired:
            return 124, "cppnet-vm: the guest did not finish in time\n" + open(console).read()[-4000:]
        rc_file = os.path.join(results, "rc")
        out = open(os.path.join(results, "out")).read() if os.path.exists(os.path.join(results, "out")) else ""
        if not os.path.exists(rc_file):
            con = open(console).read()[-4000:] if os.path.exists(console) else ""
            return 125, f"{out}{NO_RESULT}: {q.stderr[-2000:]}\n{con}"
        return int(open(rc_file).read().strip() or 1), out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modules", default=",".join(DEFAULT_MODULES))
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command")
    rc, out = run(" ".join(shlex.quote(c) for c in cmd), modules=[m for m in a.modules.split(",") if m],
                  timeout=int(os.environ.get("CPPNET_VM_TIMEOUT", "3600")))
    sys.stdout.write(out)
    sys.exit(rc)


if __name__ == "__main__":
    main()
