// The agent's local API handlers: static routes, VLAN network definitions and VLAN
// endpoints, changed only here, on the agent's loop (one writer for every map,
// attachment and file the agent owns).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "agent.h"
#include "cppnet/json_util.h"
#include "cppnet/local_api.h"
#include "cppnet/subnet_env.h"
#include "cppnet/vlan_maps.h"
#include "log.h"

namespace cppnet {

using nlohmann::json;

namespace {
constexpr auto kCallTimeout = std::chrono::seconds(20);

absl::StatusOr<std::string> Str(const json& p, const char* key) {
  if (!p.is_object() || !p.contains(key) || !p[key].is_string())
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" (a string) is required"));
  return p[key].get<std::string>();
}

absl::StatusOr<uint32_t> Ifindex(const json& p) {
  int64_t v = 0;
  if (auto st = GetInt(p, "host_ifindex", &v, "request"); !st.ok()) return st;
  if (v <= 0 || v > INT32_MAX) return absl::InvalidArgumentError("\"host_ifindex\" is required");
  return static_cast<uint32_t>(v);
}
}  // namespace

absl::StatusOr<json> Agent::Dispatch(const std::string& method, const json& params) {
  auto done = std::make_shared<std::promise<absl::StatusOr<json>>>();
  auto answer = done->get_future();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stop_) return absl::UnavailableError("cppnet-agent is stopping");
    calls_.push_back(Call{method, params, done});
  }
  cv_.notify_all();
  if (answer.wait_for(kCallTimeout) != std::future_status::ready)
    return absl::DeadlineExceededError("cppnet-agent did not answer within 20 s");
  return answer.get();
}

absl::StatusOr<json> Agent::Handle(const std::string& method, const json& p) {
  try {
    if (method == "route.add") return ApiRouteAdd(p);
    if (method == "route.del") return ApiRouteDel(p);
    if (method == "network.create") return ApiNetworkCreate(p);
    if (method == "network.delete") return ApiNetworkDelete(p);
    if (method == "network.get") return ApiNetworkGet(p);
    if (method == "endpoint.add") return ApiEndpointAdd(p);
    if (method == "endpoint.del") return ApiEndpointDel(p);
    if (method == "endpoint.get") return ApiEndpointGet(p);
  } catch (const json::exception& e) {  // a field of the wrong type
    return absl::InvalidArgumentError(absl::StrCat(method, ": malformed request: ", e.what()));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown method \"", method, "\""));
}

// ---- Static routes: in the route map (marked static) and in routes.json, restored at start.

absl::Status Agent::SaveStaticRoutes() {
  json all = json::array();
  for (const RouteEntry& e : reconciler_.Statics()) all.push_back(RouteToJson(e.subnet, e.route));
  std::error_code ec;
  std::filesystem::create_directories(opts_.config_dir, ec);
  return WriteFileAtomically(StaticRoutesFile(opts_.config_dir), all.dump(1) + "\n");
}

void Agent::RestoreStaticRoutes() {
  const std::string file = StaticRoutesFile(opts_.config_dir);
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return;
  FILE* f = fopen(file.c_str(), "r");
  if (!f) {
    LOG_ERROR("Static routes: ", file, ": ", strerror(errno));
    return;
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && text.size() <= kMaxApiMessageBytes)
    text.append(buf, n);
  fclose(f);
  if (auto st = CheckJsonBounds(text, file, kMaxApiMessageBytes); !st.ok()) {
    LOG_ERROR("Static routes: ", st.message());
    return;
  }
  json all = json::parse(text, nullptr, false);
  if (!all.is_array()) {
    LOG_ERROR("Static routes: ", file, ": not a JSON array; none restored");
    return;
  }
  int restored = 0;
  for (const json& j : all) {
    auto e = RouteFromJson(j);
    if (!e.ok()) {
      LOG_ERROR("Static routes: ", file, ": ", e.status().message());
      continue;
    }
    if (auto st = reconciler_.SetStatic(e->subnet, e->route); !st.ok())
      LOG_ERROR("Static route ", FormatPrefix4(e->subnet), ": ", st.message());
    else
      restored++;
  }
  if (restored) LOG_INFO("Static routes: ", restored, " restored from ", file);
}

