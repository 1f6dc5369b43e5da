// cppnet's tc filters: cls_bpf in direct-action mode under a fixed handle and
// priority, so a restarted agent (or the CNI plugin) replaces its own filter in place
// (bookworm's libbpf 1.1 has no tcx links).
#pragma once
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cppnet {

inline constexpr uint32_t kTcHandle = 0xc99;
inline constexpr uint32_t kTcPriority = 1;

absl::Status AttachTcIngress(int prog_fd, int ifindex, const std::string& ifname);
absl::Status AttachTcEgress(int prog_fd, int ifindex, const std::string& ifname);

// tcx (kernel >= 6.6): the program as a bpf_link on the interface's ingress, no qdisc, so the
// interface's qdiscs stay free for others (the bandwidth CNI plugin's "ingress" qdisc, which
// the kernel refuses next to a clsact). The link is pinned at `pin`, so it outlives the agent;
// a pinned link of the same interface is updated in place (no gap). `old_clsact`: the interface
// has a clsact (an earlier version's): it goes once the link is in place. With `pin` empty,
// *keep_fd holds the link (closing it detaches).
absl::Status AttachTcxIngress(int prog_fd, int ifindex, const std::string& ifname,
                              const std::string& pin, bool old_clsact, int* keep_fd);
// netkit (kernel >= 6.7): the program as a bpf_link BPF_NETKIT_PEER through the pair's primary
// `ifindex` (the host end), so it runs inside the peer's (the container's) transmit. Pinned and
// updated in place as AttachTcxIngress.
absl::Status AttachNetkitPeer(int prog_fd, int ifindex, const std::string& ifname,
                              const std::string& pin, int* keep_fd);
// tcx egress as a pinned link (as AttachTcxIngress, without the clsact clean-up): on a netkit
// primary, where conntrack's state is still on what the host sends to the container (netkit
// drops it before its own programs run).
absl::Status AttachTcxEgress(int prog_fd, int ifindex, const std::string& ifname,
                             const std::string& pin, int* keep_fd);
// The pinned tcx or netkit link's interface (0: detached, its interface gone), or an error when
// `pin` is neither.
absl::StatusOr<uint32_t> TcxLinkIfindex(const std::string& pin);

}  // namespace cppnet
