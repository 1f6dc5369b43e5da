#include "cppnet/netlink.h"

#include <arpa/inet.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/matchall.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/class.h>
#include <netlink/route/qdisc/fifo.h>
#include <netlink/route/qdisc/htb.h>
#include <netlink/route/qdisc/tbf.h>
#include <netlink/route/tc.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "cppnet/abi.h"
#include "cppnet/underlay.h"

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
    if (rtnl_addr_get_ifindex(addr) != i.ifindex) continue;
    nl_addr* local = rtnl_addr_get_local(addr);
    if (rtnl_addr_get_family(addr) == AF_INET6 && local && nl_addr_get_len(local) == 16 &&
        rtnl_addr_get_scope(addr) == RT_SCOPE_UNIVERSE) {
      i.addrs6.push_back(
          Prefix6{FromBytes6(static_cast<const uint8_t*>(nl_addr_get_binary_addr(local))),
                  static_cast<uint8_t>(rtnl_addr_get_prefixlen(addr))});
      continue;
    }
    if (rtnl_addr_get_family(addr) != AF_INET) continue;
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
  if (auto ip6 = ParseIp6(name_or_ip); ip6.ok()) {
    for (nl_object* o = nl_cache_get_first(s->links.get()); o; o = nl_cache_get_next(o)) {
      Interface i = Describe(*s, reinterpret_cast<rtnl_link*>(o));
      for (const Prefix6& a : i.addrs6)
        if (a.addr == *ip6) return i;
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

absl::Status NlErr(const std::string& what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", nl_geterror(err)));
}

Mac LinkMac(nl_sock* sk, int ifindex) {
  Mac mac{};
  rtnl_link* l = nullptr;
  if (rtnl_link_get_kernel(sk, ifindex, nullptr, &l) == 0) {
    if (nl_addr* a = rtnl_link_get_addr(l); a && nl_addr_get_len(a) == 6)
      memcpy(mac.data(), nl_addr_get_binary_addr(a), 6);
    rtnl_link_put(l);
  }
  return mac;
}

// Sets interface flag `flag` (IFF_UP, IFF_NOARP, ...); `what` names the change in errors.
static absl::Status SetFlag(nl_sock* sk, int ifindex, const std::string& name, unsigned flag,
                            const char* what) {
  rtnl_link* orig = rtnl_link_alloc();
  rtnl_link* change = rtnl_link_alloc();
  rtnl_link_set_ifindex(orig, ifindex);
  rtnl_link_set_flags(change, flag);
  int err = rtnl_link_change(sk, orig, change, 0);
  rtnl_link_put(orig);
  rtnl_link_put(change);
  return err < 0 ? NlErr(absl::StrCat("interface ", name, ": ", what), err) : absl::OkStatus();
}

absl::Status SetUp(nl_sock* sk, int ifindex, const std::string& name) {
  return SetFlag(sk, ifindex, name, IFF_UP, "set up");
}

absl::Status SetNoArp(nl_sock* sk, int ifindex, const std::string& name) {
  return SetFlag(sk, ifindex, name, IFF_NOARP, "turn ARP off");
}

absl::Status DeleteLink(nl_sock* sk, const std::string& name) {
  rtnl_link* l = rtnl_link_alloc();
  rtnl_link_set_name(l, name.c_str());
  int err = rtnl_link_delete(sk, l);
  rtnl_link_put(l);
  if (err < 0 && err != -NLE_NODEV && err != -NLE_OBJ_NOTFOUND)
    return NlErr(absl::StrCat("interface ", name, ": delete"), err);
  return absl::OkStatus();
}

absl::Status WriteSysctl(const std::string& path, const char* value) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return absl::InternalError(absl::StrCat(path, ": ", strerror(errno)));
  fputs(value, f);
  return fclose(f) == 0 ? absl::OkStatus()
                        : absl::InternalError(absl::StrCat(path, ": ", strerror(errno)));
}

// linux/if_link.h of Linux 6.7+ (bookworm's UAPI headers predate netkit).
namespace netkit {
constexpr int kInfoPeerInfo = 1, kInfoPolicy = 3, kInfoPeerPolicy = 4, kInfoMode = 5;
// Linux 6.14+; older kernels skip attributes they do not know.
constexpr int kInfoHeadroom = 8;
constexpr uint32_t kPass = 0, kDrop = 2;
constexpr uint32_t kModeL2 = 0;
}  // namespace netkit

absl::Status CreateNetkitPair(nl_sock* sk, const NetkitSpec& s) {
  const std::string what = absl::StrCat("netkit ", s.primary, "/", s.peer);
  struct MsgDeleter {
    void operator()(nl_msg* m) const { nlmsg_free(m); }
  };
  std::unique_ptr<nl_msg, MsgDeleter> msg(
      nlmsg_alloc_simple(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL));
  if (!msg) return absl::ResourceExhaustedError(absl::StrCat(what, ": no memory"));
  nl_msg* m = msg.get();
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifinfomsg peer_ifi{};
  peer_ifi.ifi_family = AF_UNSPEC;
  bool ok = nlmsg_append(m, &ifi, sizeof(ifi), NLMSG_ALIGNTO) == 0 &&
            nla_put_string(m, IFLA_IFNAME, s.primary.c_str()) == 0 &&
            nla_put_u32(m, IFLA_MTU, s.mtu) == 0;
  nlattr* info = ok ? nla_nest_start(m, IFLA_LINKINFO) : nullptr;
  ok = info && nla_put_string(m, IFLA_INFO_KIND, "netkit") == 0;
  nlattr* data = ok ? nla_nest_start(m, IFLA_INFO_DATA) : nullptr;
  ok = data && nla_put_u32(m, netkit::kInfoMode, netkit::kModeL2) == 0 &&
       nla_put_u32(m, netkit::kInfoPolicy, netkit::kPass) == 0 &&
       nla_put_u32(m, netkit::kInfoPeerPolicy, netkit::kDrop) == 0;
  if (ok && s.headroom) ok = nla_put_u16(m, netkit::kInfoHeadroom, s.headroom) == 0;
  // The peer's settings: an ifinfomsg and its attributes, nested (as a veth's peer).
  nlattr* peer = ok ? nla_nest_start(m, netkit::kInfoPeerInfo) : nullptr;
  ok = peer && nlmsg_append(m, &peer_ifi, sizeof(peer_ifi), NLMSG_ALIGNTO) == 0 &&
       nla_put_string(m, IFLA_IFNAME, s.peer.c_str()) == 0 && nla_put_u32(m, IFLA_MTU, s.mtu) == 0;
  if (ok && s.peer_mac != Mac{}) ok = nla_put(m, IFLA_ADDRESS, 6, s.peer_mac.data()) == 0;
  if (ok && s.peer_netns_fd >= 0) ok = nla_put_u32(m, IFLA_NET_NS_FD, s.peer_netns_fd) == 0;
  if (!ok) return absl::ResourceExhaustedError(absl::StrCat(what, ": request too large"));
  nla_nest_end(m, peer);
  nla_nest_end(m, data);
  nla_nest_end(m, info);
  int err = nl_send_auto(sk, m);
  if (err >= 0) err = nl_wait_for_ack(sk);
  return err < 0 ? NlErr(absl::StrCat(what, ": create"), err) : absl::OkStatus();
}

absl::Status NetkitSupported() {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  // Names no container or agent uses; a pair left by an interrupted probe is replaced.
  const NetkitSpec probe{.primary = "cppnet.nkprobe", .peer = "cppnet.nkpeer"};
  (void)DeleteLink(sk->get(), probe.primary);
  auto st = CreateNetkitPair(sk->get(), probe);
  (void)DeleteLink(sk->get(), probe.primary);
  return st;
}

// One legacy ethtool feature switch (ETHTOOL_S*), as `ethtool -K` sends it.
static absl::Status EthtoolSet(const char* ifname, uint32_t cmd, uint32_t value, const char* what) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  ethtool_value v{cmd, value};
  ifreq ifr{};
  snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
  ifr.ifr_data = reinterpret_cast<char*>(&v);
  int rc = ioctl(fd, SIOCETHTOOL, &ifr);
  int err = errno;
  close(fd);
  if (rc != 0)
    return absl::InternalError(absl::StrCat("interface ", ifname, ": ", what, ": ", strerror(err)));
  return absl::OkStatus();
}

