#include "cppnet/config.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cppnet/json_util.h"
#include "cppnet/abi.h"

namespace cppnet {

std::optional<uint8_t> BackendFromName(absl::string_view type) {
  if (type == "vxlan") return CPPNET_BACKEND_VXLAN;
  if (type == "udp") return CPPNET_BACKEND_UDP;
  if (type == "host-gw") return CPPNET_BACKEND_HOSTGW;
  return std::nullopt;
}

const char* BackendName(uint8_t b) {
  switch (b) {
    case CPPNET_BACKEND_VXLAN:
      return "vxlan";
    case CPPNET_BACKEND_UDP:
      return "udp";
    case CPPNET_BACKEND_HOSTGW:
      return "host-gw";
    default:
      return "none";
  }
}

uint16_t DefaultBackendPort(uint8_t b) {
  return b == CPPNET_BACKEND_VXLAN ? CPPNET_VXLAN_PORT_DEFAULT
         : b == CPPNET_BACKEND_UDP ? CPPNET_UDP_PORT_DEFAULT
                                   : 0;
}

int NetworkConfig::ContainerMtu(int underlay_mtu) const {
  // Dual stack: IPv6 packets travel in IPv6 (20 bytes more header): one MTU fits both.
  if (backend.type == CPPNET_BACKEND_VXLAN)
    return underlay_mtu - (enable_ipv6 ? CPPNET_VXLAN6_OVERHEAD : CPPNET_VXLAN_OVERHEAD);
  if (backend.type == CPPNET_BACKEND_UDP) return underlay_mtu - CPPNET_UDP_OVERHEAD;
  return underlay_mtu;
}

// IPv6Network, IPv6SubnetLen (default 64, or prefix + 2 for networks longer than /62),
// IPv6SubnetMin/Max (default: the second and the last subnet), with flanneld's checks.
static absl::Status ParseIpv6Part(const nlohmann::json& j, NetworkConfig* c) {
  const nlohmann::json* net = FindKey(j, "IPv6Network");
  if (!net || !net->is_string() || net->get<std::string>().empty())
    return absl::InvalidArgumentError(
        "config: EnableIPv6 is true but IPv6Network is missing (e.g. \"2001:db8::/48\")");
  auto np = ParsePrefix6(net->get<std::string>());
  if (!np.ok())
    return absl::InvalidArgumentError(absl::StrCat("config: IPv6Network: ", np.status().message()));
  c->ipv6_network = *np;
  int64_t sl = 0;
  if (auto st = GetInt(j, "IPv6SubnetLen", &sl, "config"); !st.ok()) return st;
  if (sl == 0) sl = np->len <= 62 ? 64 : np->len + 2;
  if (sl > 126)
    return absl::InvalidArgumentError(
        absl::StrCat("config: IPv6SubnetLen must be less than /127 (got ", sl, ")"));
  if (sl < np->len + 2)
    return absl::InvalidArgumentError(
        absl::StrCat("config: IPv6Network must be able to accommodate at least four "
                     "subnets (IPv6Network ",
                     FormatPrefix6(*np), ", IPv6SubnetLen ", sl, ")"));
  c->ipv6_subnet_len = static_cast<uint8_t>(sl);
  const unsigned __int128 step = static_cast<unsigned __int128>(1) << (128 - sl);
  c->ipv6_subnet_min = np->addr + step;
  c->ipv6_subnet_max = (np->addr | ~np->mask()) - (step - 1);
  for (auto [field, out] : {std::pair{"IPv6SubnetMin", &c->ipv6_subnet_min},
                            std::pair{"IPv6SubnetMax", &c->ipv6_subnet_max}}) {
    const nlohmann::json* v = FindKey(j, field);
    if (!v || v->is_null()) continue;
    if (!v->is_string())
      return absl::InvalidArgumentError(absl::StrCat("config: ", field, " must be a string"));
    auto ip = ParseIp6(v->get<std::string>());
    if (!ip.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", field, ": ", ip.status().message()));
    if (!np->contains(*ip))
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", field, " is not in the range of the IPv6Network (",
                       FormatIp6(*ip), " not in ", FormatPrefix6(*np), ")"));
    if (*ip & (step - 1))
      return absl::InvalidArgumentError(absl::StrCat("config: ", field,
                                                     " is not on a IPv6SubnetLen boundary (",
                                                     FormatIp6(*ip), ", /", sl, ")"));
    *out = *ip;
  }
  if (c->ipv6_subnet_min > c->ipv6_subnet_max)
    return absl::InvalidArgumentError(
        absl::StrCat("config: IPv6SubnetMin ", FormatIp6(c->ipv6_subnet_min),
                     " is greater than IPv6SubnetMax ", FormatIp6(c->ipv6_subnet_max)));
  return absl::OkStatus();
}

// Network, SubnetLen (default 24, or prefix + 2 for networks longer than /22), SubnetMin/Max.
static absl::Status ParseIpv4Part(const nlohmann::json& j, NetworkConfig* c) {
  const nlohmann::json* net = FindKey(j, "Network");
  if (!net || !net->is_string() || net->get<std::string>().empty())
    return absl::InvalidArgumentError(
        "config: Network is missing (e.g. \"Network\": \"10.5.0.0/16\")");
  auto np = ParsePrefix4(net->get<std::string>(), /*strict=*/false);
  if (!np.ok())
    return absl::InvalidArgumentError(absl::StrCat("config: Network: ", np.status().message()));
  c->network = *np;

  int64_t sl = 0;
  if (auto st = GetInt(j, "SubnetLen", &sl, "config"); !st.ok()) return st;
  if (sl == 0) sl = c->network.len <= 22 ? 24 : c->network.len + 2;
  if (sl > 30)
    return absl::InvalidArgumentError(
        absl::StrCat("config: SubnetLen must be less than /31 (got ", sl, ")"));
  if (sl < c->network.len + 2)
    return absl::InvalidArgumentError(
        absl::StrCat("config: network must be able to accommodate at least four subnets (Network ",
                     FormatPrefix4(c->network), ", SubnetLen ", sl, ")"));
  c->subnet_len = static_cast<uint8_t>(sl);
  const uint32_t step = uint32_t{1} << (32 - c->subnet_len);
  c->subnet_min = c->network.addr + step;
  c->subnet_max = c->network.addr + (c->network.size() - step);

  for (auto [field, out] :
       {std::pair{"SubnetMin", &c->subnet_min}, std::pair{"SubnetMax", &c->subnet_max}}) {
    const nlohmann::json* v = FindKey(j, field);
    if (!v || v->is_null()) continue;
    if (!v->is_string())
      return absl::InvalidArgumentError(absl::StrCat("config: ", field, " must be a string"));
    auto ip = ParseIp4(v->get<std::string>());
    if (!ip.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", field, ": ", ip.status().message()));
    if (!c->network.contains(*ip))
      return absl::InvalidArgumentError(
          absl::StrCat("config: ", field, " is not in the range of the Network (", FormatIp4(*ip),
                       " not in ", FormatPrefix4(c->network), ")"));
    if (*ip & (step - 1))
      return absl::InvalidArgumentError(absl::StrCat(
          "config: ", field, " is not on a SubnetLen boundary (", FormatIp4(*ip), ", /", sl, ")"));
    *out = *ip;
  }
  if (c->subnet_min > c->subnet_max)
    return absl::InvalidArgumentError(absl::StrCat("config: SubnetMin ", FormatIp4(c->subnet_min),
                                                   " is greater than SubnetMax ",
                                                   FormatIp4(c->subnet_max)));

  return absl::OkStatus();
}

absl::StatusOr<NetworkConfig> ParseNetworkConfig(absl::string_view text) {
  auto parsed = ParseJsonObject(text, "config");
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& j = *parsed;
  NetworkConfig c;

  // First: an IPv6-only config (no Network at all) is told so, not that Network is missing.
  for (auto [field, out] :
       {std::pair{"EnableIPv4", &c.enable_ipv4}, std::pair{"EnableIPv6", &c.enable_ipv6}}) {
    const nlohmann::json* v = FindKey(j, field);
    if (!v || v->is_null()) continue;
    if (!v->is_boolean())
      return absl::InvalidArgumentError(absl::StrCat("config: ", field, " must be true or false"));
    *out = v->get<bool>();
  }
  if (!c.enable_ipv4 && !c.enable_ipv6)
    return absl::InvalidArgumentError(
        "config: EnableIPv4 is false and EnableIPv6 is not true: nothing to route (an IPv6-only "
        "network needs \"EnableIPv6\": true and an IPv6Network)");
  if (c.enable_ipv4) {
    if (auto st = ParseIpv4Part(j, &c); !st.ok()) return st;
  }
  if (c.enable_ipv6) {
    if (auto st = ParseIpv6Part(j, &c); !st.ok()) return st;
  }

  const nlohmann::json* be = FindKey(j, "Backend");
  if (be && !be->is_null()) {
    if (!be->is_object()) return absl::InvalidArgumentError("config: Backend must be an object");
    const nlohmann::json* t = FindKey(*be, "Type");
    if (t && !t->is_string())
      return absl::InvalidArgumentError("config: Backend.Type must be a string");
    if (t) {
      auto type = BackendFromName(absl::AsciiStrToLower(t->get<std::string>()));
      if (!type)
        return absl::InvalidArgumentError(absl::StrCat("config: unknown backend type \"",
                                                       t->get<std::string>(),
                                                       "\" (supported: vxlan, udp, host-gw)"));
      c.backend.type = *type;
    }
    int64_t vni = CPPNET_VXLAN_VNI_DEFAULT, port = 0;
    if (auto st = GetInt(*be, "VNI", &vni, "config: Backend"); !st.ok()) return st;
    if (auto st = GetInt(*be, "Port", &port, "config: Backend"); !st.ok()) return st;
    if (vni < 0 || vni > 0xffffff)
      return absl::InvalidArgumentError(
          absl::StrCat("config: Backend.VNI must be between 0 and 16777215 (got ", vni, ")"));
    if (port < 0 || port > 65535)
      return absl::InvalidArgumentError(
          absl::StrCat("config: Backend.Port must be between 1 and 65535 (got ", port, ")"));
    c.backend.vni = static_cast<uint32_t>(vni == 0 ? CPPNET_VXLAN_VNI_DEFAULT : vni);
    c.backend.port = static_cast<uint16_t>(port);
    if (const nlohmann::json* dr = FindKey(*be, "DirectRouting"); dr && !dr->is_null()) {
      if (!dr->is_boolean())
        return absl::InvalidArgumentError("config: Backend.DirectRouting must be true or false");
      c.backend.direct_routing = dr->get<bool>();
    }
  }
  if (c.backend.port == 0) c.backend.port = DefaultBackendPort(c.backend.type);
  // flanneld's udp backend is IPv4 only (its TUN device and proxy know no IPv6).
  if (c.enable_ipv6 && c.backend.type == CPPNET_BACKEND_UDP)
    return absl::InvalidArgumentError(
        "config: EnableIPv6 with the udp backend: udp carries IPv4 only (use vxlan or host-gw)");
  return c;
}

}  // namespace cppnet
