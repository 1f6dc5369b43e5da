// The BPF datapath: loads the skeleton, pins its maps, attaches and re-attaches
// the programs. Attachments outlive the agent so a restart does not stop forwarding.
#pragma once
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/maps.h"

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
  // tc ingress encapsulation on the container-facing interface (replaces ours in place).
  absl::Status AttachTc(int ifindex, const std::string& ifname);

  int encap_prog_fd() const;
  int decap_prog_fd() const;
  const MapFds& maps() const { return maps_; }

 private:
  Datapath() = default;
  cppnet_bpf* skel_ = nullptr;
  std::string pin_dir_;
  MapFds maps_;
};

}  // namespace cppnet
