#include "vlan_resolver.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cppnet/maps.h"
#include "cppnet/nd.h"
#include "log.h"

namespace cppnet {

namespace {
constexpr double kRequestsPerVlanPerSecond = 100;
constexpr absl::Duration kRefreshEvery = absl::Seconds(30);
constexpr size_t kMaxRemembered = 16384;

cppnet_vlan_ep_key KeyOf(uint32_t trunk, uint16_t vlan, bool v4, const std::string& addr) {
  cppnet_vlan_ep_key k{};
  k.trunk_ifindex = trunk;
  k.vlan = vlan;
  k.kind = v4 ? CPPNET_VLAN_ADDR_IPV4 : CPPNET_VLAN_ADDR_IPV6;
  memcpy(k.addr, addr.data(), std::min(addr.size(), sizeof(k.addr)));
  return k;
}
}  // namespace

absl::StatusOr<std::unique_ptr<VlanResolver>> VlanResolver::Start(int miss_fd, int net_fd,
                                                                  int nbr_fd) {
  std::unique_ptr<VlanResolver> r(new VlanResolver());
  r->net_fd_ = net_fd;
  r->nbr_fd_ = nbr_fd;
  // Send-only packet socket (protocol 0: receives nothing).
  r->sock_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (r->sock_ < 0) return absl::InternalError(absl::StrCat("packet socket: ", strerror(errno)));
  r->rb_ = ring_buffer__new(miss_fd, &VlanResolver::OnEvent, r.get(), nullptr);
  if (!r->rb_)
    return absl::InternalError(absl::StrCat("map " CPPNET_MAP_VLAN_MISS ": ", strerror(errno)));
  VlanResolver* self = r.get();
  r->next_refresh_ = absl::Now() + kRefreshEvery;
  r->thread_ = std::thread([self] {
    while (!self->stop_.load()) {
      ring_buffer__poll(self->rb_, 200);
      if (absl::Now() >= self->next_refresh_) {
        self->Refresh();
        self->next_refresh_ = absl::Now() + kRefreshEvery;
      }
    }
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
  if (len >= sizeof(cppnet_vlan_miss))
    static_cast<VlanResolver*>(ctx)->Resolve(*static_cast<cppnet_vlan_miss*>(data));
  return 0;
}

bool VlanResolver::Budget(uint32_t trunk, uint16_t vlan, absl::Time now) {
  Bucket& b = budget_[{trunk, vlan}];
  b.tokens = std::min(kRequestsPerVlanPerSecond,
                      b.tokens + absl::ToDoubleSeconds(now - b.at) * kRequestsPerVlanPerSecond);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void VlanResolver::Resolve(const cppnet_vlan_miss& ev) {
  if (ev.kind != CPPNET_VLAN_ADDR_IPV4 && ev.kind != CPPNET_VLAN_ADDR_IPV6) return;
  const bool v4 = ev.kind == CPPNET_VLAN_ADDR_IPV4;
  const Target t{ev.trunk_ifindex, ev.vlan,
                 std::string(reinterpret_cast<const char*>(ev.target), v4 ? 4 : 16)};
  const absl::Time now = absl::Now();
  // Remember recent requests only: an endpoint sweeping its subnet must not grow this.
  if (asked_.size() >= 4096)
    std::erase_if(asked_, [&](const auto& kv) { return now - kv.second >= absl::Seconds(1); });
  auto& last = asked_[t];
  if (now - last < absl::Seconds(1) || !Budget(ev.trunk_ifindex, ev.vlan, now)) return;
  last = now;
  // Mark it asked for: only then does the datapath take an answer for it.
  const cppnet_vlan_ep_key k = KeyOf(ev.trunk_ifindex, ev.vlan, v4, std::get<2>(t));
  cppnet_vlan_nbr pending{};
  pending.state = CPPNET_NBR_PENDING;
  if (bpf_map_update_elem(nbr_fd_, &k, &pending, BPF_NOEXIST) != 0 && errno != EEXIST) return;
  if (sources_.size() >= kMaxRemembered) sources_.clear();
  sources_[t] = std::string(reinterpret_cast<const char*>(ev.src), v4 ? 4 : 16);
  Send(ev.trunk_ifindex, ev.vlan, v4, ev.src, ev.target);
}

// Known next hops are asked again, so a moved address is followed through answers to
// our own requests; what stayed unanswered for a whole round is forgotten (the next
// packet to it asks anew).
void VlanResolver::Refresh() {
  auto all = DumpMap<cppnet_vlan_ep_key, cppnet_vlan_nbr>(nbr_fd_, CPPNET_MAP_VLAN_NBR);
  if (!all.ok()) {
    LOG_WARN(all.status().message());
    return;
  }
  const absl::Time now = absl::Now();
  for (auto& [k, n] : *all) {
    const bool v4 = k.kind == CPPNET_VLAN_ADDR_IPV4;
    const Target t{k.trunk_ifindex, k.vlan,
                   std::string(reinterpret_cast<const char*>(k.addr), v4 ? 4 : 16)};
    auto src = sources_.find(t);
    if (n.state != CPPNET_NBR_RESOLVED || src == sources_.end() ||
        !Budget(k.trunk_ifindex, k.vlan, now)) {
      (void)bpf_map_delete_elem(nbr_fd_, &k);
      continue;
    }
    n.state = CPPNET_NBR_REFRESH;
    if (bpf_map_update_elem(nbr_fd_, &k, &n, BPF_EXIST) != 0) continue;
    Send(k.trunk_ifindex, k.vlan, v4, reinterpret_cast<const uint8_t*>(src->second.data()), k.addr);
  }
}

void VlanResolver::Send(uint32_t trunk, uint16_t vlan, bool v4, const uint8_t* src,
                        const uint8_t* target) {
  cppnet_vlan_net_key nk{trunk, vlan, 0};
  cppnet_vlan_net net{};
  if (bpf_map_lookup_elem(net_fd_, &nk, &net) != 0) return;  // network gone meanwhile
  Mac mac;
  memcpy(mac.data(), net.trunk_mac, 6);
  const std::vector<uint8_t> frame = v4 ? BuildArpRequest(mac, vlan, src, target)
                                        : BuildNeighborSolicitation(mac, vlan, src, target);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(trunk);
  to.sll_halen = 6;
  memcpy(to.sll_addr, frame.data(), 6);
  if (sendto(sock_, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) <
      0) {
    char name[IF_NAMESIZE] = "?";
    if_indextoname(trunk, name);
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(v4 ? AF_INET : AF_INET6, target, text, sizeof(text));
    LOG_WARN("VLAN ", vlan, " on ", name, ": resolving ", text, ": send: ", strerror(errno));
  }
}

}  // namespace cppnet
