// cppnet's tc filters: cls_bpf in direct-action mode under a fixed handle and
// priority, so a restarted agent (or the CNI plugin) replaces its own filter in place
// (bookworm's libbpf 1.1 has no tcx links).
#pragma once
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace cppnet {

inline constexpr uint32_t kTcHandle = 0xc99;
inline constexpr uint32_t kTcPriority = 1;

absl::Status AttachTcIngress(int prog_fd, int ifindex, const std::string& ifname);
absl::Status AttachTcEgress(int prog_fd, int ifindex, const std::string& ifname);

}  // namespace cppnet
