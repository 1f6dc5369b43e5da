// BPF_PROG_TEST_RUN tables for the encapsulation (tc, container side), decapsulation
// (XDP, and tc on the underlay) and delivery programs: exact bytes out for good
// packets, verdict + drop counter for bad ones.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <gtest/gtest.h>

#include "core/maps.h"
#include "core/nd.h"
#include "datapath.h"
#include "packet.h"

namespace cppnet::test {
namespace {

Datapath* g_dp = nullptr;
// The underlay of these tests: a veth in the test's own network namespace, with the
// host-gw peer D's neighbour entry (routed packets are checked against it).
int g_underlay = 1;
const char* kUnderlayName = "cpt-under0";

const uint32_t kUnderA = 0xc6120001;  // 198.18.0.1 (us)
const uint32_t kUnderB = 0xc6120002;  // 198.18.0.2 (vxlan peer)
const uint32_t kUnderC = 0xc6120003;  // 198.18.0.3 (udp-backend peer)
const uint32_t kUnderD = 0xc6120004;  // 198.18.0.4 (host-gw peer)
const uint32_t kC3 = 0xc6130305;      // 198.19.3.5, container behind C
const uint32_t kC4 = 0xc6130405;      // 198.19.4.5, container behind D
const Mac kUnderMacA{0x02, 0, 0, 0, 0, 0x01};
const Mac kUnderMacB{0x02, 0, 0, 0, 0, 0x02};
const Mac kUnderMacD{0x02, 0, 0, 0, 0, 0x04};
const Mac kBridgeMac{0x02, 0xbb, 0, 0, 0, 0x01};
const Mac kContainerMac{0x02, 0xcc, 0, 0, 0, 0x02};
const Mac kVtepA = VtepMacFor(kUnderA);
const Mac kVtepB = VtepMacFor(kUnderB);
const uint32_t kC1 = 0xc6130102;  // 198.19.1.2, container on A
const uint32_t kC2 = 0xc6130205;  // 198.19.2.5, container on B
const uint32_t kVni = 1;

// XDP's metadata in front of what it decapsulated (BPF_PROG_TEST_RUN returns it with
// the packet): the mark that lets tc deliver it, CPPNET_XDP_META_DECAP in host order.
const Bytes kMetaDecap = [] {
  Bytes b(4);
  uint32_t v = CPPNET_XDP_META_DECAP;
  memcpy(b.data(), &v, 4);
  return b;
}();

struct RunResult {
  uint32_t retval;
  Bytes out;
};

RunResult RunProg(int prog_fd, const Bytes& in) {
  Bytes out(in.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(in.size()), .data_size_out = static_cast<uint32_t>(out.size()));
  opts.repeat = 1;
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  EXPECT_EQ(err, 0) << strerror(errno);
  out.resize(opts.data_size_out);
  return {opts.retval, out};
}

cppnet_config ConfigFor(uint32_t underlay, const Mac& mac, uint32_t subnet) {
  cppnet_config c{};
  c.subnet_addr = htonl(subnet);
  c.subnet_len = 24;
  c.network_addr = htonl(0xc6130000);
  c.network_len = 16;
  c.underlay_ip = htonl(underlay);
  c.underlay_ifindex = g_underlay;
  c.vni = kVni;
  c.port = 8472;
  c.mtu = 1500;
  c.backend = CPPNET_BACKEND_VXLAN;
  c.flags = CPPNET_CFG_READY;
  memcpy(c.underlay_mac, mac.data(), 6);
  Mac vtep = VtepMacFor(underlay);
  memcpy(c.vtep_mac, vtep.data(), 6);
  return c;
}

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const MapFds& m = g_dp->maps();
    ASSERT_TRUE(WriteConfig(m.config(), ConfigFor(kUnderA, kUnderMacA, 0xc6130100)).ok());
    auto routes = ListRoutes(m.routes());
    ASSERT_TRUE(routes.ok());
    for (const auto& r : *routes) ASSERT_TRUE(DeleteRoute(m.routes(), r.subnet).ok());
    auto eps = ListEndpoints(m.endpoints());
    ASSERT_TRUE(eps.ok());
    for (const auto& e : *eps) ASSERT_TRUE(DeleteEndpoint(m.endpoints(), e.addr).ok());
    auto binds = ListBinds(m.binds());
    ASSERT_TRUE(binds.ok());
    for (const auto& b : *binds) ASSERT_TRUE(FreeBindSlot(m.binds(), b.ifindex).ok());
    auto peers = ListPeers(m.peers());
    ASSERT_TRUE(peers.ok());
    for (const auto& [slot, p] : *peers) ASSERT_TRUE(SetPeerSlot(m.peers(), slot, cppnet_peer{}).ok());
    // As the agent writes them: each peer with its one subnet.
    for (const auto& [slot, p] : PeerSlots({{kUnderB, {Prefix4{0xc6130200, 24}}},
                                            {kUnderC, {Prefix4{0xc6130300, 24}}},
                                            {kUnderD, {Prefix4{0xc6130400, 24}}}}))
      ASSERT_TRUE(SetPeerSlot(m.peers(), slot, p).ok());
    cppnet_route rt{};
    rt.public_ip = htonl(kUnderB);
    rt.vni = kVni;
    memcpy(rt.vtep_mac, kVtepB.data(), 6);
    rt.port = 8472;
    rt.backend = CPPNET_BACKEND_VXLAN;
    ASSERT_TRUE(UpsertRoute(m.routes(), Prefix4{0xc6130200, 24}, rt).ok());
    cppnet_route udp{};  // a udp-backend peer
    udp.public_ip = htonl(kUnderC);
    udp.port = 8285;
    udp.backend = CPPNET_BACKEND_UDP;
    ASSERT_TRUE(UpsertRoute(m.routes(), Prefix4{0xc6130300, 24}, udp).ok());
    cppnet_route gw{};  // a host-gw peer
    gw.public_ip = htonl(kUnderD);
    gw.backend = CPPNET_BACKEND_HOSTGW;
    ASSERT_TRUE(UpsertRoute(m.routes(), Prefix4{0xc6130400, 24}, gw).ok());
  }
  uint64_t Counter(uint32_t id);
  // Inner packet from container C1 on A to C2 on B, as it reaches the bridge.
  Bytes ContainerFrame(const Bytes& ip) { return Cat({Eth(kBridgeMac, kContainerMac, 0x0800), ip}); }
  // What the encapsulation must produce for inner IP packet `inner_ip` (after TTL-1).
  Bytes Encapsulated(const Bytes& inner_ip_after, uint16_t sport, uint16_t id, bool df, uint8_t tos) {
    Bytes inner = Cat({Eth(kVtepB, kVtepA, 0x0800), inner_ip_after});
    Ip4Opts o{.tos = tos, .id = id, .df = df, .ttl = 64, .proto = 17};
    return Cat({Eth(kBridgeMac, kContainerMac, 0x0800), Ip4(kUnderA, kUnderB, Udp(sport, 8472, Vxlan(kVni, inner)), o)});
  }
};

uint16_t SportOf(const Bytes& out) { return out.size() > 36 ? (out[34] << 8) | out[35] : 0; }

// The datapath's source port for a flow without a socket hash (as in these tests),
// written out independently: lowbias32 mix of the 5-tuple, scaled into 32768..60999.
uint32_t Mix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352d;
  h ^= h >> 15;
  h *= 0x846ca68b;
  return h ^ (h >> 16);
}
uint16_t ExpectedSport(uint32_t saddr, uint32_t daddr, uint8_t proto, uint16_t sport, uint16_t dport) {
  // The program mixes the raw (network order) words as a little-endian host loads them.
  uint32_t s = htonl(saddr), d = htonl(daddr), ports = htons(sport) | (uint32_t{htons(dport)} << 16);
  uint32_t h = Mix(s ^ Mix(d ^ Mix(ports ^ proto)));
  return static_cast<uint16_t>(((uint64_t{h} * (61000 - 32768)) >> 32) + 32768);
}

