// The lease lifecycle against an in-memory registry and a simulated clock: what the
// namespace lab can only show in minutes (renewal, expiry, etcd outages) in milliseconds.
#include "lease_manager.h"

#include <gtest/gtest.h>

#include "absl/strings/str_format.h"

#include "cppnet/subnet_env.h"
#include "fake_registry.h"

namespace cppnet::test {
namespace {

constexpr uint32_t kOurIp = 0xc6120001;  // 198.18.0.1
constexpr uint32_t kOtherIp = 0xc6120002;
const char* kPrefix = "/coreos.com/network/subnets/";

NetworkConfig Config(const char* json) {
  auto c = ParseNetworkConfig(json);
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}
const NetworkConfig kCfg =
    Config(R"({"Network":"198.19.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1}})");

Lease Own(uint32_t ip = kOurIp) { return Lease{ip, "vxlan", 1, VtepMacFor(ip)}; }
std::string Key(const char* subnet) { return std::string(kPrefix) + subnet; }

class LeaseManagerTest : public ::testing::Test {
 protected:
  FakeClock clock;
  FakeRegistry reg{&clock};
  LeaseManager mgr{&reg, LeaseManagerOptions{kPrefix, absl::Hours(24), absl::Minutes(60)},
                   [this] { return clock.Now(); }};

  LeaseManager::Event Step(const AcquireHints& hints = {}, const Lease& own = Own()) {
    auto ev = mgr.Step(kCfg, own, hints);
    EXPECT_TRUE(ev.ok()) << ev.status();
    return ev.ok() ? *ev : LeaseManager::Event::kNone;
  }
};

TEST_F(LeaseManagerTest, AcquiresAFreeSubnetUnderAnEtcdLease) {
  EXPECT_EQ(mgr.NextDeadline(), absl::InfinitePast());  // work to do at once
  ASSERT_EQ(Step(), LeaseManager::Event::kAcquired);
  ASSERT_TRUE(mgr.held());
  EXPECT_TRUE(kCfg.network.contains(*mgr.subnet()));
  EXPECT_EQ(mgr.subnet()->len, 24);
  const EtcdKV* kv = reg.Find(mgr.key());
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->lease, mgr.lease_id());
  EXPECT_NE(kv->lease, 0);
  auto l = ParseLease(kv->value);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->public_ip, kOurIp);
  EXPECT_EQ(reg.live_leases(), 1u);
  // Renewal is the next thing due: TTL minus the margin.
  EXPECT_EQ(mgr.NextDeadline(), clock.Now() + absl::Hours(23));
  EXPECT_EQ(Step(), LeaseManager::Event::kNone);
}

TEST_F(LeaseManagerTest, ReclaimsTheLeaseCarryingOurPublicIpFirst) {
  reg.Set(Key("198.19.7.0-24"), SerializeLease(Own()), 0x77);  // an old etcd lease
  reg.Set(Key("198.19.8.0-24"), SerializeLease(Own(kOtherIp)));
  ASSERT_EQ(Step({.previous_subnet = Prefix4{0xc6130901, 24}}), LeaseManager::Event::kAcquired);
  EXPECT_EQ(mgr.key(), Key("198.19.7.0-24"));
  EXPECT_EQ(reg.Find(mgr.key())->lease, mgr.lease_id());  // now under our lease
}

TEST_F(LeaseManagerTest, ReclaimsOurLeaseAlsoWhenItsJsonUsesUnicodeEscapes) {
  // The text search that skips other hosts' leases must not skip ours written as valid JSON
  // with escaped characters ("\u0031" is "1").
  std::string v = SerializeLease(Own());
  const std::string ip = FormatIp4(kOurIp);
  const size_t at = v.find(ip);
  ASSERT_NE(at, std::string::npos);
  v.replace(at, 1, absl::StrFormat("\\u%04x", ip[0]));
  ASSERT_TRUE(ParseLease(v).ok());
  reg.Set(Key("198.19.7.0-24"), v, 0x77);
  ASSERT_EQ(Step({.previous_subnet = Prefix4{0xc6130901, 24}}), LeaseManager::Event::kAcquired);
  EXPECT_EQ(mgr.key(), Key("198.19.7.0-24"));
}

