// Underlay selection as flanneld's --iface / --iface-regex: order, names and addresses.
#include "cppnet/underlay.h"

#include <gtest/gtest.h>

namespace cppnet {
namespace {

std::vector<Interface> Links() {
  Interface lo{1, "lo", 65536, {}, "", {Prefix4{0x7f000001, 8}}};
  Interface eth0{2, "eth0", 1500, {}, "veth", {Prefix4{0xc6120001, 24}}};
  Interface ens5{3, "ens5", 9000, {}, "", {Prefix4{0xc6130505, 24}, Prefix4{0xc6130606, 24}}};
  return {lo, eth0, ens5};
}

TEST(Underlay, FirstIfaceThatExistsWinsByNameOrAddress) {
  std::vector<std::string> notes;
  auto p = MatchUnderlay(Links(), {{"eth9", "ens5", "eth0"}, {}, ""}, &notes);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->iface.name, "ens5");
  EXPECT_EQ(p->addr, 0u);  // the interface's first address is published
  EXPECT_EQ(p->how, "--iface ens5");
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0], "--iface eth9: no such device");
  notes.clear();
  p = MatchUnderlay(Links(), {{"198.19.9.9", "198.19.6.6"}, {}, ""}, &notes);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->iface.name, "ens5");
  EXPECT_EQ(FormatIp4(p->addr), "198.19.6.6");  // the matched address, not the first
  EXPECT_EQ(notes[0], "--iface 198.19.9.9: no interface has this address");
}

TEST(Underlay, RegexesAfterIfacesAddressesBeforeNames) {
  std::vector<std::string> notes;
  // "5" matches eth0's name? no; ens5's name and its addresses: the address wins.
  auto p = MatchUnderlay(Links(), {{"eth9"}, {"^zz", "\\.6\\.6$", "^ens"}, ""}, &notes);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->iface.name, "ens5");
  EXPECT_EQ(FormatIp4(p->addr), "198.19.6.6");
  EXPECT_EQ(p->how, "--iface-regex \\.6\\.6$");
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[1], "--iface-regex ^zz: matches no interface name or address");
  p = MatchUnderlay(Links(), {{}, {"^eth"}, ""}, &notes);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->iface.name, "eth0");
  EXPECT_EQ(p->addr, 0u);  // matched by name
  // --iface wins over a regex that also matches.
  p = MatchUnderlay(Links(), {{"eth0"}, {"^ens"}, ""}, &notes);
  EXPECT_EQ(p->iface.name, "eth0");
}

TEST(Underlay, NothingMatchesOrBadRegex) {
  std::vector<std::string> notes;
  auto p = MatchUnderlay(Links(), {{"eth9"}, {"^wl"}, ""}, &notes);
  EXPECT_TRUE(absl::IsNotFound(p.status()));
  EXPECT_EQ(notes.size(), 2u);
  p = MatchUnderlay(Links(), {{}, {"(eth"}, ""}, &notes);
  EXPECT_TRUE(absl::IsInvalidArgument(p.status()));
  EXPECT_NE(p.status().message().find("--iface-regex \"(eth\": invalid regular expression"),
            std::string::npos)
      << p.status();
}

}  // namespace
}  // namespace cppnet
