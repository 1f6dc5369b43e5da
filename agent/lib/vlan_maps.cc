#include "cppnet/vlan_maps.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cppnet/maps.h"
#include "cppnet/paths.h"

namespace cppnet {

uint8_t VlanModeId(const std::string& driver, const std::string& mode) {
  // l3s forwards as l3: the datapath passes no netfilter hook either way (README).
  if (driver == "ipvlan")
    return mode == "l3" || mode == "l3s" ? CPPNET_VLAN_IPVLAN_L3 : CPPNET_VLAN_IPVLAN_L2;
  if (mode == "vepa") return CPPNET_VLAN_MACVLAN_VEPA;
  if (mode == "private") return CPPNET_VLAN_MACVLAN_PRIVATE;
  if (mode == "passthru") return CPPNET_VLAN_MACVLAN_PASSTHRU;
  return CPPNET_VLAN_MACVLAN_BRIDGE;
}

uint8_t VlanFlags(const std::string& flag) {
  if (flag == "private") return CPPNET_VLAN_F_PRIVATE;
  if (flag == "vepa") return CPPNET_VLAN_F_VEPA;
  return 0;
}

std::string VlanModeName(uint8_t mode) {
  switch (mode) {
    case CPPNET_VLAN_MACVLAN_BRIDGE:
      return "macvlan bridge";
    case CPPNET_VLAN_MACVLAN_VEPA:
      return "macvlan vepa";
    case CPPNET_VLAN_MACVLAN_PRIVATE:
      return "macvlan private";
    case CPPNET_VLAN_MACVLAN_PASSTHRU:
      return "macvlan passthru";
    case CPPNET_VLAN_IPVLAN_L2:
      return "ipvlan l2";
    case CPPNET_VLAN_IPVLAN_L3:
      return "ipvlan l3";
  }
  return absl::StrCat("mode ", mode);
}

absl::StatusOr<VlanMaps> VlanMaps::OpenPinned(const std::string& dir) {
  int fds[4];
  if (auto st = OpenPinnedMaps(
          dir, {CPPNET_MAP_VLAN_EP, CPPNET_MAP_VLAN_NET, CPPNET_MAP_VLAN_PORT, CPPNET_MAP_VLAN_CNT},
          fds);
      !st.ok())
    return st;
  return VlanMaps({fds[0], fds[1], fds[2], fds[3]}, /*owned=*/true);
}

// Network byte order, as in packets.
static void Ip6To(unsigned __int128 ip, uint8_t* out) { memcpy(out, ToBytes6(ip).data(), 16); }

static std::vector<cppnet_vlan_ep_key> AddrKeys(const VlanEndpointSpec& s) {
  std::vector<cppnet_vlan_ep_key> keys;
  auto base = [&](uint8_t kind) {
    cppnet_vlan_ep_key k{};
    k.trunk_ifindex = s.trunk_ifindex;
    k.vlan = s.vlan;
    k.kind = kind;
    return k;
  };
  // macvlan frames are found by MAC, ipvlan ones by IP; the IPs of macvlan endpoints
  // are kept too, for cppnetctl show vlans.
  if (s.mode != CPPNET_VLAN_IPVLAN_L2 && s.mode != CPPNET_VLAN_IPVLAN_L3) {
    auto k = base(CPPNET_VLAN_ADDR_MAC);
    memcpy(k.addr, s.mac.data(), 6);
    keys.push_back(k);
  }
  for (uint32_t ip : s.ipv4) {
    auto k = base(CPPNET_VLAN_ADDR_IPV4);
    uint32_t be = htonl(ip);
    memcpy(k.addr, &be, 4);
    keys.push_back(k);
  }
  for (unsigned __int128 ip : s.ipv6) {
    auto k = base(CPPNET_VLAN_ADDR_IPV6);
    Ip6To(ip, k.addr);
    keys.push_back(k);
  }
  return keys;
}

std::string FormatVlanAddr(const cppnet_vlan_ep_key& k) {
  if (k.kind == CPPNET_VLAN_ADDR_MAC) {
    Mac m;
    memcpy(m.data(), k.addr, 6);
    return FormatMac(m);
  }
  if (k.kind == CPPNET_VLAN_ADDR_IPV4) {
    uint32_t be;
    memcpy(&be, k.addr, 4);
    return FormatIp4(ntohl(be));
  }
  unsigned __int128 ip = 0;
  for (int i = 0; i < 16; i++) ip = (ip << 8) | k.addr[i];
  return FormatIp6(ip);
}

// Only cppnet-agent writes these maps (CNI ADD/DEL go through its local API and run on
// its loop, one at a time), so a network's flood list needs no lock.

// Whether a network entry takes one more endpoint.
static absl::Status RoomFor(const std::string& network, uint8_t mode, const cppnet_vlan_net& net) {
  if (mode == CPPNET_VLAN_MACVLAN_PASSTHRU && net.nports > 0)
    return absl::FailedPreconditionError(
        absl::StrCat("network ", network,
                     " is in macvlan passthru mode and already has an endpoint on this host (only "
                     "one allowed)"));
  if (net.nports >= CPPNET_VLAN_PORTS_MAX)
    return absl::ResourceExhaustedError(
        absl::StrCat("network ", network, " already has ", CPPNET_VLAN_PORTS_MAX,
                     " endpoints on this host, the most one network can have"));
  return absl::OkStatus();
}

absl::Status VlanNetworkHasRoom(const VlanMaps& m, const std::string& network,
                                uint32_t trunk_ifindex, uint16_t vlan, uint8_t mode) {
  cppnet_vlan_net_key nk{trunk_ifindex, vlan, 0};
  cppnet_vlan_net net{};
  if (bpf_map_lookup_elem(m.net(), &nk, &net) != 0) return absl::OkStatus();  // no endpoint yet
  return RoomFor(network, mode, net);
}

absl::Status RegisterVlanEndpoint(const VlanMaps& m, const VlanEndpointSpec& s) {
  cppnet_vlan_net_key nk{s.trunk_ifindex, s.vlan, 0};
  cppnet_vlan_net net{};
  (void)bpf_map_lookup_elem(m.net(), &nk, &net);  // absent: a new network entry
  // The latest definition wins for what describes the network.
  net.mode = s.mode;
  net.flags = s.flags;
  memcpy(net.trunk_mac, s.trunk_mac.data(), 6);
  net.subnet4 = htonl(s.subnet4.addr);
  net.subnet4_len = s.subnet4.len;
  net.gw4 = htonl(s.gw4);
  net.subnet6_len = s.subnet6.len;
  Ip6To(s.subnet6.addr, net.subnet6);
  Ip6To(s.gw6, net.gw6);
  bool listed = false;
  for (int i = 0; i < net.nports; i++) listed |= net.ports[i] == s.host_ifindex;
  if (!listed)
    if (auto st = RoomFor(s.network, s.mode, net); !st.ok()) return st;
  const auto keys = AddrKeys(s);
  for (const auto& k : keys) {
    cppnet_vlan_ep cur{};
    if (bpf_map_lookup_elem(m.ep(), &k, &cur) == 0 && cur.ifindex != s.host_ifindex)
      return absl::AlreadyExistsError(absl::StrCat("network ", s.network, ": address ",
                                                   FormatVlanAddr(k),
                                                   " is already used by another endpoint"));
  }
  cppnet_vlan_port port{};
  port.trunk_ifindex = s.trunk_ifindex;
  port.vlan = s.vlan;
  port.mode = s.mode;
  port.flags = s.flags;
  memcpy(port.mac, s.mac.data(), 6);
  auto fail = [&](const char* map, int err) {
    (void)UnregisterVlanEndpoint(m, s.host_ifindex);
    return absl::InternalError(
        absl::StrCat("network ", s.network, ": map ", map, ": update: ", strerror(err)));
  };
  if (bpf_map_update_elem(m.port(), &s.host_ifindex, &port, BPF_ANY) != 0)
    return fail(CPPNET_MAP_VLAN_PORT, errno);
  const std::vector<cppnet_vlan_cnt> zero(std::max(libbpf_num_possible_cpus(), 1));
  if (bpf_map_update_elem(m.cnt(), &s.host_ifindex, zero.data(), BPF_NOEXIST) != 0 &&
      errno != EEXIST)
    return fail(CPPNET_MAP_VLAN_CNT, errno);
  cppnet_vlan_ep ep{};
  ep.ifindex = s.host_ifindex;
  memcpy(ep.mac, s.mac.data(), 6);
  for (const auto& k : keys)
    if (bpf_map_update_elem(m.ep(), &k, &ep, BPF_ANY) != 0) return fail(CPPNET_MAP_VLAN_EP, errno);
  if (!listed) net.ports[net.nports++] = s.host_ifindex;
  if (bpf_map_update_elem(m.net(), &nk, &net, BPF_ANY) != 0)
    return fail(CPPNET_MAP_VLAN_NET, errno);
  return absl::OkStatus();
}

absl::Status UnregisterVlanEndpoint(const VlanMaps& m, uint32_t host_ifindex) {
  auto addrs = ListVlanAddrs(m.ep());
  if (!addrs.ok()) return addrs.status();
  for (const auto& a : *addrs)
    if (a.ep.ifindex == host_ifindex && bpf_map_delete_elem(m.ep(), &a.key) != 0 && errno != ENOENT)
      return absl::InternalError(absl::StrCat("map " CPPNET_MAP_VLAN_EP ": delete ",
                                              FormatVlanAddr(a.key), ": ", strerror(errno)));
  auto nets = ListVlanNets(m.net());
  if (!nets.ok()) return nets.status();
  for (auto n : *nets) {
    int kept = 0;
    for (int i = 0; i < n.net.nports && i < CPPNET_VLAN_PORTS_MAX; i++)
      if (n.net.ports[i] != host_ifindex) n.net.ports[kept++] = n.net.ports[i];
    if (kept == n.net.nports) continue;
    for (int i = kept; i < CPPNET_VLAN_PORTS_MAX; i++) n.net.ports[i] = 0;
    n.net.nports = static_cast<uint8_t>(kept);
    // The last endpoint gone: the trunk stops claiming the VLAN's frames.
    int rc = kept ? bpf_map_update_elem(m.net(), &n.key, &n.net, BPF_ANY)
                  : bpf_map_delete_elem(m.net(), &n.key);
    if (rc != 0 && errno != ENOENT)
      return absl::InternalError(
          absl::StrCat("map " CPPNET_MAP_VLAN_NET ": update: ", strerror(errno)));
  }
  if (bpf_map_delete_elem(m.port(), &host_ifindex) != 0 && errno != ENOENT)
    return absl::InternalError(
        absl::StrCat("map " CPPNET_MAP_VLAN_PORT ": delete: ", strerror(errno)));
  if (bpf_map_delete_elem(m.cnt(), &host_ifindex) != 0 && errno != ENOENT)
    return absl::InternalError(
        absl::StrCat("map " CPPNET_MAP_VLAN_CNT ": delete: ", strerror(errno)));
  return absl::OkStatus();
}

absl::StatusOr<int> MoveVlanTrunk(const VlanMaps& m, uint32_t old_ifindex, uint32_t new_ifindex) {
  auto fail = [](const char* map) {
    return absl::InternalError(absl::StrCat("map ", map, ": move trunk: ", strerror(errno)));
  };
  auto nets = ListVlanNets(m.net());
  if (!nets.ok()) return nets.status();
  for (auto n : *nets) {
    if (n.key.trunk_ifindex != old_ifindex) continue;
    cppnet_vlan_net_key k = n.key;
    k.trunk_ifindex = new_ifindex;
    if (bpf_map_update_elem(m.net(), &k, &n.net, BPF_ANY) != 0) return fail(CPPNET_MAP_VLAN_NET);
    bpf_map_delete_elem(m.net(), &n.key);
  }
  auto addrs = ListVlanAddrs(m.ep());
  if (!addrs.ok()) return addrs.status();
  for (auto a : *addrs) {
    if (a.key.trunk_ifindex != old_ifindex) continue;
    cppnet_vlan_ep_key k = a.key;
    k.trunk_ifindex = new_ifindex;
    if (bpf_map_update_elem(m.ep(), &k, &a.ep, BPF_ANY) != 0) return fail(CPPNET_MAP_VLAN_EP);
    bpf_map_delete_elem(m.ep(), &a.key);
  }
  auto ports = ListVlanPorts(m.port());
  if (!ports.ok()) return ports.status();
  int moved = 0;
  for (auto p : *ports) {
    if (p.port.trunk_ifindex != old_ifindex) continue;
    p.port.trunk_ifindex = new_ifindex;
    if (bpf_map_update_elem(m.port(), &p.ifindex, &p.port, BPF_ANY) != 0)
      return fail(CPPNET_MAP_VLAN_PORT);
    moved++;
  }
  return moved;
}

absl::StatusOr<std::vector<VlanPortEntry>> ListVlanPorts(int fd) {
  return DumpMap<uint32_t, cppnet_vlan_port, VlanPortEntry>(fd, CPPNET_MAP_VLAN_PORT);
}
absl::StatusOr<std::vector<VlanAddrEntry>> ListVlanAddrs(int fd) {
  return DumpMap<cppnet_vlan_ep_key, cppnet_vlan_ep, VlanAddrEntry>(fd, CPPNET_MAP_VLAN_EP);
}
cppnet_vlan_cnt ReadVlanCounters(int fd, uint32_t host_ifindex) {
  std::vector<cppnet_vlan_cnt> percpu(std::max(libbpf_num_possible_cpus(), 1));
  cppnet_vlan_cnt sum{};
  if (bpf_map_lookup_elem(fd, &host_ifindex, percpu.data()) != 0) return sum;
  for (const auto& c : percpu) {
    sum.rx_packets += c.rx_packets;
    sum.rx_bytes += c.rx_bytes;
    sum.tx_packets += c.tx_packets;
    sum.tx_bytes += c.tx_bytes;
  }
  return sum;
}

absl::StatusOr<std::vector<VlanNetEntry>> ListVlanNets(int fd) {
  return DumpMap<cppnet_vlan_net_key, cppnet_vlan_net, VlanNetEntry>(fd, CPPNET_MAP_VLAN_NET);
}

}  // namespace cppnet