TEST_F(LeaseManagerTest, TakesThePreviousSubnetWhenFreeElseAnother) {
  ASSERT_EQ(Step({.previous_subnet = Prefix4{0xc6130901, 24}, .previous_source = "env"}),
            LeaseManager::Event::kAcquired);
  EXPECT_EQ(mgr.key(), Key("198.19.9.0-24"));

  FakeRegistry reg2{&clock};
  reg2.Set(Key("198.19.9.0-24"), SerializeLease(Own(kOtherIp)));
  LeaseManager mgr2{&reg2, LeaseManagerOptions{kPrefix}, [this] { return clock.Now(); }};
  auto ev = mgr2.Step(kCfg, Own(), {.previous_subnet = Prefix4{0xc6130901, 24}});
  ASSERT_TRUE(ev.ok());
  EXPECT_NE(mgr2.key(), Key("198.19.9.0-24"));
  EXPECT_EQ(reg2.size(), 2u);
}

TEST_F(LeaseManagerTest, KeepsItsSubnetAcrossAPublicIpChangeWhileStopped) {
  reg.Set(Key("198.19.9.0-24"), SerializeLease(Own(kOtherIp)), 0x55);
  reg.GrantLease(absl::Hours(1)).IgnoreError();  // stands for lease 0x55's owner
  ASSERT_EQ(Step({.previous_subnet = Prefix4{0xc6130901, 24}, .previous_public_ip = kOtherIp}),
            LeaseManager::Event::kAcquired);
  EXPECT_EQ(mgr.key(), Key("198.19.9.0-24"));
  EXPECT_EQ(ParseLease(reg.Find(mgr.key())->value)->public_ip, kOurIp);
}

TEST_F(LeaseManagerTest, RenewsBeforeTheTtlRunsOut) {
  ASSERT_EQ(Step(), LeaseManager::Event::kAcquired);
  const std::string key = mgr.key();
  for (int i = 0; i < 5; i++) {
    clock.Advance(mgr.NextDeadline() - clock.Now());
    ASSERT_EQ(Step(), LeaseManager::Event::kRenewed);
  }
  clock.Advance(absl::Hours(2));  // 23 h + 2 h after the last renewal: still ours
  reg.Expire();
  EXPECT_NE(reg.Find(key), nullptr);
}

TEST_F(LeaseManagerTest, ReacquiresWhenTheEtcdLeaseExpired) {
  ASSERT_EQ(Step({.previous_subnet = Prefix4{0xc6130901, 24}}), LeaseManager::Event::kAcquired);
  clock.Advance(absl::Hours(25));  // suspended past the TTL: etcd dropped key and lease
  ASSERT_EQ(Step(), LeaseManager::Event::kExpired);
  EXPECT_FALSE(mgr.held());
  ASSERT_EQ(Step({.previous_subnet = Prefix4{0xc6130901, 24}}), LeaseManager::Event::kAcquired);
  EXPECT_EQ(mgr.key(), Key("198.19.9.0-24"));
}

TEST_F(LeaseManagerTest, ConfirmsAMissingKeyBeforeGivingItUp) {
  ASSERT_EQ(Step(), LeaseManager::Event::kAcquired);
  auto still = mgr.Confirm();  // the watch had not seen our write yet
  ASSERT_TRUE(still.ok());
  EXPECT_TRUE(still->has_value());
  EXPECT_TRUE(mgr.held());
  ASSERT_TRUE(reg.Delete(mgr.key()).ok());  // an operator deleted it
  auto gone = mgr.Confirm();
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  EXPECT_FALSE(mgr.held());
  EXPECT_EQ(reg.live_leases(), 0u);  // the orphaned etcd lease was revoked
  EXPECT_EQ(Step(), LeaseManager::Event::kAcquired);
}

TEST_F(LeaseManagerTest, UsesAReservationWithoutPuttingItUnderALease) {
  // flannel's reservations: a key written without TTL for this host's PublicIP.
  reg.Set(Key("198.19.42.0-24"), SerializeLease(Own()));
  ASSERT_EQ(Step(), LeaseManager::Event::kAcquired);
  EXPECT_EQ(mgr.key(), Key("198.19.42.0-24"));
  EXPECT_TRUE(mgr.reservation());
  EXPECT_EQ(reg.Find(mgr.key())->lease, 0);
  EXPECT_EQ(reg.live_leases(), 0u);
  EXPECT_EQ(mgr.NextDeadline(), absl::InfiniteFuture());  // nothing to renew
  clock.Advance(absl::Hours(100));
  EXPECT_EQ(Step(), LeaseManager::Event::kNone);
  EXPECT_NE(reg.Find(Key("198.19.42.0-24")), nullptr);  // never expires
  ASSERT_TRUE(mgr.Release().ok());
  EXPECT_NE(reg.Find(Key("198.19.42.0-24")), nullptr);  // and is never released
  // A reservation of another host's PublicIP is a taken subnet, as for flanneld.
  FakeRegistry reg2{&clock};
  reg2.Set(Key("198.19.9.0-24"), SerializeLease(Own(kOtherIp)));
  LeaseManager mgr2{&reg2, LeaseManagerOptions{kPrefix}, [this] { return clock.Now(); }};
  ASSERT_TRUE(mgr2.Step(kCfg, Own(), {.previous_subnet = Prefix4{0xc6130901, 24}}).ok());
  EXPECT_NE(mgr2.key(), Key("198.19.9.0-24"));
}

