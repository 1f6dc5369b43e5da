#!/usr/bin/env python3
"""A flanneld udp-backend host's forwarder, for the lab: raw IP packets read from the TUN
device flannel0 go as UDP datagrams to the PublicIP of the subnet that holds their
destination; datagrams received on the port are written back into flannel0. As
flanneld's proxy, it reads one MTU-sized packet at a time and neither checks nor
fixes checksums (datagrams larger than the MTU are reported on stdout). Routes come as "subnet=publicip" arguments."""
import fcntl
import ipaddress
import os
import select
import socket
import struct
import sys

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


def main():
    dev, port, mtu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    routes = [(ipaddress.ip_network(s), ip) for s, ip in (a.split("=") for a in sys.argv[4:])]
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", dev.encode(), IFF_TUN | IFF_NO_PI))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([tun, sock], [], [])
        if tun in ready:
            pkt = os.read(tun, mtu)
            if len(pkt) >= 20 and pkt[0] >> 4 == 4:
                dst = ipaddress.ip_address(pkt[16:20])
                for net, ip in routes:
                    if dst in net:
                        sock.sendto(pkt, (ip, port))
                        break
        if sock in ready:
            data, _, flags, _ = sock.recvmsg(mtu)
            if flags & socket.MSG_TRUNC:  # flanneld would write a cut packet; count it
                print("oversized datagram", flush=True)
                continue
            try:
                os.write(tun, data)
            except OSError:
                pass  # as flanneld: a packet the kernel refuses is dropped


if __name__ == "__main__":
    main()
