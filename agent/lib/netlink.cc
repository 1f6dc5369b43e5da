#include "cppnet/netlink.h"

#include <arpa/inet.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace cppnet {

void NlSockDeleter::operator()(nl_sock* s) const { nl_socket_free(s); }

absl::StatusOr<NlSock> NlConnect() {
  NlSock sk(nl_socket_alloc());
  if (!sk) return absl::InternalError("netlink: cannot allocate a socket");
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0)
    return absl::InternalError(absl::StrCat("netlink: connect: ", nl_geterror(err)));
  return sk;
}

namespace {

struct CacheDeleter {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using Cache = std::unique_ptr<nl_cache, CacheDeleter>;

struct Snapshot {
  NlSock sock;
  Cache links, addrs;
};

absl::StatusOr<Snapshot> Take(bool with_addrs = true) {
  Snapshot s;
  auto sock = NlConnect();
  if (!sock.ok()) return sock.status();
  s.sock = std::move(*sock);
  nl_cache* c = nullptr;
  if (int err = rtnl_link_alloc_cache(s.sock.get(), AF_UNSPEC, &c); err < 0)
    return absl::InternalError(absl::StrCat("netlink: list links: ", nl_geterror(err)));
  s.links.reset(c);
  if (!with_addrs) return s;
  if (int err = rtnl_addr_alloc_cache(s.sock.get(), &c); err < 0)
    return absl::InternalError(absl::StrCat("netlink: list addresses: ", nl_geterror(err)));
  s.addrs.reset(c);
  return s;
}

}  // namespace

Interface DescribeLink(nl_cache* addrs, rtnl_link* link) {
  Interface i;
  i.ifindex = rtnl_link_get_ifindex(link);
  i.name = rtnl_link_get_name(link);
  i.mtu = static_cast<int>(rtnl_link_get_mtu(link));
  if (const char* kind = rtnl_link_get_type(link)) i.kind = kind;
  if (nl_addr* a = rtnl_link_get_addr(link); a && nl_addr_get_len(a) == 6)
    memcpy(i.mac.data(), nl_addr_get_binary_addr(a), 6);
  for (nl_object* o = addrs ? nl_cache_get_first(addrs) : nullptr; o; o = nl_cache_get_next(o)) {
    auto* addr = reinterpret_cast<rtnl_addr*>(o);
    if (rtnl_addr_get_ifindex(addr) != i.ifindex || rtnl_addr_get_family(addr) != AF_INET) continue;
    nl_addr* local = rtnl_addr_get_local(addr);
    if (!local || nl_addr_get_len(local) != 4) continue;
    uint32_t ip;
    memcpy(&ip, nl_addr_get_binary_addr(local), 4);
    i.addrs.push_back(Prefix4{ntohl(ip), static_cast<uint8_t>(rtnl_addr_get_prefixlen(addr))});
  }
  return i;
}

namespace {
Interface Describe(const Snapshot& s, rtnl_link* link) { return DescribeLink(s.addrs.get(), link); }
}  // namespace

absl::StatusOr<Interface> FindInterface(const std::string& name_or_ip) {
  auto s = Take();
  if (!s.ok()) return s.status();
  if (rtnl_link* link = rtnl_link_get_by_name(s->links.get(), name_or_ip.c_str())) {
    Interface i = Describe(*s, link);
    rtnl_link_put(link);
    return i;
  }
  if (auto ip = ParseIp4(name_or_ip); ip.ok()) {
    for (nl_object* o = nl_cache_get_first(s->links.get()); o; o = nl_cache_get_next(o)) {
      Interface i = Describe(*s, reinterpret_cast<rtnl_link*>(o));
      for (const Prefix4& a : i.addrs)
        if (a.addr == *ip) return i;
    }
    return absl::NotFoundError(absl::StrCat("no interface has the address ", name_or_ip));
  }
  return absl::NotFoundError(absl::StrCat("interface ", name_or_ip, ": no such device"));
}

absl::StatusOr<Interface> DefaultRouteInterface() {
  auto s = Take();
  if (!s.ok()) return s.status();
  nl_cache* routes = nullptr;
  if (int err = rtnl_route_alloc_cache(s->sock.get(), AF_INET, 0, &routes); err < 0)
    return absl::InternalError(absl::StrCat("netlink: list routes: ", nl_geterror(err)));
  Cache rc(routes);
  for (nl_object* o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    nl_addr* dst = rtnl_route_get_dst(r);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || (dst && nl_addr_get_prefixlen(dst) != 0))
      continue;
    if (rtnl_route_get_nnexthops(r) < 1) continue;
    int ifindex = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(r, 0));
    if (rtnl_link* link = rtnl_link_get(s->links.get(), ifindex)) {
      Interface i = Describe(*s, link);
      rtnl_link_put(link);
      return i;
    }
  }
  return absl::NotFoundError("no default route: name the underlay with --iface");
}

std::optional<Interface> InterfaceWithAddressIn(const Prefix4& subnet) {
  auto s = Take();
  if (!s.ok()) return std::nullopt;
  for (nl_object* o = nl_cache_get_first(s->links.get()); o; o = nl_cache_get_next(o)) {
    Interface i = Describe(*s, reinterpret_cast<rtnl_link*>(o));
    for (const Prefix4& a : i.addrs)
      if (subnet.contains(a.addr)) return i;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<Interface>> PortsOf(int master_ifindex) {
  auto s = Take(/*with_addrs=*/false);
  if (!s.ok()) return s.status();
  std::vector<Interface> out;
  for (nl_object* o = nl_cache_get_first(s->links.get()); o; o = nl_cache_get_next(o)) {
    auto* link = reinterpret_cast<rtnl_link*>(o);
    if (rtnl_link_get_master(link) == master_ifindex) out.push_back(Describe(*s, link));
  }
  return out;
}

}  // namespace cppnet