TEST_F(LeaseManagerTest, DualStackLeasesBothSubnetsInOneKeyAndRekeysAnIpv4OnlyLease) {
  const NetworkConfig dual =
      Config(R"({"Network":"198.19.0.0/16","EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
             R"("Backend":{"Type":"vxlan"}})");
  Lease own = Own();
  own.public_ip6 = *ParseIp6("2001:db8::1");
  own.vtep_mac6 = own.vtep_mac;
  // Our IPv4-only lease from before IPv6 was enabled: same IPv4 subnet, now with an IPv6 one.
  Lease old = Own();
  ASSERT_TRUE(
      reg.Put(Key("198.19.42.0-24"), SerializeLease(old), *reg.GrantLease(absl::Hours(1))).ok());
  auto ev = mgr.Step(dual, own, {.previous_subnet6 = *ParsePrefix6("2001:db8:100:42::/64")});
  ASSERT_TRUE(ev.ok()) << ev.status();
  EXPECT_EQ(mgr.key(), Key("198.19.42.0-24&2001:db8:100:42::-64"));
  EXPECT_EQ(reg.Find(Key("198.19.42.0-24")), nullptr);
  EXPECT_EQ(FormatPrefix6(*mgr.subnet6()), "2001:db8:100:42::/64");
  auto l = ParseLease(reg.Find(mgr.key())->value);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->public_ip6, own.public_ip6);
  // A restart reclaims the dual-stack key as it is.
  FakeRegistry& r = reg;
  LeaseManager again{&r, LeaseManagerOptions{kPrefix}, [this] { return clock.Now(); }};
  ASSERT_TRUE(again.Step(dual, own, {}).ok());
  EXPECT_EQ(again.key(), mgr.key());
  // A new host gets a random free IPv6 subnet inside the range.
  FakeRegistry reg2{&clock};
  LeaseManager fresh{&reg2, LeaseManagerOptions{kPrefix}, [this] { return clock.Now(); }};
  ASSERT_TRUE(fresh.Step(dual, own, {}).ok());
  ASSERT_TRUE(fresh.subnet6().has_value());
  EXPECT_TRUE(dual.ipv6_network->contains(*fresh.subnet6()));
  EXPECT_EQ(fresh.subnet6()->len, 64);
  EXPECT_NE(fresh.key().find('&'), std::string::npos);
}

TEST_F(LeaseManagerTest, Ipv6OnlyLeasesAnIpv6OnlyKeyAndReclaimsItByPublicIpv6) {
  const NetworkConfig v6 =
      Config(R"({"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"2001:db8:100::/48",)"
             R"("Backend":{"Type":"vxlan"}})");
  Lease own{0, "vxlan", 1, VtepMacFor(1)};
  own.public_ip6 = *ParseIp6("2001:db8::1");
  own.vni6 = 1;
  own.vtep_mac6 = own.vtep_mac;
  reg.Set(Key("2001:db8:100:7::-64"), R"({"PublicIPv6":"2001:db8::7","BackendType":"vxlan"})");
  auto ev = mgr.Step(v6, own, {.previous_subnet6 = *ParsePrefix6("2001:db8:100:7::/64")});
  ASSERT_TRUE(ev.ok()) << ev.status();
  ASSERT_TRUE(mgr.held());
  EXPECT_FALSE(mgr.subnet().has_value());
  ASSERT_TRUE(mgr.subnet6().has_value());
  EXPECT_NE(FormatPrefix6(*mgr.subnet6()), "2001:db8:100:7::/64");  // taken by another host
  EXPECT_EQ(mgr.key(), Key(FormatSubnetKey6(*mgr.subnet6()).c_str()));
  const EtcdKV* kv = reg.Find(mgr.key());
  ASSERT_NE(kv, nullptr);
  EXPECT_NE(kv->lease, 0);
  EXPECT_EQ(kv->value.find("\"PublicIP\""), std::string::npos);  // no IPv4 at all
  auto l = ParseLease(kv->value);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->public_ip6, own.public_ip6);
  // A restart finds it by the PublicIPv6.
  LeaseManager again{&reg, LeaseManagerOptions{kPrefix}, [this] { return clock.Now(); }};
  ASSERT_TRUE(again.Step(v6, own, {}).ok());
  EXPECT_EQ(again.key(), mgr.key());
  EXPECT_EQ(reg.live_leases(), 2u);  // the first manager's and the reclaiming one's
}

