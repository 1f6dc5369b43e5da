#include "route_reconciler.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace cppnet {

DesiredRoutes ComputeRoutes(const NetworkConfig& cfg, std::optional<Prefix4> own,
                            std::vector<const ParsedLeaseRecord*> records,
                            const std::vector<Prefix4>& underlay_addrs,
                            const std::string& subnets_prefix, const std::string& underlay_name,
                            std::optional<Prefix6> own6,
                            const std::vector<Prefix6>& underlay_addrs6) {
  LeaseSet set = SelectPeerLeases(cfg, own, std::move(records), own6);
  auto onlink6 = [&](unsigned __int128 ip) {
    return std::any_of(underlay_addrs6.begin(), underlay_addrs6.end(), [&](const Prefix6& a) {
      return Prefix6{a.addr & a.mask(), a.len}.contains(ip);
    });
  };
  auto onlink = [&](uint32_t ip) {
    return std::any_of(underlay_addrs.begin(), underlay_addrs.end(), [&](const Prefix4& a) {
      return Prefix4{a.addr & a.mask(), a.len}.contains(ip);
    });
  };
  const uint8_t backend = cfg.backend.type;
  DesiredRoutes out;
  out.skipped = std::move(set.skipped);
  // A lease's IPv6 subnet, over the IPv6 underlay, by the IPv4 rules; `key` names it in a skip.
  auto add6 = [&](const PeerRoute& peer, const std::string& key, const char* also) {
    const unsigned __int128 pip6 = peer.lease.public_ip6;
    if (backend == CPPNET_BACKEND_HOSTGW && !onlink6(pip6)) {
      out.skipped.push_back(
          {key, absl::StrCat("network is unreachable: host-gw peer ", FormatIp6(pip6), " of ",
                             FormatPrefix6(*peer.subnet6), " is not on the L2 segment of ",
                             underlay_name, also)});
      return;
    }
    cppnet_route6 r6{};
    const Ip6Bytes b = ToBytes6(pip6);
    memcpy(r6.public_ip6, b.data(), 16);
    r6.backend = backend;
    if (cfg.backend.direct_routing && backend == CPPNET_BACKEND_VXLAN && onlink6(pip6))
      r6.backend = CPPNET_BACKEND_HOSTGW;
    if (r6.backend == CPPNET_BACKEND_VXLAN) {
      if (onlink6(pip6)) r6.flags |= CPPNET_ROUTE_ONLINK;
      r6.vni = cfg.backend.vni;
      memcpy(r6.vtep_mac, peer.lease.vtep_mac6->data(), 6);
      r6.port = cfg.backend.port;
      if (!peer.lease.cppnet_datapath6) r6.flags |= CPPNET_ROUTE_OUTER_CSUM;
    }
    r6.origin = CPPNET_ORIGIN_LEASE;
    out.routes6[*peer.subnet6] = r6;
  };
  for (const auto& [subnet6, peer] : set.routes6only)
    add6(peer, subnets_prefix + FormatSubnetKey6(subnet6), "");
  for (const auto& [subnet, peer] : set.routes) {
    const uint32_t pip = peer.lease.public_ip;
    // host-gw needs the peer on our L2 segment: its PublicIP inside an underlay prefix.
    if (backend == CPPNET_BACKEND_HOSTGW && !onlink(pip)) {
      out.skipped.push_back(
          {subnets_prefix + FormatSubnetKey(subnet),
           absl::StrCat("network is unreachable: host-gw peer ", FormatIp4(pip), " of ",
                        FormatPrefix4(subnet), " is not on the L2 segment of ", underlay_name)});
      continue;
    }
    cppnet_route r{};
    r.public_ip = htonl(pip);
    r.backend = backend;
    // vxlan DirectRouting: peers on our segment are reached host-gw style.
    if (cfg.backend.direct_routing && r.backend == CPPNET_BACKEND_VXLAN && onlink(pip))
      r.backend = CPPNET_BACKEND_HOSTGW;
    if (r.backend == CPPNET_BACKEND_VXLAN) {
      r.vni = cfg.backend.vni;
      memcpy(r.vtep_mac, peer.lease.vtep_mac->data(), 6);
    }
    r.port = r.backend == CPPNET_BACKEND_HOSTGW ? 0 : cfg.backend.port;
    if (r.backend != CPPNET_BACKEND_HOSTGW && onlink(pip)) r.flags |= CPPNET_ROUTE_ONLINK;
    if (r.backend == CPPNET_BACKEND_UDP && !peer.lease.cppnet_datapath)
      r.flags |= CPPNET_ROUTE_USERSPACE_PEER;
    r.origin = CPPNET_ORIGIN_LEASE;
    out.routes[subnet] = r;
    if (peer.subnet6)
      add6(peer, subnets_prefix + FormatSubnetKey(subnet, peer.subnet6), " (routed for IPv4 only)");
  }
  return out;
}

