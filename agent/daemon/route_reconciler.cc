#include "route_reconciler.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "log.h"

namespace cppnet {

DesiredRoutes ComputeRoutes(const NetworkConfig& cfg, std::optional<Prefix4> own,
                            const std::map<std::string, ParsedLeaseRecord>& leases,
                            const std::vector<Prefix4>& underlay_addrs,
                            const std::string& subnets_prefix, const std::string& underlay_name,
                            std::optional<Prefix6> own6,
                            const std::vector<Prefix6>& underlay_addrs6) {
  std::vector<const ParsedLeaseRecord*> records;
  records.reserve(leases.size());
  for (const auto& [key, rec] : leases) records.push_back(&rec);
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
  for (const RouteEntry& e : *have) installed_[e.subnet] = e.route;
  peers_ = std::move(*peers);
  auto have6 = table_->List6();
  if (!have6.ok()) return have6.status();
  for (const Route6Entry& e : *have6) installed6_[e.subnet] = e.route;
  auto peers6 = table_->ListPeers6();
  if (!peers6.ok()) return peers6.status();
  peers6_ = std::move(*peers6);
  loaded_ = true;
  return absl::OkStatus();
}

absl::Status RouteReconciler::SetStatic(const Prefix4& subnet, const cppnet_route& r) {
  if (auto st = Load(); !st.ok()) return st;
  cppnet_route s = r;
  s.origin = CPPNET_ORIGIN_STATIC;
  auto cur = installed_.find(subnet);
  if (cur == installed_.end() || memcmp(&cur->second, &s, sizeof(s)) != 0) {
    if (auto st = table_->Upsert(subnet, s); !st.ok()) return st;
    installed_[subnet] = s;
  }
  SyncPeers();
  return absl::OkStatus();
}

absl::Status RouteReconciler::RemoveStatic(const Prefix4& subnet) {
  if (auto st = Load(); !st.ok()) return st;
  auto cur = installed_.find(subnet);
  if (cur == installed_.end()) return absl::NotFoundError("no such route");
  if (cur->second.origin != CPPNET_ORIGIN_STATIC)
    return absl::FailedPreconditionError(
        "a lease route; it goes when its lease is deleted from etcd");
  if (auto st = table_->Delete(subnet); !st.ok()) return st;
  installed_.erase(cur);
  SyncPeers();
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
  for (auto it = installed_.begin(); it != installed_.end();) {
    const Prefix4 subnet = it->first;
    if (it->second.origin != CPPNET_ORIGIN_LEASE || want.routes.count(subnet)) {
      ++it;
      continue;
    }
    if (auto st = table_->Delete(subnet); !st.ok()) {
      LOG_ERROR(st.message());
      ++it;
      continue;
    }
    LOG_INFO("Subnet removed: ", FormatPrefix4(subnet));
    it = installed_.erase(it);
  }
  int64_t n = 0;
  for (const auto& [subnet, r] : want.routes) {
    auto cur = installed_.find(subnet);
    if (cur != installed_.end() && cur->second.origin == CPPNET_ORIGIN_STATIC) continue;
    n++;
    if (cur != installed_.end() && memcmp(&cur->second, &r, sizeof(r)) == 0) continue;
    const bool existed = cur != installed_.end();
    if (auto st = table_->Upsert(subnet, r); !st.ok()) {
      LOG_ERROR(st.message());
      continue;
    }
    LOG_INFO(existed ? "Subnet updated: " : "Subnet added: ", FormatPrefix4(subnet), " via ",
             FormatIp4(ntohl(r.public_ip)));
    installed_[subnet] = r;
  }
  SyncPeers();
  // IPv6: lease routes only (no static ones), by difference.
  for (auto it = installed6_.begin(); it != installed6_.end();) {
    if (want.routes6.count(it->first)) {
      ++it;
      continue;
    }
    if (auto st = table_->Delete6(it->first); !st.ok()) {
      LOG_ERROR(st.message());
      ++it;
      continue;
    }
    LOG_INFO("Subnet removed: ", FormatPrefix6(it->first));
    it = installed6_.erase(it);
  }
  for (const auto& [subnet, r] : want.routes6) {
    n++;
    auto cur = installed6_.find(subnet);
    if (cur != installed6_.end() && memcmp(&cur->second, &r, sizeof(r)) == 0) continue;
    const bool existed = cur != installed6_.end();
    if (auto st = table_->Upsert6(subnet, r); !st.ok()) {
      LOG_ERROR(st.message());
      continue;
    }
    LOG_INFO(existed ? "Subnet updated: " : "Subnet added: ", FormatPrefix6(subnet), " via ",
             FormatIp6(FromBytes6(r.public_ip6)));
    installed6_[subnet] = r;
  }
  std::map<Ip6Bytes, uint32_t> want6;
  for (const auto& [subnet, r] : installed6_) {
    Ip6Bytes a;
    memcpy(a.data(), r.public_ip6, 16);
    want6[a]++;
  }
  for (const auto& [a, count] : peers6_)
    if (!want6.count(a))
      if (auto st = table_->SetPeer6(a, 0); !st.ok()) LOG_ERROR(st.message());
  for (const auto& [a, count] : want6) {
    auto it = peers6_.find(a);
    if (it != peers6_.end() && it->second == count) continue;
    if (auto st = table_->SetPeer6(a, count); !st.ok()) LOG_ERROR(st.message());
  }
  peers6_ = std::move(want6);
  return n;
}

// The peers array follows the route entries we know (lease and static), by
// difference: only changed slots are written.
void RouteReconciler::SyncPeers() {
  std::map<uint32_t, std::vector<Prefix4>> by_peer;
  for (const auto& [subnet, r] : installed_) by_peer[ntohl(r.public_ip)].push_back(subnet);
  std::map<uint32_t, cppnet_peer> want = PeerSlots(by_peer);
  for (const auto& [slot, p] : peers_)
    if (!want.count(slot))
      if (auto st = table_->SetPeer(slot, cppnet_peer{}); !st.ok()) LOG_ERROR(st.message());
  for (const auto& [slot, p] : want) {
    auto it = peers_.find(slot);
    if (it != peers_.end() && memcmp(&it->second, &p, sizeof(p)) == 0) continue;
    if (auto st = table_->SetPeer(slot, p); !st.ok()) LOG_ERROR(st.message());
  }
  peers_ = std::move(want);
}

}  // namespace cppnet