TEST_F(DatapathTest, EncapsulatesTcpToRemoteSubnetExactly) {
  Bytes ip = Ip4(kC1, kC2, Tcp(40000, 80, 100), {.tos = 0x10, .id = 0x4242, .ttl = 64});
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  uint16_t sport = SportOf(r.out);
  EXPECT_EQ(sport, ExpectedSport(kC1, kC2, 6, 40000, 80));
  EXPECT_GE(sport, 32768);
  EXPECT_LT(sport, 61000);
  Bytes expected = Encapsulated(Ip4(kC1, kC2, Tcp(40000, 80, 100), {.tos = 0x10, .id = 0x4242, .ttl = 63}),
                                sport, 0x4242, true, 0x10);
  EXPECT_EQ(Hex(r.out), Hex(expected));
  // Same flow, same source port; the hash spreads other flows.
  Bytes ip2 = Ip4(kC1, kC2, Tcp(40001, 80, 100));
  bool differs = false;
  for (uint16_t p = 40001; p < 40009; p++)
    differs |= SportOf(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(p, 80, 10)))).out) != sport;
  EXPECT_EQ(SportOf(RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip)).out), sport);
  EXPECT_TRUE(differs);
}

TEST_F(DatapathTest, EncapsulatesInnerIpv4OptionsUntouched) {
  Bytes opts{0x94, 0x04, 0x00, 0x00};  // router alert
  Bytes ip = Ip4(kC1, kC2, Udp(5000, 53, Bytes(30, 0xab)), {.id = 7, .df = false, .ttl = 10, .proto = 17, .options = opts});
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(ip));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes after = Ip4(kC1, kC2, Udp(5000, 53, Bytes(30, 0xab)), {.id = 7, .df = false, .ttl = 9, .proto = 17, .options = opts});
  EXPECT_EQ(SportOf(r.out), ExpectedSport(kC1, kC2, 17, 5000, 53));
  EXPECT_EQ(Hex(r.out), Hex(Encapsulated(after, SportOf(r.out), 7, false, 0)));
}

struct PassCase {
  const char* name;
  Bytes frame;
};

TEST_F(DatapathTest, EncapLeavesOtherTrafficUntouched) {
  const PassCase cases[] = {
      {"no route (unleased subnet)", ContainerFrame(Ip4(kC1, 0xc6130905, Tcp(1, 2, 10)))},
      {"outside the Network", ContainerFrame(Ip4(kC1, kUnderB, Tcp(1, 2, 10)))},
      {"ARP", Cat({Eth(kBridgeMac, kContainerMac, 0x0806), Bytes(28, 1)})},
      {"IPv6", Cat({Eth(kBridgeMac, kContainerMac, 0x86dd), Bytes(60, 0)})},
      {"TTL 1 (stack sends time-exceeded)", ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10), {.ttl = 1}))},
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
              Ip4(0xc6130101 /* the bridge, 198.19.1.1 */, kC1, icmp, {.tos = 0xc0, .id = 0, .df = false, .ttl = 64, .proto = 1})});
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
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 1460), {.df = false})));
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
  Bytes vx = Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                  Ip4(kUnderB, kUnderA, Udp(40000, 8472, Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(1, 2, 10))}))), {.proto = 17})});
  RunResult r = RunProg(g_dp->decap_prog_fd(), vx);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(r.out, vx);
}

// VXLAN frame from peer B to us.
Bytes FromPeer(const Bytes& vxlan_payload, uint16_t dport = 8472, Ip4Opts o = {.proto = 17}) {
  return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kUnderB, kUnderA, Udp(51000, dport, vxlan_payload), o)});
}
Bytes InnerToC1(size_t len = 64) { return Cat({Eth(kVtepA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, len))}); }

TEST_F(DatapathTest, DecapsulatesVxlanForOurVtepExactly) {
  uint64_t before = Counter(CPPNET_CNT_VXLAN_RX);
  RunResult r = RunProg(g_dp->decap_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1())));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  Bytes expected = Cat({kMetaDecap, Eth(kUnderMacA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 64))});
  EXPECT_EQ(Hex(r.out), Hex(expected));
  EXPECT_EQ(Counter(CPPNET_CNT_VXLAN_RX), before + 1);
}

TEST_F(DatapathTest, DecapsulatesWithOuterIpv4Options) {
  Ip4Opts o{.proto = 17, .options = {0x01, 0x01, 0x01, 0x00, 0x94, 0x04, 0x00, 0x00}};
  RunResult r = RunProg(g_dp->decap_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1(10)), 8472, o));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(Hex(r.out), Hex(Cat({kMetaDecap, Eth(kUnderMacA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 10))})));
}

struct DecapCase {
  const char* name;
  Bytes frame;
  uint32_t verdict;
  int drop_counter;  // -1: passed untouched
};

uint64_t Packets(uint32_t id) {
  auto s = ReadStats(g_dp->maps().stats());
  return s.ok() ? (*s)[id].packets : ~0ull;
}
uint64_t DatapathTest::Counter(uint32_t id) { return Packets(id); }

// Each case through XDP decapsulation and through the underlay tc program: the
// verdict (given as XDP's; tc's equivalent for the tc run), and either the drop
// counter moving by one or the frame passing untouched.
template <size_t N>
void CheckDecap(const DecapCase (&cases)[N]) {
  for (int tc = 0; tc < 2; tc++) {
    for (const DecapCase& c : cases) {
      // The kernel's test harness refuses skbs without a full IPv4 header.
      if (tc && c.frame.size() < 34) continue;
      uint64_t before = c.drop_counter >= 0 ? Packets(c.drop_counter) : 0;
      RunResult r = RunProg(tc ? g_dp->underlay_prog_fd() : g_dp->decap_prog_fd(), c.frame);
      uint32_t want = !tc ? c.verdict : c.verdict == XDP_PASS ? TC_ACT_OK : TC_ACT_SHOT;
      EXPECT_EQ(r.retval, want) << c.name << (tc ? " (tc)" : " (xdp)");
      if (c.drop_counter >= 0)
        EXPECT_EQ(Packets(c.drop_counter), before + 1) << c.name << (tc ? " (tc)" : " (xdp)");
      else
        EXPECT_EQ(r.out, c.frame) << c.name << (tc ? " (tc)" : " (xdp)");
    }
  }
}