// Creates the veth pair `a`/`b` (both NOARP when `noarp_both`, else only `a`) with MTU `mtu`
// unless both exist; half a pair is deleted first.
static absl::Status EnsureVethPair(nl_sock* sk, const char* a, const char* b, unsigned mtu,
                                   bool noarp_both) {
  if (if_nametoindex(a) && if_nametoindex(b)) return absl::OkStatus();
  (void)DeleteLink(sk, a);  // half a pair: start over
  rtnl_link* veth = rtnl_link_veth_alloc();
  rtnl_link* peer = rtnl_link_veth_get_peer(veth);
  rtnl_link_set_name(veth, a);
  rtnl_link_set_name(peer, b);
  rtnl_link_set_flags(veth, IFF_NOARP);  // on-link destinations need no neighbours
  if (noarp_both) rtnl_link_set_flags(peer, IFF_NOARP);
  rtnl_link_set_mtu(veth, mtu);
  rtnl_link_set_mtu(peer, mtu);
  int err = rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL);
  rtnl_link_put(peer);
  rtnl_link_put(veth);
  if (err < 0) return NlErr(absl::StrCat("veth ", a, "/", b, ": create"), err);
  return absl::OkStatus();
}

absl::StatusOr<HostDevices> EnsureHostDevices(int mtu, bool ipv6) {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  const char* host = CPPNET_HOST_DEV;
  const char* soft = CPPNET_SOFT_DEV;
  if (auto st = EnsureVethPair(sk->get(), host, soft, static_cast<unsigned>(mtu), false); !st.ok())
    return st;
  HostDevices d;
  d.host_ifindex = static_cast<int>(if_nametoindex(host));
  d.soft_ifindex = static_cast<int>(if_nametoindex(soft));
  if (!d.host_ifindex || !d.soft_ifindex)
    return absl::InternalError(absl::StrCat("veth ", host, "/", soft, " vanished"));
  if (ipv6) {  // before IPv6 comes up there: no link-local address, nothing sent on its own
    for (const auto& [key, value] : {std::pair{"addr_gen_mode", "1"},
                                     {"accept_dad", "0"},
                                     {"router_solicitations", "0"},
                                     {"accept_ra", "0"}})
      (void)WriteSysctl(absl::StrCat("/proc/sys/net/ipv6/conf/", host, "/", key), value);
  }
  for (const auto& [dev, ifindex] : {std::pair{host, d.host_ifindex}, {soft, d.soft_ifindex}}) {
    (void)WriteSysctl(absl::StrCat("/proc/sys/net/ipv6/conf/", dev, "/disable_ipv6"),
                      ipv6 && dev == host ? "0" : "1");
    rtnl_link* orig = rtnl_link_alloc();
    rtnl_link* change = rtnl_link_alloc();
    rtnl_link_set_ifindex(orig, ifindex);
    rtnl_link_set_mtu(change, static_cast<unsigned>(mtu));  // the containers' MTU may change
    int err = rtnl_link_change(sk->get(), orig, change, 0);
    rtnl_link_put(orig);
    rtnl_link_put(change);
    if (err < 0) return NlErr(absl::StrCat("interface ", dev, ": set MTU ", mtu), err);
  }
  // Without transmit checksumming the kernel drops TSO too: it segments and checksums
  // every packet in software before the veth hands it over.
  if (auto st = EthtoolSet(soft, ETHTOOL_STXCSUM, 0, "turn transmit checksumming off"); !st.ok())
    return st;
  if (auto st = EthtoolSet(host, ETHTOOL_SGRO, 0, "turn GRO off"); !st.ok()) return st;
  if (auto st = SetUp(sk->get(), d.soft_ifindex, soft); !st.ok()) return st;
  if (auto st = SetUp(sk->get(), d.host_ifindex, host); !st.ok()) return st;
  d.host_mac = LinkMac(sk->get(), d.host_ifindex);
  return d;
}

