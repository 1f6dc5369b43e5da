#include "host_watcher.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/tc.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "cppnet/abi.h"
#include "log.h"

namespace cppnet {

namespace {
constexpr int kRecvBuffer = 4 << 20;  // a burst of container veths must not overflow it

std::optional<Prefix4> Ipv4Of(rtnl_addr* addr) {
  nl_addr* local = rtnl_addr_get_local(addr);
  if (rtnl_addr_get_family(addr) != AF_INET || !local || nl_addr_get_len(local) != 4)
    return std::nullopt;
  uint32_t ip;
  memcpy(&ip, nl_addr_get_binary_addr(local), 4);
  return Prefix4{ntohl(ip), static_cast<uint8_t>(rtnl_addr_get_prefixlen(addr))};
}

// Global IPv6 addresses only: link-local ones come and go with every interface.
std::optional<Prefix6> Ipv6Of(rtnl_addr* addr) {
  nl_addr* local = rtnl_addr_get_local(addr);
  if (rtnl_addr_get_family(addr) != AF_INET6 || !local || nl_addr_get_len(local) != 16 ||
      rtnl_addr_get_scope(addr) != RT_SCOPE_UNIVERSE)
    return std::nullopt;
  return Prefix6{FromBytes6(static_cast<const uint8_t*>(nl_addr_get_binary_addr(local))),
                 static_cast<uint8_t>(rtnl_addr_get_prefixlen(addr))};
}

// {ifindex, kind} of a qdisc object with parent `parent` (TC_H_ROOT, TC_H_INGRESS), nullopt
// for any other tc object.
std::optional<std::pair<int, std::string>> Qdisc(nl_object* o, uint32_t parent) {
  auto* tc = reinterpret_cast<rtnl_tc*>(o);
  if (rtnl_tc_get_parent(tc) != parent || !rtnl_tc_get_kind(tc)) return std::nullopt;
  return std::pair{rtnl_tc_get_ifindex(tc), std::string(rtnl_tc_get_kind(tc))};
}

template <typename P>
void Apply(std::map<int, std::vector<P>>* m, int ifindex, const P& p, bool add) {
  std::vector<P>& v = (*m)[ifindex];
  v.erase(std::remove(v.begin(), v.end(), p), v.end());
  if (add) v.push_back(p);
}
}  // namespace

absl::StatusOr<std::unique_ptr<HostWatcher>> HostWatcher::Start(
    std::function<void(unsigned)> on_change) {
  std::unique_ptr<HostWatcher> w(new HostWatcher());
  w->on_change_ = std::move(on_change);
  w->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->stop_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  // Subscribed before the dump: a change during it is seen again as an event.
  if (auto st = w->Subscribe(); !st.ok()) return st;
  if (auto st = w->Dump(); !st.ok()) return st;
  w->thread_ = std::thread([p = w.get()] { p->Loop(); });
  return w;
}

HostWatcher::~HostWatcher() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    thread_.join();
  }
  if (sock_) nl_socket_free(sock_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

absl::Status HostWatcher::Subscribe() {
  sock_ = nl_socket_alloc();
  if (!sock_) return absl::InternalError("netlink: cannot allocate a socket");
  nl_socket_disable_seq_check(sock_);  // notifications carry no sequence numbers
  nl_socket_modify_cb(sock_, NL_CB_VALID, NL_CB_CUSTOM, &HostWatcher::OnMessage, this);
  if (int err = nl_connect(sock_, NETLINK_ROUTE); err < 0)
    return absl::InternalError(absl::StrCat("netlink: connect: ", nl_geterror(err)));
  if (int err = nl_socket_add_memberships(sock_, RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR,
                                          RTNLGRP_IPV6_IFADDR, RTNLGRP_TC, 0);
      err < 0)
    return absl::InternalError(absl::StrCat("netlink: subscribe: ", nl_geterror(err)));
  (void)nl_socket_set_buffer_size(sock_, kRecvBuffer, 0);
  (void)nl_socket_set_nonblocking(sock_);
  return absl::OkStatus();
}

absl::Status HostWatcher::Dump() {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  nl_cache *links = nullptr, *addrs = nullptr, *qdiscs = nullptr;
  if (int err = rtnl_link_alloc_cache(sk->get(), AF_UNSPEC, &links); err < 0)
    return absl::InternalError(absl::StrCat("netlink: list links: ", nl_geterror(err)));
  if (int err = rtnl_addr_alloc_cache(sk->get(), &addrs); err < 0) {
    nl_cache_free(links);
    return absl::InternalError(absl::StrCat("netlink: list addresses: ", nl_geterror(err)));
  }
  if (int err = rtnl_qdisc_alloc_cache(sk->get(), &qdiscs); err < 0) {
    nl_cache_free(links);
    nl_cache_free(addrs);
    return absl::InternalError(absl::StrCat("netlink: list qdiscs: ", nl_geterror(err)));
  }
  std::map<int, std::string> roots, ingress;
  for (nl_object* o = nl_cache_get_first(qdiscs); o; o = nl_cache_get_next(o)) {
    if (auto r = Qdisc(o, TC_H_ROOT)) roots[r->first] = r->second;
    if (auto r = Qdisc(o, TC_H_INGRESS)) ingress[r->first] = r->second;
  }
  nl_cache_free(qdiscs);
  std::map<int, Link> l;
  std::map<int, std::vector<Prefix4>> a;
  std::map<int, std::vector<Prefix6>> a6;
  for (nl_object* o = nl_cache_get_first(links); o; o = nl_cache_get_next(o)) {
    auto* link = reinterpret_cast<rtnl_link*>(o);
    l[rtnl_link_get_ifindex(link)] = Link{DescribeLink(nullptr, link), rtnl_link_get_master(link)};
  }
  for (nl_object* o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(o);
    if (auto p = Ipv4Of(addr)) a[rtnl_addr_get_ifindex(addr)].push_back(*p);
    if (auto p = Ipv6Of(addr)) a6[rtnl_addr_get_ifindex(addr)].push_back(*p);
  }
  nl_cache_free(links);
  nl_cache_free(addrs);
  std::lock_guard<std::mutex> g(mu_);
  links_ = std::move(l);
  addrs_ = std::move(a);
  addrs6_ = std::move(a6);
  root_qdisc_ = std::move(roots);
  ingress_qdisc_ = std::move(ingress);
  dumps_ += 3;
  return absl::OkStatus();
}

int HostWatcher::OnMessage(nl_msg* msg, void* arg) {
  auto* w = static_cast<HostWatcher*>(arg);
  nlmsghdr* hdr = nlmsg_hdr(msg);
  w->msg_type_ = hdr->nlmsg_type;
  if (w->msg_type_ == RTM_NEWLINK || w->msg_type_ == RTM_DELLINK) {
    // Bridge and IPv6 per-link notifications (AF_BRIDGE, AF_INET6) describe a part of
    // a link; the AF_UNSPEC one describes the link itself. (libnl reports a bridge's
    // family as AF_BRIDGE either way, so the header decides.)
    if (!nlmsg_valid_hdr(hdr, sizeof(ifinfomsg)) ||
        static_cast<ifinfomsg*>(nlmsg_data(hdr))->ifi_family != AF_UNSPEC)
      return NL_OK;
  }
  (void)nl_msg_parse(msg, &HostWatcher::OnObject, arg);
  return NL_OK;
}

// One link or address notification applied to the state.
void HostWatcher::OnObject(nl_object* obj, void* arg) {
  auto* w = static_cast<HostWatcher*>(arg);
  const std::string type = nl_object_get_type(obj);
  std::lock_guard<std::mutex> g(w->mu_);
  if (type == "route/link") {
    auto* link = reinterpret_cast<rtnl_link*>(obj);
    const int ifindex = rtnl_link_get_ifindex(link);
    if (w->msg_type_ == RTM_DELLINK) {
      w->links_.erase(ifindex);
      w->addrs_.erase(ifindex);
      w->addrs6_.erase(ifindex);
      w->root_qdisc_.erase(ifindex);
      w->ingress_qdisc_.erase(ifindex);
    } else {
      w->links_[ifindex] = Link{DescribeLink(nullptr, link), rtnl_link_get_master(link)};
    }
    w->pending_ |= kLinks;
  } else if (type == "route/qdisc") {
    for (auto [parent, map] :
         {std::pair{TC_H_ROOT, &w->root_qdisc_}, std::pair{TC_H_INGRESS, &w->ingress_qdisc_}}) {
      auto r = Qdisc(obj, parent);
      if (!r) continue;
      if (w->msg_type_ == RTM_DELQDISC)
        map->erase(r->first);
      else
        (*map)[r->first] = r->second;
      w->pending_ |= kQdiscs;
    }
  } else if (type == "route/addr") {
    auto* addr = reinterpret_cast<rtnl_addr*>(obj);
    const bool add = w->msg_type_ == RTM_NEWADDR;
    if (auto p = Ipv4Of(addr))
      Apply(&w->addrs_, rtnl_addr_get_ifindex(addr), *p, add);
    else if (auto p6 = Ipv6Of(addr))
      Apply(&w->addrs6_, rtnl_addr_get_ifindex(addr), *p6, add);
    else
      return;
    w->pending_ |= kAddrs;
  }
}

void HostWatcher::Loop() {
  const int nl_fd = nl_socket_get_fd(sock_);
  for (;;) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {nl_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("Host watcher: poll: ", strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    pending_ = 0;
    if (fds[1].revents) {
      int err;
      while ((err = nl_recvmsgs_default(sock_)) >= 0) {
      }
      if (err != -NLE_AGAIN) {
        // Notifications were lost (socket overrun): what we hold may be stale. Dump again.
        LOG_WARN("Host watcher: netlink: ", nl_geterror(err), "; re-reading links and addresses");
        if (auto st = Dump(); !st.ok()) LOG_ERROR("Host watcher: ", st.message());
        pending_ |= kLinks | kAddrs | kQdiscs;
      }
    }
    if (pending_) on_change_(pending_);
  }
}

Interface HostWatcher::WithAddrs(const Link& l) const {
  Interface i = l.ifc;
  if (auto it = addrs_.find(i.ifindex); it != addrs_.end()) i.addrs = it->second;
  if (auto it = addrs6_.find(i.ifindex); it != addrs6_.end()) i.addrs6 = it->second;
  return i;
}

std::optional<Interface> HostWatcher::Find(const std::string& name) const {
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& [ifindex, l] : links_)
    if (l.ifc.name == name) return WithAddrs(l);
  return std::nullopt;
}

std::optional<Interface> HostWatcher::FindByIndex(int ifindex) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = links_.find(ifindex);
  if (it == links_.end()) return std::nullopt;
  return WithAddrs(it->second);
}

