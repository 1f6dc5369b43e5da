// VLAN network endpoints in the pinned maps: registered by the CNI plugin when it
// attaches a container, listed by cppnetctl, re-attached by the agent after a restart.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppnet/abi.h"
#include "cppnet/maps.h"
#include "cppnet/net.h"

namespace cppnet {

// enum cppnet_vlan_mode of a network's driver and mode; "macvlan bridge" style names back.
uint8_t VlanModeId(const std::string& driver, const std::string& mode);
// ipvlan_flag as CPPNET_VLAN_F_* ("bridge" and "" are none).
uint8_t VlanFlags(const std::string& flag);
std::string VlanModeName(uint8_t mode);

// The VLAN maps the registry keeps (cppnet_vlan_ep, _net, _port, _cnt); closed on
// destruction when opened from pins.
class VlanMaps : public MapGroup<4> {
 public:
  enum Index { kEp, kNet, kPort, kCnt, kCount };
  using MapGroup::MapGroup;
  static absl::StatusOr<VlanMaps> OpenPinned(const std::string& dir);
  int ep() const { return fd(kEp); }
  int net() const { return fd(kNet); }
  int port() const { return fd(kPort); }
  int cnt() const { return fd(kCnt); }
};

struct VlanEndpointSpec {
  std::string network;  // for messages
  uint32_t trunk_ifindex = 0;
  Mac trunk_mac{};
  uint16_t vlan = 0;
  uint8_t mode = CPPNET_VLAN_MACVLAN_BRIDGE;
  uint8_t flags = 0;           // CPPNET_VLAN_F_* (ipvlan_flag)
  uint32_t host_ifindex = 0;   // host end of the endpoint's veth
  Mac mac{};                   // the endpoint's MAC (ipvlan: the trunk's)
  std::vector<uint32_t> ipv4;  // host byte order
  std::vector<unsigned __int128> ipv6;
  // The network's first subnet of each family and its gateway (0: none, e.g.
  // --internal): where ipvlan l3 routes.
  Prefix4 subnet4;
  uint32_t gw4 = 0;
  Prefix6 subnet6;
  unsigned __int128 gw6 = 0;
};

// Adds the endpoint: its port, its addresses, and its place in the network's flood
// list. Refuses a second endpoint of a passthru network, a full network, and an
// address another endpoint of the network owns; changes nothing then.
absl::Status RegisterVlanEndpoint(const VlanMaps& m, const VlanEndpointSpec& spec);
// What RegisterVlanEndpoint would refuse for lack of room (a second passthru endpoint,
// a full network), checked before anything is allocated for a new endpoint.
absl::Status VlanNetworkHasRoom(const VlanMaps& m, const std::string& network,
                                uint32_t trunk_ifindex, uint16_t vlan, uint8_t mode);
// Removes every trace of the endpoint whose host veth had `host_ifindex`; no error
// when there is none (CNI DEL is idempotent).
absl::Status UnregisterVlanEndpoint(const VlanMaps& m, uint32_t host_ifindex);

// A trunk was deleted and recreated under a new ifindex: moves every network, endpoint
// address and endpoint of the old ifindex to the new one (next hops are relearned).
// Returns the number of endpoints moved.
absl::StatusOr<int> MoveVlanTrunk(const VlanMaps& m, uint32_t old_ifindex, uint32_t new_ifindex);

struct VlanPortEntry {
  uint32_t ifindex;
  cppnet_vlan_port port;
};
struct VlanAddrEntry {
  cppnet_vlan_ep_key key;
  cppnet_vlan_ep ep;
};
struct VlanNetEntry {
  cppnet_vlan_net_key key;
  cppnet_vlan_net net;
};
absl::StatusOr<std::vector<VlanPortEntry>> ListVlanPorts(int port_fd);
absl::StatusOr<std::vector<VlanAddrEntry>> ListVlanAddrs(int ep_fd);
absl::StatusOr<std::vector<VlanNetEntry>> ListVlanNets(int net_fd);
// An endpoint's counters summed over CPUs (zero when it has none).
cppnet_vlan_cnt ReadVlanCounters(int cnt_fd, uint32_t host_ifindex);
// "02:42:..", "198.18.10.2" or "2001:db8::2" for an address key.
std::string FormatVlanAddr(const cppnet_vlan_ep_key& k);

}  // namespace cppnet