namespace {
struct RawPrefix {
  std::vector<uint8_t> addr;  // network byte order: 4 or 16 bytes
  int len = 0;
  bool operator==(const RawPrefix&) const = default;
};

nl_addr* BuildAddr(int family, const RawPrefix& p) {
  nl_addr* a = nl_addr_build(family, p.addr.data(), p.addr.size());
  nl_addr_set_prefixlen(a, p.len);
  return a;
}

// `addr` (a host prefix) as the one address of its family on `ifindex` (the others in `current`,
// an earlier lease's, removed), then the route to `network` through the interface from `addr`.
// `addr_text` and `route_text` name them in errors.
absl::Status OneAddressAndRoute(int ifindex, const std::string& ifname, int family,
                                const RawPrefix& addr, const std::vector<RawPrefix>& current,
                                const RawPrefix& network, const std::string& addr_text,
                                const std::string& route_text) {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  bool have = false;
  for (const RawPrefix& c : current) {
    if (c == addr) {
      have = true;
      continue;
    }
    rtnl_addr* old = rtnl_addr_alloc();
    nl_addr* local = BuildAddr(family, c);
    rtnl_addr_set_ifindex(old, ifindex);
    rtnl_addr_set_local(old, local);
    (void)rtnl_addr_delete(sk->get(), old, 0);
    nl_addr_put(local);
    rtnl_addr_put(old);
  }
  if (!have) {
    rtnl_addr* a = rtnl_addr_alloc();
    nl_addr* local = BuildAddr(family, addr);
    rtnl_addr_set_ifindex(a, ifindex);
    rtnl_addr_set_local(a, local);
    if (family == AF_INET6) rtnl_addr_set_flags(a, IFA_F_NODAD);
    int err = rtnl_addr_add(sk->get(), a, 0);
    nl_addr_put(local);
    rtnl_addr_put(a);
    if (err < 0 && err != -NLE_EXIST)
      return NlErr(absl::StrCat("interface ", ifname, ": add address ", addr_text), err);
  }
  rtnl_route* r = rtnl_route_alloc();
  nl_addr* dst = BuildAddr(family, network);
  nl_addr* src = BuildAddr(family, RawPrefix{addr.addr, static_cast<int>(addr.addr.size() * 8)});
  rtnl_route_set_family(r, static_cast<uint8_t>(family));
  rtnl_route_set_dst(r, dst);
  rtnl_route_set_pref_src(r, src);
  if (family == AF_INET) rtnl_route_set_scope(r, RT_SCOPE_LINK);
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_add_nexthop(r, nh);
  int err = rtnl_route_add(sk->get(), r, NLM_F_CREATE | NLM_F_REPLACE);
  rtnl_route_put(r);
  nl_addr_put(dst);
  nl_addr_put(src);
  if (err < 0) return NlErr(route_text, err);
  return absl::OkStatus();
}

RawPrefix Raw4(uint32_t addr, int len) {
  const uint32_t be = htonl(addr);
  const auto* b = reinterpret_cast<const uint8_t*>(&be);
  return RawPrefix{{b, b + 4}, len};
}

RawPrefix Raw6(unsigned __int128 addr, int len) {
  const Ip6Bytes b = ToBytes6(addr);
  return RawPrefix{{b.begin(), b.end()}, len};
}

// The interface's current addresses of one family, as RawPrefix.
absl::StatusOr<std::vector<RawPrefix>> CurrentAddrs(int ifindex, int family) {
  auto links = ListInterfaces();
  if (!links.ok()) return links.status();
  std::vector<RawPrefix> out;
  for (const Interface& i : *links) {
    if (i.ifindex != ifindex) continue;
    if (family == AF_INET)
      for (const Prefix4& a : i.addrs) out.push_back(Raw4(a.addr, a.len));
    else
      for (const Prefix6& a : i.addrs6) out.push_back(Raw6(a.addr, a.len));
  }
  return out;
}
}  // namespace