TEST_F(DatapathTest, DecapBadAndForeignPackets) {
  Bytes good = FromPeer(Vxlan(kVni, InnerToC1()));
  const DecapCase cases[] = {
      {"other UDP port (not ours)", FromPeer(Vxlan(kVni, InnerToC1()), 4789), XDP_PASS, -1},
      {"not for our address", Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kUnderB, 0xc6120009, Udp(1, 8472, Vxlan(kVni, InnerToC1())), {.proto = 17})}), XDP_PASS, -1},
      {"ARP on the underlay", Cat({Eth(kUnderMacA, kUnderMacB, 0x0806), Bytes(28, 2)}), XDP_PASS, -1},
      {"TCP on the underlay", Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kUnderB, kUnderA, Tcp(22, 5000, 20))}), XDP_PASS, -1},
      {"fragment", Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), [&] { Bytes b = Ip4(kUnderB, kUnderA, Udp(1, 8472, Vxlan(kVni, InnerToC1())), {.df = false, .proto = 17}); b[6] |= 0x20; return b; }()}), XDP_PASS, -1},
      {"truncated outer IPv4", Bytes(good.begin(), good.begin() + 30), XDP_PASS, -1},
      {"truncated UDP header", Bytes(good.begin(), good.begin() + 38), XDP_PASS, -1},
      {"truncated VXLAN header", Bytes(good.begin(), good.begin() + 46), XDP_DROP, CPPNET_CNT_DROP_TRUNCATED},
      {"truncated inner IPv4", Bytes(good.begin(), good.begin() + 70), XDP_DROP, CPPNET_CNT_DROP_TRUNCATED},
      {"VXLAN without I flag", FromPeer(Vxlan(kVni, InnerToC1(), 0x00)), XDP_DROP, CPPNET_CNT_DROP_VXLAN_FLAGS},
      {"wrong VNI", FromPeer(Vxlan(42, InnerToC1())), XDP_DROP, CPPNET_CNT_DROP_VNI_UNKNOWN},
      {"inner MAC not our VtepMAC", FromPeer(Vxlan(kVni, Cat({Eth(kVtepB, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(1, 2, 5))}))), XDP_DROP, CPPNET_CNT_DROP_VTEP_MAC},
      {"inner ARP", FromPeer(Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0806), Bytes(28, 0)}))), XDP_DROP, CPPNET_CNT_DROP_INNER_NOT_IPV4},
      {"inner IPv4 bad version", FromPeer(Vxlan(kVni, [] { Bytes b = InnerToC1(); b[14] = 0x65; return b; }())), XDP_DROP, CPPNET_CNT_DROP_INNER_BAD_IP},
      {"inner destination not our subnet", FromPeer(Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), Ip4(kC2, 0xc6130909, Tcp(1, 2, 5))}))), XDP_DROP, CPPNET_CNT_DROP_NOT_LOCAL},
  };
  CheckDecap(cases);
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
  EXPECT_EQ(Hex(dec.out), Hex(Cat({kMetaDecap, Eth(kUnderMacB, kVtepA, 0x0800), Ip4(kC1, kC2, Tcp(40000, 80, 300), {.ttl = 19})})));
}

TEST_F(DatapathTest, UdpBackendCarriesTheInnerIpPacketAsPayload) {
  uint64_t before = Counter(CPPNET_CNT_UDP_TX);
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC3, Tcp(40000, 443, 200), {.id = 9})));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(SportOf(r.out), ExpectedSport(kC1, kC3, 6, 40000, 443));
  Bytes inner_after = Ip4(kC1, kC3, Tcp(40000, 443, 200), {.id = 9, .ttl = 63});
  Bytes expected = Cat({Eth(kBridgeMac, kContainerMac, 0x0800),
                        Ip4(kUnderA, kUnderC, Udp(SportOf(r.out), 8285, inner_after), {.id = 9, .df = true, .proto = 17})});
  EXPECT_EQ(Hex(r.out), Hex(expected));
  EXPECT_EQ(Counter(CPPNET_CNT_UDP_TX), before + 1);
  // 28 bytes of overhead: 1472 bytes of inner packet fit a 1500 underlay, 1473 do not.
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC3, Tcp(1, 2, 1472 - 40)))).retval,
            static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes big = Ip4(kC1, kC3, Tcp(1, 2, 1473 - 40));
  EXPECT_EQ(Hex(RunProg(g_dp->encap_prog_fd(), ContainerFrame(big)).out), Hex(FragNeeded(big, 1472)));
}

TEST_F(DatapathTest, HostGwForwardsUnchangedButForTheTtl) {
  uint64_t before = Counter(CPPNET_CNT_HOSTGW_TX);
  RunResult r = RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC4, Tcp(1, 2, 100), {.ttl = 30})));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out), Hex(ContainerFrame(Ip4(kC1, kC4, Tcp(1, 2, 100), {.ttl = 29}))));
  EXPECT_EQ(Counter(CPPNET_CNT_HOSTGW_TX), before + 1);
  // Full-size packets pass: host-gw adds no header (MTU = underlay); larger ones do not.
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC4, Tcp(1, 2, 1460)))).retval,
            static_cast<uint32_t>(TC_ACT_REDIRECT));
  Bytes big = Ip4(kC1, kC4, Tcp(1, 2, 1461));
  EXPECT_EQ(Hex(RunProg(g_dp->encap_prog_fd(), ContainerFrame(big)).out), Hex(FragNeeded(big, 1500)));
}

class UdpDecapTest : public DatapathTest {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
    c.backend = CPPNET_BACKEND_UDP;
    c.port = 8285;
    ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  }
};

TEST_F(UdpDecapTest, DecapsulatesUdpBackendExactly) {
  Bytes inner = Ip4(kC3, kC1, Tcp(443, 40000, 64));
  // From peer C, whose subnet kC3 is in.
  Bytes frame = Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kUnderC, kUnderA, Udp(51000, 8285, inner), {.proto = 17})});
  RunResult r = RunProg(g_dp->decap_prog_fd(), frame);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(Hex(r.out), Hex(Cat({kMetaDecap, Eth(kUnderMacA, kUnderMacA, 0x0800), inner})));
}

TEST_F(UdpDecapTest, BadAndForeignPackets) {
  Bytes inner = Ip4(kC3, kC1, Tcp(443, 40000, 64));
  const DecapCase cases[] = {
      {"VXLAN port while running udp", FromPeer(Vxlan(kVni, InnerToC1()), 8472), XDP_PASS, -1},
      {"truncated inner IPv4", FromPeer(Bytes(inner.begin(), inner.begin() + 12), 8285), XDP_DROP, CPPNET_CNT_DROP_TRUNCATED},
      {"inner not IPv4", FromPeer([&] { Bytes b = inner; b[0] = 0x60; return b; }(), 8285), XDP_DROP, CPPNET_CNT_DROP_INNER_BAD_IP},
      {"inner destination not our subnet", FromPeer(Ip4(kC3, 0xc6130909, Tcp(1, 2, 5)), 8285), XDP_DROP, CPPNET_CNT_DROP_NOT_LOCAL},
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
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 64), {.ttl = 63})})));
  EXPECT_EQ(Counter(CPPNET_CNT_VXLAN_RX), rx + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DELIVER_BRIDGE), bridge + 1);
}

TEST_F(DatapathTest, TcDecapsulatesWithOuterIpv4Options) {
  Ip4Opts o{.proto = 17, .options = {0x01, 0x01, 0x01, 0x00}};
  RunResult r = RunProg(g_dp->underlay_prog_fd(), FromPeer(Vxlan(kVni, InnerToC1(10)), 8472, o));
  // No bridge known yet (container_ifindex 0): the stack gets the inner packet.
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 10))})));
}

TEST_F(DatapathTest, EncapLearnsTheContainerAndDecapDeliversStraightToIt) {
  // A container frame on its veth (the test harness runs it on ifindex 1).
  ASSERT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(40000, 80, 10)))).retval,
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
    Bytes frame = port == 8472 ? FromPeer(Vxlan(kVni, InnerToC1())) : FromPeer(Ip4(kC2, kC1, Tcp(80, 40000, 64)), 8285);
    RunResult r = RunProg(g_dp->underlay_prog_fd(), frame);
    ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << port;
    // As the container's gateway would send it: to its MAC, from the gateway's, TTL - 1.
    EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kContainerMac, kBridgeMac, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, 64), {.ttl = 63})})))
        << port;
  }
  EXPECT_EQ(Counter(CPPNET_CNT_DELIVER_PEER), direct + 2);

  // host-gw peers route plain packets to us: delivered the same way. (Addressed to
  // the harness device's MAC, lo's all-zero one, so the skb counts as for this host.)
  Bytes plain = Cat({Eth(Mac{}, kUnderMacD, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20), {.ttl = 9})});
  RunResult r = RunProg(g_dp->underlay_prog_fd(), plain);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kContainerMac, kBridgeMac, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20), {.ttl = 8})})));
}

