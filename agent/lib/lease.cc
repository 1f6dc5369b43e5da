#include "cppnet/lease.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "cppnet/json_util.h"

namespace cppnet {

absl::StatusOr<Lease> ParseLease(absl::string_view text) {
  auto parsed = ParseJsonObject(text, "lease");
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& j = *parsed;
  Lease l;
  // PublicIP may be absent only beside a PublicIPv6 (an IPv6-only network's lease).
  const nlohmann::json* ip = FindKey(j, "PublicIP");
  const nlohmann::json* ip6 = FindKey(j, "PublicIPv6");
  const bool has_ip6 = ip6 && ip6->is_string();
  if ((!ip || ip->is_null()) && !has_ip6)
    return absl::InvalidArgumentError("lease: PublicIP is missing");
  if (ip && !ip->is_null()) {
    if (!ip->is_string()) return absl::InvalidArgumentError("lease: PublicIP must be a string");
    auto pip = ParseIp4(ip->get<std::string>());
    if (!pip.ok())
      return absl::InvalidArgumentError(absl::StrCat("lease: PublicIP: ", pip.status().message()));
    if (*pip == 0 || *pip == 0xffffffff || (*pip >> 24) == 127 || (*pip >> 28) == 0xe)
      return absl::InvalidArgumentError(
          absl::StrCat("lease: PublicIP ", FormatIp4(*pip), " is not a unicast address"));
    l.public_ip = *pip;
  }
  if (const nlohmann::json* bt = FindKey(j, "BackendType"); bt && !bt->is_null()) {
    if (!bt->is_string()) return absl::InvalidArgumentError("lease: BackendType must be a string");
    l.backend_type = bt->get<std::string>();
  }
  const nlohmann::json* bd = FindKey(j, "BackendData");
  if (bd && bd->is_object()) {
    int64_t vni = 0;
    if (auto st = GetInt(*bd, "VNI", &vni, "lease: BackendData"); !st.ok()) return st;
    if (vni < 0 || vni > 0xffffff)
      return absl::InvalidArgumentError(absl::StrCat("lease: VNI out of range: ", vni));
    l.vni = static_cast<uint32_t>(vni);
    if (const nlohmann::json* mac = FindKey(*bd, "VtepMAC"); mac && mac->is_string()) {
      auto m = ParseMac(mac->get<std::string>());
      if (!m.ok())
        return absl::InvalidArgumentError(absl::StrCat("lease: VtepMAC: ", m.status().message()));
      l.vtep_mac = *m;
    }
    int64_t cppnet = 0;
    if (auto st = GetInt(*bd, "CppnetDatapath", &cppnet, "lease: BackendData"); !st.ok()) return st;
    l.cppnet_datapath = cppnet > 0;
  }
  if (ip6 && !ip6->is_null()) {
    if (!ip6->is_string()) return absl::InvalidArgumentError("lease: PublicIPv6 must be a string");
    auto v = ParseIp6(ip6->get<std::string>());
    if (!v.ok())
      return absl::InvalidArgumentError(absl::StrCat("lease: PublicIPv6: ", v.status().message()));
    const unsigned top = static_cast<unsigned>(*v >> 120);
    if (*v <= 1 || top == 0xff || (*v >> 118) == (0xfe80 >> 6))
      return absl::InvalidArgumentError(
          absl::StrCat("lease: PublicIPv6 ", FormatIp6(*v), " is not a global unicast address"));
    l.public_ip6 = *v;
  }
  if (const nlohmann::json* bd6 = FindKey(j, "BackendV6Data"); bd6 && bd6->is_object()) {
    int64_t vni = 0, cppnet = 0;
    if (auto st = GetInt(*bd6, "VNI", &vni, "lease: BackendV6Data"); !st.ok()) return st;
    if (vni < 0 || vni > 0xffffff)
      return absl::InvalidArgumentError(
          absl::StrCat("lease: BackendV6Data: VNI out of range: ", vni));
    l.vni6 = static_cast<uint32_t>(vni);
    if (const nlohmann::json* mac = FindKey(*bd6, "VtepMAC"); mac && mac->is_string()) {
      auto m = ParseMac(mac->get<std::string>());
      if (!m.ok())
        return absl::InvalidArgumentError(
            absl::StrCat("lease: BackendV6Data: VtepMAC: ", m.status().message()));
      l.vtep_mac6 = *m;
    }
    if (auto st = GetInt(*bd6, "CppnetDatapath", &cppnet, "lease: BackendV6Data"); !st.ok())
      return st;
    l.cppnet_datapath6 = cppnet > 0;
  }
  return l;
}

std::string SerializeLease(const Lease& l) {
  nlohmann::ordered_json j;
  if (l.public_ip || !l.public_ip6) j["PublicIP"] = FormatIp4(l.public_ip);
  if (l.public_ip6)
    j["PublicIPv6"] = FormatIp6(l.public_ip6);
  else
    j["PublicIPv6"] = nullptr;
  j["BackendType"] = l.backend_type;
  if (l.backend_type == "vxlan") {
    j["BackendData"] = {{"VNI", l.vni}, {"VtepMAC", l.vtep_mac ? FormatMac(*l.vtep_mac) : ""}};
  } else if (l.cppnet_datapath) {
    j["BackendData"] = {{"CppnetDatapath", 1}};
  } else {
    j["BackendData"] = nullptr;
  }
  if (l.public_ip6 && l.backend_type == "vxlan")
    j["BackendV6Data"] = {{"VNI", l.vni6},
                          {"VtepMAC", l.vtep_mac6 ? FormatMac(*l.vtep_mac6) : ""},
                          {"CppnetDatapath", 1}};
  return j.dump();
}

static std::string ValidatePeer(const NetworkConfig& cfg, const Prefix4& subnet, const Lease& l) {
  const std::string type = l.backend_type.empty() ? "udp" : l.backend_type;
  if (!cfg.network.contains(subnet))
    return absl::StrCat("subnet ", FormatPrefix4(subnet), " is outside the Network ",
                        FormatPrefix4(cfg.network));
  if (type != BackendName(cfg.backend.type))
    return absl::StrCat("backend type \"", type, "\" differs from the configured \"",
                        BackendName(cfg.backend.type), "\"");
  if (!l.public_ip) return "lease without a PublicIP";
  if (type == "vxlan") {
    if (!l.vtep_mac) return "vxlan lease without a VtepMAC";
    if ((*l.vtep_mac)[0] & 1)
      return absl::StrCat("VtepMAC ", FormatMac(*l.vtep_mac), " is not unicast");
    if (l.vni != 0 && l.vni != cfg.backend.vni)
      return absl::StrCat("VNI ", l.vni, " differs from the configured ", cfg.backend.vni);
  }
  return "";
}

// Accepted subnets never overlap each other, so in address order only the nearest
// one at or below p's address and the first one above it can overlap p: O(log n).
static const Prefix4* FindOverlap(const std::map<Prefix4, PeerRoute>& accepted, const Prefix4& p) {
  auto it = accepted.upper_bound(Prefix4{p.addr, 32});
  if (it != accepted.begin() && std::prev(it)->first.overlaps(p)) return &std::prev(it)->first;
  if (it != accepted.end() && it->first.overlaps(p)) return &it->first;
  return nullptr;
}

// Why the lease's IPv6 subnet is not routed ("" when it is).
static std::string ValidatePeer6(const NetworkConfig& cfg, const Prefix6& subnet, const Lease& l) {
  if (!cfg.ipv6_network->contains(subnet))
    return absl::StrCat("IPv6 subnet ", FormatPrefix6(subnet), " is outside the IPv6Network ",
                        FormatPrefix6(*cfg.ipv6_network));
  if (!l.public_ip6)
    return absl::StrCat("IPv6 subnet ", FormatPrefix6(subnet), " without a PublicIPv6");
  if (cfg.backend.type == CPPNET_BACKEND_VXLAN) {
    if (!l.vtep_mac6) return "IPv6 part without a VtepMAC in BackendV6Data";
    if ((*l.vtep_mac6)[0] & 1)
      return absl::StrCat("BackendV6Data VtepMAC ", FormatMac(*l.vtep_mac6), " is not unicast");
    if (l.vni6 != 0 && l.vni6 != cfg.backend.vni)
      return absl::StrCat("BackendV6Data VNI ", l.vni6, " differs from the configured ",
                          cfg.backend.vni);
  }
  return "";
}

static const Prefix6* FindOverlap6(const std::map<Prefix6, std::string>& accepted,
                                   const Prefix6& p) {
  auto it = accepted.upper_bound(Prefix6{p.addr, 128});
  if (it != accepted.begin() && std::prev(it)->first.overlaps(p)) return &std::prev(it)->first;
  if (it != accepted.end() && it->first.overlaps(p)) return &it->first;
  return nullptr;
}

ParsedLeaseRecord ParseLeaseRecord(absl::string_view prefix, const LeaseRecord& r) {
  absl::string_view name = r.key;
  absl::ConsumePrefix(&name, prefix);
  ParsedLeaseRecord p{r.key, r.create_revision, ParseSubnetKey(name), std::nullopt,
                      ParseLease(r.value)};
  if (auto s6 = ParseSubnetKey6(name); s6.ok()) p.subnet6 = *s6;
  return p;
}

// The older lease wins an overlap, as the one the network already routes to.
static void OldestFirst(std::vector<const ParsedLeaseRecord*>* records) {
  std::sort(
      records->begin(), records->end(), [](const ParsedLeaseRecord* a, const ParsedLeaseRecord* b) {
        return a->create_revision != b->create_revision ? a->create_revision < b->create_revision
                                                        : a->key < b->key;
      });
}

// An IPv6-only network: IPv6-only keys, by the IPv4 rules applied to IPv6.
static LeaseSet SelectIpv6Only(const NetworkConfig& cfg, std::optional<Prefix6> own6,
                               std::vector<const ParsedLeaseRecord*> records) {
  LeaseSet out;
  std::map<Prefix6, std::string> accepted6;
  OldestFirst(&records);
  for (const ParsedLeaseRecord* r : records) {
    absl::string_view name = r->key;
    name.remove_prefix(std::min(name.size(), name.rfind('/') + 1));
    if (!r->subnet6 || !IsIpv6OnlyKey(name)) {
      out.skipped.push_back({r->key, r->subnet.ok() || IsIpv6OnlyKey(name)
                                         ? "not an IPv6-only subnet (the network is IPv6 only)"
                                         : std::string(r->subnet.status().message())});
      continue;
    }
    const Prefix6& s6 = *r->subnet6;
    if (own6 && s6 == *own6) continue;  // our own lease
    if (!r->lease.ok()) {
      out.skipped.push_back({r->key, std::string(r->lease.status().message())});
      continue;
    }
    const std::string type = r->lease->backend_type.empty() ? "udp" : r->lease->backend_type;
    std::string why =
        type != BackendName(cfg.backend.type)
            ? absl::StrCat("backend type \"", type, "\" differs from the configured \"",
                           BackendName(cfg.backend.type), "\"")
            : ValidatePeer6(cfg, s6, *r->lease);
    if (why.empty() && own6 && s6.overlaps(*own6))
      why = absl::StrCat("overlaps our subnet ", FormatPrefix6(*own6));
    if (why.empty())
      if (const Prefix6* clash = FindOverlap6(accepted6, s6))
        why = absl::StrCat("overlaps the older lease ", FormatPrefix6(*clash));
    if (!why.empty()) {
      out.skipped.push_back({r->key, why});
      continue;
    }
    accepted6[s6] = r->key;
    out.routes6only[s6] = PeerRoute{Prefix4{}, *r->lease, s6};
  }
  return out;
}

LeaseSet SelectPeerLeases(const NetworkConfig& cfg, std::optional<Prefix4> own,
                          std::vector<const ParsedLeaseRecord*> records,
                          std::optional<Prefix6> own6) {
  if (!cfg.enable_ipv4) return SelectIpv6Only(cfg, own6, std::move(records));
  LeaseSet out;
  std::map<Prefix6, std::string> accepted6;  // -> key
  OldestFirst(&records);
  for (const ParsedLeaseRecord* r : records) {
    if (!r->subnet.ok()) {
      out.skipped.push_back({r->key, std::string(r->subnet.status().message())});
      continue;
    }
    const Prefix4& subnet = *r->subnet;
    if (own && subnet == *own) continue;  // our own lease
    if (!r->lease.ok()) {
      out.skipped.push_back({r->key, std::string(r->lease.status().message())});
      continue;
    }
    if (std::string why = ValidatePeer(cfg, subnet, *r->lease); !why.empty()) {
      out.skipped.push_back({r->key, why});
      continue;
    }
    if (own && subnet.overlaps(*own)) {
      out.skipped.push_back({r->key, absl::StrCat("overlaps our subnet ", FormatPrefix4(*own))});
      continue;
    }
    if (const Prefix4* clash = FindOverlap(out.routes, subnet)) {
      out.skipped.push_back(
          {r->key, absl::StrCat("overlaps the older lease ", FormatPrefix4(*clash))});
      continue;
    }
    PeerRoute route{subnet, *r->lease, std::nullopt};
    if (r->subnet6 && cfg.enable_ipv6 && cfg.ipv6_network) {
      const Prefix6& s6 = *r->subnet6;
      std::string why = ValidatePeer6(cfg, s6, *r->lease);
      if (why.empty() && own6 && s6.overlaps(*own6))
        why = absl::StrCat("IPv6 subnet overlaps our ", FormatPrefix6(*own6));
      if (why.empty())
        if (const Prefix6* clash = FindOverlap6(accepted6, s6))
          why = absl::StrCat("IPv6 subnet overlaps the older lease ", FormatPrefix6(*clash));
      if (why.empty()) {
        route.subnet6 = s6;
        accepted6[s6] = r->key;
      } else {
        out.skipped.push_back({r->key, absl::StrCat(why, " (routed for IPv4 only)")});
      }
    }
    out.routes[subnet] = std::move(route);
  }
  return out;
}

LeaseSet SelectPeerLeases(const NetworkConfig& cfg, absl::string_view prefix,
                          std::optional<Prefix4> own, const std::vector<LeaseRecord>& records) {
  std::vector<ParsedLeaseRecord> parsed;
  for (const LeaseRecord& r : records)
    if (absl::StartsWith(r.key, prefix)) parsed.push_back(ParseLeaseRecord(prefix, r));
  std::vector<const ParsedLeaseRecord*> ptrs;
  for (const auto& p : parsed) ptrs.push_back(&p);
  return SelectPeerLeases(cfg, own, std::move(ptrs));
}

std::vector<Prefix4> FreeSubnets(const NetworkConfig& cfg, const std::vector<Prefix4>& taken,
                                 size_t limit) {
  // One sweep in address order: a candidate is used when any taken prefix that starts
  // at or before its last address ends at or after its first one.
  std::vector<Prefix4> sorted = taken;
  std::sort(sorted.begin(), sorted.end());
  std::vector<Prefix4> free;
  const uint64_t step = uint64_t{1} << (32 - cfg.subnet_len);
  size_t j = 0;
  int64_t max_end = -1;
  for (uint64_t a = cfg.subnet_min; a <= cfg.subnet_max && free.size() < limit; a += step) {
    const uint64_t last = a + step - 1;
    for (; j < sorted.size() && sorted[j].addr <= last; j++)
      max_end = std::max<int64_t>(
          max_end,
          int64_t{sorted[j].addr} + (sorted[j].len ? sorted[j].size() : uint64_t{1} << 32) - 1);
    if (max_end < static_cast<int64_t>(a))
      free.push_back(Prefix4{static_cast<uint32_t>(a), cfg.subnet_len});
  }
  return free;
}

std::vector<Prefix6> FreeSubnets6(const NetworkConfig& cfg, const std::vector<Prefix6>& taken,
                                  size_t limit, std::mt19937_64& rng) {
  std::vector<Prefix6> free;
  if (!cfg.ipv6_network) return free;
  const int shift = 128 - cfg.ipv6_subnet_len;
  const unsigned __int128 first = cfg.ipv6_subnet_min >> shift, last = cfg.ipv6_subnet_max >> shift;
  const unsigned __int128 count = last - first + 1;
  auto is_free = [&](const Prefix6& c) {
    return std::none_of(taken.begin(), taken.end(),
                        [&](const Prefix6& t) { return t.overlaps(c); });
  };
  // Random draws, then (a nearly full range) a walk from a random start.
  for (size_t i = 0; i < 4 * limit && free.size() < limit; i++) {
    const unsigned __int128 r = (static_cast<unsigned __int128>(rng()) << 64 | rng()) % count;
    Prefix6 c{(first + r) << shift, cfg.ipv6_subnet_len};
    if (is_free(c) && std::find(free.begin(), free.end(), c) == free.end()) free.push_back(c);
  }
  const unsigned __int128 start = rng() % count;
  for (unsigned __int128 i = 0; i < count && i < 65536 && free.size() < limit; i++) {
    Prefix6 c{(first + (start + i) % count) << shift, cfg.ipv6_subnet_len};
    if (is_free(c) && std::find(free.begin(), free.end(), c) == free.end()) free.push_back(c);
  }
  return free;
}

}  // namespace cppnet