absl::Status SetHostAddress6(int ifindex, const std::string& ifname, unsigned __int128 addr,
                             const Prefix6& network) {
  auto current = CurrentAddrs(ifindex, AF_INET6);
  if (!current.ok()) return current.status();
  return OneAddressAndRoute(
      ifindex, ifname, AF_INET6, Raw6(addr, 128), *current, Raw6(network.addr, network.len),
      FormatIp6(addr),
      absl::StrCat("route ", FormatPrefix6(network), " dev ", ifname, " src ", FormatIp6(addr)));
}

absl::Status SetHostAddress(int ifindex, const std::string& ifname, uint32_t addr,
                            const Prefix4& network) {
  auto current = CurrentAddrs(ifindex, AF_INET);
  if (!current.ok()) return current.status();
  return OneAddressAndRoute(
      ifindex, ifname, AF_INET, Raw4(addr, 32), *current, Raw4(network.addr, network.len),
      FormatIp4(addr),
      absl::StrCat("route ", FormatPrefix4(network), " dev ", ifname, " src ", FormatIp4(addr)));
}

absl::StatusOr<std::vector<Interface>> ListInterfaces() {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  nl_cache *links = nullptr, *addrs = nullptr;
  if (int err = rtnl_link_alloc_cache(sk->get(), AF_UNSPEC, &links); err < 0)
    return absl::InternalError(absl::StrCat("netlink: list links: ", nl_geterror(err)));
  Cache l(links);
  if (int err = rtnl_addr_alloc_cache(sk->get(), &addrs); err < 0)
    return absl::InternalError(absl::StrCat("netlink: list addresses: ", nl_geterror(err)));
  Cache a(addrs);
  std::vector<Interface> out;
  for (nl_object* o = nl_cache_get_first(links); o; o = nl_cache_get_next(o))
    out.push_back(DescribeLink(addrs, reinterpret_cast<rtnl_link*>(o)));
  return out;
}

