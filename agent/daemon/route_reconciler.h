// Routes to other hosts' subnets: the desired state computed from the leases and the
// config (which peers, which backend per peer), and a reconciler that makes the route
// map and the peers array equal to it by difference, over a RouteTable (the pinned BPF
// maps, or a fake in unit tests). Static routes (cppnetctl route add, through the agent)
// win over lease routes for the same subnet and are never removed by lease changes.
#pragma once
#include <map>
#include <optional>
#include <set>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppnet/abi.h"
#include "cppnet/config.h"
#include "cppnet/lease.h"
#include "cppnet/maps.h"

namespace cppnet {

struct DesiredRoutes {
  std::map<Prefix4, cppnet_route> routes;
  std::map<Prefix6, cppnet_route6> routes6;  // dual stack: the leases' IPv6 subnets
  std::vector<SkippedLease> skipped;
};

// The leases' routes as this host installs them: flannel's selection rules
// (SelectPeerLeases), host-gw only for peers on the underlay's L2 segment (the others
// skipped as unreachable), vxlan DirectRouting as host-gw for those peers.
DesiredRoutes ComputeRoutes(const NetworkConfig& cfg, std::optional<Prefix4> own,
                            std::vector<const ParsedLeaseRecord*> leases,
                            const std::vector<Prefix4>& underlay_addrs,
                            const std::string& subnets_prefix, const std::string& underlay_name,
                            std::optional<Prefix6> own6 = std::nullopt,
                            const std::vector<Prefix6>& underlay_addrs6 = {});

// The leases an agent follows, ordered and found by their etcd key (ParsedLeaseRecord::key,
// stored once): 100,000 of them take tens of megabytes.
struct LeaseKeyLess {
  using is_transparent = void;
  bool operator()(const ParsedLeaseRecord& a, const ParsedLeaseRecord& b) const {
    return a.key < b.key;
  }
  bool operator()(const ParsedLeaseRecord& a, absl::string_view b) const { return a.key < b; }
  bool operator()(absl::string_view a, const ParsedLeaseRecord& b) const { return a < b.key; }
};
using LeaseRecords = absl::btree_set<ParsedLeaseRecord, LeaseKeyLess>;

// The maps the reconciler writes.
class RouteTable {
 public:
  virtual ~RouteTable() = default;
  virtual absl::StatusOr<std::vector<RouteEntry>> List() = 0;
  virtual absl::Status Upsert(const Prefix4& subnet, const cppnet_route& r) = 0;
  virtual absl::Status Delete(const Prefix4& subnet) = 0;
  virtual absl::StatusOr<std::map<uint32_t, cppnet_peer>> ListPeers() = 0;
  virtual absl::Status SetPeer(uint32_t slot, const cppnet_peer& p) = 0;
  // The IPv6 routes (dual stack).
  virtual absl::StatusOr<std::vector<Route6Entry>> List6() = 0;
  virtual absl::Status Upsert6(const Prefix6& subnet, const cppnet_route6& r) = 0;
  virtual absl::Status Delete6(const Prefix6& subnet) = 0;
  virtual absl::StatusOr<std::map<Ip6Bytes, uint32_t>> ListPeers6() = 0;
  virtual absl::Status SetPeer6(const Ip6Bytes& addr, uint32_t routes) = 0;  // 0: remove
};

// RouteTable over the pinned maps.
class BpfRouteTable : public RouteTable {
 public:
  BpfRouteTable(int routes_fd, int peers_fd, int routes6_fd, int peers6_fd)
      : routes_(routes_fd), peers_(peers_fd), routes6_(routes6_fd), peers6_(peers6_fd) {}
  absl::StatusOr<std::vector<RouteEntry>> List() override { return ListRoutes(routes_); }
  absl::Status Upsert(const Prefix4& s, const cppnet_route& r) override {
    return UpsertRoute(routes_, s, r);
  }
  absl::Status Delete(const Prefix4& s) override { return DeleteRoute(routes_, s); }
  absl::StatusOr<std::map<uint32_t, cppnet_peer>> ListPeers() override {
    return cppnet::ListPeers(peers_);
  }
  absl::Status SetPeer(uint32_t slot, const cppnet_peer& p) override {
    return SetPeerSlot(peers_, slot, p);
  }
  absl::StatusOr<std::vector<Route6Entry>> List6() override { return ListRoutes6(routes6_); }
  absl::Status Upsert6(const Prefix6& s, const cppnet_route6& r) override {
    return UpsertRoute6(routes6_, s, r);
  }
  absl::Status Delete6(const Prefix6& s) override { return DeleteRoute6(routes6_, s); }
  absl::StatusOr<std::map<Ip6Bytes, uint32_t>> ListPeers6() override {
    return cppnet::ListPeers6(peers6_);
  }
  absl::Status SetPeer6(const Ip6Bytes& a, uint32_t n) override {
    return cppnet::SetPeer6(peers6_, a, n);
  }