TEST_F(DatapathTest, BridgeAttachmentLearnsNothing) {
  // Frames seen on the bridge itself no longer say which port they came from.
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  ASSERT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(40000, 80, 10)))).retval,
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
      {"TCP to the host (ssh, etcd)", Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kUnderB, kUnderA, Tcp(22, 5000, 20))})},
      {"ARP", Cat({Eth(kHere, kUnderMacB, 0x0806), Bytes(28, 2)})},
      {"IPv6", Cat({Eth(kHere, kUnderMacB, 0x86dd), Bytes(60, 0)})},
      {"UDP to another port", FromPeer(Vxlan(kVni, InnerToC1()), 4789)},
      {"to our subnet from outside the cluster network (stack and firewall decide)",
       Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(0x0a000001, kC1, Tcp(1, 2, 20))})},
      {"to our subnet with TTL 1 (stack sends time-exceeded)",
       Cat({Eth(kHere, kUnderMacD, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20), {.ttl = 1})})},
      {"to another host's subnet", Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kC4, kC2, Tcp(1, 2, 20))})},
  };
  for (const PassCase& pc : cases) {
    RunResult r = RunProg(g_dp->underlay_prog_fd(), pc.frame);
    EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK)) << pc.name;
    EXPECT_EQ(r.out, pc.frame) << pc.name;
  }
}

// ---- Trust boundaries: only peers' packets from their own subnets are delivered, and
// a container sends only from its own address.
TEST_F(DatapathTest, DecapDeliversOnlyPeersFromTheirOwnSubnets) {
  const uint32_t kStranger = 0xc6120009;  // 198.18.0.9: no lease, no static route
  auto from = [](uint32_t outer_src, const Bytes& inner_ip) {
    return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
                Ip4(outer_src, kUnderA, Udp(51000, 8472, Vxlan(kVni, Cat({Eth(kVtepA, kVtepB, 0x0800), inner_ip}))), {.proto = 17})});
  };
  const DecapCase cases[] = {
      {"host that is no peer", from(kStranger, Ip4(kC2, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"no peer, inner source of no subnet", from(kStranger, Ip4(0xc6130909, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"peer B sending as C's subnet", from(kUnderB, Ip4(kC3, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"peer B sending as our own subnet", from(kUnderB, Ip4(0xc6130107, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"peer B sending from outside the Network", from(kUnderB, Ip4(0x0a000001, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
  };
  CheckDecap(cases);
  // The via of a static route is a peer for that route's subnet.
  cppnet_route st{};
  st.public_ip = htonl(kStranger);
  st.vni = kVni;
  st.backend = CPPNET_BACKEND_VXLAN;
  st.origin = CPPNET_ORIGIN_STATIC;
  ASSERT_TRUE(UpsertRoute(g_dp->maps().routes(), Prefix4{0xc6133200, 24}, st).ok());
  RunResult r = RunProg(g_dp->decap_prog_fd(), from(kStranger, Ip4(0xc6133202, kC1, Tcp(1, 2, 5))));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(XDP_PASS));
  EXPECT_EQ(Hex(r.out), Hex(Cat({kMetaDecap, Eth(kUnderMacA, kVtepB, 0x0800), Ip4(0xc6133202, kC1, Tcp(1, 2, 5))})));
  r = RunProg(g_dp->underlay_prog_fd(), from(kStranger, Ip4(0xc6133202, kC1, Tcp(1, 2, 5))));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));  // decapsulated; no bridge yet: the stack
  // A peer with several routes has no subnet in its entry: its routes decide.
  for (const auto& [slot, p] : PeerSlots({{kUnderB, {Prefix4{0xc6130200, 24}, Prefix4{0xc6133300, 24}}}}))
    ASSERT_TRUE(SetPeerSlot(g_dp->maps().peers(), slot, p).ok());
  EXPECT_EQ(RunProg(g_dp->decap_prog_fd(), from(kUnderB, Ip4(kC2, kC1, Tcp(1, 2, 5)))).retval,
            static_cast<uint32_t>(XDP_PASS));
  uint64_t bad = Counter(CPPNET_CNT_DROP_BAD_INNER_SOURCE);
  EXPECT_EQ(RunProg(g_dp->decap_prog_fd(), from(kUnderB, Ip4(kC3, kC1, Tcp(1, 2, 5)))).retval,
            static_cast<uint32_t>(XDP_DROP));
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_BAD_INNER_SOURCE), bad + 1);
}

TEST_F(DatapathTest, UdpDecapDeliversOnlyPeers) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.backend = CPPNET_BACKEND_UDP;
  c.port = 8285;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  auto from = [](uint32_t outer_src, const Bytes& inner_ip) {
    return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800), Ip4(outer_src, kUnderA, Udp(8285, 8285, inner_ip), {.proto = 17})});
  };
  const DecapCase cases[] = {
      {"host that is no peer", from(0xc6120009, Ip4(kC3, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"peer C sending as B's subnet", from(kUnderC, Ip4(kC2, kC1, Tcp(1, 2, 5))), XDP_DROP, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
  };
  CheckDecap(cases);
}

TEST_F(DatapathTest, RoutedPacketsAreDeliveredOnlyFromTheHostGwPeer) {
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  const Mac kHere{};
  struct {
    const char* name;
    Bytes frame;
    uint32_t verdict;
    int counter;
  } cases[] = {
      {"from peer D's MAC, D's subnet", Cat({Eth(kHere, kUnderMacD, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20))}), TC_ACT_REDIRECT,
       CPPNET_CNT_DELIVER_BRIDGE},
      {"D's subnet from another host's MAC", Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kC4, kC1, Tcp(1, 2, 20))}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_UNKNOWN_PEER},
      {"plain packet from a vxlan peer's subnet", Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(kC2, kC1, Tcp(1, 2, 20))}),
       TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
      {"plain packet from an unleased subnet", Cat({Eth(kHere, kUnderMacB, 0x0800), Ip4(0xc6130909, kC1, Tcp(1, 2, 20))}),
       TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_INNER_SOURCE},
  };
  for (const auto& tc : cases) {
    uint64_t before = Counter(tc.counter);
    RunResult r = RunProg(g_dp->underlay_prog_fd(), tc.frame);
    EXPECT_EQ(r.retval, tc.verdict) << tc.name;
    EXPECT_EQ(Counter(tc.counter), before + 1) << tc.name;
  }
}

TEST_F(DatapathTest, ContainerSendsOnlyFromItsOwnAddress) {
  // The harness runs the program on ifindex 1: that is the container's veth. Its first
  // packet binds 198.19.1.2 and its MAC.
  ASSERT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(40000, 80, 10)))).retval,
            static_cast<uint32_t>(TC_ACT_REDIRECT));
  auto binds = ListBinds(g_dp->maps().binds());
  ASSERT_TRUE(binds.ok());
  ASSERT_EQ(binds->size(), 1u);
  EXPECT_EQ((*binds)[0].ifindex, 1u);
  EXPECT_EQ(ntohl((*binds)[0].addr), kC1);
  const Mac kOther{0x02, 0xcc, 0, 0, 0, 0x09};
  auto arp = [](const Mac& sha, uint32_t spa, uint32_t tpa) {
    Bytes a = {0, 1, 8, 0, 6, 4, 0, 1};
    a.insert(a.end(), sha.begin(), sha.end());
    for (int i = 3; i >= 0; i--) a.push_back(static_cast<uint8_t>(spa >> (8 * i)));
    a.insert(a.end(), 6, 0);
    for (int i = 3; i >= 0; i--) a.push_back(static_cast<uint8_t>(tpa >> (8 * i)));
    return a;
  };
  struct Case {
    const char* name;
    Bytes frame;
    uint32_t verdict;
    int counter;
  } cases[] = {
      {"its neighbour's address", ContainerFrame(Ip4(0xc6130103, kC2, Tcp(1, 2, 10))), TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_SOURCE},
      {"another host's subnet", ContainerFrame(Ip4(0xc6130207, kC1, Tcp(1, 2, 10))), TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_SOURCE},
      {"outside the Network", ContainerFrame(Ip4(0x0a000001, kC2, Tcp(1, 2, 10))), TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_SOURCE},
      {"its own address from another MAC", Cat({Eth(kBridgeMac, kOther, 0x0800), Ip4(kC1, kC2, Tcp(1, 2, 10))}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"IPv6 from another MAC (the bridge would learn it)", Cat({Eth(kBridgeMac, kOther, 0x86dd), Bytes(60, 0)}),
       TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_SOURCE},
      {"IPv6 from its own MAC", Cat({Eth(kBridgeMac, kContainerMac, 0x86dd), Bytes(60, 0)}), TC_ACT_OK, -1},
      {"ARP for its neighbour's address", Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kContainerMac, 0xc6130103, 0xc6130101)}),
       TC_ACT_SHOT, CPPNET_CNT_DROP_BAD_SOURCE},
      {"ARP with another sender MAC", Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kOther, kC1, 0xc6130101)}), TC_ACT_SHOT,
       CPPNET_CNT_DROP_BAD_SOURCE},
      {"malformed IPv4 header", [&] { Bytes b = ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10))); b[14] = 0x44; return b; }(),
       TC_ACT_SHOT, CPPNET_CNT_DROP_TRUNCATED},
      {"UDP to a host's VXLAN port", ContainerFrame(Ip4(kC1, kUnderB, Udp(4000, 8472, Bytes(16, 0)), {.proto = 17})),
       TC_ACT_SHOT, CPPNET_CNT_DROP_TO_TUNNEL},
      {"its own address", ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10))), TC_ACT_REDIRECT, CPPNET_CNT_VXLAN_TX},
      {"its own ARP", Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kContainerMac, kC1, 0xc6130101)}), TC_ACT_OK, -1},
      {"ARP probe (sender 0)", Cat({Eth(kBridgeMac, kContainerMac, 0x0806), arp(kContainerMac, 0, 0xc6130107)}), TC_ACT_OK, -1},
  };
  for (const Case& c : cases) {
    uint64_t before = c.counter >= 0 ? Counter(c.counter) : 0;
    RunResult r = RunProg(g_dp->encap_prog_fd(), c.frame);
    EXPECT_EQ(r.retval, c.verdict) << c.name;
    if (c.counter >= 0) {
      EXPECT_EQ(Counter(c.counter), before + 1) << c.name;
    }
  }
}

