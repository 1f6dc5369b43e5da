// Underlay side: XDP and tc decapsulation exact bytes, bad and foreign packets,
// delivery straight into a learned container, host traffic left to the stack.
#include "fixture.h"

namespace cppnet::test {
namespace {

TEST_F(DatapathTest, DecapsulatesVxlanForOurVtepExactly) {
  uint64_t before = Counter(CPPNET_CNT_VXLAN_RX);
  RunResult r = RunProg(g_dp->decap_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1())));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  Bytes expected =
      Cat({kMetaDecap, Eth(kUnderMacA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 64))});
  EXPECT_EQ(Hex(r.out), Hex(expected));
  EXPECT_EQ(Counter(CPPNET_CNT_VXLAN_RX), before + 1);
}

TEST_F(DatapathTest, DecapsulatesWithOuterIpv4Options) {
  Ip4Opts o{.proto = 17, .options = {0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0x00, 0x00}};
  RunResult r = RunProg(g_dp->decap_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1(10)), 8472, o));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(
      Hex(r.out),
      Hex(Cat({kMetaDecap, Eth(kUnderMacA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 10))})));
}

TEST_F(DatapathTest, DecapBadAndForeignPackets) {
  Bytes good = FromPeer(Vxlan(kVni, InnerToC1()));
  const DecapCase cases[] = {
      {"other UDP port (not ours)", FromPeer(Vxlan(kVni, InnerToC1()), 4789), XDP_PASS, -1},
      {"not for our address",
       Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
            Ip4(kUnderB, 0xc6120009, Udp(1, 8472, Vxlan(kVni, InnerToC1())), {.proto = 17})}),
       XDP_PASS, -1},
      {"ARP on the underlay", Cat({Eth(kUnderMacA, kUnderMacB, 0x0806), Bytes(28, 2)}), XDP_PASS,
       -1},
      {"TCP on the underlay",
       Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kUnderB, kUnderA, Tcp(22, 5000, 20))}),
       XDP_PASS, -1},
      {"fragment",
       Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
            [&] {
              Bytes b = Ip4(kUnderB, kUnderA, Udp(1, 8472, Vxlan(kVni, InnerToC1())),
                            {.df = false, .proto = 17});
              b[6] |= 0x20;
              return b;
            }()}),
       XDP_PASS, -1},
      {"truncated outer IPv4", Bytes(good.begin(), good.begin() + 30), XDP_PASS, -1},
      {"truncated UDP header", Bytes(good.begin(), good.begin() + 38), XDP_PASS, -1},
      {"truncated VXLAN header", Bytes(good.begin(), good.begin() + 46), XDP_DROP,
       CPPNET_CNT_DROP_TRUNCATED},
      {"truncated inner IPv4", Bytes(good.begin(), good.begin() + 70), XDP_DROP,
       CPPNET_CNT_DROP_TRUNCATED},
      {"VXLAN without I flag", FromPeer(Vxlan(kVni, InnerToC1(), 0x00)), XDP_DROP,
       CPPNET_CNT_DROP_VXLAN_FLAGS},
      {"wrong VNI", FromPeer(Vxlan(42, InnerToC1())), XDP_DROP, CPPNET_CNT_DROP_VNI_UNKNOWN},
      {"inner MAC not our VtepMAC",
       FromPeer(Vxlan(kVni, Cat({Eth(kVtepB, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(1, 2, 5))}))),
       XDP_DROP, CPPNET_CNT_DROP_VTEP_MAC},
      {"inner ARP", FromPeer(Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0806), Bytes(28, 0)}))),
       XDP_DROP, CPPNET_CNT_DROP_INNER_NOT_IPV4},
      {"inner IPv4 bad version",
       FromPeer(Vxlan(kVni,
                      [] {
                        Bytes b = InnerToC1();
                        b[14] = 0x65;
                        return b;
                      }())),
       XDP_DROP, CPPNET_CNT_DROP_INNER_BAD_IP},
      {"inner destination not our subnet",
       FromPeer(
           Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), Ip4(kC2, 0xc6130909, Tcp(1, 2, 5))}))),
       XDP_DROP, CPPNET_CNT_DROP_NOT_LOCAL},
  };
  CheckDecap(cases);
}