absl::Status RouteReconciler::Load() {
  if (loaded_) return absl::OkStatus();
  // What an earlier run (or an operator) left in the pinned maps.
  auto have = table_->List();
  if (!have.ok()) return have.status();
  auto peers = table_->ListPeers();
  if (!peers.ok()) return peers.status();
  for (const RouteEntry& e : *have) {
    installed_[e.subnet] = e.route;
    if (e.route.origin == CPPNET_ORIGIN_LEASE) lease_routes_++;
    Track(e.subnet, ntohl(e.route.public_ip), true);
  }
  peers_ = std::move(*peers);
  auto have6 = table_->List6();
  if (!have6.ok()) return have6.status();
  for (const Route6Entry& e : *have6) {
    installed6_[e.subnet] = e.route;
    Ip6Bytes a;
    memcpy(a.data(), e.route.public_ip6, 16);
    Track6(a, true);
  }
  auto peers6 = table_->ListPeers6();
  if (!peers6.ok()) return peers6.status();
  peers6_ = std::move(*peers6);
  // The first flush compares every slot and IPv6 peer the maps hold with the routes.
  for (const auto& [slot, p] : peers_) dirty_slots_.insert(slot);
  for (const auto& [a, n] : peers6_) dirty6_.insert(a);
  loaded_ = true;
  return absl::OkStatus();
}

static uint64_t SubnetBits(const Prefix4& s) { return uint64_t{s.addr} << 8 | s.len; }

void RouteReconciler::Track(const Prefix4& subnet, uint32_t ip, bool add) {
  if (ip == 0) return;  // no peer slot
  const uint32_t slot = cppnet_peer_slot(htonl(ip));
  dirty_slots_.insert(slot);
  std::vector<uint32_t>& ips = slot_ips_[slot];
  auto pos = std::lower_bound(ips.begin(), ips.end(), ip);
  if (add) {
    PeerRoutes& p = by_peer_[ip];
    p.count++;
    p.subnets_xor ^= SubnetBits(subnet);
    if (pos == ips.end() || *pos != ip) ips.insert(pos, ip);
    return;
  }
  auto it = by_peer_.find(ip);
  if (it == by_peer_.end()) return;
  it->second.subnets_xor ^= SubnetBits(subnet);
  if (--it->second.count > 0) return;
  by_peer_.erase(it);
  if (pos != ips.end() && *pos == ip) ips.erase(pos);
}

void RouteReconciler::Track6(const Ip6Bytes& a, bool add) {
  dirty6_.insert(a);
  if (add) {
    count6_[a]++;
  } else if (auto it = count6_.find(a); it != count6_.end() && --it->second == 0) {
    count6_.erase(it);
  }
}

absl::Status RouteReconciler::Install(const Prefix4& subnet, const cppnet_route& r) {
  if (auto st = table_->Upsert(subnet, r); !st.ok()) return st;
  auto [it, fresh] = installed_.try_emplace(subnet, r);
  if (!fresh) {
    if (it->second.origin == CPPNET_ORIGIN_LEASE) lease_routes_--;
    Track(subnet, ntohl(it->second.public_ip), false);
    it->second = r;
  }
  if (r.origin == CPPNET_ORIGIN_LEASE) lease_routes_++;
  Track(subnet, ntohl(r.public_ip), true);
  return absl::OkStatus();
}

