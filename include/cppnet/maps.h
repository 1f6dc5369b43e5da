// Access to cppnet's pinned BPF maps, shared by the agent and cppnetctl.
#pragma once
#include <bpf/bpf.h>

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
  cppnet_route route;
};

struct EndpointEntry {
  uint32_t addr;  // host byte order
  cppnet_endpoint endpoint;
};

// File descriptors of the maps; closed on destruction when opened from pins.
class MapFds {
 public:
  enum Index { kRoutes, kConfig, kStats, kEndpoints, kPeers, kBinds, kCount };
  MapFds() { fds_.fill(-1); }
  explicit MapFds(const std::array<int, kCount>& fds) : fds_(fds) {}
  MapFds(MapFds&& o) noexcept : MapFds() { *this = std::move(o); }
  MapFds& operator=(MapFds&& o) noexcept;
  ~MapFds();
  // Opens the maps pinned under `dir`; errors say whether bpffs is missing, the
  // agent never ran, or permission is lacking.
  static absl::StatusOr<MapFds> OpenPinned(const std::string& dir);

  int routes() const { return fds_[kRoutes]; }
  int config() const { return fds_[kConfig]; }
  int stats() const { return fds_[kStats]; }
  int endpoints() const { return fds_[kEndpoints]; }
  int peers() const { return fds_[kPeers]; }
  int binds() const { return fds_[kBinds]; }

 private:
  std::array<int, kCount> fds_;
  bool owned_ = false;
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

// Opens the maps pinned under `dir` by name into fds[0..], all or none; errors say
// whether bpffs is missing, the agent never ran, or permission is lacking.
absl::Status OpenPinnedMaps(const std::string& dir, std::initializer_list<const char*> names,
                            int* fds);

absl::StatusOr<cppnet_config> ReadConfig(int config_fd);
absl::Status WriteConfig(int config_fd, const cppnet_config& cfg);
absl::StatusOr<std::vector<RouteEntry>> ListRoutes(int routes_fd);
absl::Status UpsertRoute(int routes_fd, const Prefix4& subnet, const cppnet_route& route);
absl::Status DeleteRoute(int routes_fd, const Prefix4& subnet);
// Adds the route only when no entry for exactly `subnet` exists; false when one does.
absl::StatusOr<bool> InsertRouteIfAbsent(int routes_fd, const Prefix4& subnet,
                                         const cppnet_route& route);
// Longest-prefix lookup: the entry for `subnet` when one exists for exactly it.
std::optional<cppnet_route> LookupRoute(int routes_fd, const Prefix4& subnet);
// The entry for exactly `subnet`, if there is one (an LPM lookup alone would also
// return a shorter covering prefix).
absl::StatusOr<std::optional<cppnet_route>> ExactRoute(int routes_fd, const Prefix4& subnet);
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
// The entries the peers array should hold for these peers (PublicIP in host byte order
// -> the subnets of the routes naming it), by slot: in a shared slot, the lowest address.
std::map<uint32_t, cppnet_peer> PeerSlots(const std::map<uint32_t, std::vector<Prefix4>>& peers);
// Per-CPU counters summed over all CPUs.
absl::StatusOr<std::array<cppnet_counter, CPPNET_CNT_MAX>> ReadStats(int stats_fd);

}  // namespace cppnet
