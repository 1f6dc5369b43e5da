#include "cppnet/net.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

TEST(Net, ParsesAndFormatsAddresses) {
  EXPECT_EQ(*ParseIp4("198.18.0.1"), 0xc6120001u);
  EXPECT_EQ(FormatIp4(0xc6120001u), "198.18.0.1");
  EXPECT_FALSE(ParseIp4("198.18.0").ok());
  EXPECT_FALSE(ParseIp4("198.18.0.256").ok());
  EXPECT_FALSE(ParseIp4("").ok());
}

TEST(Net, PrefixesAreStrictAboutHostBits) {
  auto p = ParsePrefix4("10.5.0.0/16");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(FormatPrefix4(*p), "10.5.0.0/16");
  EXPECT_FALSE(ParsePrefix4("10.5.0.1/16").ok());
  EXPECT_EQ(FormatPrefix4(*ParsePrefix4("10.5.0.1/16", false)), "10.5.0.0/16");
  EXPECT_FALSE(ParsePrefix4("10.5.0.0/33").ok());
  EXPECT_FALSE(ParsePrefix4("10.5.0.0").ok());
}

TEST(Net, SubnetKeysUseFlannelsForm) {
  auto k = ParseSubnetKey("10.5.52.0-24");
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(FormatPrefix4(*k), "10.5.52.0/24");
  EXPECT_EQ(FormatSubnetKey(*k), "10.5.52.0-24");
  for (const char* bad : {"10.5.52.1-24", "10.5.52.0-33", "10.5.52.0-0", "10.5.52.0/24", "garbage",
                          "10.5.52.0-", "10.5.52.0-24&", "10.5.52.0-24&fc00::",
                          "10.5.52.0-24&fc00::-129", "10.5.52.0-24&x-64", "&fc00::-64"})
    EXPECT_FALSE(ParseSubnetKey(bad).ok()) << bad;
  // flanneld's dual-stack key: the IPv4 subnet, the IPv6 one checked and set aside.
  auto d = ParseSubnetKey("198.19.253.0-24&2001:db8:100:fd::-64");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(FormatPrefix4(*d), "198.19.253.0/24");
  auto d6 = ParseSubnetKey6("198.19.253.0-24&2001:db8:100:fd::-64");
  ASSERT_TRUE(d6.ok() && d6->has_value());
  EXPECT_EQ(FormatPrefix6(**d6), "2001:db8:100:fd::/64");
  EXPECT_EQ(FormatSubnetKey(*d, *d6), "198.19.253.0-24&2001:db8:100:fd::-64");
  EXPECT_FALSE(ParseSubnetKey6("198.19.253.0-24")->has_value());
  // An IPv6-only network's key: the IPv6 part alone.
  auto o6 = ParseSubnetKey6("2001:db8:100:fd::-64");
  ASSERT_TRUE(o6.ok() && o6->has_value());
  EXPECT_EQ(FormatSubnetKey6(**o6), "2001:db8:100:fd::-64");
  EXPECT_TRUE(IsIpv6OnlyKey("2001:db8:100:fd::-64"));
  EXPECT_FALSE(ParseSubnetKey("2001:db8:100:fd::-64").ok());
  EXPECT_FALSE(ParseSubnetKey6("2001:db8:100:fd::1-64").ok());
  EXPECT_FALSE(ParseSubnetKey("198.19.253.0-24&2001:db8:100:fd::1-64").ok());  // host bits
  EXPECT_EQ(ToBytes6(*ParseIp6("2001:db8::1"))[0], 0x20);
  EXPECT_EQ(FromBytes6(ToBytes6(*ParseIp6("2001:db8::1")).data()), *ParseIp6("2001:db8::1"));
}

TEST(Net, PrefixArithmetic) {
  Prefix4 net{0xc6130000, 16}, a{0xc6130100, 24}, b{0xc6140000, 24};
  EXPECT_TRUE(net.contains(a));
  EXPECT_FALSE(net.contains(b));
  EXPECT_TRUE(net.overlaps(a));
  EXPECT_TRUE(a.overlaps(net));
  EXPECT_FALSE(a.overlaps(b));
  EXPECT_EQ(a.size(), 256u);
  EXPECT_EQ((Prefix4{0, 0}.mask()), 0u);
}

TEST(Net, MacAddresses) {
  auto m = ParseMac("0e:63:C6:12:00:01");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(FormatMac(*m), "0e:63:c6:12:00:01");
  EXPECT_FALSE(ParseMac("0e:63:c6:12:00").ok());
  EXPECT_FALSE(ParseMac("0e:63:c6:12:00:zz").ok());
}

TEST(Net, VtepMacIsStableLocallyAdministeredUnicast) {
  Mac a = VtepMacFor(0xc6120001), b = VtepMacFor(0xc6120001), c = VtepMacFor(0xc6120002);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(a[0] & 0x02, 0x02);  // locally administered
  EXPECT_EQ(a[0] & 0x01, 0x00);  // unicast
}

}  // namespace
}  // namespace cppnet