std::optional<Interface> HostWatcher::WithAddressIn(const Prefix4& subnet) const {
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& [ifindex, v] : addrs_) {
    auto l = links_.find(ifindex);
    // Our own device holds the subnet's .0 (the host's overlay address): not the bridge.
    if (l == links_.end() || l->second.ifc.name == CPPNET_HOST_DEV) continue;
    for (const Prefix4& a : v)
      if (subnet.contains(a.addr)) return WithAddrs(l->second);
  }
  return std::nullopt;
}

std::optional<Interface> HostWatcher::WithAddressIn(const Prefix6& subnet) const {
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& [ifindex, v] : addrs6_) {
    auto l = links_.find(ifindex);
    if (l == links_.end() || l->second.ifc.name == CPPNET_HOST_DEV) continue;
    for (const Prefix6& a : v)
      if (subnet.contains(a.addr)) return WithAddrs(l->second);
  }
  return std::nullopt;
}

std::vector<int> HostWatcher::Queued() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<int> out;
  for (const auto& [ifindex, kind] : root_qdisc_)
    if (kind != "noqueue") out.push_back(ifindex);
  return out;
}

std::string HostWatcher::IngressQdisc(int ifindex) const {
  std::lock_guard<std::mutex> g(mu_);
  auto it = ingress_qdisc_.find(ifindex);
  return it == ingress_qdisc_.end() ? "" : it->second;
}

std::vector<int> HostWatcher::WithIngressQdisc() const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<int> out;
  for (const auto& [ifindex, kind] : ingress_qdisc_)
    if (kind == "ingress") out.push_back(ifindex);
  return out;
}

std::vector<Interface> HostWatcher::PortsOf(int master_ifindex) const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<Interface> out;
  for (const auto& [ifindex, l] : links_)
    if (l.master == master_ifindex) out.push_back(l.ifc);
  return out;
}

std::vector<Interface> HostWatcher::OfKind(const std::string& kind,
                                           const std::string& prefix) const {
  std::lock_guard<std::mutex> g(mu_);
  std::vector<Interface> out;
  for (const auto& [ifindex, l] : links_)
    if (l.ifc.kind == kind && l.ifc.name.rfind(prefix, 0) == 0) out.push_back(l.ifc);
  return out;
}

}  // namespace cppnet
