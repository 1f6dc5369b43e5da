#include "cppnet/datapath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cppnet/tc.h"
#include "cppnet.skel.h"

namespace cppnet {

static std::string Err(int err) { return strerror(err < 0 ? -err : err); }

// Where the XDP link on `ifname` is pinned, so restarts find and update it.
static std::string XdpPin(const std::string& dir, const std::string& ifname) {
  return absl::StrCat(dir, "/" CPPNET_LINK_XDP_PREFIX, ifname);
}

absl::StatusOr<std::unique_ptr<Datapath>> Datapath::Load(const std::string& pin_dir) {
  std::unique_ptr<Datapath> dp(new Datapath());
  dp->pin_dir_ = pin_dir;
  if (!pin_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(pin_dir, ec);
    if (ec) return absl::InternalError(absl::StrCat(pin_dir, ": ", ec.message()));
  }
  LIBBPF_OPTS(bpf_object_open_opts, opts,
              .pin_root_path = pin_dir.empty() ? nullptr : pin_dir.c_str());
  dp->skel_ = cppnet_bpf__open_opts(&opts);
  if (!dp->skel_) return absl::InternalError(absl::StrCat("BPF object cppnet: open: ", Err(errno)));
  if (pin_dir.empty()) {
    bpf_map* map;
    bpf_object__for_each_map(map, dp->skel_->obj) bpf_map__set_pin_path(map, nullptr);
  }
  // Pinned maps from an earlier run are reused, so routes survive a restart. A pinned
  // map whose layout an upgrade changed cannot be reused: it is replaced by a new one
  // (the agent refills routes and config from etcd; counters restart from zero).
  if (!pin_dir.empty()) {
    bpf_map* map;
    bpf_object__for_each_map(map, dp->skel_->obj) {
      const char* pin = bpf_map__pin_path(map);
      int fd = pin ? bpf_obj_get(pin) : -1;
      if (fd < 0) continue;
      bpf_map_info info{};
      uint32_t len = sizeof(info);
      const bool same =
          bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == bpf_map__type(map) &&
          info.key_size == bpf_map__key_size(map) && info.value_size == bpf_map__value_size(map) &&
          info.max_entries == bpf_map__max_entries(map) &&
          info.map_flags == bpf_map__map_flags(map);
      close(fd);
      if (same) continue;
      dp->replaced_maps_.push_back(bpf_map__name(map));
      unlink(pin);
    }
  }
  if (int err = cppnet_bpf__load(dp->skel_); err)
    return absl::InternalError(absl::StrCat("BPF object cppnet: load: ", Err(err),
                                            err == -EPERM ? " (needs CAP_BPF/CAP_NET_ADMIN)" : ""));
  {
    const uint32_t zero = 0, abi = CPPNET_ABI_VERSION;
    if (bpf_map_update_elem(bpf_map__fd(dp->skel_->maps.cppnet_abi), &zero, &abi, BPF_ANY) != 0)
      return absl::InternalError(absl::StrCat("map " CPPNET_MAP_ABI ": ", Err(errno)));
  }
  // The VLAN endpoint program, pinned as the one this agent loaded (a restarted agent
  // replaces the pin), for inspection with bpftool.
  if (!pin_dir.empty()) {
    const std::string pin = absl::StrCat(pin_dir, "/" CPPNET_PIN_PROG_VLAN_PORT);
    unlink(pin.c_str());
    if (int err = bpf_program__pin(dp->skel_->progs.cppnet_tc_vlan_port, pin.c_str()); err)
      return absl::InternalError(
          absl::StrCat("BPF program cppnet_tc_vlan_port: pin ", pin, ": ", Err(err)));
  }
  const auto& m = dp->skel_->maps;
  const auto fds = std::to_array<int>({bpf_map__fd(m.cppnet_routes), bpf_map__fd(m.cppnet_config),
                                       bpf_map__fd(m.cppnet_stats), bpf_map__fd(m.cppnet_endpoint),
                                       bpf_map__fd(m.cppnet_peers), bpf_map__fd(m.cppnet_binds),
                                       bpf_map__fd(m.cppnet_routes6), bpf_map__fd(m.cppnet_endpt6),
                                       bpf_map__fd(m.cppnet_binds6), bpf_map__fd(m.cppnet_peers6)});
  // One fd per MapFds member, in its order (a short list would leave fd 0 in the last ones).
  static_assert(fds.size() == MapFds::kCount);
  dp->maps_ = MapFds(fds);
  // tcx links of container veths deleted while the agent was down: detached already, their
  // pins are all that is left.
  if (!pin_dir.empty()) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(pin_dir, ec)) {
      if (e.path().filename().string().rfind(CPPNET_LINK_TCX_PREFIX, 0) != 0) continue;
      auto on = TcxLinkIfindex(e.path().string());
      if (!on.ok() || *on == 0) unlink(e.path().c_str());
    }
  }
  return dp;
}