absl::Status RouteReconciler::Remove(const Prefix4& subnet) {
  auto it = installed_.find(subnet);
  if (it == installed_.end()) return absl::OkStatus();
  if (auto st = table_->Delete(subnet); !st.ok()) return st;
  if (it->second.origin == CPPNET_ORIGIN_LEASE) lease_routes_--;
  Track(subnet, ntohl(it->second.public_ip), false);
  installed_.erase(it);
  return absl::OkStatus();
}

absl::Status RouteReconciler::Install6(const Prefix6& subnet, const cppnet_route6& r) {
  if (auto st = table_->Upsert6(subnet, r); !st.ok()) return st;
  auto [it, fresh] = installed6_.try_emplace(subnet, r);
  Ip6Bytes a;
  if (!fresh) {
    memcpy(a.data(), it->second.public_ip6, 16);
    Track6(a, false);
    it->second = r;
  }
  memcpy(a.data(), r.public_ip6, 16);
  Track6(a, true);
  return absl::OkStatus();
}

absl::Status RouteReconciler::Remove6(const Prefix6& subnet) {
  auto it = installed6_.find(subnet);
  if (it == installed6_.end()) return absl::OkStatus();
  if (auto st = table_->Delete6(subnet); !st.ok()) return st;
  Ip6Bytes a;
  memcpy(a.data(), it->second.public_ip6, 16);
  Track6(a, false);
  installed6_.erase(it);
  return absl::OkStatus();
}

absl::Status RouteReconciler::SetStatic(const Prefix4& subnet, const cppnet_route& r) {
  if (auto st = Load(); !st.ok()) return st;
  cppnet_route s = r;
  s.origin = CPPNET_ORIGIN_STATIC;
  auto cur = installed_.find(subnet);
  if (cur == installed_.end() || memcmp(&cur->second, &s, sizeof(s)) != 0)
    if (auto st = Install(subnet, s); !st.ok()) return st;
  FlushPeers();
  return absl::OkStatus();
}

absl::Status RouteReconciler::RemoveStatic(const Prefix4& subnet) {
  if (auto st = Load(); !st.ok()) return st;
  auto cur = installed_.find(subnet);
  if (cur == installed_.end()) return absl::NotFoundError("no such route");
  if (cur->second.origin != CPPNET_ORIGIN_STATIC)
    return absl::FailedPreconditionError(
        "a lease route; it goes when its lease is deleted from etcd");
  if (auto st = Remove(subnet); !st.ok()) return st;
  FlushPeers();
  return absl::OkStatus();
}

std::vector<RouteEntry> RouteReconciler::Statics() const {
  std::vector<RouteEntry> out;
  for (const auto& [subnet, r] : installed_)
    if (r.origin == CPPNET_ORIGIN_STATIC) out.push_back(RouteEntry{subnet, r});
  return out;
}

absl::StatusOr<int64_t> RouteReconciler::Apply(const DesiredRoutes& want) {
  if (auto st = Load(); !st.ok()) return st;
  std::vector<Prefix4> gone;
  for (const auto& [subnet, r] : installed_)
    if (r.origin == CPPNET_ORIGIN_LEASE && !want.routes.count(subnet)) gone.push_back(subnet);
  std::vector<Prefix6> gone6;
  for (const auto& [subnet, r] : installed6_)
    if (!want.routes6.count(subnet)) gone6.push_back(subnet);
  std::erase_if(pending_, [&](const auto& p) { return !want.routes.count(p.first); });
  std::erase_if(pending6_, [&](const auto& p) { return !want.routes6.count(p.first); });
  ApplyLeases(gone, gone6, want);
  return lease_routes();
}

