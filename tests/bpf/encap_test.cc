// Container side (tc): encapsulation exact bytes, other traffic untouched, PMTU,
// readiness, udp and host-gw forwarding, a round trip through the peer.
#include "fixture.h"

namespace cppnet::test {
namespace {

TEST_F(DatapathTest, EncapsulatesTcpToRemoteSubnetExactly) {
  Bytes ip = Ip4(kC1, kC2, Tcp(40000, 80, 100), {.tos = 0x10, .id = 0x4242, .ttl = 64});
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  uint16_t sport = SportOf(r.out);
  EXPECT_EQ(sport, ExpectedSport(kC1, kC2, 6, 40000, 80));
  EXPECT_GE(sport, 32768);
  EXPECT_LT(sport, 61000);
  Bytes expected =
      Encapsulated(Ip4(kC1, kC2, Tcp(40000, 80, 100), {.tos = 0x10, .id = 0x4242, .ttl = 63}),
                   sport, 0x4242, true, 0x10);
  EXPECT_EQ(Hex(r.out), Hex(expected));
  // Same flow, same source port; the hash spreads other flows.
  Bytes ip2 = Ip4(kC1, kC2, Tcp(40001, 80, 100));
  bool differs = false;
  for (uint16_t p = 40001; p < 40009; p++)
    differs |=
        SportOf(
            RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(p, 80, 10)))).out) !=
        sport;
  EXPECT_EQ(SportOf(RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip)).out), sport);
  EXPECT_TRUE(differs);
}

TEST_F(DatapathTest, EncapsulatesInnerIpv4OptionsUntouched) {
  Bytes opts{0x94, 0x04, 0x00, 0x00};  // router alert
  Bytes ip = Ip4(kC1, kC2, Udp(5000, 53, Bytes(30, 0xab)),
                 {.id = 7, .df = false, .ttl = 10, .proto = 17, .options = opts});
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes after = Ip4(kC1, kC2, Udp(5000, 53, Bytes(30, 0xab)),
                    {.id = 7, .df = false, .ttl = 9, .proto = 17, .options = opts});
  EXPECT_EQ(SportOf(r.out), ExpectedSport(kC1, kC2, 17, 5000, 53));
  EXPECT_EQ(Hex(r.out), Hex(Encapsulated(after, SportOf(r.out), 7, false, 0)));
}

TEST_F(DatapathTest, EncapLeavesOtherTrafficUntouched) {
  const PassCase cases[] = {
      {"no route (unleased subnet)", ContainerFrame(Ip4(kC1, 0xc6130905, Tcp(1, 2, 10)))},
      {"outside the Network", ContainerFrame(Ip4(kC1, kUnderB, Tcp(1, 2, 10)))},
      {"ARP", Cat({Eth(kBridgeMac, kContainerMac, 0x0806), Bytes(28, 1)})},
      {"IPv6", Cat({Eth(kBridgeMac, kContainerMac, 0x86dd), Bytes(60, 0)})},
      {"TTL 1 (stack sends time-exceeded)",
       ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10), {.ttl = 1}))},
      {"runt frame of another ethertype", Eth(kBridgeMac, kContainerMac, 0x88b5)},
  };
  for (const PassCase& c : cases) {
    RunResult r = RunProg(g_dp->encap_prog_fd(), c.frame);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK)) << c.name;
    EXPECT_EQ(r.out, c.frame) << c.name;
  }
}

// What the container should get back for a too-big DF packet `orig_ip`.
Bytes FragNeeded(const Bytes& orig_ip, uint16_t mtu) {
  Bytes icmp(36, 0);
  icmp[0] = 3;
  icmp[1] = 4;
  icmp[6] = static_cast<uint8_t>(mtu >> 8);
  icmp[7] = static_cast<uint8_t>(mtu & 0xff);
  std::copy(orig_ip.begin(), orig_ip.begin() + 28, icmp.begin() + 8);
  uint16_t c = Csum(icmp.data(), icmp.size());
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  return Cat({Eth(kContainerMac, kBridgeMac, 0x0800),
              Ip4(0xc6130101 /* the bridge, 198.19.1.1 */, kC1, icmp,
                  {.tos = 0xc0, .id = 0, .df = false, .ttl = 64, .proto = 1})});
}

