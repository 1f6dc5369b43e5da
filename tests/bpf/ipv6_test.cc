// The IPv6 half of the overlay (dual stack): VXLAN over IPv6 exact bytes, the outer UDP
// checksum for kernel peers (through the soft device), packet-too-big, decapsulation only from
// the peer that owns the inner source, and the containers' IPv6 source binding.
#include "fixture.h"

namespace cppnet::test {
namespace {

Ip6Bytes A6(const char* s) { return ToBytes6(*ParseIp6(s)); }

const Ip6Bytes kUnder6A = A6("2001:db8::1"), kUnder6B = A6("2001:db8::2");
const Ip6Bytes kSubnet6A = A6("2001:db8:100:1::"), kSubnet6B = A6("2001:db8:100:2::");
const Ip6Bytes kC1v6 = A6("2001:db8:100:1::2"), kC1bv6 = A6("2001:db8:100:1::3");
const Ip6Bytes kC2v6 = A6("2001:db8:100:2::5");
const Mac kVtep6B{0x0e, 0x00, 0x00, 0x00, 0x06, 0x02};

// One's complement sum folded (0xffff for a correct checksum over pseudo-header + datagram).
uint16_t Sum(const Bytes& b) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < b.size(); i += 2) s += (b[i] << 8) | b[i + 1];
  if (b.size() & 1) s += b.back() << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// Pseudo-header (RFC 8200 8.1) + the upper-layer message starting at `off` of an IPv6 frame.
Bytes PseudoAndMessage(const Bytes& frame, size_t off, uint8_t next) {
  Bytes p(frame.begin() + 14 + 8, frame.begin() + 14 + 40);  // the addresses
  const uint32_t len = static_cast<uint32_t>(frame.size() - off);
  for (int i = 3; i >= 0; i--) p.push_back(static_cast<uint8_t>(len >> (8 * i)));
  p.insert(p.end(), {0, 0, 0, next});
  p.insert(p.end(), frame.begin() + off, frame.end());
  return p;
}

class Ipv6Test : public DatapathTest {
 protected:
  static constexpr int ETH = 14;
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped()) return;
    const MapFds& m = g_dp->maps();
    ASSERT_TRUE(WriteConfig(m.config(), Config()).ok());
    auto r6 = ListRoutes6(m.routes6());
    ASSERT_TRUE(r6.ok());
    for (const auto& r : *r6) ASSERT_TRUE(DeleteRoute6(m.routes6(), r.subnet).ok());
    auto eps = ListEndpoints6(m.endpoints6());
    ASSERT_TRUE(eps.ok());
    for (const auto& [a, e] : *eps) ASSERT_TRUE(DeleteEndpoint6(m.endpoints6(), a).ok());
    auto binds = ListBinds6(m.binds6());
    ASSERT_TRUE(binds.ok());
    for (const auto& b : *binds) ASSERT_TRUE(FreeBindSlot6(m.binds6(), b.ifindex).ok());
    ASSERT_TRUE(
        UpsertRoute6(m.routes6(), Prefix6{FromBytes6(kSubnet6B.data()), 64}, Route(0)).ok());
    auto peers = ListPeers6(m.peers6());
    ASSERT_TRUE(peers.ok());
    for (const auto& [a, n] : *peers) ASSERT_TRUE(SetPeer6(m.peers6(), a, 0).ok());
    ASSERT_TRUE(SetPeer6(m.peers6(), kUnder6B, 1).ok());
  }
  static cppnet_config Config() {
    cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
    memcpy(c.subnet6, kSubnet6A.data(), 16);
    c.subnet6_len = 64;
    memcpy(c.network6, A6("2001:db8:100::").data(), 16);
    c.network6_len = 48;
    memcpy(c.underlay_ip6, kUnder6A.data(), 16);
    c.soft_ifindex = 77;
    return c;
  }
  static cppnet_route6 Route(uint8_t flags) {
    cppnet_route6 r{};
    memcpy(r.public_ip6, kUnder6B.data(), 16);
    r.vni = kVni;
    memcpy(r.vtep_mac, kVtep6B.data(), 6);
    r.port = 8472;
    r.backend = CPPNET_BACKEND_VXLAN;
    r.flags = flags;
    return r;
  }
  static Bytes Frame(const Bytes& ip6) {
    return Cat({Eth(kBridgeMac, kContainerMac, 0x86dd), ip6});
  }
  // What B sends us: VXLAN over IPv6 around `inner_ip6`, from `outer_src`.
  static Bytes FromPeer(const Ip6Bytes& outer_src, const Bytes& inner_ip6,
                        const Mac& vtep = VtepMacFor(kUnderA)) {
    Bytes inner = Cat({Eth(vtep, kVtep6B, 0x86dd), inner_ip6});
    return Cat({Eth(kUnderMacA, kUnderMacB, 0x86dd),
                Ip6(outer_src, kUnder6A, 17, Udp(40000, 8472, Vxlan(kVni, inner)))});
  }
};

