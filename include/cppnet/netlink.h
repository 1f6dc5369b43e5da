// Interface discovery through libnl: the underlay (--iface, or the default route's
// interface) and the container side (the interface carrying our subnet).
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "cppnet/net.h"

struct nl_sock;
struct nl_cache;
struct rtnl_link;

namespace cppnet {

struct NlSockDeleter {
  void operator()(nl_sock* s) const;
};
using NlSock = std::unique_ptr<nl_sock, NlSockDeleter>;
// A connected NETLINK_ROUTE socket.
absl::StatusOr<NlSock> NlConnect();

struct Interface {
  int ifindex = 0;
  std::string name;
  int mtu = 0;
  Mac mac{};
  std::string kind;            // rtnetlink link kind ("veth", "bridge", ...), empty for hardware
  std::vector<Prefix4> addrs;  // IPv4 addresses (addr holds the host address, len its prefix)
  // Global IPv6 addresses (link-local ones left out), same form.
  std::vector<Prefix6> addrs6;
};

// A link as an Interface, with its IPv4 addresses from `addrs` (an address cache, or null).
Interface DescribeLink(nl_cache* addrs, rtnl_link* link);

// By name, or by an IPv4 or IPv6 address assigned to it.
absl::StatusOr<Interface> FindInterface(const std::string& name_or_ip);
absl::StatusOr<Interface> DefaultRouteInterface();
// Interfaces enslaved to `master_ifindex` (the ports of a bridge), by ifindex.
absl::StatusOr<std::vector<Interface>> PortsOf(int master_ifindex);

// A libnl error (negative NLE_*) as a status naming `what`.
absl::Status NlErr(const std::string& what, int err);
// The interface's MAC address, read from the kernel; zero when it has none.
Mac LinkMac(nl_sock* sk, int ifindex);
// Sets the interface up. Errors name the interface.
absl::Status SetUp(nl_sock* sk, int ifindex, const std::string& name);
// Turns ARP off on the interface (IFF_NOARP). Errors name the interface.
absl::Status SetNoArp(nl_sock* sk, int ifindex, const std::string& name);
// Deletes the interface; one that does not exist is no error.
absl::Status DeleteLink(nl_sock* sk, const std::string& name);
absl::Status WriteSysctl(const std::string& path, const char* value);

// A netkit pair (kernel >= 6.7; bookworm's libnl and iproute2 predate it, so the request is
// built here): `primary` in this namespace, forwarding what the host sends it; `peer` (the
// container's end) in the namespace `peer_netns_fd` with MAC `peer_mac` (zero: the kernel's),
// dropping what the container sends until a program attached as BPF_NETKIT_PEER decides. L2
// mode: Ethernet frames and ARP, as on a veth. MTU `mtu` on both. (netkit applies no interface
// flags given for the peer, unlike veth: set NOARP on it afterwards where it is wanted.)
// `headroom`: bytes both devices ask senders to reserve in front of the Ethernet header, so the
// program's encapsulation or VLAN tag fits without reallocating the packet (kernel >= 6.14;
// older kernels ignore it).
struct NetkitSpec {
  std::string primary, peer;
  unsigned mtu = 1500;
  Mac peer_mac{};
  int peer_netns_fd = -1;  // -1: this namespace
  uint16_t headroom = 0;   // 0: the kernel's default
};
absl::Status CreateNetkitPair(nl_sock* sk, const NetkitSpec& spec);
// Can this kernel create netkit devices? (A pair is made and deleted again.) The error says
// why not.
absl::Status NetkitSupported();

// The agent's veth pair (abi.h CPPNET_HOST_DEV, CPPNET_SOFT_DEV), created when missing: the
// host end without ARP, GRO off, MTU `mtu` (the containers' MTU); the soft end with transmit
// checksumming (and with it TSO) off; both up. IPv6 stays off on both unless `ipv6` (dual
// stack): then the host end takes IPv6 without link-local address, DAD or router solicitations.
struct HostDevices {
  int host_ifindex = 0;
  int soft_ifindex = 0;
  Mac host_mac{};
};
absl::StatusOr<HostDevices> EnsureHostDevices(int mtu, bool ipv6 = false);
// The host's overlay address `addr`/32 on `ifindex` (other IPv4 addresses there removed) and
// the route to `network` through it with that source address (replaced).
absl::Status SetHostAddress(int ifindex, const std::string& ifname, uint32_t addr,
                            const Prefix4& network);
// The same for IPv6 (dual stack): `addr`/128 without DAD and the route to `network` from it.
absl::Status SetHostAddress6(int ifindex, const std::string& ifname, unsigned __int128 addr,
                             const Prefix6& network);

// The rate the bandwidth CNI plugin gave what a veth receives from its container (the
// container's egress rate): the veth's "ingress" qdisc has a filter (u32 or matchall) mirroring
// to an ifb whose root tbf holds rate and burst. nullopt while that chain is incomplete.
struct MirroredRate {
  uint64_t rate = 0;   // bytes per second
  uint64_t burst = 0;  // bytes
  uint64_t limit = 0;  // bytes: the burst and tbf's queue
};
absl::StatusOr<std::optional<MirroredRate>> MirroredTbfRate(int ifindex);

// The pacing veth pair (abi.h CPPNET_PACE_DEV, CPPNET_PACED_DEV), created when missing: up, IPv6
// off, no ARP, the largest MTU, and an htb (handle CPPNET_PACE_HTB, unclassified frames sent
// unshaped) at CPPNET_PACE_DEV's root. Returns the two ifindexes.
absl::StatusOr<std::pair<int, int>> EnsurePaceDevices();
// htb class CPPNET_PACE_HTB | `minor` on `ifindex` with rate and burst `r`, and under it a bfifo
// of tbf's queue (r.limit - r.burst, at least one largest GSO packet); replaced when present.
absl::Status SetPaceClass(int ifindex, uint32_t minor, const MirroredRate& r);
// Removes that class (and its bfifo); one that is gone is no error.
absl::Status DeletePaceClass(int ifindex, uint32_t minor);

}  // namespace cppnet
