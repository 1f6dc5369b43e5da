#include "cni_config.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "json_util.h"

namespace cppnet {

using nlohmann::json;

// Types of the top-level fields this plugin reads: a mistyped one is refused by name
// before anything is created (the plugin catches what nested ones throw).
static std::string MistypedField(const json& conf) {
  static const std::pair<const char*, json::value_t> kFields[] = {
      {"cniVersion", json::value_t::string}, {"name", json::value_t::string},     {"type", json::value_t::string},
      {"network", json::value_t::string},    {"subnetFile", json::value_t::string}, {"configDir", json::value_t::string},
      {"bridge", json::value_t::string},     {"ipam", json::value_t::object},     {"prevResult", json::value_t::object},
  };
  for (const auto& [name, type] : kFields) {
    auto it = conf.find(name);
    if (it == conf.end() || it->is_null() || it->type() == type) continue;
    return absl::StrCat("field \"", name, "\" must be ", type == json::value_t::string ? "a string" : "an object",
                        " (got ", DescribeJson(*it), ")");
  }
  return "";
}

absl::StatusOr<json> ParseCniConfig(absl::string_view text) {
  if (auto st = CheckJsonBounds(text, "network configuration on stdin", kMaxCniConfigBytes); !st.ok())
    return absl::OutOfRangeError(st.message());
  json conf = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!conf.is_object()) return absl::OutOfRangeError("network configuration on stdin is not a JSON object");
  if (std::string bad = MistypedField(conf); !bad.empty())
    return absl::InvalidArgumentError(absl::StrCat("network configuration: ", bad));
  return conf;
}

absl::Status CheckRuntimeRanges(const json& ipam, const VlanNetwork& n) {
  if (!ipam.contains("ranges")) return absl::OkStatus();
  if (!ipam["ranges"].is_array()) return absl::InvalidArgumentError("ipam: \"ranges\" must be an array");
  for (const json& set : ipam["ranges"]) {
    if (!set.is_array()) return absl::InvalidArgumentError("ipam: each entry of \"ranges\" must be an array");
    for (const json& r : set) {
      if (!r.is_object() || !r.contains("subnet") || !r["subnet"].is_string())
        return absl::InvalidArgumentError("ipam: every range needs a \"subnet\" string");
      const std::string subnet = r["subnet"].get<std::string>();
      auto field = [&](const char* name) { return r.contains(name) && r[name].is_string() ? r[name].get<std::string>() : ""; };
      if (auto p4 = ParsePrefix4(subnet, false); p4.ok()) {
        const VlanSubnet4* in = nullptr;
        for (const VlanSubnet4& s : n.subnets4)
          if (s.subnet.contains(Prefix4{p4->addr & p4->mask(), p4->len})) in = &s;
        if (!in)
          return absl::InvalidArgumentError(absl::StrCat("ipam: range ", subnet, " is outside the subnets of network ", n.name));
        const uint32_t base = p4->addr & p4->mask();
        uint32_t start = base + 1, end = base + (p4->size() ? p4->size() : 0) - 2;
        if (auto a = ParseIp4(field("rangeStart")); a.ok()) start = *a;
        if (auto a = ParseIp4(field("rangeEnd")); a.ok()) end = *a;
        auto gw = ParseIp4(field("gateway"));
        if (in->gateway && start <= in->gateway && in->gateway <= end && !(gw.ok() && *gw == in->gateway))
          return absl::InvalidArgumentError(absl::StrCat("ipam: range ", subnet, " covers the gateway ",
                                                         FormatIp4(in->gateway), " of network ", n.name));
      } else if (auto p6 = ParsePrefix6(subnet); p6.ok()) {
        const VlanSubnet6* in = nullptr;
        for (const VlanSubnet6& s : n.subnets6)
          if (p6->len >= s.subnet.len && s.subnet.contains(p6->addr)) in = &s;
        if (!in)
          return absl::InvalidArgumentError(absl::StrCat("ipam: range ", subnet, " is outside the subnets of network ", n.name));
        unsigned __int128 start = p6->addr + 1, end = p6->addr | ~p6->mask();
        if (auto a = ParseIp6(field("rangeStart")); a.ok()) start = *a;
        if (auto a = ParseIp6(field("rangeEnd")); a.ok()) end = *a;
        auto gw = ParseIp6(field("gateway"));
        if (in->gateway && start <= in->gateway && in->gateway <= end && !(gw.ok() && *gw == in->gateway))
          return absl::InvalidArgumentError(absl::StrCat("ipam: range ", subnet, " covers the gateway ",
                                                         FormatIp6(in->gateway), " of network ", n.name));
      } else {
        return absl::InvalidArgumentError(absl::StrCat("ipam: range subnet \"", subnet, "\" is not a CIDR"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace cppnet
