#include "cppnet/maps.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace cppnet {

const std::array<CounterInfo, CPPNET_CNT_MAX>& Counters() {
#define TRAFFIC(id, name, help) CounterInfo{name, help, false},
#define DROP(id, name, help) CounterInfo{name, help, true},
  static const std::array<CounterInfo, CPPNET_CNT_MAX> kCounters = {CPPNET_TRAFFIC_COUNTERS(TRAFFIC)
                                                                        CPPNET_DROP_REASONS(DROP)};
#undef TRAFFIC
#undef DROP
  return kCounters;
}

static bool IsBpffs(const std::string& path) {
  struct statfs st {};
  return statfs(path.c_str(), &st) == 0 && static_cast<unsigned long>(st.f_type) == BPF_FS_MAGIC;
}

absl::Status OpenPinnedMaps(const std::string& dir, std::initializer_list<const char*> names,
                            int* fds) {
  std::filesystem::path d(dir);
  if (!IsBpffs(dir)) {
    const std::string parent = d.parent_path().string();
    const std::string bpffs = std::filesystem::path(CPPNET_PIN_DIR_DEFAULT).parent_path().string();
    if (std::filesystem::exists(d))
      return absl::FailedPreconditionError(absl::StrCat(dir, " is not on a bpffs mount"));
    if (IsBpffs(parent))
      return absl::NotFoundError(
          absl::StrCat("no cppnet maps in ", dir, ": cppnet-agent has not run on this host"));
    // Only the standard place gets the mount hint; another path is more likely a typo.
    if (parent == bpffs)
      return absl::FailedPreconditionError(
          absl::StrCat("bpffs is not mounted at ", bpffs, " (mount -t bpf bpf ", bpffs, ")"));
    return absl::NotFoundError(absl::StrCat(dir,
                                            ": no such directory on a bpffs (cppnet-agent pins "
                                            "its maps in " CPPNET_PIN_DIR_DEFAULT
                                            " unless its --bpffs-dir says otherwise)"));
  }
  int i = 0;
  for (const char* name : names) {
    std::string path = absl::StrCat(dir, "/", name);
    fds[i] = bpf_obj_get(path.c_str());
    if (fds[i] < 0) {
      int err = errno;
      for (int j = 0; j < i; j++) close(fds[j]);
      if (err == ENOENT)
        return absl::NotFoundError(
            absl::StrCat("map ", path, " not found: cppnet-agent has not run on this host"));
      if (err == EPERM || err == EACCES)
        return absl::PermissionDeniedError(absl::StrCat(path, ": permission denied (run as root)"));
      return absl::InternalError(absl::StrCat(path, ": ", strerror(err)));
    }
    i++;
  }
  return absl::OkStatus();
}

absl::StatusOr<MapFds> MapFds::OpenPinned(const std::string& dir) {
  std::array<int, kCount> fds;
  if (auto st = OpenPinnedMaps(
          dir,
          {CPPNET_MAP_ROUTES, CPPNET_MAP_CONFIG, CPPNET_MAP_STATS, CPPNET_MAP_ENDPOINTS,
           CPPNET_MAP_PEERS, CPPNET_MAP_BINDS, CPPNET_MAP_ROUTES6, CPPNET_MAP_ENDPOINTS6,
           CPPNET_MAP_BINDS6, CPPNET_MAP_PEERS6},
          fds.data());
      !st.ok())
    return st;
  return MapFds(fds, /*owned=*/true);
}

absl::StatusOr<cppnet_config> ReadConfig(int fd) {
  uint32_t zero = 0;
  cppnet_config cfg{};
  if (bpf_map_lookup_elem(fd, &zero, &cfg) != 0)
    return absl::InternalError(
        absl::StrCat("map " CPPNET_MAP_CONFIG ": lookup: ", strerror(errno)));
  return cfg;
}

absl::Status WriteConfig(int fd, const cppnet_config& cfg) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) != 0)
    return absl::InternalError(
        absl::StrCat("map " CPPNET_MAP_CONFIG ": update: ", strerror(errno)));
  return absl::OkStatus();
}

static cppnet_route_key KeyOf(const Prefix4& p) { return cppnet_route_key{p.len, htonl(p.addr)}; }

absl::StatusOr<std::vector<RouteEntry>> ListRoutes(int fd) {
  auto raw = DumpMap<cppnet_route_key, cppnet_route>(fd, CPPNET_MAP_ROUTES);
  if (!raw.ok()) return raw.status();
  std::vector<RouteEntry> out;
  out.reserve(raw->size());
  for (const auto& [k, r] : *raw)
    out.push_back({Prefix4{ntohl(k.addr), static_cast<uint8_t>(k.prefixlen)}, r});
  return out;
}

// A failed map write (errno set): a full map is ResourceExhausted, so callers can tell it
// from a broken one.
static absl::Status MapWriteError(const char* map, uint32_t max, const std::string& what) {
  const int err = errno;
  if (err == ENOSPC || err == E2BIG)
    return absl::ResourceExhaustedError(
        absl::StrCat("map ", map, " is full (", max, " entries): cannot add ", what));
  return absl::InternalError(absl::StrCat("map ", map, ": add ", what, ": ", strerror(err)));
}