TEST_F(DatapathTest, TooBigDfPacketGetsFragmentationNeeded) {
  uint64_t sent = Counter(CPPNET_CNT_FRAG_NEEDED_TX), dropped = Counter(CPPNET_CNT_DROP_TOO_BIG);
  Bytes ip = Ip4(kC1, kC2, Tcp(40000, 80, 1460));  // 1500 bytes, DF: 1550 after VXLAN
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out), Hex(FragNeeded(ip, 1450)));
  EXPECT_EQ(Counter(CPPNET_CNT_FRAG_NEEDED_TX), sent + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_TOO_BIG), dropped + 1);
}

TEST_F(DatapathTest, TooBigPacketWithoutDfIsDroppedWithReason) {
  uint64_t before = Counter(CPPNET_CNT_DROP_TOO_BIG), sent = Counter(CPPNET_CNT_FRAG_NEEDED_TX);
  RunResult r =
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 1460), {.df = false})));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_TOO_BIG), before + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_FRAG_NEEDED_TX), sent);
}

TEST_F(DatapathTest, NothingHappensBeforeTheAgentIsReady) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.flags = 0;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  Bytes frame = ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10)));
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), frame).retval, static_cast<uint32_t>(TC_ACT_OK));
  Bytes vx =
      Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
           Ip4(kUnderB, kUnderA,
               Udp(40000, 8472,
                   Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(1, 2, 10))}))),
               {.proto = 17})});
  RunResult r = RunProg(g_dp->decap_prog_fd(), vx);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(r.out, vx);
}

TEST_F(DatapathTest, EncapThenDecapOnThePeerRoundTrips) {
  Bytes ip = Ip4(kC1, kC2, Tcp(40000, 80, 300), {.ttl = 20});
  RunResult enc = RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip));
  ASSERT_EQ(enc.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  // On the wire the neighbour layer writes the outer MACs; then B receives it.
  Bytes wire = enc.out;
  std::copy(kUnderMacB.begin(), kUnderMacB.end(), wire.begin());
  std::copy(kUnderMacA.begin(), kUnderMacA.end(), wire.begin() + 6);
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), ConfigFor(kUnderB, kUnderMacB, 0xc6130200)).ok());
  cppnet_route back{};  // B's route to A's subnet: A is B's peer
  back.public_ip = htonl(kUnderA);
  back.backend = CPPNET_BACKEND_VXLAN;
  ASSERT_TRUE(UpsertRoute(g_dp->maps().routes(), Prefix4{0xc6130100, 24}, back).ok());
  RunResult dec = RunProg(g_dp->decap_prog_fd(), wire);
  ASSERT_EQ(dec.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(Hex(dec.out), Hex(Cat({kMetaDecap, Eth(kUnderMacB, kVtepA, 0x0800),
                                   Ip4(kC1, kC2, Tcp(40000, 80, 300), {.ttl = 19})})));
}

TEST_F(DatapathTest, UdpBackendCarriesTheInnerIpPacketAsPayload) {
  uint64_t before = Counter(CPPNET_CNT_UDP_TX);
  RunResult r = RunProg(g_dp->encap_prog_fd(),
                        ContainerFrame(Ip4(kC1, kC3, Tcp(40000, 443, 200), {.id = 9})));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(SportOf(r.out), ExpectedSport(kC1, kC3, 6, 40000, 443));
  Bytes inner_after = Ip4(kC1, kC3, Tcp(40000, 443, 200), {.id = 9, .ttl = 63});
  Bytes expected = Cat({Eth(kBridgeMac, kContainerMac, 0x0800),
                        Ip4(kUnderA, kUnderC, Udp(SportOf(r.out), 8285, inner_after),
                            {.id = 9, .df = true, .proto = 17})});
  EXPECT_EQ(Hex(r.out), Hex(expected));
  EXPECT_EQ(Counter(CPPNET_CNT_UDP_TX), before + 1);
  // 28 bytes of overhead: 1472 bytes of inner packet fit a 1500 underlay, 1473 do not.
  EXPECT_EQ(
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC3, Tcp(1, 2, 1472 - 40)))).retval,
      static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes big = Ip4(kC1, kC3, Tcp(1, 2, 1473 - 40));
  EXPECT_EQ(Hex(RunProg(g_dp->encap_prog_fd(), ContainerFrame(big)).out),
            Hex(FragNeeded(big, 1472)));
}