void RouteReconciler::ApplyLeases(const std::vector<Prefix4>& gone,
                                  const std::vector<Prefix6>& gone6, const DesiredRoutes& want) {
  if (auto st = Load(); !st.ok()) {
    LOG_ERROR(st.message());
    return;
  }
  // Each change is logged while there are few (a lease coming or going); a start-up sync
  // of thousands says how many.
  constexpr int kLogEach = 20;
  int added = 0, updated = 0, removed = 0;
  auto note = [&](int* count, const char* what, const std::string& subnet, const std::string& via) {
    if (++*count <= kLogEach) LOG_INFO(what, subnet, via.empty() ? "" : " via ", via);
  };
  // A route that cannot be written because its map is full waits (pending_), said once.
  auto failed = [&](const absl::Status& st) {
    if (!absl::IsResourceExhausted(st)) {
      LOG_ERROR(st.message());
      return;
    }
    if (!full_logged_)
      LOG_ERROR(st.message(), "; lease routes wait for room (cppnet_routes_pending counts them)");
    full_logged_ = true;
  };
  for (const Prefix4& subnet : gone) {
    if (!want.routes.count(subnet)) pending_.erase(subnet);
    auto cur = installed_.find(subnet);
    if (cur == installed_.end() || cur->second.origin != CPPNET_ORIGIN_LEASE ||
        want.routes.count(subnet))
      continue;
    if (auto st = Remove(subnet); !st.ok()) {
      LOG_ERROR(st.message());
      continue;
    }
    note(&removed, "Subnet removed: ", FormatPrefix4(subnet), "");
  }
  for (const Prefix6& subnet : gone6) {
    if (!want.routes6.count(subnet)) pending6_.erase(subnet);
    if (!installed6_.count(subnet) || want.routes6.count(subnet)) continue;
    if (auto st = Remove6(subnet); !st.ok()) {
      LOG_ERROR(st.message());
      continue;
    }
    note(&removed, "Subnet removed: ", FormatPrefix6(subnet), "");
  }
  // One lease route into its family's map (`write`: Install or Install6); a subnet an IPv4
  // static route holds is left to it. `via`: the route's peer, for the log.
  auto install_in = [&](auto& installed, auto& pending, const auto& subnet, const auto& r,
                        auto write, auto format_subnet, auto via) {
    auto cur = installed.find(subnet);
    if (cur != installed.end() &&
        (cur->second.origin == CPPNET_ORIGIN_STATIC || memcmp(&cur->second, &r, sizeof(r)) == 0)) {
      pending.erase(subnet);  // held by a static route, or in place already
      return true;
    }
    const bool existed = cur != installed.end();
    if (auto st = write(subnet, r); !st.ok()) {
      failed(st);
      if (absl::IsResourceExhausted(st)) pending[subnet] = r;
      return false;
    }
    pending.erase(subnet);
    note(existed ? &updated : &added,
         existed ? "Subnet updated: " : "Subnet added: ", format_subnet(subnet), via(r));
    return true;
  };
  auto install = [&](const Prefix4& subnet, const cppnet_route& r) {
    return install_in(
        installed_, pending_, subnet, r,
        [this](const Prefix4& s, const cppnet_route& v) { return Install(s, v); }, FormatPrefix4,
        [](const cppnet_route& v) { return FormatIp4(ntohl(v.public_ip)); });
  };
  auto install6 = [&](const Prefix6& subnet, const cppnet_route6& r) {
    return install_in(
        installed6_, pending6_, subnet, r,
        [this](const Prefix6& s, const cppnet_route6& v) { return Install6(s, v); }, FormatPrefix6,
        [](const cppnet_route6& v) { return FormatIp6(FromBytes6(v.public_ip6)); });
  };
  // Waiting routes first (they are older), until the map is full again.
  for (auto it = pending_.begin(); it != pending_.end();) {
    const auto [subnet, r] = *it++;
    if (!install(subnet, r)) break;
  }
  for (auto it = pending6_.begin(); it != pending6_.end();) {
    const auto [subnet, r] = *it++;
    if (!install6(subnet, r)) break;
  }
  for (const auto& [subnet, r] : want.routes) install(subnet, r);
  for (const auto& [subnet, r] : want.routes6) install6(subnet, r);
  if (added > kLogEach || updated > kLogEach || removed > kLogEach)
    LOG_INFO("Subnets: ", added, " added, ", updated, " updated, ", removed, " removed (the first ",
             kLogEach, " of each logged)");
  if (full_logged_ && pending_.empty() && pending6_.empty()) {
    LOG_INFO("The route maps have room again: every lease route is installed");
    full_logged_ = false;
  }
  FlushPeers();
}