absl::Status UpsertRoute(int fd, const Prefix4& subnet, const cppnet_route& route) {
  cppnet_route_key k = KeyOf(subnet);
  if (bpf_map_update_elem(fd, &k, &route, BPF_ANY) != 0)
    return MapWriteError(CPPNET_MAP_ROUTES, CPPNET_ROUTES_MAX, FormatPrefix4(subnet));
  return absl::OkStatus();
}

absl::Status DeleteRoute(int fd, const Prefix4& subnet) {
  cppnet_route_key k = KeyOf(subnet);
  if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT)
    return absl::InternalError(absl::StrCat("map " CPPNET_MAP_ROUTES ": delete ",
                                            FormatPrefix4(subnet), ": ", strerror(errno)));
  return absl::OkStatus();
}

static cppnet_route6_key KeyOf6(const Prefix6& p) {
  cppnet_route6_key k{};
  k.prefixlen = p.len;
  Ip6Bytes b = ToBytes6(p.addr);
  memcpy(k.addr, b.data(), 16);
  return k;
}

absl::StatusOr<std::vector<Route6Entry>> ListRoutes6(int fd) {
  auto raw = DumpMap<cppnet_route6_key, cppnet_route6>(fd, CPPNET_MAP_ROUTES6);
  if (!raw.ok()) return raw.status();
  std::vector<Route6Entry> out;
  for (const auto& [k, r] : *raw)
    out.push_back({Prefix6{FromBytes6(k.addr), static_cast<uint8_t>(k.prefixlen)}, r});
  return out;
}

absl::Status UpsertRoute6(int fd, const Prefix6& subnet, const cppnet_route6& route) {
  cppnet_route6_key k = KeyOf6(subnet);
  if (bpf_map_update_elem(fd, &k, &route, BPF_ANY) != 0)
    return MapWriteError(CPPNET_MAP_ROUTES6, CPPNET_ROUTES_MAX, FormatPrefix6(subnet));
  return absl::OkStatus();
}

absl::Status DeleteRoute6(int fd, const Prefix6& subnet) {
  cppnet_route6_key k = KeyOf6(subnet);
  if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT)
    return absl::InternalError(absl::StrCat("map " CPPNET_MAP_ROUTES6 ": delete ",
                                            FormatPrefix6(subnet), ": ", strerror(errno)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<Ip6Bytes, cppnet_endpoint>>> ListEndpoints6(int fd) {
  return DumpMap<Ip6Bytes, cppnet_endpoint>(fd, CPPNET_MAP_ENDPOINTS6);
}

absl::Status DeleteEndpoint6(int fd, const Ip6Bytes& addr) {
  if (bpf_map_delete_elem(fd, addr.data()) == 0 || errno == ENOENT) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("map " CPPNET_MAP_ENDPOINTS6 ": delete ",
                                          FormatIp6(FromBytes6(addr.data())), ": ",
                                          strerror(errno)));
}

absl::StatusOr<std::vector<EndpointEntry>> ListEndpoints(int fd) {
  auto raw = DumpMap<uint32_t, cppnet_endpoint>(fd, CPPNET_MAP_ENDPOINTS);
  if (!raw.ok()) return raw.status();
  std::vector<EndpointEntry> out;
  for (const auto& [addr, ep] : *raw) out.push_back({ntohl(addr), ep});
  return out;
}

absl::Status DeleteEndpoint(int fd, uint32_t addr) {
  uint32_t key = htonl(addr);
  if (bpf_map_delete_elem(fd, &key) == 0 || errno == ENOENT) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("map " CPPNET_MAP_ENDPOINTS ": delete ", FormatIp4(addr),
                                          ": ", strerror(errno)));
}

// Every slot of an array map in one batched read: {key, value} of the used ones.
template <typename V>
static absl::StatusOr<std::vector<std::pair<uint32_t, V>>> ReadArray(int fd, uint32_t slots,
                                                                     const char* name,
                                                                     bool (*used)(const V&)) {
  std::vector<uint32_t> keys(slots);
  std::vector<V> values(slots);
  uint32_t out_batch = 0, count = slots;
  if (bpf_map_lookup_batch(fd, nullptr, &out_batch, keys.data(), values.data(), &count, nullptr) !=
          0 &&
      errno != ENOENT)
    return absl::InternalError(absl::StrCat("map ", name, ": read: ", strerror(errno)));
  std::vector<std::pair<uint32_t, V>> out;
  for (uint32_t i = 0; i < count; i++)
    if (used(values[i])) out.emplace_back(keys[i], values[i]);
  return out;
}

absl::StatusOr<std::vector<cppnet_bind>> ListBinds(int fd) {
  auto used = ReadArray<cppnet_bind>(fd, CPPNET_BINDS_SLOTS, CPPNET_MAP_BINDS,
                                     [](const cppnet_bind& b) { return b.ifindex != 0; });
  if (!used.ok()) return used.status();
  std::vector<cppnet_bind> out;
  for (const auto& [slot, b] : *used) out.push_back(b);
  return out;
}

