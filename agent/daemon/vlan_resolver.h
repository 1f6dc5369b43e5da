// ipvlan l3 next-hop resolution: the datapath reports next hops whose MAC it does not
// know (ring buffer cppnet_vlan_miss); this thread marks each as asked for in
// cppnet_vlan_nbr (PENDING) and asks on the VLAN (ARP request / neighbour
// solicitation from the trunk's MAC): at most once a second per next hop and 100
// times a second per VLAN. The trunk program fills in only such marked entries from
// the answers. Every 30 s, known next hops are asked again (REFRESH, still usable);
// ones that did not answer the previous round are forgotten.
#pragma once
#include <atomic>
#include <map>
#include <memory>
#include <thread>
#include <tuple>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cppnet/abi.h"

struct ring_buffer;

namespace cppnet {

class VlanResolver {
 public:
  static absl::StatusOr<std::unique_ptr<VlanResolver>> Start(int miss_fd, int net_fd, int nbr_fd);
  ~VlanResolver();

 private:
  VlanResolver() = default;
  static int OnEvent(void* ctx, void* data, size_t len);
  using Target = std::tuple<uint32_t, uint16_t, std::string>;  // trunk, VLAN, next hop address
  void Resolve(const cppnet_vlan_miss& ev);
  void Refresh();
  // Within the VLAN's request budget (token bucket); false: over it, do not send.
  bool Budget(uint32_t trunk, uint16_t vlan, absl::Time now);
  void Send(uint32_t trunk, uint16_t vlan, bool v4, const uint8_t* src, const uint8_t* target);
  ring_buffer* rb_ = nullptr;
  int net_fd_ = -1;
  int nbr_fd_ = -1;
  int sock_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Thread only:
  std::map<Target, absl::Time> asked_;
  std::map<Target, std::string> sources_;  // the address each next hop was asked from
  struct Bucket {
    double tokens = 0;
    absl::Time at = absl::InfinitePast();
  };
  std::map<std::pair<uint32_t, uint16_t>, Bucket> budget_;
  absl::Time next_refresh_ = absl::InfinitePast();
};

}  // namespace cppnet