TEST_F(Ipv6Test, EncapsulatesInVxlanOverIpv6WithChecksumZeroForCppnetPeers) {
  const Bytes ip = Ip6(kC1v6, kC2v6, 6, Tcp(40000, 80, 100));
  RunResult r = RunProg(g_dp->encap_prog_fd(), Frame(ip));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  ASSERT_EQ(r.out.size(), ip.size() + ETH + 70);
  const uint16_t sport = (r.out[ETH + 40] << 8) | r.out[ETH + 41];
  EXPECT_GE(sport, 32768);
  EXPECT_LT(sport, 61000);
  Bytes after = Ip6(kC1v6, kC2v6, 6, Tcp(40000, 80, 100), 63);  // hop limit - 1
  Bytes expected =
      Cat({Eth(kBridgeMac, kContainerMac, 0x86dd),
           Ip6(kUnder6A, kUnder6B, 17,
               Udp(sport, 8472,
                   Vxlan(kVni, Cat({Eth(kVtep6B, VtepMacFor(kUnderA), 0x86dd), after}))))});
  EXPECT_EQ(Hex(r.out), Hex(expected));
  // Checksum 0 (RFC 6935): a cppnet peer opens the packet before the UDP stack.
  EXPECT_EQ(r.out[ETH + 46], 0);
  EXPECT_EQ(r.out[ETH + 47], 0);
}

TEST_F(Ipv6Test, KernelPeersGetTheOuterChecksumThroughTheSoftDevice) {
  ASSERT_TRUE(UpsertRoute6(g_dp->maps().routes6(), Prefix6{FromBytes6(kSubnet6B.data()), 64},
                           Route(CPPNET_ROUTE_OUTER_CSUM))
                  .ok());
  // Lengths around the 512-byte chunks and odd ones, up to what the MTU allows.
  for (size_t payload : {0, 1, 7, 421, 422, 423, 934, 935, 1300, 1356}) {
    const Bytes ip = Ip6(kC1v6, kC2v6, 17, Udp(5000, 53, Bytes(payload, 0xa5)));
    RunResult r = RunProg(g_dp->encap_prog_fd(), Frame(ip));
    ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << payload;
    EXPECT_EQ(Hex(r.out), Hex(Frame(ip))) << "handed unchanged to the soft device";
    RunResult s = RunProg(g_dp->soft_prog_fd(), Frame(ip));
    ASSERT_EQ(s.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << payload;
    ASSERT_EQ(s.out.size(), ip.size() + ETH + 70);
    const uint16_t csum = (s.out[ETH + 46] << 8) | s.out[ETH + 47];
    EXPECT_NE(csum, 0) << payload;
    EXPECT_EQ(Sum(PseudoAndMessage(s.out, ETH + 40, 17)), 0xffff) << "payload " << payload;
  }
}

TEST_F(Ipv6Test, TooBigGetsPacketTooBigFromTheGateway) {
  const uint64_t before = Counter(CPPNET_CNT_PKT_TOO_BIG_TX);
  const Bytes ip = Ip6(kC1v6, kC2v6, 17, Udp(5000, 53, Bytes(1500 - 70 - 40 - 8 + 1, 1)));
  RunResult r = RunProg(g_dp->encap_prog_fd(), Frame(ip));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  ASSERT_EQ(r.out.size(), 14u + 40 + 8 + 48);
  EXPECT_EQ(Counter(CPPNET_CNT_PKT_TOO_BIG_TX), before + 1);
  const Bytes eth(r.out.begin(), r.out.begin() + 12);
  EXPECT_EQ(eth, Cat({Bytes(kContainerMac.begin(), kContainerMac.end()),
                      Bytes(kBridgeMac.begin(), kBridgeMac.end())}));
  EXPECT_EQ(r.out[ETH + 6], 58);  // ICMPv6
  const Ip6Bytes src = [&] {
    Ip6Bytes a;
    std::copy(r.out.begin() + ETH + 8, r.out.begin() + ETH + 24, a.begin());
    return a;
  }();
  EXPECT_EQ(FormatIp6(FromBytes6(src.data())), "2001:db8:100:1::1");  // the gateway
  EXPECT_EQ(r.out[ETH + 40], 2);                                      // packet too big
  const uint32_t mtu =
      (r.out[ETH + 44] << 24) | (r.out[ETH + 45] << 16) | (r.out[ETH + 46] << 8) | r.out[ETH + 47];
  EXPECT_EQ(mtu, 1430u);
  EXPECT_EQ(Bytes(r.out.begin() + ETH + 48, r.out.end()), Bytes(ip.begin(), ip.begin() + 48));
  EXPECT_EQ(Sum(PseudoAndMessage(r.out, ETH + 40, 58)), 0xffff);
}

TEST_F(Ipv6Test, DecapsulatesOnlyFromThePeerOwningTheInnerSource) {
  const Bytes inner = Ip6(kC2v6, kC1v6, 58, Bytes(16, 0x80));
  RunResult r = RunProg(g_dp->underlay_prog_fd(), FromPeer(kUnder6B, inner));
  // Opened; no endpoint learned and no bridge in this fixture: the stack delivers it.
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kUnderMacA, kUnderMacB, 0x86dd), inner})));
  const struct {
    const char* name;
    Bytes frame;
    uint32_t reason;
  } cases[] = {
      {"outer source is no peer", FromPeer(A6("2001:db8::99"), inner),
       CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"inner source outside the sender's subnet",
       FromPeer(kUnder6B, Ip6(A6("2001:db8:100:7::1"), kC1v6, 58, Bytes(16, 0x80))),
       CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"inner destination not our subnet",
       FromPeer(kUnder6B, Ip6(kC2v6, A6("2001:db8:100:9::1"), 58, Bytes(16, 0x80))),
       CPPNET_CNT_DROP_NOT_LOCAL},
      {"inner frame is IPv4",
       Cat({Eth(kUnderMacA, kUnderMacB, 0x86dd),
            Ip6(kUnder6B, kUnder6A, 17,
                Udp(1, 8472,
                    Vxlan(kVni, Cat({Eth(VtepMacFor(kUnderA), kVtep6B, 0x0800),
                                     Ip4(kC2, kC1, Tcp(1, 2, 10))}))))}),
       CPPNET_CNT_DROP_INNER_NOT_IPV6},
      {"not our VtepMAC", FromPeer(kUnder6B, inner, kVtep6B), CPPNET_CNT_DROP_VTEP_MAC},
  };
  for (const auto& c : cases) {
    const uint64_t before = Counter(c.reason);
    EXPECT_EQ(RunProg(g_dp->underlay_prog_fd(), c.frame).retval, static_cast<uint32_t>(TC_ACT_SHOT))
        << c.name;
    EXPECT_EQ(Counter(c.reason), before + 1) << c.name;
  }
}

