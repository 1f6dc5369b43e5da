#include "masq.h"

#include "absl/strings/str_cat.h"
#include "cppnet/nft.h"

namespace cppnet {
namespace {

// "table ip cppnet {}" before "delete" makes the delete valid when the table is
// absent, so creating, replacing and removing are each a single transaction.
constexpr char kReset[] =
    "table ip cppnet {}\ndelete table ip cppnet\ntable ip6 cppnet {}\ndelete table ip6 cppnet\n";

// flanneld's rules for one family (`ip`/`ip6`): overlay-internal traffic is left alone;
// containers going out are masqueraded (not multicast); outside traffic to our own subnet is
// left alone; outside traffic (e.g. the host itself) to other subnets is masqueraded.
std::string Table(const char* family, const std::string& n, const std::string& s,
                  const char* multicast) {
  const std::string f = family;
  return absl::StrCat(
      "table ", f, " cppnet {\n", "  chain postrouting {\n",
      "    type nat hook postrouting priority srcnat; policy accept;\n", "    ", f, " saddr ", n,
      " ", f, " daddr ", n, " return\n", "    ", f, " saddr ", n, " ", f, " daddr != ", multicast,
      " masquerade fully-random\n", "    ", f, " saddr != ", n, " ", f, " daddr ", s, " return\n",
      "    ", f, " saddr != ", n, " ", f, " daddr ", n, " masquerade fully-random\n", "  }\n}\n");
}

}  // namespace

std::string MasqueradeRules(const MasqSpec& spec) {
  std::string out = kReset;
  if (spec.v4)
    out +=
        Table("ip", FormatPrefix4(spec.v4->first), FormatPrefix4(spec.v4->second), "224.0.0.0/4");
  if (spec.v6)
    out += Table("ip6", FormatPrefix6(spec.v6->first), FormatPrefix6(spec.v6->second), "ff00::/8");
  return out;
}

constexpr char kTables[] = "nftables tables ip/ip6 cppnet";

absl::Status InstallMasquerade(const MasqSpec& spec) {
  return RunNft(MasqueradeRules(spec), kTables);
}

absl::Status RemoveMasquerade() { return RunNft(kReset, kTables); }

absl::Status RemoveCniMasquerade() {
  return RunNft(
      "table ip cppnet_cni {}\ndelete table ip cppnet_cni\ntable ip6 cppnet_cni {}\n"
      "delete table ip6 cppnet_cni\n",
      "nftables tables ip/ip6 cppnet_cni");
}

}  // namespace cppnet
