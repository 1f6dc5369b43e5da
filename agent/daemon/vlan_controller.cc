#include "vlan_controller.h"

#include <bpf/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cppnet/json_util.h"
#include "cppnet/local_api.h"
#include "cppnet/paths.h"
#include "cppnet/subnet_env.h"
#include "cppnet/vlan_maps.h"
#include "log.h"

namespace cppnet {

using nlohmann::json;

namespace {

absl::StatusOr<uint32_t> Ifindex(const json& p) {
  int64_t v = 0;
  if (auto st = GetInt(p, "host_ifindex", &v, "request"); !st.ok()) return st;
  if (v <= 0 || v > INT32_MAX) return absl::InvalidArgumentError("\"host_ifindex\" is required");
  return static_cast<uint32_t>(v);
}
}  // namespace

VlanController::VlanController(Datapath* dp, const HostWatcher* host, std::string config_dir,
                               std::string underlay, std::string endpoint_device)
    : dp_(dp),
      host_(host),
      config_dir_(std::move(config_dir)),
      underlay_(std::move(underlay)),
      endpoint_device_(std::move(endpoint_device)) {}

absl::Status VlanController::AttachPort(int ifindex, const std::string& name, bool old_clsact) {
  // The host end's kind from the kernel (our cache may not have a link the plugin just made).
  std::optional<Interface> link = host_->FindByIndex(ifindex);
  if (!link)
    if (auto l = FindInterface(name); l.ok() && l->ifindex == ifindex) link = *l;
  return dp_->AttachVlanPort(ifindex, name, old_clsact, link && link->kind == "netkit");
}

// VLAN networks defined with `cppnetctl network create` (networks.d/*.json, written by
// this controller for the local API), read at start and after each change.
void VlanController::Load() {
  const std::string dir = NetworksDir(config_dir_);
  auto nets = LoadVlanNetworks(dir);
  if (!nets.ok()) {
    LOG_ERROR("VLAN networks: ", nets.status().message());
    return;
  }
  for (const VlanNetwork& n : *nets)
    LOG_INFO(
        "VLAN network ", n.name, ": ", n.driver, " ", n.mode,
        n.flag.empty() || n.flag == "bridge" ? "" : absl::StrCat(" (", n.flag, ")"),
        n.parentless()
            ? " without parent (internal: this host's endpoints only)"
            : absl::StrCat(" on ", n.trunk, ", VLAN ", n.vlan ? absl::StrCat(n.vlan) : "untagged"),
        ", ", n.subnets4.size() + n.subnets6.size(), " subnet(s)",
        n.mode == "l3s" ? "; l3s is forwarded as l3: the host's netfilter does not see it" : "");
  if (nets->empty() && !networks_.empty()) LOG_INFO("VLAN networks: none defined in ", dir);
  networks_ = std::move(*nets);
}

bool VlanController::UntaggedOnUnderlay() const {
  return std::any_of(networks_.begin(), networks_.end(),
                     [&](const VlanNetwork& n) { return n.vlan == 0 && n.trunk == underlay_; });
}

// The trunk side of the VLAN networks: the demultiplexer on every trunk a network
// names (the underlay's own program has it built in), attached again when a trunk
// reappears. Endpoints attached by an earlier agent get this agent's program (an
// upgrade takes effect at once); endpoints whose veth is gone (container deleted
// without CNI DEL) are removed from the maps.
void VlanController::Sync() {
  for (const VlanNetwork& n : networks_) {
    if (n.parentless()) continue;  // no trunk to attach to
    const auto trunk = host_->Find(n.trunk);
    const int ifindex = trunk ? trunk->ifindex : 0;
    if (!ifindex) {  // said once per disappearance, not every second
      if (missing_.insert(n.trunk).second)
        LOG_ERROR("VLAN network ", n.name, ": trunk ", n.trunk,
                  ": no such device (its endpoints are cut off until it "
                  "appears)");
      continue;
    }
    if (missing_.erase(n.trunk)) LOG_INFO("VLAN trunk ", n.trunk, " is back");
    auto it = trunks_.find(n.trunk);
    if (it != trunks_.end() && it->second == ifindex) continue;
    const bool underlay = n.trunk == underlay_;
    absl::Status st =
        underlay ? dp_->AttachUnderlay(ifindex, n.trunk) : dp_->AttachTrunk(ifindex, n.trunk);
    if (!st.ok()) {
      LOG_ERROR("VLAN trunk: ", st.message());
      continue;
    }
    if (it != trunks_.end()) {  // the trunk was recreated: its endpoints follow it
      auto moved = MoveVlanTrunk(dp_->vlan_maps(), static_cast<uint32_t>(it->second),
                                 static_cast<uint32_t>(ifindex));
      if (moved.ok())
        LOG_INFO("VLAN trunk ", n.trunk, " was recreated (ifindex ", it->second, " -> ", ifindex,
                 "): ", *moved, " endpoint(s) moved to it");
      else
        LOG_ERROR("VLAN trunk ", n.trunk, ": ", moved.status().message());
    }
    trunks_[n.trunk] = ifindex;
    LOG_INFO("VLAN trunk ", n.trunk, ": tc ingress",
             underlay ? " (shared with the overlay underlay)" : "");
  }
  VlanMaps maps = dp_->vlan_maps();
  auto ports = ListVlanPorts(maps.port());
  if (!ports.ok()) return;
  for (const VlanPortEntry& p : *ports) {
    char name[IF_NAMESIZE] = {};
    // Gone for the kernel, not just for our cache (which may lag a CNI ADD in flight).
    if (!host_->FindByIndex(static_cast<int>(p.ifindex)) && !if_indextoname(p.ifindex, name)) {
      if (auto st = UnregisterVlanEndpoint(maps, p.ifindex); st.ok())
        LOG_INFO("VLAN endpoint on ifindex ", p.ifindex, " is gone; removed from the maps");
      dp_->DetachPort(static_cast<int>(p.ifindex));
      continue;
    }
    if (!ports_attached_ && if_indextoname(p.ifindex, name)) {
      const int i = static_cast<int>(p.ifindex);
      if (auto st = AttachPort(i, name, host_->IngressQdisc(i) == "clsact"); !st.ok())
        LOG_WARN("VLAN endpoint: ", st.message());
    }
  }
  ports_attached_ = true;
  for (auto it = departed_.begin(); it != departed_.end();) {
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(*it, name)) {
      ++it;
      continue;
    }
    dp_->DetachPort(*it);
    it = departed_.erase(it);
  }
}