class UdpDecapTest : public DatapathTest {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped()) return;
    cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
    c.backend = CPPNET_BACKEND_UDP;
    c.port = 8285;
    ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  }
};

TEST_F(UdpDecapTest, DecapsulatesUdpBackendExactly) {
  Bytes inner = Ip4(kC3, kC1, Tcp(443, 40000, 64));
  // From peer C, whose subnet kC3 is in.
  Bytes frame = Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                     Ip4(kUnderC, kUnderA, Udp(51000, 8285, inner), {.proto = 17})});
  RunResult r = RunProg(g_dp->decap_prog_fd(), frame);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(Hex(r.out), Hex(Cat({kMetaDecap, Eth(kUnderMacA, kUnderMacA, 0x0800), inner})));
}

TEST_F(UdpDecapTest, BadAndForeignPackets) {
  Bytes inner = Ip4(kC3, kC1, Tcp(443, 40000, 64));
  const DecapCase cases[] = {
      {"VXLAN port while running udp", FromPeer(Vxlan(kVni, InnerToC1()), 8472), XDP_PASS, -1},
      {"truncated inner IPv4", FromPeer(Bytes(inner.begin(), inner.begin() + 12), 8285), XDP_DROP,
       CPPNET_CNT_DROP_TRUNCATED},
      {"inner not IPv4",
       FromPeer(
           [&] {
             Bytes b = inner;
             b[0] = 0x60;
             return b;
           }(),
           8285),
       XDP_DROP, CPPNET_CNT_DROP_INNER_BAD_IP},
      {"inner destination not our subnet", FromPeer(Ip4(kC3, 0xc6130909, Tcp(1, 2, 5)), 8285),
       XDP_DROP, CPPNET_CNT_DROP_NOT_LOCAL},
  };
  CheckDecap(cases);
}

TEST_F(DatapathTest, HostGwHostDecapsulatesNothing) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.backend = CPPNET_BACKEND_HOSTGW;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  Bytes vx = FromPeer(Vxlan(kVni, InnerToC1()));
  RunResult r = RunProg(g_dp->decap_prog_fd(), vx);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(r.out, vx);
}

// Underlay tc program: decapsulation without XDP (GSO packets stay whole) and
// delivery: straight into a learned container, else through the bridge.
TEST_F(DatapathTest, TcDecapsulatesVxlanAndHandsItToTheBridge) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  uint64_t rx = Counter(CPPNET_CNT_VXLAN_RX), bridge = Counter(CPPNET_CNT_DELIVER_BRIDGE);
  RunResult r = RunProg(g_dp->underlay_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1())));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  // Outer Ethernet header kept (the neighbour layer rewrites it), inner IP with TTL - 1.
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                                 Ip4(kC2, kC1, Tcp(80, 40000, 64), {.ttl = 63})})));
  EXPECT_EQ(Counter(CPPNET_CNT_VXLAN_RX), rx + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DELIVER_BRIDGE), bridge + 1);
}

TEST_F(DatapathTest, TcDecapsulatesWithOuterIpv4Options) {
  Ip4Opts o{.proto = 17, .options = {0x01, 0x01, 0x01, 0x00}};
  RunResult r = RunProg(g_dp->underlay_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1(10)), 8472, o));
  // No bridge known yet (container_ifindex 0): the stack gets the inner packet.
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(Hex(r.out),
            Hex(Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 10))})));
}

