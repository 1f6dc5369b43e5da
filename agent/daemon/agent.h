// cppnet-agent: leases a subnet from etcd the way flanneld does, keeps the BPF
// route map equal to the other hosts' leases, and attaches the datapath.
#pragma once
#include <atomic>
#include <functional>
#include <limits>

#include <prometheus/histogram.h>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cppnet/config.h"
#include "cppnet/lease.h"
#include "cppnet/paths.h"
#include "cppnet/vlan.h"
#include "cppnet/datapath.h"
#include "cppnet/etcd_client.h"
#include "cppnet/netlink.h"
#include "container_side.h"
#include "host_watcher.h"
#include "local_api_server.h"
#include "lease_manager.h"
#include "masq.h"
#include "route_reconciler.h"
#include "vlan_controller.h"
#include "vlan_resolver.h"

namespace cppnet {

struct AgentOptions {
  std::string etcd_endpoints = "http://127.0.0.1:2379";
  std::string etcd_prefix = "/coreos.com/network";
  std::string public_ip;
  std::string public_ip6;
  std::string subnet_file = "/run/flannel/subnet.env";
  std::string healthz_ip = "127.0.0.1";
  int healthz_port = 9471;
  std::string bpffs_dir = CPPNET_PIN_DIR_DEFAULT;
  std::string container_iface;
  absl::Duration lease_ttl = absl::Hours(24);
  absl::Duration renew_margin = absl::Minutes(60);
  bool ip_masq = false;
  bool release_on_exit = false;
  // Where tunnel packets are opened: "xdp", "tc", or "auto" (tc on a veth underlay,
  // where an XDP program would take segmentation offload away from the peer; else xdp).
  std::string decap = "auto";
  std::string endpoint_device = "auto";    // auto, netkit, veth
  std::string config_dir = "/etc/cppnet";  // VLAN networks in networks.d/, routes.json
  std::string api_socket = kAgentSocket;
};

// What /readyz and /metrics report; written by the agent loop, read by the HTTP thread.
struct AgentHealth {
  std::atomic<bool> ready{false};
  std::atomic<int64_t> last_etcd_ok_unix{0};
  std::atomic<int64_t> routes{0};
  std::atomic<int64_t> routes_pending{0};  // lease routes a full map has no room for
  std::atomic<int64_t> leases_skipped{0};
  std::atomic<int64_t> lease_acquisitions{0};
  std::atomic<int64_t> leases{0};           // keys under <prefix>/subnets/
  std::atomic<int64_t> etcd_errors{0};      // failed etcd operations
  std::atomic<int64_t> etcd_reconnects{0};  // watch re-established after a break
  // Time to apply each batch of etcd changes to the datapath maps, in seconds.
  prometheus::Histogram sync_seconds{prometheus::Histogram::BucketBoundaries{
      0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5}};
  // When our lease expires unless renewed (Unix seconds): +inf for a reservation, NaN while
  // nothing is held.
  std::atomic<double> lease_expires_unix{std::numeric_limits<double>::quiet_NaN()};
  // Whether the connection to etcd is up (set by the agent, which owns the client).
  std::function<bool()> etcd_connected;
  std::atomic<int64_t> host_events{0};    // batches of host changes handled
  std::atomic<int64_t> netlink_dumps{0};  // full link/address dumps made
  std::mutex mu;
  std::string not_ready_reason = "starting";
};

class Agent {
 public:
  // public_ip6: our PublicIPv6 (0: none; EnableIPv6 then waits for one).
  Agent(AgentOptions opts, Interface underlay, uint32_t public_ip, unsigned __int128 public_ip6,
        std::unique_ptr<EtcdClient> etcd, std::unique_ptr<Datapath> dp, AgentHealth* health);
  ~Agent();
  // Runs until Stop(); returns the exit status.
  int Run();
  void Stop();

 private:
  struct Change {  // from the watch thread
    bool snapshot = false;
    std::vector<EtcdKV> puts;
    std::vector<std::string> deletes;
  };