TEST_F(DatapathTest, AnAddressBoundToALiveVethIsNeverMoved) {
  // 198.19.1.3 belongs to another container's veth (ifindex 900001).
  const uint32_t kNeighbour = 0xc6130103;
  ASSERT_EQ(bpf_map_update_elem(g_dp->maps().endpoints(), std::array<uint8_t, 4>{198, 19, 1, 3}.data(),
                                std::array<uint8_t, 16>{0xa1, 0xbb, 0x0d, 0, 0x02, 0xcc, 0, 0, 0, 3}.data(), BPF_ANY),
            0);
  for (uint32_t src : {kNeighbour, 0xc6130101u /* the gateway */, 0xc6130100u, 0xc61301ffu}) {
    uint64_t before = Counter(CPPNET_CNT_DROP_BAD_SOURCE);
    EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(src, kC2, Tcp(1, 2, 10)))).retval,
              static_cast<uint32_t>(TC_ACT_SHOT));
    EXPECT_EQ(Counter(CPPNET_CNT_DROP_BAD_SOURCE), before + 1);
  }
  auto eps = ListEndpoints(g_dp->maps().endpoints());
  ASSERT_TRUE(eps.ok());
  ASSERT_EQ(eps->size(), 1u);
  EXPECT_EQ((*eps)[0].endpoint.ifindex, 900001u);  // untouched
  auto binds = ListBinds(g_dp->maps().binds());
  ASSERT_TRUE(binds.ok());
  EXPECT_TRUE(binds->empty());
  // On the bridge (a port not attached yet), a bound address is a spoof too.
  cppnet_config c = ConfigFor(kUnderA, kUnderMacA, 0xc6130100);
  c.container_ifindex = 1;
  ASSERT_TRUE(WriteConfig(g_dp->maps().config(), c).ok());
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kNeighbour, kC2, Tcp(1, 2, 10)))).retval,
            static_cast<uint32_t>(TC_ACT_SHOT));
  EXPECT_EQ(RunProg(g_dp->encap_prog_fd(), ContainerFrame(Ip4(kC1, kC2, Tcp(1, 2, 10)))).retval,
            static_cast<uint32_t>(TC_ACT_REDIRECT));
}

// ---- VLAN networks. The test harness runs programs on lo (ifindex 1): lo plays the
// trunk and, for the endpoint program, the endpoint's host veth. Other endpoints get
// ifindexes no interface has, so flooding (bpf_clone_redirect) sends nothing anywhere.
const Mac kTrunkMac{0x02, 0x77, 0, 0, 0, 0x01};
const Mac kEp{0x02, 0x42, 0, 0, 0, 0x10}, kEp2{0x02, 0x42, 0, 0, 0, 0x11}, kWire{0x02, 0x42, 0, 0, 0, 0x99};
const Mac kBcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr uint32_t kFakePort = 900007, kFakePort2 = 900008;

class VlanTest : public DatapathTest {
 protected:
  void TearDown() override {
    VlanMaps m = g_dp->vlan_maps();
    for (uint32_t p : {1u, kFakePort, kFakePort2}) ASSERT_TRUE(UnregisterVlanEndpoint(m, p).ok());
    EXPECT_TRUE(ListVlanNets(m.net())->empty());
    EXPECT_TRUE(ListVlanAddrs(m.ep())->empty());
  }
  void Add(uint16_t vlan, uint8_t mode, uint32_t port, const Mac& mac, std::vector<uint32_t> ip4 = {},
           std::vector<unsigned __int128> ip6 = {}) {
    VlanEndpointSpec s{.network = "t", .trunk_ifindex = 1, .trunk_mac = kTrunkMac, .vlan = vlan, .mode = mode,
                       .host_ifindex = port, .mac = mac, .ipv4 = ip4, .ipv6 = ip6};
    auto st = RegisterVlanEndpoint(g_dp->vlan_maps(), s);
    ASSERT_TRUE(st.ok()) << st.message();
  }
  static Bytes Tagged(const Mac& dst, const Mac& src, uint16_t tpid, uint16_t tci, const Bytes& rest) {
    return Cat({Bytes(dst.begin(), dst.end()), Bytes(src.begin(), src.end()),
                Bytes{static_cast<uint8_t>(tpid >> 8), static_cast<uint8_t>(tpid), static_cast<uint8_t>(tci >> 8),
                      static_cast<uint8_t>(tci)},
                rest});
  }
  static Bytes Arp(uint16_t op, const Mac& sha, uint32_t spa, uint32_t tpa) {
    Bytes b{0x00, 0x01, 0x08, 0x00, 6, 4, 0, static_cast<uint8_t>(op)};
    b.insert(b.end(), sha.begin(), sha.end());
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(spa >> (8 * i)));
    b.insert(b.end(), 6, 0);
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(tpa >> (8 * i)));
    return b;
  }
  static Bytes Ip6(unsigned __int128 src, unsigned __int128 dst) {
    Bytes b{0x60, 0, 0, 0, 0, 8, 17, 64};
    for (unsigned __int128 a : {src, dst})
      for (int i = 15; i >= 0; i--) b.push_back(static_cast<uint8_t>(a >> (8 * i)));
    Bytes udp = Udp(1, 2, {});
    b.insert(b.end(), udp.begin(), udp.end());
    return b;
  }
  static void ExpectVerdict(int prog, const Bytes& in, int verdict, const char* what) {
    EXPECT_EQ(RunProg(prog, in).retval, static_cast<uint32_t>(verdict)) << what;
  }
};

const uint32_t kV1 = 0xc6120a02, kV2 = 0xc6120a03, kV9 = 0xc6120a09;  // 198.18.10.2/.3/.9
const unsigned __int128 kV6 = (static_cast<unsigned __int128>(0x20010db800000010ULL) << 64) | 2;