// Where a network's endpoints hang: its trunk, or for a network without parent a key and
// MAC of its own (MTU 1500, as Docker's dummy link).
absl::StatusOr<VlanController::Trunk> VlanController::TrunkOf(const VlanNetwork& n) const {
  if (n.parentless()) return Trunk{n.TrunkKey(0), n.LocalMac(), 1500};
  const auto trunk = host_->Find(n.trunk);
  if (!trunk)
    return absl::NotFoundError(absl::StrCat("network ", n.name, ": parent ", n.parent,
                                            ": interface ", n.trunk, ": no such device"));
  return Trunk{n.TrunkKey(trunk->ifindex), trunk->mac, trunk->mtu};
}

const VlanNetwork* VlanController::Find(const std::string& name) const {
  for (const VlanNetwork& n : networks_)
    if (n.name == name) return &n;
  return nullptr;
}

absl::StatusOr<json> VlanController::Create(const json& p) {
  auto args = NetworkArgsFromJson(p);
  if (!args.ok()) return args.status();
  auto n = BuildVlanNetwork(
      *args, networks_, [&](const std::string& ifname) { return host_->Find(ifname).has_value(); });
  if (!n.ok()) return n.status();
  const std::string dir = NetworksDir(config_dir_);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  if (auto st =
          WriteFileAtomically(absl::StrCat(dir, "/", n->name, ".json"), SerializeVlanNetwork(*n));
      !st.ok())
    return st;
  return json{{"name", n->name}};
}

absl::StatusOr<json> VlanController::Delete(const json& p) {
  auto name = RequiredString(p, "name");
  if (!name.ok()) return name.status();
  const VlanNetwork* n = Find(*name);
  if (!n) return absl::NotFoundError(absl::StrCat("network ", *name, " not found"));
  // As Docker: a network with attached containers stays (detach them with CNI DEL).
  auto ports = ListVlanPorts(dp_->vlan_maps().port());
  if (!ports.ok()) return ports.status();
  const auto trunk = host_->Find(n->trunk);
  const uint32_t key = n->TrunkKey(trunk ? trunk->ifindex : 0);
  for (const VlanPortEntry& e : *ports)
    if (e.port.vlan == n->vlan && key && e.port.trunk_ifindex == key)
      return absl::FailedPreconditionError(
          absl::StrCat("error while removing network: network ", *name, " has active endpoints"));
  const std::string path = absl::StrCat(NetworksDir(config_dir_), "/", *name, ".json");
  if (unlink(path.c_str()) != 0)
    return absl::InternalError(absl::StrCat(path, ": ", strerror(errno)));
  return json{{"name", *name}};
}

