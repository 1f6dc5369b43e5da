// Shared fixture of the BPF packet tests: the datapath loaded once per process (in a
// network namespace of its own, see fixture.cc), the cluster it plays (us = A, peers
// B vxlan, C udp, D host-gw), frame builders and the run/verdict helpers.
#pragma once
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

#include "cppnet/maps.h"
#include "cppnet/nd.h"
#include "cppnet/datapath.h"
#include "packet.h"

namespace cppnet::test {

extern Datapath* g_dp;
extern int g_underlay;
// Why the programs could not be loaded (every test skips), empty when they were.
extern std::string g_skip;
inline constexpr const char* kUnderlayName = "cpt-under0";

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
inline const Bytes kMetaDecap = [] {
  Bytes b(4);
  uint32_t v = CPPNET_XDP_META_DECAP;
  memcpy(b.data(), &v, 4);
  return b;
}();

struct RunResult {
  uint32_t retval;
  Bytes out;
};

inline RunResult RunProg(int prog_fd, const Bytes& in) {
  Bytes out(in.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(in.size()),
              .data_size_out = static_cast<uint32_t>(out.size()));
  opts.repeat = 1;
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  EXPECT_EQ(err, 0) << strerror(errno);
  out.resize(opts.data_size_out);
  return {opts.retval, out};
}

inline cppnet_config ConfigFor(uint32_t underlay, const Mac& mac, uint32_t subnet) {
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
    if (!g_skip.empty()) GTEST_SKIP() << g_skip;
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
    for (const auto& [slot, p] : *peers)
      ASSERT_TRUE(SetPeerSlot(m.peers(), slot, cppnet_peer{}).ok());
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
  Bytes ContainerFrame(const Bytes& ip) {
    return Cat({Eth(kBridgeMac, kContainerMac, 0x0800), ip});
  }
  // What the encapsulation must produce for inner IP packet `inner_ip` (after TTL-1).
  Bytes Encapsulated(const Bytes& inner_ip_after, uint16_t sport, uint16_t id, bool df,
                     uint8_t tos) {
    Bytes inner = Cat({Eth(kVtepB, kVtepA, 0x0800), inner_ip_after});
    Ip4Opts o{.tos = tos, .id = id, .df = df, .ttl = 64, .proto = 17};
    return Cat({Eth(kBridgeMac, kContainerMac, 0x0800),
                Ip4(kUnderA, kUnderB, Udp(sport, 8472, Vxlan(kVni, inner)), o)});
  }
};

inline uint16_t SportOf(const Bytes& out) { return out.size() > 36 ? (out[34] << 8) | out[35] : 0; }

// The datapath's source port for a flow without a socket hash (as in these tests),
// written out independently: lowbias32 mix of the 5-tuple, scaled into 32768..60999.
inline uint32_t Mix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352d;
  h ^= h >> 15;
  h *= 0x846ca68b;
  return h ^ (h >> 16);
}
inline uint16_t ExpectedSport(uint32_t saddr, uint32_t daddr, uint8_t proto, uint16_t sport,
                              uint16_t dport) {
  // The program mixes the raw (network order) words as a little-endian host loads them.
  uint32_t s = htonl(saddr), d = htonl(daddr),
           ports = htons(sport) | (uint32_t{htons(dport)} << 16);
  uint32_t h = Mix(s ^ Mix(d ^ Mix(ports ^ proto)));
  return static_cast<uint16_t>(((uint64_t{h} * (61000 - 32768)) >> 32) + 32768);
}

uint64_t Packets(uint32_t id);

struct PassCase {
  const char* name;
  Bytes frame;
};

// VXLAN frame from peer B to us.
inline Bytes FromPeer(const Bytes& vxlan_payload, uint16_t dport = 8472,
                      Ip4Opts o = {.proto = 17}) {
  return Cat({Eth(kUnderMacA, kUnderMacB, 0x0800),
              Ip4(kUnderB, kUnderA, Udp(51000, dport, vxlan_payload), o)});
}
inline Bytes InnerToC1(size_t len = 64) {
  return Cat({Eth(kVtepA, kVtepB, 0x0800), Ip4(kC2, kC1, Tcp(80, 40000, len))});
}

struct DecapCase {
  const char* name;
  Bytes frame;
  uint32_t verdict;
  int drop_counter;  // -1: passed untouched
};

// A map of the loaded object that MapFds has no accessor for, found by name among the maps
// program `prog_fd` uses; -1 when it has none of that name.
inline int MapOfProg(int prog_fd, const char* name) {
  uint32_t ids[64] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 64;
  info.map_ids = reinterpret_cast<uint64_t>(ids);
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return -1;
  for (uint32_t i = 0; i < info.nr_map_ids && i < 64; i++) {
    int fd = bpf_map_get_fd_by_id(ids[i]);
    bpf_map_info mi{};
    uint32_t mlen = sizeof(mi);
    if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &mi, &mlen) == 0 && strcmp(mi.name, name) == 0)
      return fd;
    if (fd >= 0) close(fd);
  }
  return -1;
}

// Each case through XDP decapsulation and through the underlay tc program: the
// verdict (given as XDP's; tc's equivalent for the tc run), and either the drop
// counter moving by one or the frame passing untouched.
template <size_t N>
inline void CheckDecap(const DecapCase (&cases)[N]) {
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

}  // namespace cppnet::test