// A udp peer that may read its tunnel in userspace (flanneld): the container-side program
// hands the packet unchanged to the soft device; the soft device's program encapsulates
// what the kernel segmented and checksummed on the way.
TEST_F(DatapathTest, UserspaceUdpPeerGoesThroughTheSoftDevice) {
  const MapFds& m = g_dp->maps();
  cppnet_config cfg = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  cfg.soft_ifindex = 77;
  ASSERT_TRUE(WriteConfig(m.config(), cfg).ok());
  cppnet_route udp{};
  udp.public_ip = htonl(kUnderC);
  udp.port = 8285;
  udp.backend = CPPNET_BACKEND_UDP;
  udp.flags = CPPNET_ROUTE_USERSPACE_PEER;
  ASSERT_TRUE(UpsertRoute(m.routes(), Prefix4{0xc6130300, 24}, udp).ok());
  uint64_t before = Counter(CPPNET_CNT_UDP_TX);

  const Bytes frame = ContainerFrame(Ip4(kC1, kC3, Tcp(40000, 443, 200), {.id = 9}));
  RunResult r = RunProg(g_dp->encap_prog_fd(), frame);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out), Hex(frame));  // not encapsulated, TTL untouched
  EXPECT_EQ(Counter(CPPNET_CNT_UDP_TX), before);
  // Too big after encapsulation: answered from the container side, as on the fast path.
  Bytes big = Ip4(kC1, kC3, Tcp(1, 2, 1473 - 40));
  EXPECT_EQ(Hex(RunProg(g_dp->encap_prog_fd(), ContainerFrame(big)).out),
            Hex(FragNeeded(big, 1472)));

  RunResult s = RunProg(g_dp->soft_prog_fd(), frame);
  ASSERT_EQ(s.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes inner_after = Ip4(kC1, kC3, Tcp(40000, 443, 200), {.id = 9, .ttl = 63});
  EXPECT_EQ(Hex(s.out), Hex(Cat({Eth(kBridgeMac, kContainerMac, 0x0800),
                                 Ip4(kUnderA, kUnderC, Udp(SportOf(s.out), 8285, inner_after),
                                     {.id = 9, .df = true, .proto = 17})})));
  EXPECT_EQ(Counter(CPPNET_CNT_UDP_TX), before + 1);
  // Only udp routes are served there; anything else on the device is dropped.
  uint64_t backend = Counter(CPPNET_CNT_DROP_BACKEND);
  EXPECT_EQ(RunProg(g_dp->soft_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10)))).retval,
            static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_BACKEND), backend + 1);
  EXPECT_EQ(
      RunProg(g_dp->soft_prog_fd(), Cat({Eth(kBridgeMac, kContainerMac, 0x86dd), Bytes(60, 0)}))
          .retval,
      static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(
      RunProg(g_dp->soft_prog_fd(), ContainerFrame(Ip4(kC1, kC3, Tcp(1, 2, 1473 - 40)))).retval,
      static_cast<uint32_t>(TC_ACT_SHOT));  // counted too_big
}

TEST_F(DatapathTest, HostGwForwardsUnchangedButForTheTtl) {
  uint64_t before = Counter(CPPNET_CNT_HOSTGW_TX);
  RunResult r =
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC4, Tcp(1, 2, 100), {.ttl = 30})));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out), Hex(ContainerFrame(Ip4(kC1, kC4, Tcp(1, 2, 100), {.ttl = 29}))));
  EXPECT_EQ(Counter(CPPNET_CNT_HOSTGW_TX), before + 1);
  // Full-size packets pass: host-gw adds no header (MTU = underlay); larger ones do not.
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC4, Tcp(1, 2, 1460)))).retval,
            static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes big = Ip4(kC1, kC4, Tcp(1, 2, 1461));
  EXPECT_EQ(Hex(RunProg(g_dp->encap_prog_fd(), ContainerFrame(big)).out),
            Hex(FragNeeded(big, 1500)));
}

}  // namespace
}  // namespace cppnet::test
