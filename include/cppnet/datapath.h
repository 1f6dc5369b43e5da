// The BPF datapath: loads the skeleton, pins its maps, attaches and re-attaches
// the programs. Attachments outlive the agent so a restart does not stop forwarding.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cppnet/maps.h"
#include "cppnet/vlan_maps.h"

struct cppnet_bpf;

namespace cppnet {

class Datapath {
 public:
  // pin_dir empty: maps are private to this process (no pinning), e.g. for packet tests.
  static absl::StatusOr<std::unique_ptr<Datapath>> Load(const std::string& pin_dir);
  ~Datapath();

  // XDP decapsulation on the underlay, through a bpf_link pinned in pin_dir.
  absl::Status AttachXdp(int ifindex, const std::string& ifname);
  // Removes our XDP program (the pinned link) from the interface, if there is one.
  void DetachXdp(const std::string& ifname);
  // The container bridge (replaces ours in place): tc ingress encapsulation, and tc egress,
  // which records the flows the kernel translated to containers (bpf/nat.h).
  absl::Status AttachEncap(int ifindex, const std::string& ifname);
  // The same program on a container veth, as a pinned tcx link (no qdisc: the bandwidth CNI
  // plugin may put its "ingress" qdisc there); DetachPort removes the link of a veth that left.
  // `old_clsact`: the veth has a clsact qdisc (an earlier version's filter is removed with it).
  absl::Status AttachPort(int ifindex, const std::string& ifname, bool old_clsact);
  // An overlay container on a netkit pair (primary `ifindex`): the same checks and fast path as
  // a BPF_NETKIT_PEER link (cppnet_nk_encap) and the bridge's flow recording as a tcx egress
  // link, both pinned.
  absl::Status AttachNetkitPort(int ifindex, const std::string& ifname);
  void DetachPort(int ifindex);
  // tc ingress on the underlay: decapsulation and delivery into containers.
  absl::Status AttachUnderlay(int ifindex, const std::string& ifname);
  // CPPNET_HOST_DEV: tc egress (the host's own overlay traffic) and ingress (delivery to the
  // host, udp encapsulation for userspace peers).
  absl::Status AttachHost(int ifindex, const std::string& ifname);

  // Uninstall: removes every cppnet tc filter in this network namespace (recognised by
  // handle, priority and program name), the pinned XDP links and maps under pin_dir.
  // Returns one line per object removed. The agent must not be running.
  static absl::StatusOr<std::vector<std::string>> Cleanup(const std::string& pin_dir);

  int encap_prog_fd() const;
  int bridge_out_prog_fd() const;
  int underlay_prog_fd() const;
  int decap_prog_fd() const;
  int soft_prog_fd() const;
  int host_prog_fd() const;
  // VLAN networks: the trunk demultiplexer (on trunks that are not the underlay; the
  // underlay program has it built in) and the endpoint program on host ends: on a veth a pinned
  // tcx link as AttachPort's (DetachPort removes it), so the bandwidth plugin's "ingress" qdisc
  // fits; on a netkit primary (`netkit`) a pinned BPF_NETKIT_PEER link, at the same pin.
  absl::Status AttachTrunk(int ifindex, const std::string& ifname);
  absl::Status AttachVlanPort(int ifindex, const std::string& ifname, bool old_clsact,
                              bool netkit = false);
  // tc ingress of CPPNET_PACED_DEV: rated endpoints' frames, paced, on to trunk or endpoint.
  absl::Status AttachPaced(int ifindex, const std::string& ifname);
  int trunk_prog_fd() const;
  int vlan_port_prog_fd() const;
  int vlan_port_netkit_prog_fd() const;
  VlanMaps vlan_maps() const;  // not owning
  int vlan_miss_fd() const;    // ring buffer: ipvlan l3 next hops to resolve
  int vlan_nbr_fd() const;     // ipvlan l3 next hops (the resolver marks what it asks for)
  int queued_fd() const;       // host veths with a queueing qdisc (CPPNET_MAP_QUEUED)
  int rates_fd() const;        // VLAN endpoints' egress rates (CPPNET_MAP_RATES)
  int pacing_fd() const;       // the pacing device, when in use (CPPNET_MAP_PACING)
  const MapFds& maps() const { return maps_; }
  // Pinned maps from an earlier version whose layout differed, replaced at Load.
  const std::vector<std::string>& replaced_maps() const { return replaced_maps_; }

 private:
  // A container veth's tcx link, pinned as <pin dir>/link_tcx_<ifindex> (kept open in tests).
  absl::Status AttachTcxPinned(int prog_fd, int ifindex, const std::string& ifname,
                               bool old_clsact);
  // A netkit primary's BPF_NETKIT_PEER link, pinned at the same path (kept open in tests).
  absl::Status AttachNetkitPinned(int prog_fd, int ifindex, const std::string& ifname);
  Datapath() = default;
  cppnet_bpf* skel_ = nullptr;
  std::string pin_dir_;
  MapFds maps_;
  std::vector<std::string> replaced_maps_;
  std::vector<int> link_fds_;  // tcx links without a pin dir (packet tests)
};

}  // namespace cppnet