// The peers array and the IPv6 peers follow the routes (lease and static) by difference:
// only slots and addresses whose routes changed are looked at.
void RouteReconciler::FlushPeers() {
  for (uint32_t slot : dirty_slots_) {
    cppnet_peer want{};
    // The lowest PublicIP of the slot keeps it (the data path checks the others' packets
    // against the route of their inner source).
    if (const std::vector<uint32_t>& ips = slot_ips_[slot]; !ips.empty()) {
      const PeerRoutes& p = by_peer_.at(ips.front());
      const Prefix4 only{static_cast<uint32_t>(p.subnets_xor >> 8),
                         static_cast<uint8_t>(p.subnets_xor & 0xff)};  // see SubnetBits
      want = PeerEntry(ips.front(), p.count, only);
    }
    auto it = peers_.find(slot);
    const bool have = it != peers_.end();
    if (!want.public_ip && !have) continue;
    if (have && memcmp(&it->second, &want, sizeof(want)) == 0) continue;
    if (auto st = table_->SetPeer(slot, want); !st.ok()) {
      LOG_ERROR(st.message());
      continue;
    }
    if (want.public_ip)
      peers_[slot] = want;
    else
      peers_.erase(slot);
  }
  dirty_slots_.clear();
  for (const Ip6Bytes& a : dirty6_) {
    auto c = count6_.find(a);
    const uint32_t want = c == count6_.end() ? 0 : c->second;
    auto it = peers6_.find(a);
    if ((it == peers6_.end() ? 0 : it->second) == want) continue;
    if (auto st = table_->SetPeer6(a, want); !st.ok()) {
      LOG_ERROR(st.message());
      continue;
    }
    if (want)
      peers6_[a] = want;
    else
      peers6_.erase(a);
  }
  dirty6_.clear();
}

void SubnetIndex::Add(const ParsedLeaseRecord& r) {
  if (r.subnet.ok()) v4_[*r.subnet]++;
  if (r.subnet6) v6_[*r.subnet6]++;
}

void SubnetIndex::Remove(const ParsedLeaseRecord& r) {
  if (r.subnet.ok())
    if (auto it = v4_.find(*r.subnet); it != v4_.end() && --it->second == 0) v4_.erase(it);
  if (r.subnet6)
    if (auto it = v6_.find(*r.subnet6); it != v6_.end() && --it->second == 0) v6_.erase(it);
}

void SubnetIndex::Clear() {
  v4_.clear();
  v6_.clear();
}

// Does a prefix in `index` overlap s? One with host bits set counts as overlapping (it is left to
// the full computation).
template <typename P, typename Index>
static bool OverlapsAny(const Index& index, const P& s) {
  if ((s.addr & s.mask()) != s.addr) return true;
  // Prefixes that start inside s (s itself, its sub-prefixes, shorter ones at its address)...
  const auto last = s.addr | ~s.mask();
  if (auto it = index.lower_bound(P{s.addr, 0}); it != index.end() && it->first.addr <= last)
    return true;
  // ...and those that contain it from below its address.
  for (int len = 0; len < s.len; len++) {
    const P up{s.addr & P{0, static_cast<uint8_t>(len)}.mask(), static_cast<uint8_t>(len)};
    if (up.addr < s.addr && index.count(up)) return true;
  }
  return false;
}

bool SubnetIndex::Overlaps(const ParsedLeaseRecord& r) const {
  return (r.subnet.ok() && OverlapsAny(v4_, *r.subnet)) ||
         (r.subnet6 && OverlapsAny(v6_, *r.subnet6));
}

}  // namespace cppnet