// Trunk ingress, macvlan: a frame of the VLAN to an endpoint's MAC loses its tag and is
// switched into the endpoint; everything that is not a VLAN network's stays untouched.
TEST_F(VlanTest, TrunkUntagsFramesForAMacvlanEndpoint) {
  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp);
  const int prog = g_dp->trunk_prog_fd();
  const Bytes ip = Ip4(kV2, kV1, Tcp(1, 2, 20));
  const Bytes payload = Cat({Bytes{0x08, 0x00}, ip});  // inner ethertype + IPv4
  uint64_t rx = Counter(CPPNET_CNT_VLAN_RX);
  RunResult r = RunProg(prog, Tagged(kEp, kWire, 0x8100, 10, payload));
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT));
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kEp, kWire, 0x0800), ip})));  // the tag is gone, nothing else changed
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_RX), rx + 1);
  ExpectVerdict(prog, Tagged(kEp, kWire, 0x8100, 0xa00a, payload), TC_ACT_REDIRECT, "priority bits keep the VLAN");

  const PassCase cases[] = {
      {"another VLAN (no network uses it here)", Tagged(kEp, kWire, 0x8100, 20, payload)},
      {"untagged frame to the endpoint's MAC (the network is tagged)", Cat({Eth(kEp, kWire, 0x0800), ip})},
      {"VLAN 10 to another MAC", Tagged(kEp2, kWire, 0x8100, 10, payload)},
      {"802.1ad service tag (QinQ)", Tagged(kEp, kWire, 0x88a8, 10, Cat({Bytes{0x81, 0x00, 0x00, 0x0a}, payload}))},
      {"stacked 802.1Q tags", Tagged(kEp, kWire, 0x8100, 10, Cat({Bytes{0x81, 0x00, 0x00, 0x0a}, payload}))},
      {"wrong ethertype (not a tag) to the endpoint's MAC", Cat({Eth(kEp, kWire, 0x88b5), ip})},
      {"ARP on the trunk, untagged", Cat({Eth(kBcast, kWire, 0x0806), Arp(1, kWire, kV2, kV1)})},
  };
  for (const PassCase& c : cases) {
    RunResult p = RunProg(prog, c.frame);
    EXPECT_EQ(p.retval, static_cast<uint32_t>(TC_ACT_OK)) << c.name;
    EXPECT_EQ(p.out, c.frame) << c.name;
  }
  uint64_t truncated = Counter(CPPNET_CNT_DROP_TRUNCATED);
  Bytes cut = Tagged(kEp, kWire, 0x8100, 10, {});
  cut.resize(16);  // the tag claims 4 bytes, 2 are there
  ExpectVerdict(prog, cut, TC_ACT_SHOT, "truncated tag");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_TRUNCATED), truncated + 1);

  // Broadcast of the VLAN: a copy to each endpoint, the tagged original consumed.
  rx = Counter(CPPNET_CNT_VLAN_RX);
  ExpectVerdict(prog, Tagged(kBcast, kWire, 0x8100, 10, Cat({Bytes{0x08, 0x06}, Arp(1, kWire, kV2, kV1)})),
                TC_ACT_SHOT, "VLAN broadcast");
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_RX), rx + 1);
  // Our own endpoint's frame reflected by the switch: bridge mode switched it already.
  uint64_t looped = Counter(CPPNET_CNT_DROP_VLAN_LOOP);
  ExpectVerdict(prog, Tagged(kBcast, kEp, 0x8100, 10, payload), TC_ACT_SHOT, "looped broadcast");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_LOOP), looped + 1);
}

// Untagged network on the trunk: broadcast reaches the endpoints and the host.
TEST_F(VlanTest, UntaggedNetworkSharesBroadcastWithTheHost) {
  Add(0, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp);
  const int prog = g_dp->trunk_prog_fd();
  const Bytes arp = Cat({Eth(kBcast, kWire, 0x0806), Arp(1, kWire, kV2, kV1)});
  RunResult r = RunProg(prog, arp);
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_OK));
  EXPECT_EQ(r.out, arp);
  ExpectVerdict(prog, Cat({Eth(kEp, kWire, 0x0800), Ip4(kV2, kV1, Tcp(1, 2, 0))}), TC_ACT_REDIRECT, "to the endpoint");
  ExpectVerdict(prog, Tagged(kEp, kWire, 0x8100, 10, Bytes{0x08, 0x00}), TC_ACT_OK, "VLAN 10 is not this network");
}

// Trunk ingress, ipvlan: endpoints share the trunk's MAC and are found by IP (IPv4,
// ARP target, IPv6); l3 takes no broadcast.
TEST_F(VlanTest, TrunkDemultiplexesIpvlanByAddress) {
  Add(20, CPPNET_VLAN_IPVLAN_L2, kFakePort, kTrunkMac, {kV1}, {kV6});
  Add(20, CPPNET_VLAN_IPVLAN_L2, kFakePort2, kTrunkMac, {kV2});
  const int prog = g_dp->trunk_prog_fd();
  ExpectVerdict(prog, Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x00}, Ip4(kV9, kV1, Tcp(1, 2, 0))})),
                TC_ACT_REDIRECT, "IPv4 to an endpoint");
  ExpectVerdict(prog, Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x06}, Arp(2, kWire, kV9, kV2)})),
                TC_ACT_REDIRECT, "ARP reply to an endpoint");
  ExpectVerdict(prog, Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x86, 0xdd}, Ip6(kV6 + 7, kV6)})),
                TC_ACT_REDIRECT, "IPv6 to an endpoint");
  ExpectVerdict(prog, Tagged(kTrunkMac, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x00}, Ip4(kV1, kV9, Tcp(1, 2, 0))})),
                TC_ACT_OK, "IPv4 to an address no endpoint has");
  ExpectVerdict(prog, Tagged(kEp, kWire, 0x8100, 20, Cat({Bytes{0x08, 0x00}, Ip4(kV9, kV1, Tcp(1, 2, 0))})),
                TC_ACT_OK, "to another MAC");
  ExpectVerdict(prog, Tagged(kBcast, kTrunkMac, 0x8100, 20, Cat({Bytes{0x08, 0x06}, Arp(1, kTrunkMac, kV1, kV9)})),
                TC_ACT_SHOT, "our own broadcast reflected");
}