absl::StatusOr<UnderlayPick> InterfaceToReach(uint32_t ip) {
  const std::string what = absl::StrCat("--iface-can-reach ", FormatIp4(ip));
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  // RTM_GETROUTE for one destination: the kernel answers with the route it would use.
  nl_msg* msg = nlmsg_alloc_simple(RTM_GETROUTE, 0);
  rtmsg rtm{};
  rtm.rtm_family = AF_INET;
  rtm.rtm_dst_len = 32;
  const uint32_t dst = htonl(ip);
  if (!msg || nlmsg_append(msg, &rtm, sizeof(rtm), NLMSG_ALIGNTO) < 0 ||
      nla_put(msg, RTA_DST, 4, &dst) < 0) {
    nlmsg_free(msg);
    return absl::InternalError(absl::StrCat(what, ": cannot build the route query"));
  }
  int err = nl_send_auto(sk->get(), msg);
  nlmsg_free(msg);
  if (err < 0) return absl::InternalError(absl::StrCat(what, ": ", nl_geterror(err)));
  sockaddr_nl peer{};
  unsigned char* buf = nullptr;
  int n = nl_recv(sk->get(), &peer, &buf, nullptr);
  if (n <= 0) return absl::InternalError(absl::StrCat(what, ": ", nl_geterror(n)));
  std::unique_ptr<unsigned char, decltype(&free)> owned(buf, &free);
  auto* hdr = reinterpret_cast<nlmsghdr*>(buf);
  if (!nlmsg_ok(hdr, n)) return absl::InternalError(absl::StrCat(what, ": malformed answer"));
  if (hdr->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<nlmsgerr*>(nlmsg_data(hdr));
    return absl::NotFoundError(absl::StrCat(what, ": ", strerror(-e->error)));
  }
  rtnl_route* route = nullptr;
  if ((err = rtnl_route_parse(hdr, &route)) < 0)
    return absl::InternalError(absl::StrCat(what, ": ", nl_geterror(err)));
  int ifindex = rtnl_route_get_nnexthops(route) > 0
                    ? rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(route, 0))
                    : 0;
  uint32_t src = 0;
  if (nl_addr* pref = rtnl_route_get_pref_src(route); pref && nl_addr_get_len(pref) == 4) {
    memcpy(&src, nl_addr_get_binary_addr(pref), 4);
    src = ntohl(src);
  }
  rtnl_route_put(route);
  auto links = ListInterfaces();
  if (!links.ok()) return links.status();
  for (const Interface& i : *links)
    if (i.ifindex == ifindex) return UnderlayPick{i, src, what};
  return absl::NotFoundError(absl::StrCat(what, ": the route names no interface"));
}