TEST_F(Ipv6Test, ContainerSendsOnlyFromItsOwnIpv6Address) {
  const Bytes own = Frame(Ip6(kC1v6, kC2v6, 6, Tcp(1, 2, 10)));
  ASSERT_EQ(RunProg(g_dp->encap_prog_fd(), own).retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  const uint64_t before = Counter(CPPNET_CNT_DROP_BAD_SOURCE);
  // Another address of our subnet, from the same veth: not its own.
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), Frame(Ip6(kC1bv6, kC2v6, 6, Tcp(1, 2, 10)))).retval,
            static_cast<uint32_t>(TC_ACT_SHOT));
  // A neighbour advertisement for another container's address.
  Bytes na(24, 0);
  na[0] = 136;
  std::copy(kC1bv6.begin(), kC1bv6.end(), na.begin() + 8);
  EXPECT_EQ(
      RunProg(g_dp->encap_prog_fd(), Frame(Ip6(A6("fe80::1"), A6("ff02::1"), 58, na, 255))).retval,
      static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_BAD_SOURCE), before + 2);
  // A router solicitation (shorter than an advertisement) passes.
  Bytes rs(8, 0);
  rs[0] = 133;
  const Bytes sol = Frame(Ip6(A6("fe80::1"), A6("ff02::2"), 58, rs, 255));
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), sol).retval, static_cast<uint32_t>(TC_ACT_OK));
  // Link-local neighbour discovery for its own address passes to the bridge.
  std::copy(kC1v6.begin(), kC1v6.end(), na.begin() + 8);
  const Bytes ok = Frame(Ip6(A6("fe80::1"), A6("ff02::1"), 58, na, 255));
  RunResult r = RunProg(g_dp->encap_prog_fd(), ok);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, ok);
}

}  // namespace
}  // namespace cppnet::test