absl::Status FreeBindSlot(int binds_fd, uint32_t ifindex) {
  uint32_t slot = ifindex & (CPPNET_BINDS_SLOTS - 1);
  cppnet_bind b{};
  if (bpf_map_lookup_elem(binds_fd, &slot, &b) != 0 || b.ifindex != ifindex)
    return absl::OkStatus();
  const cppnet_bind free{};
  if (bpf_map_update_elem(binds_fd, &slot, &free, BPF_ANY) != 0)
    return absl::InternalError(
        absl::StrCat("map " CPPNET_MAP_BINDS ": free ifindex ", ifindex, ": ", strerror(errno)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<cppnet_bind6>> ListBinds6(int fd) {
  auto used = ReadArray<cppnet_bind6>(fd, CPPNET_BINDS_SLOTS, CPPNET_MAP_BINDS6,
                                      [](const cppnet_bind6& b) { return b.ifindex != 0; });
  if (!used.ok()) return used.status();
  std::vector<cppnet_bind6> out;
  for (const auto& [slot, b] : *used) out.push_back(b);
  return out;
}

absl::Status FreeBindSlot6(int fd, uint32_t ifindex) {
  uint32_t slot = ifindex & (CPPNET_BINDS_SLOTS - 1);
  cppnet_bind6 b{};
  if (bpf_map_lookup_elem(fd, &slot, &b) != 0 || b.ifindex != ifindex) return absl::OkStatus();
  const cppnet_bind6 free{};
  if (bpf_map_update_elem(fd, &slot, &free, BPF_ANY) != 0)
    return absl::InternalError(
        absl::StrCat("map " CPPNET_MAP_BINDS6 ": free ifindex ", ifindex, ": ", strerror(errno)));
  return absl::OkStatus();
}

absl::StatusOr<std::map<Ip6Bytes, uint32_t>> ListPeers6(int fd) {
  auto raw = DumpMap<Ip6Bytes, uint32_t>(fd, CPPNET_MAP_PEERS6);
  if (!raw.ok()) return raw.status();
  return std::map<Ip6Bytes, uint32_t>(raw->begin(), raw->end());
}

absl::Status SetPeer6(int fd, const Ip6Bytes& addr, uint32_t routes) {
  const int r = routes ? bpf_map_update_elem(fd, addr.data(), &routes, BPF_ANY)
                       : bpf_map_delete_elem(fd, addr.data());
  if (r == 0 || (!routes && errno == ENOENT)) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(
      "map " CPPNET_MAP_PEERS6 ": ", FormatIp6(FromBytes6(addr.data())), ": ", strerror(errno)));
}

absl::StatusOr<std::map<uint32_t, cppnet_peer>> ListPeers(int fd) {
  auto used = ReadArray<cppnet_peer>(fd, CPPNET_PEER_SLOTS, CPPNET_MAP_PEERS,
                                     [](const cppnet_peer& p) { return p.public_ip != 0; });
  if (!used.ok()) return used.status();
  return std::map<uint32_t, cppnet_peer>(used->begin(), used->end());
}

absl::Status SetPeerSlot(int fd, uint32_t slot, const cppnet_peer& peer) {
  if (bpf_map_update_elem(fd, &slot, &peer, BPF_ANY) == 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("map " CPPNET_MAP_PEERS ": slot ", slot, ": ", strerror(errno)));
}

cppnet_peer PeerEntry(uint32_t ip, uint32_t routes, const Prefix4& only) {
  cppnet_peer p{};
  p.public_ip = htonl(ip);
  p.routes = routes;
  if (routes == 1) {
    p.subnet = htonl(only.addr);
    p.subnet_len = only.len;
  }
  return p;
}

std::map<uint32_t, cppnet_peer> PeerSlots(const std::map<uint32_t, std::vector<Prefix4>>& peers) {
  std::map<uint32_t, cppnet_peer> out;
  for (const auto& [ip, subnets] : peers) {  // ascending: the lowest address keeps a shared slot
    if (ip == 0 || subnets.empty()) continue;
    const uint32_t slot = cppnet_peer_slot(htonl(ip));
    if (out.count(slot)) continue;
    out[slot] = PeerEntry(ip, static_cast<uint32_t>(subnets.size()), subnets[0]);
  }
  return out;
}

absl::StatusOr<std::array<cppnet_counter, CPPNET_CNT_MAX>> ReadStats(int fd) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return absl::InternalError("cannot count possible CPUs");
  std::array<cppnet_counter, CPPNET_CNT_MAX> sum{};
  std::vector<cppnet_counter> percpu(ncpu);
  for (uint32_t id = 0; id < CPPNET_CNT_MAX; id++) {
    if (bpf_map_lookup_elem(fd, &id, percpu.data()) != 0)
      return absl::InternalError(
          absl::StrCat("map " CPPNET_MAP_STATS ": lookup: ", strerror(errno)));
    for (const auto& c : percpu) {
      sum[id].packets += c.packets;
      sum[id].bytes += c.bytes;
    }
  }
  return sum;
}

}  // namespace cppnet
