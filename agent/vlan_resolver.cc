#include "vlan_resolver.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/nd.h"
#include "log.h"

namespace cppnet {

absl::StatusOr<std::unique_ptr<VlanResolver>> VlanResolver::Start(int miss_fd, int net_fd) {
  std::unique_ptr<VlanResolver> r(new VlanResolver());
  r->net_fd_ = net_fd;
  // Send-only packet socket (protocol 0: receives nothing).
  r->sock_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (r->sock_ < 0) return absl::InternalError(absl::StrCat("packet socket: ", strerror(errno)));
  r->rb_ = ring_buffer__new(miss_fd, &VlanResolver::OnEvent, r.get(), nullptr);
  if (!r->rb_) return absl::InternalError(absl::StrCat("map " CPPNET_MAP_VLAN_MISS ": ", strerror(errno)));
  VlanResolver* self = r.get();
  r->thread_ = std::thread([self] {
    while (!self->stop_.load()) ring_buffer__poll(self->rb_, 200);
  });
  return r;
}

VlanResolver::~VlanResolver() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (rb_) ring_buffer__free(rb_);
  if (sock_ >= 0) close(sock_);
}

int VlanResolver::OnEvent(void* ctx, void* data, size_t len) {
  if (len >= sizeof(cppnet_vlan_miss)) static_cast<VlanResolver*>(ctx)->Resolve(*static_cast<cppnet_vlan_miss*>(data));
  return 0;
}

void VlanResolver::Resolve(const cppnet_vlan_miss& ev) {
  const bool v4 = ev.kind == CPPNET_VLAN_ADDR_IPV4;
  const std::string target(reinterpret_cast<const char*>(ev.target), v4 ? 4 : 16);
  const absl::Time now = absl::Now();
  // Remember recent requests only: an endpoint sweeping its subnet must not grow this.
  if (asked_.size() >= 4096)
    std::erase_if(asked_, [&](const auto& kv) { return now - kv.second >= absl::Seconds(1); });
  auto& last = asked_[{ev.trunk_ifindex, ev.vlan, target}];
  if (now - last < absl::Seconds(1)) return;
  last = now;
  cppnet_vlan_net_key nk{ev.trunk_ifindex, ev.vlan, 0};
  cppnet_vlan_net net{};
  if (bpf_map_lookup_elem(net_fd_, &nk, &net) != 0) return;  // network gone meanwhile
  Mac mac;
  memcpy(mac.data(), net.trunk_mac, 6);
  const std::vector<uint8_t> frame = v4 ? BuildArpRequest(mac, ev.vlan, ev.src, ev.target)
                                        : BuildNeighborSolicitation(mac, ev.vlan, ev.src, ev.target);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(ev.trunk_ifindex);
  to.sll_halen = 6;
  memcpy(to.sll_addr, frame.data(), 6);
  if (sendto(sock_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    char name[IF_NAMESIZE] = "?";
    if_indextoname(ev.trunk_ifindex, name);
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(v4 ? AF_INET : AF_INET6, ev.target, text, sizeof(text));
    LOG_WARN("VLAN ", ev.vlan, " on ", name, ": resolving ", text, ": send: ", strerror(errno));
  }
}

}  // namespace cppnet
