#include "container_side.h"

#include <net/if.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "cppnet/cni_config.h"
#include "cppnet/maps.h"
#include "log.h"

namespace cppnet {

ContainerSide::ContainerSide(Datapath* dp, const HostWatcher* host, std::string name)
    : dp_(dp), host_(host), name_(std::move(name)) {}

// The container side appears when Docker/CNI creates the bridge from subnet.env.
void ContainerSide::Sync(std::optional<Prefix4> subnet, std::optional<Prefix6> subnet6) {
  std::optional<Interface> ifc;
  if (!name_.empty()) {
    ifc = host_->Find(name_);
  } else if (subnet) {
    ifc = host_->WithAddressIn(*subnet);
  } else if (subnet6) {
    ifc = host_->WithAddressIn(*subnet6);
  }
  if (ifc && ifc->ifindex != ifindex_) {
    if (auto st = dp_->AttachEncap(ifc->ifindex, ifc->name); !st.ok()) {
      LOG_ERROR(st.message());
      return;
    }
    ifindex_ = ifc->ifindex;
    ports_.clear();
    binds_checked_ = false;  // the old ports' bindings are checked anew
    if (auto cfg = ReadConfig(dp_->maps().config()); cfg.ok()) {
      cfg->container_ifindex = ifindex_;
      (void)WriteConfig(dp_->maps().config(), *cfg);
    }
    LOG_INFO("Container side: tc ingress and egress on ", ifc->name, " (ifindex ", ifc->ifindex,
             ") and its ports");
  }
  SyncPorts();
}

size_t ContainerSide::veth_ports() const {
  size_t n = 0;
  for (const auto& [ifindex, name] : ports_) n += name.rfind(kOverlayNetkitPrefix, 0) != 0;
  return n;
}

absl::Status ContainerSide::AttachNetkit(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (!if_indextoname(static_cast<unsigned>(ifindex), name))
    return absl::NotFoundError(absl::StrCat("interface ", ifindex, ": ", strerror(errno)));
  if (std::string(name).rfind(kOverlayNetkitPrefix, 0) != 0)
    return absl::InvalidArgumentError(absl::StrCat("interface ", name,
                                                   " is no overlay container's netkit device (",
                                                   kOverlayNetkitPrefix, "…)"));
  if (auto it = ports_.find(ifindex); it != ports_.end() && it->second == name)
    return absl::OkStatus();
  if (auto st = dp_->AttachNetkitPort(ifindex, name); !st.ok()) return st;
  ports_[ifindex] = name;
  return absl::OkStatus();
}

// Each container veth on the bridge gets the encapsulation program too, so overlay
// traffic leaves before crossing the bridge, and the program learns the container
// for direct delivery. Endpoints of veths that are gone are forgotten.
void ContainerSide::SyncPorts() {
  std::map<int, std::string> now;
  std::vector<Interface> ports = host_->OfKind("netkit", kOverlayNetkitPrefix);
  if (ifindex_)
    for (const Interface& p : host_->PortsOf(ifindex_))
      if (p.kind == "veth") ports.push_back(p);
  for (const Interface& p : ports) {
    auto it = ports_.find(p.ifindex);
    if (it != ports_.end() && it->second == p.name) {
      now.insert(*it);
      continue;
    }
    auto st = p.kind == "netkit"
                  ? dp_->AttachNetkitPort(p.ifindex, p.name)
                  : dp_->AttachPort(p.ifindex, p.name, host_->IngressQdisc(p.ifindex) == "clsact");
    if (!st.ok()) {
      LOG_WARN("Container port: ", st.message());
      continue;
    }
    now.emplace(p.ifindex, p.name);
  }
  // A netkit primary attached through the local API whose event is still on the way.
  for (const auto& [ifindex, name] : ports_)
    if (!now.count(ifindex) && name.rfind(kOverlayNetkitPrefix, 0) == 0 &&
        !host_->FindByIndex(ifindex)) {
      char current[IF_NAMESIZE];
      if (if_indextoname(static_cast<unsigned>(ifindex), current) && name == current)
        now.emplace(ifindex, name);
    }
  // A veth that left the bridge (gone, or moved) releases its address: its binding slot
  // here (by difference; once after start, every binding is checked), its delivery entry
  // (the address's owner record) with the other endpoints of vanished veths below. Only
  // then may another veth bind the address.
  const MapFds& m = dp_->maps();
  for (const auto& [ifindex, name] : ports_) {
    if (now.count(ifindex)) continue;
    dp_->DetachPort(ifindex);
    for (auto st : {FreeBindSlot(m.binds(), static_cast<uint32_t>(ifindex)),
                    FreeBindSlot6(m.binds6(), static_cast<uint32_t>(ifindex))})
      if (!st.ok()) LOG_WARN(st.message());
  }
  ports_ = std::move(now);
  // A binding or endpoint of a veth that is no port: gone, or elsewhere (not in our cache
  // but alive: a veth just created, its event on the way, keeps it).
  auto stale = [&](uint32_t ifindex) {
    char name[IF_NAMESIZE];
    return !ports_.count(static_cast<int>(ifindex)) &&
           (host_->FindByIndex(static_cast<int>(ifindex)) || !if_indextoname(ifindex, name));
  };
  if (!binds_checked_) {
    auto binds = ListBinds(m.binds());
    auto binds6 = ListBinds6(m.binds6());
    if (binds.ok() && binds6.ok()) {
      for (const cppnet_bind& b : *binds)
        if (stale(b.ifindex))
          if (auto st = FreeBindSlot(m.binds(), b.ifindex); !st.ok()) LOG_WARN(st.message());
      for (const cppnet_bind6& b : *binds6)
        if (stale(b.ifindex))
          if (auto st = FreeBindSlot6(m.binds6(), b.ifindex); !st.ok()) LOG_WARN(st.message());
      binds_checked_ = true;
    } else {
      LOG_WARN(binds.ok() ? binds6.status().message() : binds.status().message());
    }
  }
  if (auto eps = ListEndpoints(m.endpoints()); eps.ok())
    for (const EndpointEntry& e : *eps)
      if (stale(e.endpoint.ifindex)) (void)DeleteEndpoint(m.endpoints(), e.addr);
  if (auto eps = ListEndpoints6(m.endpoints6()); eps.ok())
    for (const auto& [addr, ep] : *eps)
      if (stale(ep.ifindex)) (void)DeleteEndpoint6(m.endpoints6(), addr);
}

}  // namespace cppnet