  void WatchLoop();
  void Apply(std::deque<Change> batch);  // the changes the loop found waiting, in order
  void OnConfigText(const std::optional<std::string>& text);
  void Tick();
  // The local API (local_api_server.h): Dispatch runs on the server's thread and hands
  // the request to the loop, where Handle runs it, so the loop is the one writer.
  absl::StatusOr<nlohmann::json> Dispatch(const std::string& method, const nlohmann::json& params);
  absl::StatusOr<nlohmann::json> Handle(const std::string& method, const nlohmann::json& params);
  absl::StatusOr<nlohmann::json> ApiRouteAdd(const nlohmann::json& p);
  absl::StatusOr<nlohmann::json> ApiRouteDel(const nlohmann::json& p);
  // The overlay's answers to the CNI plugin: the device its containers get, and the programs
  // of a netkit pair it made (see ContainerSide::AttachNetkit).
  absl::StatusOr<nlohmann::json> ApiOverlayGet();
  absl::StatusOr<nlohmann::json> ApiOverlayAttach(const nlohmann::json& p);
  absl::Status SaveStaticRoutes();
  void RestoreStaticRoutes();
  void OnHostChange(unsigned changes);  // links, addresses or networks.d changed
  absl::Time NextDeadline() const;
  absl::Status ActivateDatapath();
  void SyncMasquerade();
  void SyncQueued();
  void SyncRates();
  void SyncHostDevices(int mtu);
  void ChangePublicIp(uint32_t ip);
  void ChangePublicIp6(unsigned __int128 ip);
  absl::Status RepublishLease();
  void LoadNetworks();
  void Reconcile();
  // Routes of the leases `keys` only (each overlapping no other lease); `gone`, `gone6`: the
  // subnets they had before.
  void ReconcileLeases(const std::vector<std::string>& keys, const std::vector<Prefix4>& gone,
                       const std::vector<Prefix6>& gone6);
  // leases_[key] = r (nullopt: erased), with index_ in step.
  void SetLease(const std::string& key, std::optional<ParsedLeaseRecord> r);
  void SetNotReady(const std::string& why);
  Lease OwnLease() const;  // what we publish for the current config
  void MarkEtcdOk();
  std::string SubnetsPrefix() const { return opts_.etcd_prefix + "/subnets/"; }
  std::string ConfigKey() const { return opts_.etcd_prefix + "/config"; }

  AgentOptions opts_;
  Interface underlay_;
  uint32_t public_ip_;
  unsigned __int128 public_ip6_;
  uint32_t prev_public_ip_ = 0;  // from the pinned datapath config of the previous run
  Mac vtep_mac_;
  std::unique_ptr<EtcdClient> etcd_;
  std::unique_ptr<Datapath> dp_;
  AgentHealth* health_;
  LeaseManager lease_mgr_;
  BpfRouteTable route_table_;
  RouteReconciler reconciler_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Change> changes_;
  bool stop_ = false;
  unsigned host_changes_ = 0;  // HostWatcher::Change bits not handled yet
  struct Call {
    std::string method;
    nlohmann::json params;
    std::shared_ptr<std::promise<absl::StatusOr<nlohmann::json>>> done;
  };
  std::deque<Call> calls_;  // local API requests for the loop
  std::thread watcher_;
  std::unique_ptr<HostWatcher> host_;
  std::unique_ptr<VlanController> vlan_;       // after host_: uses it
  std::string endpoint_device_ = "veth";       // what the CNI plugin gives containers
  std::unique_ptr<ContainerSide> containers_;  // after host_: uses it
  std::unique_ptr<LocalApiServer> api_;

  // Loop state (agent thread only).
  bool synced_ = false;
  LeaseRecords leases_;  // <prefix>/subnets/*, parsed on arrival
  SubnetIndex index_;    // their subnets
  // The first list, raw, until the first lease is acquired from it (AcquireHints::listed).
  std::optional<std::vector<EtcdKV>> first_list_;
  bool first_list_acceptable_ = true;           // no acquisition tried yet
  std::optional<std::string> config_in_store_;  // <prefix>/config as etcd has it
  std::optional<std::string> config_text_;      // the config last acted on
  bool waiting_logged_ = false;
  std::optional<NetworkConfig> config_;
  std::optional<Prefix4> subnet_;   // the subnet the datapath serves (our lease)
  std::optional<Prefix6> subnet6_;  // its IPv6 subnet (EnableIPv6)
  bool datapath_active_ = false;
  bool xdp_attached_ = false;
  std::optional<HostDevices> host_devs_;         // CPPNET_HOST_DEV / CPPNET_SOFT_DEV, once set up
  uint32_t host_addr_ = 0;                       // the host's overlay address on CPPNET_HOST_DEV
  std::optional<unsigned __int128> host_addr6_;  // and its IPv6 one (dual stack)
  int host_mtu_ = 0;
  MasqSpec masq_;                   // what is masqueraded
  std::map<int, uint32_t> queued_;  // veths in CPPNET_MAP_QUEUED, with their flags
  bool queued_synced_ = false;
  std::map<int, MirroredRate> rates_;        // VLAN endpoints in CPPNET_MAP_RATES
  std::map<int, uint32_t> pace_class_;       // their htb class minors
  std::optional<std::pair<int, int>> pace_;  // CPPNET_PACE_DEV, CPPNET_PACED_DEV ifindexes
  bool masq_synced_ = false;
  std::map<std::string, std::string> skip_logged_;  // key → reason last logged
  std::unique_ptr<VlanResolver> resolver_;          // after dp_: stops before the maps go
};

}  // namespace cppnet