Datapath::~Datapath() {
  for (int fd : link_fds_) close(fd);
  if (skel_) cppnet_bpf__destroy(skel_);  // pinned links and tc filters stay
}

int Datapath::encap_prog_fd() const { return bpf_program__fd(skel_->progs.cppnet_tc_encap); }
int Datapath::bridge_out_prog_fd() const {
  return bpf_program__fd(skel_->progs.cppnet_tc_bridge_out);
}
int Datapath::underlay_prog_fd() const { return bpf_program__fd(skel_->progs.cppnet_tc_underlay); }
int Datapath::soft_prog_fd() const { return bpf_program__fd(skel_->progs.cppnet_tc_soft); }
int Datapath::host_prog_fd() const { return bpf_program__fd(skel_->progs.cppnet_tc_host); }
int Datapath::trunk_prog_fd() const { return bpf_program__fd(skel_->progs.cppnet_tc_trunk); }
int Datapath::vlan_port_prog_fd() const {
  return bpf_program__fd(skel_->progs.cppnet_tc_vlan_port);
}
int Datapath::vlan_port_netkit_prog_fd() const {
  return bpf_program__fd(skel_->progs.cppnet_nk_vlan_port);
}
int Datapath::vlan_miss_fd() const { return bpf_map__fd(skel_->maps.cppnet_vlan_miss); }
int Datapath::vlan_nbr_fd() const { return bpf_map__fd(skel_->maps.cppnet_vlan_nbr); }
int Datapath::queued_fd() const { return bpf_map__fd(skel_->maps.cppnet_queued); }
int Datapath::rates_fd() const { return bpf_map__fd(skel_->maps.cppnet_rates); }
int Datapath::pacing_fd() const { return bpf_map__fd(skel_->maps.cppnet_pacing); }
VlanMaps Datapath::vlan_maps() const {
  return VlanMaps(
      {bpf_map__fd(skel_->maps.cppnet_vlan_ep), bpf_map__fd(skel_->maps.cppnet_vlan_net),
       bpf_map__fd(skel_->maps.cppnet_vlan_port), bpf_map__fd(skel_->maps.cppnet_vlan_cnt)});
}
int Datapath::decap_prog_fd() const { return bpf_program__fd(skel_->progs.cppnet_xdp_decap); }

absl::Status Datapath::AttachXdp(int ifindex, const std::string& ifname) {
  const std::string pin = XdpPin(pin_dir_, ifname);
  // A link pinned by an earlier agent: swap the program in place, no gap in forwarding.
  bpf_link* old = std::filesystem::exists(pin) ? bpf_link__open(pin.c_str()) : nullptr;
  if (old) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    bool same_dev = bpf_obj_get_info_by_fd(bpf_link__fd(old), &info, &len) == 0 &&
                    info.xdp.ifindex == (uint32_t)ifindex;
    if (same_dev && bpf_link__update_program(old, skel_->progs.cppnet_xdp_decap) == 0) {
      bpf_link__destroy(old);  // closes our fd only: the pin keeps the link attached
      return absl::OkStatus();
    }
    bpf_link__unpin(old);  // stale: interface gone or recreated
    bpf_link__destroy(old);
  }
  bpf_link* link = bpf_program__attach_xdp(skel_->progs.cppnet_xdp_decap, ifindex);
  if (!link) {
    int err = errno;
    return absl::InternalError(
        absl::StrCat("interface ", ifname, ": attach XDP: ", Err(err),
                     err == EBUSY ? " (another XDP program is attached)" : ""));
  }
  if (!pin_dir_.empty()) {
    if (int err = bpf_link__pin(link, pin.c_str()); err) {
      bpf_link__destroy(link);
      return absl::InternalError(
          absl::StrCat("interface ", ifname, ": pin XDP link ", pin, ": ", Err(err)));
    }
  }
  // Closing our fd leaves the link attached through its pin, so it outlives the agent;
  // removing the pin then really detaches it (DetachXdp). Without a pin dir (tests),
  // this detaches at once.
  bpf_link__destroy(link);
  return absl::OkStatus();
}

