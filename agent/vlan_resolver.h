// ipvlan l3 next-hop resolution: the datapath reports next hops whose MAC it does not
// know (ring buffer cppnet_vlan_miss); this thread asks for them on the VLAN (ARP
// request / neighbour solicitation from the trunk's MAC, at most once a second per
// next hop). The trunk program learns the answers into cppnet_vlan_nbr.
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
  static absl::StatusOr<std::unique_ptr<VlanResolver>> Start(int miss_fd, int net_fd);
  ~VlanResolver();

 private:
  VlanResolver() = default;
  static int OnEvent(void* ctx, void* data, size_t len);
  void Resolve(const cppnet_vlan_miss& ev);
  ring_buffer* rb_ = nullptr;
  int net_fd_ = -1;
  int sock_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::map<std::tuple<uint32_t, uint16_t, std::string>, absl::Time> asked_;  // thread only
};

}  // namespace cppnet