absl::StatusOr<std::optional<MirroredRate>> MirroredTbfRate(int ifindex) {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  nl_cache* c = nullptr;
  if (int err = rtnl_cls_alloc_cache(sk->get(), ifindex, TC_H_MAKE(TC_H_INGRESS, 0), &c); err < 0)
    return NlErr(absl::StrCat("ifindex ", ifindex, ": list ingress filters"), err);
  Cache filters(c);
  int ifb = 0;
  for (nl_object* o = nl_cache_get_first(c); o && !ifb; o = nl_cache_get_next(o)) {
    auto* cls = reinterpret_cast<rtnl_cls*>(o);
    const char* kind = rtnl_tc_get_kind(TC_CAST(cls));
    rtnl_act* act = !kind                           ? nullptr
                    : strcmp(kind, "u32") == 0      ? rtnl_u32_get_action(cls)
                    : strcmp(kind, "matchall") == 0 ? rtnl_mall_get_first_action(cls)
                                                    : nullptr;
    for (rtnl_act* a = act; a && !ifb; a = rtnl_act_next(a)) {
      const char* ak = rtnl_tc_get_kind(TC_CAST(a));
      if (ak && strcmp(ak, "mirred") == 0) ifb = static_cast<int>(rtnl_mirred_get_ifindex(a));
    }
  }
  if (!ifb) return std::nullopt;
  if (int err = rtnl_qdisc_alloc_cache(sk->get(), &c); err < 0) return NlErr("list qdiscs", err);
  Cache qdiscs(c);
  rtnl_qdisc* q = rtnl_qdisc_get_by_parent(c, ifb, TC_H_ROOT);
  if (!q) return std::nullopt;
  std::optional<MirroredRate> out;
  const char* kind = rtnl_tc_get_kind(TC_CAST(q));
  if (kind && strcmp(kind, "tbf") == 0) {
    const int rate = rtnl_qdisc_tbf_get_rate(q), burst = rtnl_qdisc_tbf_get_rate_bucket(q);
    const int limit = rtnl_qdisc_tbf_get_limit(q);
    if (rate > 0 && burst > 0)
      out = MirroredRate{static_cast<uint64_t>(rate), static_cast<uint64_t>(burst),
                         static_cast<uint64_t>(std::max(limit, burst))};
  }
  rtnl_qdisc_put(q);
  return out;
}

absl::StatusOr<std::pair<int, int>> EnsurePaceDevices() {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  const char* pace = CPPNET_PACE_DEV;
  const char* paced = CPPNET_PACED_DEV;
  const unsigned mtu = 65000;  // any frame an endpoint may send, GSO aside
  if (auto st = EnsureVethPair(sk->get(), pace, paced, mtu, true); !st.ok()) return st;
  const int a = static_cast<int>(if_nametoindex(pace)), b = static_cast<int>(if_nametoindex(paced));
  if (!a || !b) return absl::InternalError(absl::StrCat("veth ", pace, "/", paced, " vanished"));
  for (const char* dev : {pace, paced})
    (void)WriteSysctl(absl::StrCat("/proc/sys/net/ipv6/conf/", dev, "/disable_ipv6"), "1");
  nl_cache* c = nullptr;
  if (int err = rtnl_qdisc_alloc_cache(sk->get(), &c); err < 0) return NlErr("list qdiscs", err);
  Cache qdiscs(c);
  rtnl_qdisc* root = rtnl_qdisc_get_by_parent(c, a, TC_H_ROOT);
  const bool have = root && rtnl_tc_get_handle(TC_CAST(root)) == CPPNET_PACE_HTB &&
                    rtnl_tc_get_kind(TC_CAST(root)) &&
                    strcmp(rtnl_tc_get_kind(TC_CAST(root)), "htb") == 0;
  if (root) rtnl_qdisc_put(root);
  if (!have) {  // (htb cannot be changed in place: only added)
    rtnl_qdisc* q = rtnl_qdisc_alloc();
    rtnl_tc_set_ifindex(TC_CAST(q), a);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_ROOT);
    rtnl_tc_set_handle(TC_CAST(q), CPPNET_PACE_HTB);
    rtnl_tc_set_kind(TC_CAST(q), "htb");
    rtnl_htb_set_defcls(q, 0);
    int err = rtnl_qdisc_add(sk->get(), q, NLM_F_CREATE | NLM_F_REPLACE);
    rtnl_qdisc_put(q);
    if (err < 0) return NlErr(absl::StrCat("interface ", pace, ": add htb qdisc"), err);
  }
  if (auto st = SetUp(sk->get(), b, paced); !st.ok()) return st;
  if (auto st = SetUp(sk->get(), a, pace); !st.ok()) return st;
  return std::pair{a, b};
}