// What the CNI plugin needs before it allocates anything: the definition, the trunk,
// and whether the network has room for another endpoint.
absl::StatusOr<json> VlanController::Get(const json& p) {
  auto name = RequiredString(p, "name");
  if (!name.ok()) return name.status();
  const VlanNetwork* n = Find(*name);
  if (!n)
    return absl::NotFoundError(absl::StrCat(
        "network ", *name, " not found: \"overlay\", or define it with cppnetctl network create"));
  json out = {{"network", json::parse(SerializeVlanNetwork(*n))}};
  auto trunk = TrunkOf(*n);
  if (!trunk.ok()) {
    out["trunk_error"] = std::string(trunk.status().message());
    return out;
  }
  out["trunk"] = {{"ifindex", trunk->key}, {"mac", FormatMac(trunk->mac)}, {"mtu", trunk->mtu}};
  out["endpoint_device"] = endpoint_device_;
  if (auto st = VlanNetworkHasRoom(dp_->vlan_maps(), n->name, trunk->key, n->vlan,
                                   VlanModeId(n->driver, n->mode));
      !st.ok())
    out["room_error"] = std::string(st.message());
  return out;
}

// ---- VLAN endpoints: the CNI plugin made the veth and configured the container; the
// agent registers the endpoint in the maps and attaches its program.

absl::StatusOr<json> VlanController::EndpointAdd(const json& p) {
  auto name = RequiredString(p, "network");
  if (!name.ok()) return name.status();
  auto host_ifindex = Ifindex(p);
  if (!host_ifindex.ok()) return host_ifindex.status();
  const VlanNetwork* n = Find(*name);
  if (!n) return absl::NotFoundError(absl::StrCat("network ", *name, " not found"));
  auto trunk = TrunkOf(*n);
  if (!trunk.ok()) return trunk.status();
  char host[IF_NAMESIZE] = {};
  if (!if_indextoname(*host_ifindex, host))
    return absl::NotFoundError(
        absl::StrCat("endpoint veth ifindex ", *host_ifindex, ": ", strerror(errno)));
  auto mac = ParseMac(RequiredString(p, "mac").value_or(""));
  if (!mac.ok()) return absl::InvalidArgumentError(absl::StrCat("mac: ", mac.status().message()));
  VlanEndpointSpec spec{.network = n->name,
                        .trunk_ifindex = trunk->key,
                        .trunk_mac = trunk->mac,
                        .vlan = n->vlan,
                        .mode = VlanModeId(n->driver, n->mode),
                        .flags = VlanFlags(n->flag),
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
  // A fresh veth or netkit of the CNI plugin: no clsact of an earlier version to remove.
  if (auto st = AttachPort(static_cast<int>(*host_ifindex), host, false); !st.ok()) {
    (void)UnregisterVlanEndpoint(dp_->vlan_maps(), *host_ifindex);
    return st;
  }
  return json::object();
}

absl::StatusOr<json> VlanController::EndpointDel(const json& p) {
  auto host_ifindex = Ifindex(p);
  if (!host_ifindex.ok()) return host_ifindex.status();
  if (auto st = UnregisterVlanEndpoint(dp_->vlan_maps(), *host_ifindex); !st.ok()) return st;
  // The program stays on the veth (dropping: no port) until the plugin deletes it; its link's
  // pin goes at the first sweep after that.
  departed_.insert(static_cast<int>(*host_ifindex));
  return json::object();
}

absl::StatusOr<json> VlanController::EndpointGet(const json& p) {
  auto host_ifindex = Ifindex(p);
  if (!host_ifindex.ok()) return host_ifindex.status();
  cppnet_vlan_port port{};
  const bool registered = bpf_map_lookup_elem(dp_->vlan_maps().port(), &*host_ifindex, &port) == 0;
  return json{{"registered", registered}};
}

}  // namespace cppnet
