#include "cppnet/vlan.h"

#include <algorithm>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cppnet/abi.h"
#include "cppnet/json_util.h"
#include "cppnet/subnet_env.h"

namespace cppnet {
namespace {

absl::Status Bad(absl::string_view msg) { return absl::InvalidArgumentError(msg); }

// A --gateway goes to the subnet of its family that contains it, one per subnet (Docker's
// rules and wording, for VlanSubnet4 and VlanSubnet6 alike).
template <typename Subnet, typename Addr, typename FormatAddr, typename FormatSubnet>
absl::Status AssignGateway(std::vector<Subnet>* subnets, Addr ip, const std::string& g,
                           FormatAddr format_addr, FormatSubnet format_subnet) {
  auto s = std::find_if(subnets->begin(), subnets->end(),
                        [&](const Subnet& x) { return x.subnet.contains(ip); });
  if (s == subnets->end())
    return Bad(subnets->size() == 1 ? absl::StrCat("invalid gateway ", g, ": parent subnet ",
                                                   format_subnet((*subnets)[0].subnet),
                                                   " doesn't contain this address")
                                    : absl::StrCat("no matching subnet for gateway ", g));
  if (s->gateway)
    return Bad(absl::StrCat("cannot configure multiple gateways (", g, ", ",
                            format_addr(s->gateway), ") for the same subnet (",
                            format_subnet(s->subnet), ")"));
  s->gateway = ip;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<VlanNetwork> BuildVlanNetwork(
    const NetworkCreateArgs& a, const std::vector<VlanNetwork>& existing,
    const std::function<bool(const std::string&)>& iface_exists) {
  VlanNetwork n;
  if (!PlainName(a.name, 64))
    return Bad(
        absl::StrCat("invalid network name \"", a.name, "\": use letters, digits, '_', '.', '-'"));
  n.name = a.name;
  for (const VlanNetwork& e : existing)
    if (e.name == a.name) return Bad(absl::StrCat("network with name ", a.name, " already exists"));
  if (a.driver != "macvlan" && a.driver != "ipvlan")
    return Bad(absl::StrCat("unknown driver \"", a.driver, "\": use macvlan or ipvlan"));
  n.driver = a.driver;
  n.mode = n.driver == "macvlan" ? "bridge" : "l2";
  n.flag = n.driver == "ipvlan" ? "bridge" : "";
  n.ipv4 = a.ipv4;
  n.ipv6 = a.ipv6;
  n.internal = a.internal;

  for (const std::string& o : a.options) {
    std::vector<std::string> kv = absl::StrSplit(o, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return Bad(absl::StrCat("invalid option \"", o, "\": use -o key=value"));
    const std::string& k = kv[0];
    const std::string& v = kv[1];
    if (k == "parent") {
      n.parent = v;
    } else if (k == "macvlan_mode" && n.driver == "macvlan") {
      if (v != "bridge" && v != "vepa" && v != "private" && v != "passthru")
        return Bad(absl::StrCat("requested macvlan mode '", v,
                                "' is not valid, 'bridge' mode is the macvlan driver default"));
      n.mode = v;
    } else if (k == "ipvlan_mode" && n.driver == "ipvlan") {
      if (v != "l2" && v != "l3" && v != "l3s")
        return Bad(absl::StrCat("requested ipvlan mode '", v,
                                "' is not valid, 'l2' mode is the ipvlan driver default"));
      n.mode = v;
    } else if (k == "ipvlan_flag" && n.driver == "ipvlan") {
      if (v != "bridge" && v != "private" && v != "vepa")
        return Bad(absl::StrCat("requested ipvlan flag '", v,
                                "' is not valid, 'bridge' is the ipvlan driver default"));
      n.flag = v;
    } else {
      return Bad(absl::StrCat("unknown option \"", k, "\" for the ", n.driver, " driver"));
    }
  }
  if (n.parentless()) {
    // As Docker: no parent makes an internal network, its endpoints on this host only.
    n.internal = true;
    n.local_id = a.local_id;
    if (!n.local_id) {
      std::set<uint16_t> used;
      for (const VlanNetwork& e : existing) used.insert(e.local_id);
      for (n.local_id = 1; used.count(n.local_id);) n.local_id++;
    }
  }
  // "eth1.10": trunk eth1, VLAN 10; no kernel sub-interface is created.
  n.trunk = n.parent;
  if (size_t dot = n.parent.rfind('.'); dot != std::string::npos) {
    n.trunk = n.parent.substr(0, dot);
    int vid = 0;
    if (!absl::SimpleAtoi(n.parent.substr(dot + 1), &vid))
      return Bad(absl::StrCat("unable to parse vlan id ", n.parent.substr(dot + 1), " from parent ",
                              n.parent));
    if (vid < 1 || vid > 4094)
      return Bad(absl::StrCat("vlan id must be between 1-4094, received: ", vid));
    n.vlan = static_cast<uint16_t>(vid);
  }
  if (!n.parentless() && !iface_exists(n.trunk))
    return Bad(absl::StrCat("-o parent interface was not found on the host: ", n.trunk));
  if (n.driver == "ipvlan" && !n.parentless())
    for (const VlanNetwork& e : existing)
      if (e.parent == n.parent)
        return Bad(
            absl::StrCat("network ", e.name, " is already using parent interface ", n.parent));

  // Subnets by family, then each --ip-range and --gateway goes to the subnet that contains
  // it, as Docker consolidates them (one of each per subnet).
  if (a.subnets.size() < a.ip_ranges.size() || a.subnets.size() < a.gateways.size())
    return Bad("every ip-range or gateway must have a corresponding subnet");
  for (const std::string& s : a.subnets) {
    if (s.find(':') != std::string::npos) {
      auto p = ParsePrefix6(s);
      if (!p.ok()) return Bad(absl::StrCat("invalid subnet ", s, ": ", p.status().message()));
      n.subnets6.push_back({*p, 0, std::nullopt});
    } else {
      auto p = ParsePrefix4(s, /*strict=*/true);
      if (!p.ok()) return Bad(absl::StrCat("invalid subnet ", s, ": ", p.status().message()));
      n.subnets4.push_back({*p, 0, std::nullopt});
    }
  }
  for (size_t i = 0; i < n.subnets4.size(); i++)
    for (size_t j = 0; j < i; j++)
      if (n.subnets4[j].subnet.overlaps(n.subnets4[i].subnet))
        return Bad("multiple overlapping subnet configuration is not allowed");
  for (size_t i = 0; i < n.subnets6.size(); i++)
    for (size_t j = 0; j < i; j++)
      if (n.subnets6[j].subnet.contains(n.subnets6[i].subnet.addr) ||
          n.subnets6[i].subnet.contains(n.subnets6[j].subnet.addr))
        return Bad("multiple overlapping subnet configuration is not allowed");
  if (!n.ipv4 && !n.ipv6) return Bad("IPv4 or IPv6 must be enabled");
  if (n.ipv4 && n.subnets4.empty())
    return Bad("an IPv4 --subnet is required (e.g. --subnet 10.10.10.0/24)");
  if (!n.ipv4 && !n.subnets4.empty())
    return Bad(absl::StrCat("IPv4 subnet ", FormatPrefix4(n.subnets4[0].subnet),
                            " on a network with --ipv4=false"));
  if (!n.subnets6.empty() && !n.ipv6)
    return Bad(absl::StrCat("IPv6 subnet ", FormatPrefix6(n.subnets6[0].subnet), " needs --ipv6"));
  if (n.ipv6 && n.subnets6.empty())
    return Bad("--ipv6 needs an IPv6 --subnet (e.g. --subnet 2001:db8:10::/64)");
  for (const std::string& r : a.ip_ranges) {
    if (r.find(':') != std::string::npos) {
      auto p = ParsePrefix6(r);
      if (!p.ok()) return Bad(absl::StrCat("invalid ip-range ", r, ": ", p.status().message()));
      auto s = std::find_if(n.subnets6.begin(), n.subnets6.end(), [&](const VlanSubnet6& x) {
        return x.subnet.len <= p->len && x.subnet.contains(p->addr);
      });
      if (s == n.subnets6.end()) return Bad(absl::StrCat("no matching subnet for range ", r));
      if (s->ip_range)
        return Bad(absl::StrCat("cannot configure multiple ranges (", r, ", ",
                                FormatPrefix6(*s->ip_range), ") on the same subnet (",
                                FormatPrefix6(s->subnet), ")"));
      s->ip_range = *p;
    } else {
      auto p = ParsePrefix4(r, /*strict=*/true);
      if (!p.ok()) return Bad(absl::StrCat("invalid ip-range ", r, ": ", p.status().message()));
      auto s = std::find_if(n.subnets4.begin(), n.subnets4.end(),
                            [&](const VlanSubnet4& x) { return x.subnet.contains(*p); });
      if (s == n.subnets4.end())
        return Bad(n.subnets4.size() == 1
                       ? absl::StrCat("invalid ip-range ", r, ": no --subnet contains this range")
                       : absl::StrCat("no matching subnet for range ", r));
      if (s->ip_range)
        return Bad(absl::StrCat("cannot configure multiple ranges (", r, ", ",
                                FormatPrefix4(*s->ip_range), ") on the same subnet (",
                                FormatPrefix4(s->subnet), ")"));
      s->ip_range = *p;
    }
  }
  for (const std::string& g : a.gateways) {
    if (auto ip = ParseIp4(g); ip.ok()) {
      if (auto st = AssignGateway(&n.subnets4, *ip, g, FormatIp4, FormatPrefix4); !st.ok())
        return st;
    } else if (auto ip6 = ParseIp6(g); ip6.ok()) {
      if (auto st = AssignGateway(&n.subnets6, *ip6, g, FormatIp6, FormatPrefix6); !st.ok())
        return st;
    } else {
      return Bad(absl::StrCat("invalid gateway ", g, ": not an IP address"));
    }
  }
  for (VlanSubnet4& s : n.subnets4) {
    if (s.subnet.len > 30)
      return Bad(
          absl::StrCat("invalid subnet ", FormatPrefix4(s.subnet), ": too small (at most /30)"));
    if (!s.gateway) s.gateway = s.subnet.addr + 1;  // Docker's default: the first address
    if (s.gateway == s.subnet.addr || s.gateway == (s.subnet.addr | ~s.subnet.mask()))
      return Bad(absl::StrCat("invalid gateway ", FormatIp4(s.gateway), ": parent subnet ",
                              FormatPrefix4(s.subnet), " doesn't contain this address"));
  }
  for (VlanSubnet6& s : n.subnets6) {
    if (!s.gateway) s.gateway = s.subnet.addr + 1;
    if (s.gateway == s.subnet.addr)
      return Bad(absl::StrCat("invalid gateway ", FormatIp6(s.gateway), ": parent subnet ",
                              FormatPrefix6(s.subnet), " doesn't contain this address"));
  }
  for (const std::string& x : a.aux_addresses) {
    std::vector<std::string> kv = absl::StrSplit(x, absl::MaxSplits('=', 1));
    auto ip =
        kv.size() == 2 && !kv[0].empty() ? ParseIp4(kv[1]) : absl::StatusOr<uint32_t>(Bad(""));
    if (!ip.ok()) return Bad(absl::StrCat("invalid auxiliary address \"", x, "\": use name=IP"));
    if (!std::any_of(n.subnets4.begin(), n.subnets4.end(),
                     [&](const VlanSubnet4& s) { return s.subnet.contains(*ip); }))
      return Bad(
          absl::StrCat("invalid auxiliary address ", x, ": no --subnet contains this address"));
    n.aux_addresses[kv[0]] = *ip;
  }
  // Two networks on one VLAN of one trunk would share a broadcast domain under
  // different definitions; overlapping address space is refused as Docker does.
  for (const VlanNetwork& e : existing) {
    if (!n.parentless() && e.trunk == n.trunk && e.vlan == n.vlan)
      return Bad(absl::StrCat("network ", e.name, " already uses VLAN ",
                              n.vlan ? absl::StrCat(n.vlan) : "untagged", " on ", n.trunk));
    for (const VlanSubnet4& a4 : e.subnets4)
      for (const VlanSubnet4& b4 : n.subnets4)
        if (a4.subnet.overlaps(b4.subnet))
          return Bad(absl::StrCat("subnet ", FormatPrefix4(b4.subnet), " overlaps network ", e.name,
                                  " (", FormatPrefix4(a4.subnet), ")"));
  }
  return n;
}

uint32_t VlanNetwork::TrunkKey(int trunk_ifindex) const {
  return parentless() ? CPPNET_VLAN_LOCAL_TRUNK | local_id : static_cast<uint32_t>(trunk_ifindex);
}

Mac VlanNetwork::LocalMac() const {
  uint32_t h = 2166136261u;  // FNV-1a of the name
  for (char ch : name) h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
  return Mac{0x06,
             0x42,
             static_cast<uint8_t>(h >> 24),
             static_cast<uint8_t>(h >> 16),
             static_cast<uint8_t>(h >> 8),
             static_cast<uint8_t>(h)};
}

std::string SerializeVlanNetwork(const VlanNetwork& n) {
  nlohmann::ordered_json j = {{"name", n.name},     {"driver", n.driver}, {"mode", n.mode},
                              {"parent", n.parent}, {"trunk", n.trunk},   {"vlan", n.vlan}};
  if (!n.flag.empty()) j["flag"] = n.flag;
  nlohmann::ordered_json subnets = nlohmann::ordered_json::array();
  for (const VlanSubnet4& s : n.subnets4) {
    nlohmann::ordered_json e = {{"subnet", FormatPrefix4(s.subnet)},
                                {"gateway", FormatIp4(s.gateway)}};
    if (s.ip_range) e["ip_range"] = FormatPrefix4(*s.ip_range);
    subnets.push_back(e);
  }
  for (const VlanSubnet6& s : n.subnets6) {
    nlohmann::ordered_json e = {{"subnet", FormatPrefix6(s.subnet)},
                                {"gateway", FormatIp6(s.gateway)}};
    if (s.ip_range) e["ip_range"] = FormatPrefix6(*s.ip_range);
    subnets.push_back(e);
  }
  j["subnets"] = subnets;
  nlohmann::ordered_json aux = nlohmann::ordered_json::object();
  for (const auto& [k, v] : n.aux_addresses) aux[k] = FormatIp4(v);
  j["aux_addresses"] = aux;
  if (n.local_id) j["local_id"] = n.local_id;
  if (!n.ipv4) j["ipv4"] = false;
  j["ipv6"] = n.ipv6;
  j["internal"] = n.internal;
  return j.dump(2) + "\n";
}

absl::StatusOr<VlanNetwork> ParseVlanNetwork(const std::string& text) {
  if (auto st = CheckJsonBounds(text, "network definition"); !st.ok())
    return Bad(std::string(st.message()));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Bad("not a JSON object");
  // Rebuild through the same validation (no host checks: the file was validated on create).
  NetworkCreateArgs a;
  try {
    a.name = j.at("name").get<std::string>();
    a.driver = j.at("driver").get<std::string>();
    a.options = {absl::StrCat("parent=", j.at("parent").get<std::string>()),
                 absl::StrCat(a.driver == "macvlan" ? "macvlan_mode=" : "ipvlan_mode=",
                              j.at("mode").get<std::string>())};
    if (j.contains("flag"))
      a.options.push_back(absl::StrCat("ipvlan_flag=", j["flag"].get<std::string>()));
    for (const auto& s : j.at("subnets")) {
      a.subnets.push_back(s.at("subnet").get<std::string>());
      a.gateways.push_back(s.at("gateway").get<std::string>());
      if (s.contains("ip_range")) a.ip_ranges.push_back(s["ip_range"].get<std::string>());
    }
    // Files of earlier versions: one IPv4 range for the whole network.
    if (j.contains("ip_range")) a.ip_ranges.push_back(j["ip_range"].get<std::string>());
    if (j.contains("ipv4")) a.ipv4 = j["ipv4"].get<bool>();
    if (j.contains("local_id")) a.local_id = j["local_id"].get<uint16_t>();
    for (const auto& [k, v] : j.at("aux_addresses").items())
      a.aux_addresses.push_back(absl::StrCat(k, "=", v.get<std::string>()));
    a.ipv6 = j.at("ipv6").get<bool>();
    a.internal = j.at("internal").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    return Bad(absl::StrCat("missing or mistyped field: ", e.what()));
  }
  // Gateways and ranges were listed per subnet: BuildVlanNetwork matches them up again.
  return BuildVlanNetwork(a, {}, [](const std::string&) { return true; });
}

absl::StatusOr<std::vector<VlanNetwork>> LoadVlanNetworks(const std::string& dir) {
  std::vector<VlanNetwork> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".json") continue;
    auto text = ReadFileHead(e.path().string(), kMaxJsonBytes + 1);
    if (!text.ok()) return text.status();
    auto n = ParseVlanNetwork(*text);
    if (!n.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(e.path().string(), ": ", n.status().message()));
    out.push_back(*n);
  }
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(out.begin(), out.end(),
            [](const VlanNetwork& a, const VlanNetwork& b) { return a.name < b.name; });
  return out;
}

}  // namespace cppnet
