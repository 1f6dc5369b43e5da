// VLAN networks on this host: their definitions (networks.d, changed only through the
// local API), the trunk side of the datapath (the demultiplexer on each trunk, attached
// again when a trunk reappears, endpoints moved with a recreated trunk, endpoints of
// vanished veths forgotten), and the endpoints the CNI plugin asks for.
#pragma once
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cppnet/datapath.h"
#include "cppnet/vlan.h"
#include "host_watcher.h"
#include "nlohmann/json.hpp"

namespace cppnet {

class VlanController {
 public:
  // `endpoint_device`: what the CNI plugin is told to give endpoints, "netkit" or "veth".
  VlanController(Datapath* dp, const HostWatcher* host, std::string config_dir,
                 std::string underlay, std::string endpoint_device);
  void Load();  // networks.d → definitions
  void Sync();  // after host changes: trunks, moved trunks, vanished endpoints
  // An untagged network on the overlay's underlay (its program then passes broadcast up).
  bool UntaggedOnUnderlay() const;

  // Local API: network.create/delete/get, endpoint.add/del/get. Create and Delete change
  // networks.d only; the caller reloads (Load, then Sync).
  absl::StatusOr<nlohmann::json> Create(const nlohmann::json& p);
  absl::StatusOr<nlohmann::json> Delete(const nlohmann::json& p);
  absl::StatusOr<nlohmann::json> Get(const nlohmann::json& p);
  absl::StatusOr<nlohmann::json> EndpointAdd(const nlohmann::json& p);
  absl::StatusOr<nlohmann::json> EndpointDel(const nlohmann::json& p);
  absl::StatusOr<nlohmann::json> EndpointGet(const nlohmann::json& p);

 private:
  // The endpoint program on host end `ifindex` (`name`), as its device kind wants it.
  absl::Status AttachPort(int ifindex, const std::string& name, bool old_clsact);
  struct Trunk {
    uint32_t key;  // the maps' trunk key (VlanNetwork::TrunkKey)
    Mac mac;
    int mtu;
  };
  const VlanNetwork* Find(const std::string& name) const;
  absl::StatusOr<Trunk> TrunkOf(const VlanNetwork& n) const;

  Datapath* dp_;
  const HostWatcher* host_;
  std::string config_dir_, underlay_;
  std::string endpoint_device_;  // "netkit" or "veth"
  std::vector<VlanNetwork> networks_;
  std::map<std::string, int> trunks_;  // trunk name → ifindex our program is attached to
  std::set<std::string> missing_;      // trunks reported missing (logged once)
  std::set<int> departed_;             // endpoints deleted while their veth lived: pins to remove
  bool ports_attached_ = false;        // endpoints re-attached to this agent's program
};

}  // namespace cppnet