 private:
  int routes_, peers_, routes6_, peers6_;
};

class RouteReconciler {
 public:
  explicit RouteReconciler(RouteTable* table) : table_(table) {}
  // Makes the lease entries equal `want` (what an earlier run left is read once, then
  // every change is made by difference), and the peers array follow. Returns the
  // number of lease routes in place (IPv4 and IPv6).
  absl::StatusOr<int64_t> Apply(const DesiredRoutes& want);
  // The same for a few leases only (their overlap with no other lease checked by the caller,
  // see SubnetIndex): the lease routes of `gone` and `gone6` are removed unless `want` has
  // them, `want`'s are installed. Costs what the change touches, not the number of leases.
  void ApplyLeases(const std::vector<Prefix4>& gone, const std::vector<Prefix6>& gone6,
                   const DesiredRoutes& want);
  // Lease routes in place (IPv4 and IPv6).
  int64_t lease_routes() const { return lease_routes_ + static_cast<int64_t>(installed6_.size()); }
  // Lease routes waiting for room in a full route map (retried whenever routes go).
  int64_t pending() const { return static_cast<int64_t>(pending_.size() + pending6_.size()); }
  // A static route: replaces whatever entry the subnet has.
  absl::Status SetStatic(const Prefix4& subnet, const cppnet_route& r);
  // Removes a static route (NotFound: none; FailedPrecondition: the entry is a lease's).
  // The caller reconciles again, so a lease for the subnet gets its route back.
  absl::Status RemoveStatic(const Prefix4& subnet);
  std::vector<RouteEntry> Statics() const;

 private:
  absl::Status Load();
  // Every write goes through these: they keep the peers' bookkeeping below in step.
  absl::Status Install(const Prefix4& subnet, const cppnet_route& r);
  absl::Status Remove(const Prefix4& subnet);
  absl::Status Install6(const Prefix6& subnet, const cppnet_route6& r);
  absl::Status Remove6(const Prefix6& subnet);
  void Track(const Prefix4& subnet, uint32_t public_ip, bool add);  // host order
  void Track6(const Ip6Bytes& public_ip6, bool add);
  // Writes the peer slots and IPv6 peers whose routes changed.
  void FlushPeers();

  RouteTable* table_;
  bool loaded_ = false;
  absl::btree_map<Prefix4, cppnet_route> installed_;  // what the table holds
  int64_t lease_routes_ = 0;                          // of them, origin lease
  std::map<uint32_t, cppnet_peer> peers_;             // what the peers array holds, by slot
  std::map<Prefix6, cppnet_route6> installed6_;
  std::map<Ip6Bytes, uint32_t> peers6_;  // what the IPv6 peers map holds
  // installed_ by PublicIP: how many routes, and the XOR of their subnets (which is the
  // subnet itself when there is one); PublicIPs by peer slot (sorted); installed6_'s routes
  // per PublicIPv6; and what changed since the last FlushPeers. Compact: 100,000 leases.
  struct PeerRoutes {
    uint32_t count = 0;
    uint64_t subnets_xor = 0;
  };
  absl::flat_hash_map<uint32_t, PeerRoutes> by_peer_;
  std::vector<std::vector<uint32_t>> slot_ips_ =
      std::vector<std::vector<uint32_t>>(CPPNET_PEER_SLOTS);
  std::map<Ip6Bytes, uint32_t> count6_;
  std::set<uint32_t> dirty_slots_;
  std::set<Ip6Bytes> dirty6_;
  std::map<Prefix4, cppnet_route> pending_;  // see pending()
  std::map<Prefix6, cppnet_route6> pending6_;
  bool full_logged_ = false;  // "map ... is full" said, "room again" not yet
};

// Which leases' subnets overlap: the condition under which one lease's routes can be
// computed alone (flannel's rules order overlapping leases by age; a lease that overlaps no
// other is accepted or skipped on its own merits).
class SubnetIndex {
 public:
  void Add(const ParsedLeaseRecord& r);
  void Remove(const ParsedLeaseRecord& r);
  void Clear();
  // Does any indexed lease's IPv4 or IPv6 subnet overlap r's? (A subnet with host bits set
  // counts as overlapping: it is left to the full computation.)
  bool Overlaps(const ParsedLeaseRecord& r) const;

 private:
  absl::btree_map<Prefix4, int> v4_;
  absl::btree_map<Prefix6, int> v6_;
};

}  // namespace cppnet