TEST_F(DatapathTest, EncapLearnsTheContainerAndDecapDeliversStraightToIt) {
  // A container frame on its veth (the test harness runs it on ifindex 1).
  ASSERT_EQ(
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(40000, 80, 10)))).retval,
      static_cast<uint32_t>(TC_ACT_REDIRECT));
  auto eps = ListEndpoints(g_dp->maps().endpoints());
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 1u);
  EXPECT_EQ((*eps)[0].addr, kC1);
  EXPECT_EQ((*eps)[0].endpoint.ifindex, 1u);
  EXPECT_EQ(Mac(std::to_array((*eps)[0].endpoint.mac)), kContainerMac);
  EXPECT_EQ(Mac(std::to_array((*eps)[0].endpoint.gw_mac)), kBridgeMac);

  uint64_t direct = Counter(CPPNET_CNT_DELIVER_PEER);
  for (uint16_t port : {8472, 8285}) {
    if (port == 8285) {
      cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
      c.backend = CPPNET_BACKEND_UDP;
      c.port = 8285;
      ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
    }
    Bytes frame = port == 8472 ? FromPeer(Vxlan(kVni, InnerToC1()))
                               : FromPeer(Ip4(kC2, kC1, Tcp(80, 40000, 64)), 8285);
    RunResult r = RunProg(g_dp->underlay_prog_fd(), frame);
    ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << port;
    // As the container's gateway would send it: to its MAC, from the gateway's, TTL - 1.
    EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kContainerMac, kBridgeMac, 0x0800),
                                   Ip4(kC2, kC1, Tcp(80, 40000, 64), {.ttl = 63})})))
        << port;
  }
  EXPECT_EQ(Counter(CPPNET_CNT_DELIVER_PEER), direct + 2);

  // host-gw peers route plain packets to us: delivered the same way. (Addressed to
  // the harness device's MAC, lo's all-zero one, so the skb counts as for this host.)
  Bytes plain = Cat({Eth(Mac{}, kUnderMacD, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20), {.ttl = 9})});
  RunResult r = RunProg(g_dp->underlay_prog_fd(), plain);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(
      Hex(r.out),
      Hex(Cat({Eth(kContainerMac, kBridgeMac, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20), {.ttl = 8})})));
}

TEST_F(DatapathTest, BridgeAttachmentLearnsNothing) {
  // Frames seen on the bridge itself no longer say which port they came from.
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  ASSERT_EQ(
      RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(40000, 80, 10)))).retval,
      static_cast<uint32_t>(TC_ACT_REDIRECT));
  auto eps = ListEndpoints(g_dp->maps().endpoints());
  ASSERT_TRUE(eps.ok());
  EXPECT_TRUE(eps->empty());
}

TEST_F(DatapathTest, UnderlayTcLeavesHostTrafficToTheStack) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  const Mac kHere{};  // the harness device's (lo's) MAC: frames count as addressed to this host
  const PassCase cases[] = {
      {"TCP to the host (ssh, etcd)",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kUnderB, kUnderA, Tcp(22, 5000, 20))})},
      {"ARP", Cat({Eth(kHere, kUnderMacB, 0x0806), Bytes(28, 2)})},
      {"IPv6", Cat({Eth(kHere, kUnderMacB, 0x86dd), Bytes(60, 0)})},
      {"UDP to another port", FromPeer(Vxlan(kVni, InnerToC1()), 4789)},
      {"to our subnet from outside the cluster network (stack and firewall decide)",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(0x0a000001, kC1, Tcp(1, 2, 20))})},
      {"to our subnet with TTL 1 (stack sends time-exceeded)",
       Cat({Eth(kHere, kUnderMacD, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20), {.ttl = 1})})},
      {"to another host's subnet",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kC4, kC2, Tcp(1, 2, 20))})},
  };
  for (const PassCase& pc : cases) {
    RunResult r = RunProg(g_dp->underlay_prog_fd(), pc.frame);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK)) << pc.name;
    EXPECT_EQ(r.out, pc.frame) << pc.name;
  }
}

}  // namespace
}  // namespace cppnet::test