absl::StatusOr<json> Agent::ApiRouteAdd(const json& p) {
  auto e = RouteFromJson(p);
  if (!e.ok()) return e.status();
  if (auto st = reconciler_.SetStatic(e->subnet, e->route); !st.ok()) return st;
  LOG_INFO("Static route added: ", FormatPrefix4(e->subnet), " via ",
           FormatIp4(ntohl(e->route.public_ip)), " (", BackendName(e->route.backend), ")");
  if (auto st = SaveStaticRoutes(); !st.ok())
    LOG_ERROR("Static routes: ", st.message(), " (the route is in place until a reboot)");
  return json::object();
}

absl::StatusOr<json> Agent::ApiRouteDel(const json& p) {
  auto cidr = Str(p, "subnet");
  if (!cidr.ok()) return cidr.status();
  auto subnet = ParsePrefix4(*cidr);
  if (!subnet.ok()) return subnet.status();
  if (auto st = reconciler_.RemoveStatic(*subnet); !st.ok()) return st;
  LOG_INFO("Static route removed: ", FormatPrefix4(*subnet));
  if (auto st = SaveStaticRoutes(); !st.ok()) LOG_ERROR("Static routes: ", st.message());
  Reconcile();  // a lease for the subnet gets its route back
  return json::object();
}

// ---- VLAN network definitions (networks.d/NAME.json).

const VlanNetwork* Agent::FindNetwork(const std::string& name) const {
  for (const VlanNetwork& n : vlan_networks_)
    if (n.name == name) return &n;
  return nullptr;
}