// An endpoint's frames (tc ingress of its host veth, here lo): switched to a local
// endpoint or sent to the trunk, per mode. The 802.1Q tag is pushed as skb metadata
// (the NIC or veth inserts it), so the bytes stay as they were: the integration test
// reads the tag on the wire.
TEST_F(VlanTest, EndpointFramesAreSwitchedOrSentTaggedPerMode) {
  const int prog = g_dp->vlan_port_prog_fd();
  const Bytes ip = Ip4(kV1, kV2, Tcp(1, 2, 20));
  uint64_t no_port = Counter(CPPNET_CNT_DROP_VLAN_NO_PORT);
  ExpectVerdict(prog, Cat({Eth(kEp2, kEp, 0x0800), ip}), TC_ACT_SHOT, "not an endpoint");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_NO_PORT), no_port + 1);

  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, 1, kEp, {kV1}, {kV6});
  Add(10, CPPNET_VLAN_MACVLAN_BRIDGE, kFakePort, kEp2, {kV2});
  uint64_t local = Counter(CPPNET_CNT_VLAN_LOCAL), tx = Counter(CPPNET_CNT_VLAN_TX);
  ExpectVerdict(prog, Cat({Eth(kEp2, kEp, 0x0800), ip}), TC_ACT_REDIRECT, "bridge: to a local endpoint");
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_LOCAL), local + 1);
  RunResult r = RunProg(prog, Cat({Eth(kWire, kEp, 0x0800), ip}));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "bridge: to the wire";
  EXPECT_EQ(Hex(r.out), Hex(Cat({Eth(kWire, kEp, 0x0800), ip})));
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_TX), tx + 1);
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp, kV1, kV2)}), TC_ACT_REDIRECT, "broadcast: wire");
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_TX), tx + 2);
  uint64_t spoof = Counter(CPPNET_CNT_DROP_VLAN_SOURCE);
  ExpectVerdict(prog, Cat({Eth(kWire, kEp2, 0x0800), ip}), TC_ACT_SHOT, "another endpoint's source MAC");
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x0800), Ip4(kV2, kV9, Tcp(1, 2, 20))}), TC_ACT_SHOT,
                "another endpoint's IPv4 address");
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x0800), Ip4(kV9, kV2, Tcp(1, 2, 20))}), TC_ACT_SHOT,
                "an address no endpoint has");
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp, kV2, kV9)}), TC_ACT_SHOT, "ARP as another endpoint");
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp2, kV1, kV9)}), TC_ACT_SHOT, "ARP with another sender MAC");
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x86dd), Ip6(kV6 + 1, kV6 + 7)}), TC_ACT_SHOT, "an IPv6 address not its own");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_SOURCE), spoof + 6);
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x86dd), Ip6(kV6, kV6 + 7)}), TC_ACT_REDIRECT, "its own IPv6 address");
  const unsigned __int128 kLinkLocal = static_cast<unsigned __int128>(0xfe80000000000000ULL) << 64 | 0x42;
  ExpectVerdict(prog, Cat({Eth(kWire, kEp, 0x86dd), Ip6(kLinkLocal, kV6 + 7)}), TC_ACT_REDIRECT, "IPv6 link-local");
  ExpectVerdict(prog, Cat({Eth(kBcast, kEp, 0x0806), Arp(1, kEp, 0, kV9)}), TC_ACT_REDIRECT, "ARP probe (sender 0)");
  // VLAN hopping: a tag of the endpoint's own, in the data or in the skb's metadata.
  uint64_t tagged = Counter(CPPNET_CNT_DROP_VLAN_TAGGED);
  ExpectVerdict(prog, Tagged(kWire, kEp, 0x8100, 20, Cat({Bytes{0x08, 0x00}, ip})), TC_ACT_SHOT, "802.1Q tag");
  ExpectVerdict(prog, Tagged(kWire, kEp, 0x88a8, 20, Cat({Bytes{0x81, 0x00, 0, 20, 0x08, 0x00}, ip})), TC_ACT_SHOT,
                "802.1ad tag");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_TAGGED), tagged + 2);

  // private and vepa: nothing is switched locally, everything goes out tagged.
  for (uint8_t mode : {CPPNET_VLAN_MACVLAN_PRIVATE, CPPNET_VLAN_MACVLAN_VEPA}) {
    for (uint32_t p : {1u, kFakePort}) ASSERT_TRUE(UnregisterVlanEndpoint(g_dp->vlan_maps(), p).ok());
    Add(10, mode, 1, kEp, {kV1});
    Add(10, mode, kFakePort, kEp2, {kV2});
    local = Counter(CPPNET_CNT_VLAN_LOCAL), tx = Counter(CPPNET_CNT_VLAN_TX);
    ExpectVerdict(prog, Cat({Eth(kEp2, kEp, 0x0800), ip}), TC_ACT_REDIRECT, VlanModeName(mode).c_str());
    EXPECT_EQ(Counter(CPPNET_CNT_VLAN_LOCAL), local) << VlanModeName(mode);
    EXPECT_EQ(Counter(CPPNET_CNT_VLAN_TX), tx + 1) << VlanModeName(mode);
  }
  for (uint32_t p : {1u, kFakePort}) ASSERT_TRUE(UnregisterVlanEndpoint(g_dp->vlan_maps(), p).ok());

  // ipvlan l3: routed between local endpoints by IP, no ARP or broadcast anywhere.
  Add(30, CPPNET_VLAN_IPVLAN_L3, 1, kTrunkMac, {kV1});
  Add(30, CPPNET_VLAN_IPVLAN_L3, kFakePort, kTrunkMac, {kV2});
  const Bytes to_v2 = Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), ip});
  ExpectVerdict(prog, to_v2, TC_ACT_REDIRECT, "l3: to a local endpoint");
  uint64_t l3 = Counter(CPPNET_CNT_DROP_VLAN_L3), no_route = Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE);
  ExpectVerdict(prog, Cat({Eth(kBcast, kTrunkMac, 0x0806), Arp(1, kTrunkMac, kV1, kV2)}), TC_ACT_SHOT, "l3: ARP");
  ExpectVerdict(prog, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, kV9, Tcp(1, 2, 0))}), TC_ACT_SHOT,
                "l3: no endpoint has the address");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_L3), l3 + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE), no_route + 1);
}

