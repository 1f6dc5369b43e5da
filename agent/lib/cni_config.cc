#include "cppnet/cni_config.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cppnet/json_util.h"

namespace cppnet {

using nlohmann::json;

// Types of the top-level fields this plugin reads: a mistyped one is refused by name
// before anything is created (the plugin catches what nested ones throw).
static std::string MistypedField(const json& conf) {
  static const std::pair<const char*, json::value_t> kFields[] = {
      {"cniVersion", json::value_t::string}, {"name", json::value_t::string},
      {"type", json::value_t::string},       {"network", json::value_t::string},
      {"subnetFile", json::value_t::string}, {"configDir", json::value_t::string},
      {"bridge", json::value_t::string},     {"ipam", json::value_t::object},
      {"prevResult", json::value_t::object}, {"delegate", json::value_t::object},
      {"dataDir", json::value_t::string},    {"runtimeConfig", json::value_t::object},
      {"args", json::value_t::object},
  };
  for (const auto& [name, type] : kFields) {
    auto it = conf.find(name);
    if (it == conf.end() || it->is_null() || it->type() == type) continue;
    return absl::StrCat("field \"", name, "\" must be ",
                        type == json::value_t::string ? "a string" : "an object", " (got ",
                        DescribeJson(*it), ")");
  }
  return "";
}

absl::StatusOr<json> ParseCniConfig(absl::string_view text) {
  if (auto st = CheckJsonBounds(text, "network configuration on stdin", kMaxCniConfigBytes);
      !st.ok())
    return absl::OutOfRangeError(st.message());
  json conf = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!conf.is_object())
    return absl::OutOfRangeError("network configuration on stdin is not a JSON object");
  if (std::string bad = MistypedField(conf); !bad.empty())
    return absl::InvalidArgumentError(absl::StrCat("network configuration: ", bad));
  return conf;
}

// What both families check of one range: it lies in a subnet of the network (`in`, the
// subnet with its gateway; nullptr when none holds it), and its addresses, from `start`
// to `end` unless the range says otherwise, leave out the network's gateway.
template <typename Addr, typename Subnet>
static absl::Status CheckRange(const json& r, const std::string& subnet, const VlanNetwork& n,
                               const Subnet* in, Addr start, Addr end,
                               absl::StatusOr<Addr> (*parse)(absl::string_view),
                               std::string (*format)(Addr)) {
  if (!in)
    return absl::InvalidArgumentError(
        absl::StrCat("ipam: range ", subnet, " is outside the subnets of network ", n.name));
  auto field = [&](const char* name) {
    return parse(r.contains(name) && r[name].is_string() ? r[name].get<std::string>() : "");
  };
  if (auto a = field("rangeStart"); a.ok()) start = *a;
  if (auto a = field("rangeEnd"); a.ok()) end = *a;
  auto gw = field("gateway");
  if (in->gateway && start <= in->gateway && in->gateway <= end && !(gw.ok() && *gw == in->gateway))
    return absl::InvalidArgumentError(absl::StrCat("ipam: range ", subnet, " covers the gateway ",
                                                   format(in->gateway), " of network ", n.name));
  return absl::OkStatus();
}

absl::Status CheckRuntimeRanges(const json& ipam, const VlanNetwork& n) {
  if (!ipam.contains("ranges")) return absl::OkStatus();
  if (!ipam["ranges"].is_array())
    return absl::InvalidArgumentError("ipam: \"ranges\" must be an array");
  for (const json& set : ipam["ranges"]) {
    if (!set.is_array())
      return absl::InvalidArgumentError("ipam: each entry of \"ranges\" must be an array");
    for (const json& r : set) {
      if (!r.is_object() || !r.contains("subnet") || !r["subnet"].is_string())
        return absl::InvalidArgumentError("ipam: every range needs a \"subnet\" string");
      const std::string subnet = r["subnet"].get<std::string>();
      absl::Status st;
      if (auto p4 = ParsePrefix4(subnet, false); p4.ok()) {
        const Prefix4 p{p4->addr & p4->mask(), p4->len};
        const VlanSubnet4* in = nullptr;
        for (const VlanSubnet4& s : n.subnets4)
          if (s.subnet.contains(p)) in = &s;
        st = CheckRange<uint32_t>(r, subnet, n, in, p.addr + 1,
                                  p.addr + (p.size() ? p.size() : 0) - 2, ParseIp4, FormatIp4);
      } else if (auto p6 = ParsePrefix6(subnet); p6.ok()) {
        const VlanSubnet6* in = nullptr;
        for (const VlanSubnet6& s : n.subnets6)
          if (p6->len >= s.subnet.len && s.subnet.contains(p6->addr)) in = &s;
        st = CheckRange<unsigned __int128>(r, subnet, n, in, p6->addr + 1, p6->addr | ~p6->mask(),
                                           ParseIp6, FormatIp6);
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("ipam: range subnet \"", subnet, "\" is not a CIDR"));
      }
      if (!st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

std::string HostEndName(absl::string_view prefix, const std::string& container,
                        const std::string& ifname) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : container + "/" + ifname) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ULL;
  return absl::StrCat(prefix, absl::Hex(h & 0xfffffffffffULL, absl::kZeroPad11));
}

}  // namespace cppnet