absl::StatusOr<json> Agent::ApiNetworkCreate(const json& p) {
  auto args = NetworkArgsFromJson(p);
  if (!args.ok()) return args.status();
  auto n = BuildVlanNetwork(*args, vlan_networks_, [&](const std::string& ifname) {
    return host_->Find(ifname).has_value();
  });
  if (!n.ok()) return n.status();
  const std::string dir = NetworksDir(opts_.config_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  if (auto st =
          WriteFileAtomically(absl::StrCat(dir, "/", n->name, ".json"), SerializeVlanNetwork(*n));
      !st.ok())
    return st;
  LoadNetworks();
  SyncVlanDatapath();
  return json{{"name", n->name}};
}

absl::StatusOr<json> Agent::ApiNetworkDelete(const json& p) {
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  const VlanNetwork* n = FindNetwork(*name);
  if (!n) return absl::NotFoundError(absl::StrCat("network ", *name, " not found"));
  // As Docker: a network with attached containers stays (detach them with CNI DEL).
  auto ports = ListVlanPorts(dp_->vlan_maps().port());
  if (!ports.ok()) return ports.status();
  const auto trunk = host_->Find(n->trunk);
  for (const VlanPortEntry& e : *ports)
    if (e.port.vlan == n->vlan && trunk && static_cast<int>(e.port.trunk_ifindex) == trunk->ifindex)
      return absl::FailedPreconditionError(
          absl::StrCat("error while removing network: network ", *name, " has active endpoints"));
  const std::string path = absl::StrCat(NetworksDir(opts_.config_dir), "/", *name, ".json");
  if (unlink(path.c_str()) != 0)
    return absl::InternalError(absl::StrCat(path, ": ", strerror(errno)));
  LoadNetworks();
  return json{{"name", *name}};
}

// What the CNI plugin needs before it allocates anything: the definition, the trunk,
// and whether the network has room for another endpoint.
absl::StatusOr<json> Agent::ApiNetworkGet(const json& p) {
  auto name = Str(p, "name");
  if (!name.ok()) return name.status();
  const VlanNetwork* n = FindNetwork(*name);
  if (!n)
    return absl::NotFoundError(absl::StrCat(
        "network ", *name, " not found: \"overlay\", or define it with cppnetctl network create"));
  json out = {{"network", json::parse(SerializeVlanNetwork(*n))}};
  const auto trunk = host_->Find(n->trunk);
  if (!trunk) {
    out["trunk_error"] = absl::StrCat("network ", n->name, ": parent ", n->parent, ": interface ",
                                      n->trunk, ": no such device");
    return out;
  }
  out["trunk"] = {{"ifindex", trunk->ifindex}, {"mac", FormatMac(trunk->mac)}, {"mtu", trunk->mtu}};
  if (auto st = VlanNetworkHasRoom(dp_->vlan_maps(), n->name, static_cast<uint32_t>(trunk->ifindex),
                                   n->vlan, VlanModeId(n->driver, n->mode));
      !st.ok())
    out["room_error"] = std::string(st.message());
  return out;
}

// ---- VLAN endpoints: the CNI plugin made the veth and configured the container; the
// agent registers the endpoint in the maps and attaches its program.

absl::StatusOr<json> Agent::ApiEndpointAdd(const json& p) {
  auto name = Str(p, "network");
  if (!name.ok()) return name.status();
  auto host_ifindex = Ifindex(p);
  if (!host_ifindex.ok()) return host_ifindex.status();
  const VlanNetwork* n = FindNetwork(*name);
  if (!n) return absl::NotFoundError(absl::StrCat("network ", *name, " not found"));
  const auto trunk = host_->Find(n->trunk);
  if (!trunk)
    return absl::NotFoundError(absl::StrCat("network ", n->name, ": parent ", n->parent,
                                            ": interface ", n->trunk, ": no such device"));
  char host[IF_NAMESIZE] = {};
  if (!if_indextoname(*host_ifindex, host))
    return absl::NotFoundError(
        absl::StrCat("endpoint veth ifindex ", *host_ifindex, ": ", strerror(errno)));
  auto mac = ParseMac(Str(p, "mac").value_or(""));
  if (!mac.ok()) return absl::InvalidArgumentError(absl::StrCat("mac: ", mac.status().message()));
  VlanEndpointSpec spec{.network = n->name,
                        .trunk_ifindex = static_cast<uint32_t>(trunk->ifindex),
                        .trunk_mac = trunk->mac,
                        .vlan = n->vlan,
                        .mode = VlanModeId(n->driver, n->mode),
                        .host_ifindex = *host_ifindex,
                        .mac = *mac};
  for (const json& a : p.value("ipv4", json::array())) {
    auto ip = ParseIp4(a.get<std::string>());
    if (!ip.ok()) return ip.status();
    spec.ipv4.push_back(*ip);
  }
  for (const json& a : p.value("ipv6", json::array())) {
    auto ip = ParseIp6(a.get<std::string>());
    if (!ip.ok()) return ip.status();
    spec.ipv6.push_back(*ip);
  }
  if (!n->subnets4.empty()) {
    spec.subnet4 = n->subnets4[0].subnet;
    if (!n->internal) spec.gw4 = n->subnets4[0].gateway;
  }
  if (!n->subnets6.empty()) {
    spec.subnet6 = n->subnets6[0].subnet;
    if (!n->internal) spec.gw6 = n->subnets6[0].gateway;
  }
  // Refusals (a full network, a second passthru endpoint, an address taken) are the
  // caller's configuration problem: FailedPrecondition.
  if (auto st = RegisterVlanEndpoint(dp_->vlan_maps(), spec); !st.ok())
    return absl::FailedPreconditionError(st.message());
  if (auto st = dp_->AttachVlanPort(static_cast<int>(*host_ifindex), host); !st.ok()) {
    (void)UnregisterVlanEndpoint(dp_->vlan_maps(), *host_ifindex);
    return st;
  }
  return json::object();
}

absl::StatusOr<json> Agent::ApiEndpointDel(const json& p) {
  auto host_ifindex = Ifindex(p);
  if (!host_ifindex.ok()) return host_ifindex.status();
  if (auto st = UnregisterVlanEndpoint(dp_->vlan_maps(), *host_ifindex); !st.ok()) return st;
  return json::object();
}

absl::StatusOr<json> Agent::ApiEndpointGet(const json& p) {
  auto host_ifindex = Ifindex(p);
  if (!host_ifindex.ok()) return host_ifindex.status();
  cppnet_vlan_port port{};
  const bool registered = bpf_map_lookup_elem(dp_->vlan_maps().port(), &*host_ifindex, &port) == 0;
  return json{{"registered", registered}};
}

}  // namespace cppnet
