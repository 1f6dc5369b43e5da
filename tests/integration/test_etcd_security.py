#!/usr/bin/env python3
"""etcd with TLS (client certificates) and with authentication: agents given the right
files or credentials lease a subnet and carry traffic; wrong or missing ones give an
error naming etcd and the cause, the agent stays up, not ready, and leases nothing."""
import json

from .common import L, run_scenario


def readyz(host):
    try:
        return host.sh("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9471/readyz", check=False).stdout
    except Exception as e:  # noqa: BLE001 - reported by the check
        return str(e)


def error_lines(host):
    return [l for l in host.log().splitlines() if " E " in l and "etcd 198.18.0.254:2379" in l]


def leased(lab, host):
    return any(json.loads(v)["PublicIP"] == host.ip for v in lab.leases().values())


def tls_part(lab, c):
    lab.start_etcd(tls=True)
    lab.put_config(L.VXLAN_CONFIG)
    pki = lab.pki
    files = [f"--etcd-cafile={pki['ca.crt']}", f"--etcd-certfile={pki['client.crt']}",
             f"--etcd-keyfile={pki['client.key']}"]
    h1, h2, h3 = lab.add_host(1), lab.add_host(2), lab.add_host(3)
    for h in (h1, h2):
        h.start_agent(*files)
    for h in (h1, h2):
        env = h.subnet_env()
        h.add_bridge_and_containers(env["FLANNEL_SUBNET"], env["FLANNEL_MTU"], count=1)
    c.check("TLS: both agents leased a subnet over https with client certificates",
            leased(lab, h1) and leased(lab, h2), lab.leases())
    L.wait_for("routes", lambda: len(h1.routes()) == 1 and len(h2.routes()) == 1)
    p = h1.containers[0].ping(h2.containers[0].ip)
    c.check("TLS: containers reach each other", p.returncode == 0, p.stdout[-200:])

    # The CA but no client certificate: etcd refuses the handshake.
    h3.start_agent(f"--etcd-cafile={pki['ca.crt']}")
    L.wait_for("error logged", lambda: error_lines(h3), 15)
    line = error_lines(h3)[0]
    c.check("TLS without a client certificate: error names etcd and the cause", "unavailable" in line, line)
    c.check("TLS without a client certificate: agent up, not ready, no lease",
            h3.agent.poll() is None and readyz(h3) == "503" and not leased(lab, h3), readyz(h3))

    # Files that do not exist or are not PEM: usage error naming the flag and the file.
    for flag, path in (("--etcd-cafile", "/nonexistent/ca.pem"), ("--etcd-certfile", pki["ca.key"] + ".missing")):
        args = [f"{flag}={path}"] + ([f"--etcd-keyfile={pki['client.key']}"] if flag == "--etcd-certfile" else [])
        p = L.run(h3.cmd([L.AGENT, f"--etcd-endpoints={lab.etcd_url}", "--iface=eth0", *args]), check=False, timeout=20)
        c.check(f"{flag} {path}: exit 2 naming the flag and the file",
                p.returncode == 2 and flag in p.stderr and path in p.stderr, (p.returncode, p.stderr))
    p = L.run(h3.cmd([L.AGENT, f"--etcd-endpoints={lab.etcd_url}", "--iface=eth0", f"--etcd-certfile={pki['client.crt']}"]),
              check=False, timeout=20)
    c.check("--etcd-certfile without --etcd-keyfile: exit 2", p.returncode == 2 and "--etcd-keyfile" in p.stderr, p.stderr)


def auth_part(c):
    with L.Lab("etcdauth") as lab:
        lab.start_etcd(auth=True)
        lab.put_config(L.VXLAN_CONFIG)
        h1, h2, h3 = lab.add_host(1), lab.add_host(2), lab.add_host(3)
        h1.start_agent("--etcd-username=cppnet", env={"CPPNET_ETCD_PASSWORD": L.AGENT_PASSWORD})
        h1.subnet_env()
        c.check("auth: agent with user/password (password from the environment) leased a subnet",
                leased(lab, h1), lab.leases())
        h2.start_agent("--etcd-username=cppnet", "--etcd-password=wrong")
        L.wait_for("auth error", lambda: "authenticate as cppnet" in h2.log(), 15)
        line = next(l for l in h2.log().splitlines() if "authenticate as cppnet" in l)
        c.check("auth: wrong password logged with etcd's reason", "authentication failed" in line, line)
        c.check("auth: --etcd-password on the command line: warned, and no longer readable in /proc/PID/cmdline",
                "readable by every user" in h2.log() and
                b"wrong" not in open(f"/proc/{h2.agent.pid}/cmdline", "rb").read(), h2.log()[-500:])
        c.check("auth: credentials over http:// are warned about",
                "travel unencrypted over http://" in h1.log(), h1.log()[-500:])
        h4 = lab.add_host(4)
        h4.sh(f"umask 077 && printf '%s\\n' '{L.AGENT_PASSWORD}' > /run/etcd-pw")
        h4.start_agent("--etcd-username=cppnet", "--etcd-password-file=/run/etcd-pw")
        h4.subnet_env()
        c.check("auth: --etcd-password-file: the agent leases a subnet",
                leased(lab, h4) and "readable by every user" not in h4.log(), lab.leases())
        p = L.run(h4.cmd([L.AGENT, "--etcd-username=cppnet", "--etcd-password-file=/run/missing"]), check=False)
        c.check("auth: a missing password file: exit 2 naming the file and the cause",
                p.returncode == 2 and "--etcd-password-file /run/missing: No such file or directory" in p.stderr,
                p.stderr)
        h4.stop_agent()
        h3.start_agent()
        L.wait_for("unauthenticated error", lambda: error_lines(h3), 15)
        c.check("auth: no credentials: error names etcd and the cause", True, error_lines(h3)[0])
        print("     ", error_lines(h3)[0])
        c.check("auth: failing agents stay up, not ready, lease nothing",
                all(h.agent.poll() is None and readyz(h) == "503" and not leased(lab, h) for h in (h2, h3)))
        # Later changes arrive through the watch, which carries the token too.
        lab.etcdctl("put", f"{L.PREFIX}/subnets/198.19.250.0-24",
                    json.dumps({"PublicIP": "198.18.0.9", "BackendType": "vxlan",
                                "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:09"}}))
        L.wait_for("lease seen through the authenticated watch", lambda: "198.19.250.0/24" in h1.routes(), 10)
        c.check("auth: the watch delivers new leases", True)


def scenario(lab, c):
    tls_part(lab, c)
    auth_part(c)


if __name__ == "__main__":
    raise SystemExit(run_scenario("etcdtls", scenario))
