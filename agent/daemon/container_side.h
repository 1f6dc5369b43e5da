// The overlay's container side: the bridge that carries our subnet (Docker's --bip
// bridge or a CNI bridge; --container-iface names it) and each container veth on it get
// the encapsulation program, as does each overlay container's netkit pair (the CNI plugin's
// "cn…" primaries, no bridge); bindings and delivery entries of ports that left are freed.
// Driven by host events (HostWatcher), never by polling.
#pragma once
#include <map>
#include <string>

#include "cppnet/datapath.h"
#include "cppnet/net.h"
#include "host_watcher.h"

namespace cppnet {

class ContainerSide {
 public:
  ContainerSide(Datapath* dp, const HostWatcher* host, std::string name);
  // After host changes (and once the datapath is active): attach to the bridge with an
  // address in `subnet` (in `subnet6` in an IPv6-only network), or the named interface, and
  // to its veths.
  void Sync(std::optional<Prefix4> subnet, std::optional<Prefix6> subnet6);
  int ifindex() const { return ifindex_; }  // the bridge, 0 until found
  // The CNI plugin's new netkit primary `ifindex`: its programs attached now, before the
  // container sends (its end drops everything until then). Errors name the interface.
  absl::Status AttachNetkit(int ifindex);
  // Container veths on the bridge that carry our programs now.
  size_t veth_ports() const;

 private:
  void SyncPorts();

  Datapath* dp_;
  const HostWatcher* host_;
  std::string name_;  // --container-iface, empty: detected
  int ifindex_ = 0;
  std::map<int, std::string> ports_;  // container veths and netkit primaries with our programs
  bool binds_checked_ = false;        // bindings of veths gone while we were down freed
};

}  // namespace cppnet
