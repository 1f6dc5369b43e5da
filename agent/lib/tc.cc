#include "cppnet/tc.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace cppnet {

static absl::Status AttachTc(int prog_fd, int ifindex, const std::string& ifname,
                             bpf_tc_attach_point where) {
  const char* dir = where == BPF_TC_INGRESS ? "ingress" : "egress";
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = where);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST)
    return absl::InternalError(
        absl::StrCat("interface ", ifname, ": create clsact qdisc: ", strerror(-err)));
  LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
              .priority = kTcPriority);
  if ((err = bpf_tc_attach(&hook, &opts)))
    return absl::InternalError(
        absl::StrCat("interface ", ifname, ": attach tc ", dir, ": ", strerror(-err)));
  return absl::OkStatus();
}

absl::Status AttachTcIngress(int prog_fd, int ifindex, const std::string& ifname) {
  return AttachTc(prog_fd, ifindex, ifname, BPF_TC_INGRESS);
}

absl::Status AttachTcEgress(int prog_fd, int ifindex, const std::string& ifname) {
  return AttachTc(prog_fd, ifindex, ifname, BPF_TC_EGRESS);
}

// Bookworm's headers (Linux 6.1 UAPI, libbpf 1.1) predate tcx and netkit: the kernel's values.
constexpr int kBpfTcxIngress = 46;        // enum bpf_attach_type BPF_TCX_INGRESS
constexpr int kBpfTcxEgress = 47;         // enum bpf_attach_type BPF_TCX_EGRESS
constexpr int kBpfNetkitPeer = 55;        // enum bpf_attach_type BPF_NETKIT_PEER
constexpr uint32_t kLinkTypeTcx = 11;     // enum bpf_link_type BPF_LINK_TYPE_TCX
constexpr uint32_t kLinkTypeNetkit = 13;  // enum bpf_link_type BPF_LINK_TYPE_NETKIT

absl::StatusOr<uint32_t> TcxLinkIfindex(const std::string& pin) {
  int fd = bpf_obj_get(pin.c_str());
  if (fd < 0) return absl::NotFoundError(absl::StrCat(pin, ": ", strerror(errno)));
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  const int err = bpf_obj_get_info_by_fd(fd, &info, &len) ? errno : 0;
  close(fd);
  if (err) return absl::InternalError(absl::StrCat(pin, ": link info: ", strerror(err)));
  if (info.type != kLinkTypeTcx && info.type != kLinkTypeNetkit)
    return absl::InvalidArgumentError(absl::StrCat(pin, ": not a tcx or netkit link"));
  // The tcx and netkit parts of the info union start with the ifindex, where the xdp part has
  // its own.
  return info.xdp.ifindex;
}

// A pinned link of `attach_type` on `ifindex` (see AttachTcxIngress); `what` names the hook.
static absl::Status AttachPinned(int prog_fd, int ifindex, const std::string& ifname,
                                 const std::string& pin, int attach_type, const char* what,
                                 bool old_clsact, int* keep_fd) {
  *keep_fd = -1;
  if (!pin.empty()) {
    auto on = TcxLinkIfindex(pin);
    if (on.ok() && *on == static_cast<uint32_t>(ifindex)) {
      int fd = bpf_obj_get(pin.c_str());
      const int err = fd < 0 || bpf_link_update(fd, prog_fd, nullptr) ? errno : 0;
      if (fd >= 0) close(fd);
      if (!err) return absl::OkStatus();
    }
    unlink(pin.c_str());  // stale: its interface is gone (or another has its index now)
  }
  int fd = bpf_link_create(prog_fd, ifindex, static_cast<bpf_attach_type>(attach_type), nullptr);
  if (fd < 0)
    return absl::InternalError(
        absl::StrCat("interface ", ifname, ": attach ", what, ": ", strerror(errno)));
  // An earlier version's clsact with our filter (ours alone on a container veth): the program
  // would run twice, and the qdisc blocks others' "ingress" qdisc.
  LIBBPF_OPTS(bpf_tc_hook, ingress, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  LIBBPF_OPTS(bpf_tc_opts, ours, .handle = kTcHandle, .priority = kTcPriority);
  if (old_clsact && bpf_tc_query(&ingress, &ours) == 0) {
    LIBBPF_OPTS(bpf_tc_hook, both, .ifindex = ifindex,
                .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
    (void)bpf_tc_hook_destroy(&both);
  }
  if (pin.empty()) {
    *keep_fd = fd;
    return absl::OkStatus();
  }
  const int err = bpf_obj_pin(fd, pin.c_str()) ? errno : 0;
  close(fd);  // the pin holds the link
  if (err)
    return absl::InternalError(
        absl::StrCat("interface ", ifname, ": pin ", what, " link ", pin, ": ", strerror(err)));
  return absl::OkStatus();
}

absl::Status AttachTcxIngress(int prog_fd, int ifindex, const std::string& ifname,
                              const std::string& pin, bool old_clsact, int* keep_fd) {
  return AttachPinned(prog_fd, ifindex, ifname, pin, kBpfTcxIngress, "tcx ingress", old_clsact,
                      keep_fd);
}

absl::Status AttachTcxEgress(int prog_fd, int ifindex, const std::string& ifname,
                             const std::string& pin, int* keep_fd) {
  return AttachPinned(prog_fd, ifindex, ifname, pin, kBpfTcxEgress, "tcx egress", false, keep_fd);
}

absl::Status AttachNetkitPeer(int prog_fd, int ifindex, const std::string& ifname,
                              const std::string& pin, int* keep_fd) {
  return AttachPinned(prog_fd, ifindex, ifname, pin, kBpfNetkitPeer, "netkit peer", false, keep_fd);
}

}  // namespace cppnet