void Datapath::DetachXdp(const std::string& ifname) {
  const std::string pin = XdpPin(pin_dir_, ifname);
  if (!std::filesystem::exists(pin)) return;
  if (bpf_link* link = bpf_link__open(pin.c_str())) {
    bpf_link__unpin(link);
    bpf_link__destroy(link);  // the last reference: the program leaves the interface
  }
}

absl::Status Datapath::AttachEncap(int ifindex, const std::string& ifname) {
  if (auto st = AttachTcIngress(encap_prog_fd(), ifindex, ifname); !st.ok()) return st;
  return AttachTcEgress(bridge_out_prog_fd(), ifindex, ifname);
}

static std::string TcxPin(const std::string& dir, int ifindex) {
  return absl::StrCat(dir, "/" CPPNET_LINK_TCX_PREFIX, ifindex);
}

static std::string TcxOutPin(const std::string& dir, int ifindex) {
  return absl::StrCat(dir, "/" CPPNET_LINK_TCX_OUT_PREFIX, ifindex);
}

absl::Status Datapath::AttachTcxPinned(int prog_fd, int ifindex, const std::string& ifname,
                                       bool old_clsact) {
  int keep = -1;
  auto st = AttachTcxIngress(prog_fd, ifindex, ifname,
                             pin_dir_.empty() ? "" : TcxPin(pin_dir_, ifindex), old_clsact, &keep);
  if (keep >= 0) link_fds_.push_back(keep);
  return st;
}

absl::Status Datapath::AttachPort(int ifindex, const std::string& ifname, bool old_clsact) {
  return AttachTcxPinned(encap_prog_fd(), ifindex, ifname, old_clsact);
}

absl::Status Datapath::AttachNetkitPinned(int prog_fd, int ifindex, const std::string& ifname) {
  int keep = -1;
  auto st = AttachNetkitPeer(prog_fd, ifindex, ifname,
                             pin_dir_.empty() ? "" : TcxPin(pin_dir_, ifindex), &keep);
  if (keep >= 0) link_fds_.push_back(keep);
  return st;
}

absl::Status Datapath::AttachNetkitPort(int ifindex, const std::string& ifname) {
  if (auto st = AttachNetkitPinned(bpf_program__fd(skel_->progs.cppnet_nk_encap), ifindex, ifname);
      !st.ok())
    return st;
  int keep = -1;
  auto st = AttachTcxEgress(bridge_out_prog_fd(), ifindex, ifname,
                            pin_dir_.empty() ? "" : TcxOutPin(pin_dir_, ifindex), &keep);
  if (keep >= 0) link_fds_.push_back(keep);
  return st;
}

void Datapath::DetachPort(int ifindex) {
  if (pin_dir_.empty()) return;
  unlink(TcxPin(pin_dir_, ifindex).c_str());  // the last reference
  unlink(TcxOutPin(pin_dir_, ifindex).c_str());
}

absl::Status Datapath::AttachUnderlay(int ifindex, const std::string& ifname) {
  return AttachTcIngress(underlay_prog_fd(), ifindex, ifname);
}

absl::Status Datapath::AttachHost(int ifindex, const std::string& ifname) {
  if (auto st = AttachTcEgress(host_prog_fd(), ifindex, ifname); !st.ok()) return st;
  return AttachTcIngress(soft_prog_fd(), ifindex, ifname);
}