// ipvlan l3 across hosts: the trunk answers ARP and neighbour solicitations for the
// endpoints (proxy) and learns next hops; an endpoint's packet goes to its next hop's
// MAC, or is reported to the agent (ring buffer) when that MAC is unknown.
TEST_F(VlanTest, L3ProxiesArpAndNdAndResolvesNextHops) {
  VlanEndpointSpec s{.network = "l3", .trunk_ifindex = 1, .trunk_mac = kTrunkMac, .vlan = 70,
                     .mode = CPPNET_VLAN_IPVLAN_L3, .host_ifindex = 1, .mac = kTrunkMac, .ipv4 = {kV1}, .ipv6 = {kV6}};
  s.subnet4 = Prefix4{0xc6120a00, 24};
  s.subnet6 = Prefix6{kV6 - 2, 64};
  ASSERT_TRUE(RegisterVlanEndpoint(g_dp->vlan_maps(), s).ok());
  const int trunk = g_dp->trunk_prog_fd(), port = g_dp->vlan_port_prog_fd();
  auto arp = [](uint16_t op, const Mac& sha, uint32_t spa, const Mac& tha, uint32_t tpa) {
    Bytes b{0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0, static_cast<uint8_t>(op)};
    b.insert(b.end(), sha.begin(), sha.end());
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(spa >> (8 * i)));
    b.insert(b.end(), tha.begin(), tha.end());
    for (int i = 3; i >= 0; i--) b.push_back(static_cast<uint8_t>(tpa >> (8 * i)));
    return b;
  };
  const Mac kZero{};
  uint64_t proxy = Counter(CPPNET_CNT_VLAN_PROXY);
  RunResult r = RunProg(trunk, Tagged(kBcast, kWire, 0x8100, 70, arp(1, kWire, kV9, kZero, kV1)));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "ARP request for the endpoint: answered";
  EXPECT_EQ(Hex(r.out), Hex(Tagged(kWire, kTrunkMac, 0x8100, 70, arp(2, kTrunkMac, kV1, kWire, kV9))));
  EXPECT_EQ(Counter(CPPNET_CNT_VLAN_PROXY), proxy + 1);
  ExpectVerdict(trunk, Tagged(kBcast, kWire, 0x8100, 70, arp(1, kWire, kV9, kZero, kV2)), TC_ACT_SHOT,
                "ARP for an address no endpoint has: consumed, not answered");

  // The solicitation the agent sends (core/nd.h), answered with an advertisement.
  auto bytes6 = [](unsigned __int128 a) {
    Bytes b;
    for (int i = 15; i >= 0; i--) b.push_back(static_cast<uint8_t>(a >> (8 * i)));
    return b;
  };
  const unsigned __int128 kPeer6 = kV6 + 7;
  const Bytes ns = BuildNeighborSolicitation(kWire, 70, bytes6(kPeer6).data(), bytes6(kV6).data());
  r = RunProg(trunk, ns);
  ASSERT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "NS for the endpoint: answered";
  Bytes na = {136, 0, 0, 0, 0x60, 0, 0, 0};
  Bytes t = bytes6(kV6);
  na.insert(na.end(), t.begin(), t.end());
  na.insert(na.end(), {2, 1});
  na.insert(na.end(), kTrunkMac.begin(), kTrunkMac.end());
  const uint16_t csum = Icmp6Checksum(bytes6(kV6).data(), bytes6(kPeer6).data(), na.data(), na.size());
  na[2] = static_cast<uint8_t>(csum >> 8);
  na[3] = static_cast<uint8_t>(csum);
  const Bytes want = Tagged(kWire, kTrunkMac, 0x8100, 70,
                            Cat({Bytes{0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255}, bytes6(kV6), bytes6(kPeer6), na}));
  EXPECT_EQ(Hex(r.out), Hex(want));

  // Next hops: only answers to the agent's own requests are learned, never an
  // unsolicited or gratuitous message (the ARP request above taught nothing either).
  const int nbr = g_dp->vlan_nbr_fd();
  cppnet_vlan_ep_key k9{.trunk_ifindex = 1, .vlan = 70, .kind = CPPNET_VLAN_ADDR_IPV4};
  const uint32_t v9 = htonl(kV9);
  memcpy(k9.addr, &v9, 4);
  cppnet_vlan_nbr got{};
  EXPECT_NE(bpf_map_lookup_elem(nbr, &k9, &got), 0) << "learned from a request";
  const Mac kEvil{0x02, 0xee, 0, 0, 0, 1};
  RunProg(trunk, Tagged(kTrunkMac, kEvil, 0x8100, 70, arp(2, kEvil, kV9, kTrunkMac, kV1)));
  EXPECT_NE(bpf_map_lookup_elem(nbr, &k9, &got), 0) << "learned from an unsolicited reply";
  cppnet_vlan_nbr pending{.state = CPPNET_NBR_PENDING};  // the agent asked (vlan_resolver)
  ASSERT_EQ(bpf_map_update_elem(nbr, &k9, &pending, BPF_NOEXIST), 0);
  RunProg(trunk, Tagged(kTrunkMac, kWire, 0x8100, 70, arp(2, kWire, kV9, kTrunkMac, kV1)));
  ASSERT_EQ(bpf_map_lookup_elem(nbr, &k9, &got), 0);
  EXPECT_EQ(got.state, CPPNET_NBR_RESOLVED);
  EXPECT_EQ(Mac(std::to_array(got.mac)), kWire);
  RunProg(trunk, Tagged(kBcast, kEvil, 0x8100, 70, arp(2, kEvil, kV9, kBcast, kV9)));  // gratuitous
  RunProg(trunk, Tagged(kTrunkMac, kEvil, 0x8100, 70, arp(2, kEvil, kV9, kTrunkMac, kV1)));
  ASSERT_EQ(bpf_map_lookup_elem(nbr, &k9, &got), 0);
  EXPECT_EQ(Mac(std::to_array(got.mac)), kWire) << "overwritten by an unsolicited reply";

  // Egress: next hops learned above are used; unknown ones are reported.
  r = RunProg(port, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, kV9, Tcp(1, 2, 0))}));
  EXPECT_EQ(r.retval, static_cast<uint32_t>(TC_ACT_REDIRECT)) << "to a learned next hop";
  EXPECT_EQ(Hex(Bytes(r.out.begin(), r.out.begin() + 12)), Hex(Cat({Bytes(kWire.begin(), kWire.end()),
                                                                     Bytes(kTrunkMac.begin(), kTrunkMac.end())})));
  std::vector<cppnet_vlan_miss> misses;
  ring_buffer* rb = ring_buffer__new(
      g_dp->vlan_miss_fd(),
      [](void* ctx, void* data, size_t) {
        static_cast<std::vector<cppnet_vlan_miss>*>(ctx)->push_back(*static_cast<cppnet_vlan_miss*>(data));
        return 0;
      },
      &misses, nullptr);
  ASSERT_NE(rb, nullptr);
  uint64_t unresolved = Counter(CPPNET_CNT_DROP_VLAN_UNRESOLVED), no_route = Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE);
  ExpectVerdict(port, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, kV2, Tcp(1, 2, 0))}), TC_ACT_SHOT,
                "next hop unknown");
  ExpectVerdict(port, Cat({Eth(kTrunkMac, kTrunkMac, 0x0800), Ip4(kV1, 0xc6130101, Tcp(1, 2, 0))}), TC_ACT_SHOT,
                "off the subnet, no gateway");
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_UNRESOLVED), unresolved + 1);
  EXPECT_EQ(Counter(CPPNET_CNT_DROP_VLAN_NO_ROUTE), no_route + 1);
  ring_buffer__consume(rb);
  ring_buffer__free(rb);
  ASSERT_EQ(misses.size(), 1u);
  uint32_t target, src;
  memcpy(&target, misses[0].target, 4);
  memcpy(&src, misses[0].src, 4);
  EXPECT_EQ(ntohl(target), kV2);
  EXPECT_EQ(ntohl(src), kV1);
  EXPECT_EQ(misses[0].vlan, 70);
  EXPECT_EQ(misses[0].kind, CPPNET_VLAN_ADDR_IPV4);
}

// The registry refuses what the datapath cannot serve, and changes nothing then.
TEST_F(VlanTest, RegistryRefusesConflicts) {
  Add(40, CPPNET_VLAN_MACVLAN_PASSTHRU, kFakePort, kEp);
  VlanEndpointSpec s{.network = "pt", .trunk_ifindex = 1, .trunk_mac = kTrunkMac, .vlan = 40,
                     .mode = CPPNET_VLAN_MACVLAN_PASSTHRU, .host_ifindex = kFakePort2, .mac = kEp2};
  auto st = RegisterVlanEndpoint(g_dp->vlan_maps(), s);
  EXPECT_EQ(st.message(), "network pt is in macvlan passthru mode and already has an endpoint on this host (only one allowed)");
  s.mode = CPPNET_VLAN_MACVLAN_BRIDGE;
  s.vlan = 41;
  s.mac = kEp;
  ASSERT_TRUE(RegisterVlanEndpoint(g_dp->vlan_maps(), s).ok());
  s.host_ifindex = 1;
  EXPECT_EQ(RegisterVlanEndpoint(g_dp->vlan_maps(), s).message(),
            "network pt: address 02:42:00:00:00:10 is already used by another endpoint");
  EXPECT_EQ(ListVlanPorts(g_dp->vlan_maps().port())->size(), 2u);
}

}  // namespace
}  // namespace cppnet::test

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // A network namespace of our own: the programs' FIB lookups see its underlay veth
  // and the host-gw peer's neighbour entry, never the machine's.
  if (geteuid() == 0) {
    if (unshare(CLONE_NEWNET) != 0) {
      fprintf(stderr, "unshare(CLONE_NEWNET): %s\n", strerror(errno));
      return 1;
    }
    const std::string setup = std::string("ip link set lo up && ip link add ") + cppnet::test::kUnderlayName +
                              " type veth peer name cpt-under1 && ip link set " + cppnet::test::kUnderlayName +
                              " up && ip link set cpt-under1 up && ip addr add 198.18.0.1/24 dev " +
                              cppnet::test::kUnderlayName + " && ip neigh add 198.18.0.4 lladdr 02:00:00:00:00:04 dev " +
                              cppnet::test::kUnderlayName + " nud permanent && sysctl -qw net.ipv4.conf.all.forwarding=1";
    if (system(setup.c_str()) != 0) {
      fprintf(stderr, "cannot set up the test namespace: %s\n", setup.c_str());
      return 1;
    }
    cppnet::test::g_underlay = static_cast<int>(if_nametoindex(cppnet::test::kUnderlayName));
  }
  auto dp = cppnet::Datapath::Load("");
  if (!dp.ok()) {
    if (geteuid() != 0 || absl::IsPermissionDenied(dp.status()) ||
        dp.status().message().find("Operation not permitted") != std::string::npos) {
      fprintf(stderr, "SKIP: cannot load BPF programs (%s)\n", std::string(dp.status().message()).c_str());
      return 77;
    }
    fprintf(stderr, "cannot load the datapath: %s\n", std::string(dp.status().message()).c_str());
    return 1;
  }
  cppnet::test::g_dp = dp->get();
  return RUN_ALL_TESTS();
}
