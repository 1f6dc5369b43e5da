// VLAN networks (Docker's macvlan/ipvlan on an 802.1Q trunk, done by cppnet's BPF
// datapath): the definition, its validation with Docker's wording, and the JSON kept
// in <config-dir>/networks.d/NAME.json.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppnet/net.h"

namespace cppnet {

struct VlanSubnet4 {
  Prefix4 subnet;
  uint32_t gateway = 0;             // host byte order
  std::optional<Prefix4> ip_range;  // --ip-range inside this subnet
};
struct VlanSubnet6 {
  Prefix6 subnet;
  unsigned __int128 gateway = 0;
  std::optional<Prefix6> ip_range;
};

struct VlanNetwork {
  std::string name;
  std::string driver;  // "macvlan" or "ipvlan"
  std::string mode;    // macvlan: bridge|vepa|private|passthru; ipvlan: l2|l3|l3s
  std::string flag;    // ipvlan: bridge|private|vepa (Docker's ipvlan_flag); "" for macvlan
  std::string parent;  // as the user wrote it, e.g. "eth1.10"
  std::string trunk;   // the interface frames leave on, e.g. "eth1"
  uint16_t vlan = 0;   // 802.1Q id, 0 = untagged
  std::vector<VlanSubnet4> subnets4;
  std::vector<VlanSubnet6> subnets6;
  std::map<std::string, uint32_t> aux_addresses;
  bool ipv4 = true;  // false: an IPv6-only network (Docker's --ipv4=false)
  bool ipv6 = false;
  bool internal = false;
  uint16_t local_id = 0;  // a network without parent: its number on this host (1…)

  // Without -o parent (Docker puts such a network on a dummy link and makes it internal):
  // its endpoints reach only each other, on this host.
  bool parentless() const { return parent.empty(); }
  // What the maps key the network's endpoints by: the trunk's ifindex, or for a network
  // without parent CPPNET_VLAN_LOCAL_TRUNK | local_id.
  uint32_t TrunkKey(int trunk_ifindex) const;
  // The MAC a network without parent stands for (ipvlan endpoints share it): stable, local.
  Mac LocalMac() const;
};

// What `cppnetctl network create` was given, Docker's syntax.
struct NetworkCreateArgs {
  std::string name;
  std::string driver = "macvlan";
  std::vector<std::string> subnets, gateways, aux_addresses;  // aux: "name=IP"
  std::vector<std::string> ip_ranges;                         // each inside one of the subnets
  std::vector<std::string> options;                           // -o key=value
  bool ipv4 = true;
  bool ipv6 = false;
  bool internal = false;
  uint16_t local_id = 0;  // kept in networks.d for a network without parent; 0: pick one
};

// Validates as Docker does and returns the network; `existing` are the networks
// already defined on this host, `iface_exists` tells whether an interface exists.
absl::StatusOr<VlanNetwork> BuildVlanNetwork(
    const NetworkCreateArgs& args, const std::vector<VlanNetwork>& existing,
    const std::function<bool(const std::string&)>& iface_exists);

std::string SerializeVlanNetwork(const VlanNetwork& n);
absl::StatusOr<VlanNetwork> ParseVlanNetwork(const std::string& json);
// All networks in `dir` (NAME.json files), sorted by name; unreadable files are errors naming them.
absl::StatusOr<std::vector<VlanNetwork>> LoadVlanNetworks(const std::string& dir);

}  // namespace cppnet
