#include "cppnet/tc.h"

#include <bpf/libbpf.h>

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

}  // namespace cppnet