absl::Status Datapath::AttachPaced(int ifindex, const std::string& ifname) {
  return AttachTcIngress(bpf_program__fd(skel_->progs.cppnet_tc_paced), ifindex, ifname);
}

absl::Status Datapath::AttachTrunk(int ifindex, const std::string& ifname) {
  return AttachTcIngress(trunk_prog_fd(), ifindex, ifname);
}

absl::Status Datapath::AttachVlanPort(int ifindex, const std::string& ifname, bool old_clsact,
                                      bool netkit) {
  if (!netkit) return AttachTcxPinned(vlan_port_prog_fd(), ifindex, ifname, old_clsact);
  return AttachNetkitPinned(vlan_port_netkit_prog_fd(), ifindex, ifname);
}

// The name of the program behind a tc filter, "" when it cannot be read.
static std::string ProgName(uint32_t prog_id) {
  int fd = bpf_prog_get_fd_by_id(prog_id);
  if (fd < 0) return "";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.name : "";
  close(fd);
  return name;
}

absl::StatusOr<std::vector<std::string>> Datapath::Cleanup(const std::string& pin_dir) {
  std::vector<std::string> done;
  if (struct if_nameindex* names = if_nameindex()) {
    for (struct if_nameindex* n = names; n->if_index; n++) {
      for (bpf_tc_attach_point where : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(n->if_index),
                    .attach_point = where);
        LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
        if (bpf_tc_query(&hook, &opts) != 0) continue;
        // Ours only: same handle/priority with a cppnet program.
        if (ProgName(opts.prog_id).rfind("cppnet_", 0) != 0) continue;
        const char* dir = where == BPF_TC_INGRESS ? "ingress" : "egress";
        LIBBPF_OPTS(bpf_tc_opts, del, .handle = kTcHandle, .priority = kTcPriority);
        if (int err = bpf_tc_detach(&hook, &del); err) {
          if_freenameindex(names);
          return absl::InternalError(
              absl::StrCat("interface ", n->if_name, ": remove tc ", dir, " filter: ", Err(err)));
        }
        done.push_back(absl::StrCat("tc ", dir, " filter on ", n->if_name));
      }
    }
    if_freenameindex(names);
  }
  std::error_code ec;
  if (!std::filesystem::exists(pin_dir, ec)) return done;
  for (const auto& e : std::filesystem::directory_iterator(pin_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(CPPNET_LINK_TCX_PREFIX, 0) == 0) {
      if (unlink(e.path().c_str()) != 0)  // the last reference: the program leaves the veth
        return absl::InternalError(absl::StrCat(e.path().string(), ": ", strerror(errno)));
      const bool out = name.rfind(CPPNET_LINK_TCX_OUT_PREFIX, 0) == 0;
      done.push_back(absl::StrCat(
          out ? "tcx egress program on ifindex " : "tcx program on ifindex ",
          name.substr(strlen(out ? CPPNET_LINK_TCX_OUT_PREFIX : CPPNET_LINK_TCX_PREFIX))));
      continue;
    }
    if (name.rfind(CPPNET_LINK_XDP_PREFIX, 0) == 0) {
      if (bpf_link* link = bpf_link__open(e.path().c_str())) {
        bpf_link__unpin(link);
        bpf_link__destroy(link);  // the last reference: XDP leaves the interface
        done.push_back(
            absl::StrCat("XDP program on ", name.substr(strlen(CPPNET_LINK_XDP_PREFIX))));
        continue;
      }
    }
    if (name.rfind("cppnet_", 0) != 0) continue;  // not one of our maps: leave it
    if (unlink(e.path().c_str()) != 0)
      return absl::InternalError(absl::StrCat(e.path().string(), ": ", strerror(errno)));
    done.push_back(absl::StrCat("map ", e.path().string()));
  }
  if (std::filesystem::is_empty(pin_dir, ec) && rmdir(pin_dir.c_str()) == 0)
    done.push_back(pin_dir);
  return done;
}

}  // namespace cppnet
