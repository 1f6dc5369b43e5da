// The agent's local API handlers: static routes, VLAN network definitions and VLAN
// endpoints, changed only here, on the agent's loop (one writer for every map,
// attachment and file the agent owns).
#include <arpa/inet.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "agent.h"

#include "cppnet/version.h"
#include "cppnet/json_util.h"
#include "cppnet/local_api.h"
#include "cppnet/subnet_env.h"
#include "log.h"

namespace cppnet {

using nlohmann::json;

namespace {
constexpr auto kCallTimeout = std::chrono::seconds(20);

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
    if (method == "version")
      return json{
          {"version", CPPNET_VERSION}, {"commit", CPPNET_COMMIT}, {"abi", CPPNET_ABI_VERSION}};
    if (method == "route.add") return ApiRouteAdd(p);
    if (method == "route.del") return ApiRouteDel(p);
    if (method == "network.create" || method == "network.delete") {
      auto r = method == "network.create" ? vlan_->Create(p) : vlan_->Delete(p);
      if (r.ok()) {
        LoadNetworks();
        vlan_->Sync();
      }
      return r;
    }
    if (method == "network.get") return vlan_->Get(p);
    if (method == "endpoint.add") return vlan_->EndpointAdd(p);
    if (method == "endpoint.del") return vlan_->EndpointDel(p);
    if (method == "endpoint.get") return vlan_->EndpointGet(p);
    if (method == "overlay.get") return ApiOverlayGet();
    if (method == "overlay.attach") return ApiOverlayAttach(p);
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
  auto text = ReadFileHead(file, kMaxApiMessageBytes + 1);
  if (!text.ok()) {
    LOG_ERROR("Static routes: ", text.status().message());
    return;
  }
  if (auto st = CheckJsonBounds(*text, file, kMaxApiMessageBytes); !st.ok()) {
    LOG_ERROR("Static routes: ", st.message());
    return;
  }
  json all = json::parse(*text, nullptr, false);
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
  auto cidr = RequiredString(p, "subnet");
  if (!cidr.ok()) return cidr.status();
  auto subnet = ParsePrefix4(*cidr);
  if (!subnet.ok()) return subnet.status();
  if (auto st = reconciler_.RemoveStatic(*subnet); !st.ok()) return st;
  LOG_INFO("Static route removed: ", FormatPrefix4(*subnet));
  if (auto st = SaveStaticRoutes(); !st.ok()) LOG_ERROR("Static routes: ", st.message());
  Reconcile();  // a lease for the subnet gets its route back
  return json::object();
}

// ---- Overlay containers made by the CNI plugin.

absl::StatusOr<json> Agent::ApiOverlayGet() {
  // One kind per host: a veth container on the bridge and a netkit container of the same host
  // would not reach each other (the veth one asks ARP on the bridge, where the netkit one is
  // not). While containers sit on the bridge (made before netkit was used here), new ones join
  // them there.
  json j = {{"endpoint_device", endpoint_device_}, {"ready", datapath_active_}};
  const size_t on_bridge = containers_->ifindex() ? containers_->veth_ports() : 0;
  if (endpoint_device_ == "netkit" && on_bridge) {
    j["endpoint_device"] = "veth";
    j["why"] = absl::StrCat(on_bridge, " containers are on the bridge");
  }
  return j;
}

absl::StatusOr<json> Agent::ApiOverlayAttach(const json& p) {
  if (!datapath_active_)
    return absl::UnavailableError("cppnet-agent has not leased its subnet yet");
  int64_t ifindex = 0;
  if (auto st = GetInt(p, "host_ifindex", &ifindex, "request"); !st.ok()) return st;
  if (ifindex <= 0 || ifindex > INT32_MAX)
    return absl::InvalidArgumentError("\"host_ifindex\" is required");
  if (auto st = containers_->AttachNetkit(static_cast<int>(ifindex)); !st.ok()) return st;
  return json::object();
}

}  // namespace cppnet