TEST_F(LeaseManagerTest, OutOfSubnetsBacksOffToTenSecondsAndLeaksNoLease) {
  const NetworkConfig tiny = Config(
      R"({"Network":"198.19.0.0/16","SubnetLen":24,"SubnetMin":"198.19.1.0","SubnetMax":"198.19.2.0"})");
  reg.Set(Key("198.19.1.0-24"), SerializeLease(Own(kOtherIp)));
  reg.Set(Key("198.19.2.0-24"), SerializeLease(Own(0xc6120003)));
  std::vector<absl::Duration> waits;
  for (int i = 0; i < 10; i++) {
    auto ev = mgr.Step(tiny, Own(), {});
    ASSERT_TRUE(absl::IsResourceExhausted(ev.status())) << ev.status();
    EXPECT_EQ(ev.status().message(), "out of subnets in 198.19.0.0/16");
    waits.push_back(mgr.NextDeadline() - clock.Now());
    clock.Advance(waits.back());
  }
  EXPECT_EQ(waits.front(), absl::Milliseconds(100));
  EXPECT_EQ(waits.back(), absl::Seconds(10));
  EXPECT_EQ(reg.live_leases(), 0u);
  ASSERT_TRUE(reg.Delete(Key("198.19.2.0-24")).ok());  // a host left
  auto ev = mgr.Step(tiny, Own(), {});
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(mgr.key(), Key("198.19.2.0-24"));
}

TEST_F(LeaseManagerTest, EtcdOutageBacksOffToFiveSecondsThenRecovers) {
  reg.down = absl::UnavailableError("etcd http://198.18.0.254:2379: grant lease: unavailable");
  absl::Duration last;
  for (int i = 0; i < 12; i++) {
    EXPECT_FALSE(mgr.Step(kCfg, Own(), {}).ok());
    const int before = reg.calls;
    EXPECT_EQ(mgr.Step(kCfg, Own(), {}).value(), LeaseManager::Event::kNone);  // not due yet
    EXPECT_EQ(reg.calls, before);
    last = mgr.NextDeadline() - clock.Now();
    clock.Advance(last);
  }
  EXPECT_EQ(last, absl::Seconds(5));
  reg.down = absl::OkStatus();
  EXPECT_EQ(Step(), LeaseManager::Event::kAcquired);
  // Renewal failures back off the same way; the lease survives a short outage.
  clock.Advance(absl::Hours(23));
  reg.down = absl::UnavailableError("unavailable");
  EXPECT_FALSE(mgr.Step(kCfg, Own(), {}).ok());
  EXPECT_EQ(mgr.NextDeadline() - clock.Now(), absl::Milliseconds(100));
  reg.down = absl::OkStatus();
  clock.Advance(absl::Milliseconds(100));
  EXPECT_EQ(Step(), LeaseManager::Event::kRenewed);
}

TEST_F(LeaseManagerTest, RepublishesUnderTheSameLease) {
  ASSERT_EQ(Step(), LeaseManager::Event::kAcquired);
  const int64_t id = mgr.lease_id();
  ASSERT_TRUE(mgr.Republish(Lease{kOurIp, "host-gw", 0, std::nullopt}).ok());
  const EtcdKV* kv = reg.Find(mgr.key());
  EXPECT_EQ(kv->lease, id);
  EXPECT_EQ(ParseLease(kv->value)->backend_type, "host-gw");
  ASSERT_TRUE(mgr.Release().ok());
  EXPECT_EQ(reg.Find(mgr.key()), nullptr);
}

}  // namespace
}  // namespace cppnet::test
