// Access to cppnet's pinned BPF maps, shared by the agent and cppnetctl.
#pragma once
#include <bpf/bpf.h>

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cppnet/abi.h"
#include "cppnet/net.h"

namespace cppnet {

struct CounterInfo {
  const char* name;
  const char* help;
  bool is_drop;
};
// Names and descriptions of every counter, indexed by enum cppnet_counter_id.
const std::array<CounterInfo, CPPNET_CNT_MAX>& Counters();

struct RouteEntry {
  Prefix4 subnet;
  cppnet_route route{};
};

struct Route6Entry {
  Prefix6 subnet;
  cppnet_route6 route{};
};

struct EndpointEntry {
  uint32_t addr;  // host byte order
  cppnet_endpoint endpoint{};
};

// File descriptors of the maps; closed on destruction when opened from pins.
// The fds of a group of maps: borrowed from a loaded skeleton, or opened from their pins
// (then owned: closed with the group). MapFds and VlanMaps name their members.
template <size_t N>
class MapGroup {
 public:
  MapGroup() { fds_.fill(-1); }
  explicit MapGroup(const std::array<int, N>& fds, bool owned = false) : fds_(fds), owned_(owned) {}
  MapGroup(MapGroup&& o) noexcept : MapGroup() { *this = std::move(o); }
  MapGroup& operator=(MapGroup&& o) noexcept {
    std::swap(fds_, o.fds_);
    std::swap(owned_, o.owned_);
    return *this;
  }
  ~MapGroup() {
    if (owned_)
      for (int fd : fds_)
        if (fd >= 0) close(fd);
  }

 protected:
  int fd(size_t i) const { return fds_[i]; }

 private:
  std::array<int, N> fds_;
  bool owned_ = false;
};

// Opens the maps pinned under `dir` by name into fds, all or none; errors say whether
// bpffs is missing, the agent never ran, or permission is lacking.
absl::Status OpenPinnedMaps(const std::string& dir, std::initializer_list<const char*> names,
                            int* fds);

class MapFds : public MapGroup<10> {
 public:
  enum Index {
    kRoutes,
    kConfig,
    kStats,
    kEndpoints,
    kPeers,
    kBinds,
    kRoutes6,
    kEndpoints6,
    kBinds6,
    kPeers6,
    kCount
  };
  using MapGroup::MapGroup;
  static absl::StatusOr<MapFds> OpenPinned(const std::string& dir);

  int routes() const { return fd(kRoutes); }
  int config() const { return fd(kConfig); }
  int stats() const { return fd(kStats); }
  int endpoints() const { return fd(kEndpoints); }
  int peers() const { return fd(kPeers); }
  int binds() const { return fd(kBinds); }
  int routes6() const { return fd(kRoutes6); }
  int endpoints6() const { return fd(kEndpoints6); }
  int binds6() const { return fd(kBinds6); }
  int peers6() const { return fd(kPeers6); }
};

// Every entry of a BPF hash map as Out{key, value}; errors name the map.
template <typename K, typename V, typename Out = std::pair<K, V>>
absl::StatusOr<std::vector<Out>> DumpMap(int fd, const char* name) {
  std::vector<Out> out;
  K key{}, next{};
  const K* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    V v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) out.push_back(Out{next, v});
    key = next;
    prev = &key;
  }
  if (errno != ENOENT)
    return absl::InternalError(absl::StrCat("map ", name, ": iterate: ", strerror(errno)));
  return out;
}

absl::StatusOr<cppnet_config> ReadConfig(int config_fd);
absl::Status WriteConfig(int config_fd, const cppnet_config& cfg);
absl::StatusOr<std::vector<RouteEntry>> ListRoutes(int routes_fd);
absl::Status UpsertRoute(int routes_fd, const Prefix4& subnet, const cppnet_route& route);
absl::Status DeleteRoute(int routes_fd, const Prefix4& subnet);
// The IPv6 routes (dual stack).
absl::StatusOr<std::vector<Route6Entry>> ListRoutes6(int routes6_fd);
absl::Status UpsertRoute6(int routes6_fd, const Prefix6& subnet, const cppnet_route6& route);
absl::Status DeleteRoute6(int routes6_fd, const Prefix6& subnet);
// Local containers by IPv6 address: {address, entry}.
absl::StatusOr<std::vector<std::pair<Ip6Bytes, cppnet_endpoint>>> ListEndpoints6(int fd);
absl::Status DeleteEndpoint6(int fd, const Ip6Bytes& addr);
absl::StatusOr<std::vector<cppnet_bind6>> ListBinds6(int binds6_fd);
// The IPv6 peers: PublicIPv6 -> number of routes naming it; SetPeer6 with 0 removes one.
absl::StatusOr<std::map<Ip6Bytes, uint32_t>> ListPeers6(int peers6_fd);
absl::Status SetPeer6(int peers6_fd, const Ip6Bytes& addr, uint32_t routes);
absl::Status FreeBindSlot6(int binds6_fd, uint32_t ifindex);
// Local containers the datapath has learned, by address.
absl::StatusOr<std::vector<EndpointEntry>> ListEndpoints(int endpoints_fd);
absl::Status DeleteEndpoint(int endpoints_fd, uint32_t addr);
// Container veths bound to their address (first sight): the used slots of the array.
absl::StatusOr<std::vector<cppnet_bind>> ListBinds(int binds_fd);
// Frees the binding slot of a veth that is gone (a slot held by another veth stays).
// Its delivery entry goes with the endpoints of vanished veths.
absl::Status FreeBindSlot(int binds_fd, uint32_t ifindex);
// The used slots of the peers array, by slot.
absl::StatusOr<std::map<uint32_t, cppnet_peer>> ListPeers(int peers_fd);
// Writes a slot (a zero entry frees it).
absl::Status SetPeerSlot(int peers_fd, uint32_t slot, const cppnet_peer& peer);
// The peers array's entry for PublicIP `ip` (host byte order) named by `routes` routes; `only`:
// the subnet when there is one route.
cppnet_peer PeerEntry(uint32_t ip, uint32_t routes, const Prefix4& only);
// The entries the peers array should hold for these peers (PublicIP in host byte order
// -> the subnets of the routes naming it), by slot: in a shared slot, the lowest address.
std::map<uint32_t, cppnet_peer> PeerSlots(const std::map<uint32_t, std::vector<Prefix4>>& peers);
// Per-CPU counters summed over all CPUs.
absl::StatusOr<std::array<cppnet_counter, CPPNET_CNT_MAX>> ReadStats(int stats_fd);

}  // namespace cppnet
