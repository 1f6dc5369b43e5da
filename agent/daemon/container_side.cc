#include "container_side.h"

#include <net/if.h>

#include "cppnet/maps.h"
#include "log.h"

namespace cppnet {

ContainerSide::ContainerSide(Datapath* dp, const HostWatcher* host, std::string name)
    : dp_(dp), host_(host), name_(std::move(name)) {}

// The container side appears when Docker/CNI creates the bridge from subnet.env.
void ContainerSide::Sync(const Prefix4& subnet) {
  std::optional<Interface> ifc;
  if (!name_.empty()) {
    ifc = host_->Find(name_);
  } else {
    ifc = host_->WithAddressIn(subnet);
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
    LOG_INFO("Container side: tc ingress on ", ifc->name, " (ifindex ", ifc->ifindex,
             ") and its ports");
  }
  if (ifindex_) SyncPorts();
}

// Each container veth on the bridge gets the encapsulation program too, so overlay
// traffic leaves before crossing the bridge, and the program learns the container
// for direct delivery. Endpoints of veths that are gone are forgotten.
void ContainerSide::SyncPorts() {
  std::map<int, std::string> now;
  for (const Interface& p : host_->PortsOf(ifindex_)) {
    if (p.kind != "veth") continue;
    auto it = ports_.find(p.ifindex);
    if (it != ports_.end() && it->second == p.name) {
      now.insert(*it);
      continue;
    }
    if (auto st = dp_->AttachEncap(p.ifindex, p.name); !st.ok()) {
      LOG_WARN("Container port: ", st.message());
      continue;
    }
    now.emplace(p.ifindex, p.name);
  }
  // A veth that left the bridge (gone, or moved) releases its address: its binding slot
  // here (by difference; once after start, every binding is checked), its delivery entry
  // (the address's owner record) with the other endpoints of vanished veths below. Only
  // then may another veth bind the address.
  const MapFds& m = dp_->maps();
  for (const auto& [ifindex, name] : ports_)
    if (!now.count(ifindex))
      if (auto st = FreeBindSlot(m.binds(), static_cast<uint32_t>(ifindex)); !st.ok())
        LOG_WARN(st.message());
  ports_ = std::move(now);
  if (!binds_checked_) {
    if (auto binds = ListBinds(m.binds()); binds.ok()) {
      char name[IF_NAMESIZE];
      for (const cppnet_bind& b : *binds)
        if (!ports_.count(static_cast<int>(b.ifindex)) &&
            (host_->FindByIndex(static_cast<int>(b.ifindex)) || !if_indextoname(b.ifindex, name)))
          if (auto st = FreeBindSlot(m.binds(), b.ifindex); !st.ok()) LOG_WARN(st.message());
      binds_checked_ = true;
    } else {
      LOG_WARN(binds.status().message());
    }
  }
  auto eps = ListEndpoints(m.endpoints());
  if (!eps.ok()) return;
  for (const EndpointEntry& e : *eps) {
    const int ifindex = static_cast<int>(e.endpoint.ifindex);
    char name[IF_NAMESIZE];
    if (ports_.count(ifindex)) continue;
    // Not in our cache but alive: a veth just created (its event is on the way).
    if (!host_->FindByIndex(ifindex) && if_indextoname(e.endpoint.ifindex, name)) continue;
    (void)DeleteEndpoint(m.endpoints(), e.addr);
  }
}

}  // namespace cppnet