absl::Status SetPaceClass(int ifindex, uint32_t minor, const MirroredRate& r) {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  const uint32_t id = CPPNET_PACE_HTB | minor;
  const std::string what = absl::StrCat("interface " CPPNET_PACE_DEV ": htb class 1:", minor);
  rtnl_class* cl = rtnl_class_alloc();
  rtnl_tc_set_ifindex(TC_CAST(cl), ifindex);
  rtnl_tc_set_parent(TC_CAST(cl), CPPNET_PACE_HTB);
  rtnl_tc_set_handle(TC_CAST(cl), id);
  rtnl_tc_set_kind(TC_CAST(cl), "htb");
  rtnl_htb_set_rate64(cl, r.rate);
  rtnl_htb_set_ceil64(cl, r.rate);
  rtnl_htb_set_rbuffer(cl, static_cast<uint32_t>(r.burst));
  rtnl_htb_set_cbuffer(cl, static_cast<uint32_t>(r.burst));
  int err = rtnl_class_add(sk->get(), cl, NLM_F_CREATE | NLM_F_REPLACE);
  rtnl_class_put(cl);
  if (err < 0) return NlErr(what, err);
  // tbf segments GSO packets bigger than its bucket; htb does not, so the queue holds at least
  // one of the largest.
  const uint64_t queue = std::max<uint64_t>(r.limit - std::min(r.limit, r.burst), 65536 + 1514);
  rtnl_qdisc* q = rtnl_qdisc_alloc();
  rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
  rtnl_tc_set_parent(TC_CAST(q), id);
  rtnl_tc_set_handle(TC_CAST(q), TC_H_MAKE((minor + 1) << 16, 0));
  rtnl_tc_set_kind(TC_CAST(q), "bfifo");
  rtnl_qdisc_fifo_set_limit(q, static_cast<int>(std::min<uint64_t>(queue, INT32_MAX)));
  err = rtnl_qdisc_add(sk->get(), q, NLM_F_CREATE | NLM_F_REPLACE);
  rtnl_qdisc_put(q);
  if (err < 0) return NlErr(absl::StrCat(what, ": add bfifo"), err);
  return absl::OkStatus();
}

absl::Status DeletePaceClass(int ifindex, uint32_t minor) {
  auto sk = NlConnect();
  if (!sk.ok()) return sk.status();
  rtnl_class* cl = rtnl_class_alloc();
  rtnl_tc_set_ifindex(TC_CAST(cl), ifindex);
  rtnl_tc_set_parent(TC_CAST(cl), CPPNET_PACE_HTB);
  rtnl_tc_set_handle(TC_CAST(cl), CPPNET_PACE_HTB | minor);
  int err = rtnl_class_delete(sk->get(), cl);
  rtnl_class_put(cl);
  if (err < 0 && err != -NLE_OBJ_NOTFOUND && err != -NLE_NODEV)
    return NlErr(absl::StrCat("interface " CPPNET_PACE_DEV ": delete htb class 1:", minor), err);
  return absl::OkStatus();
}

}  // namespace cppnet
