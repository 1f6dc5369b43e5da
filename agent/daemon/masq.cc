#include "masq.h"

#include <nftables/libnftables.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace cppnet {
namespace {

// "table ip cppnet {}" before "delete" makes the delete valid when the table is
// absent, so creating, replacing and removing are each a single transaction.
constexpr char kReset[] = "table ip cppnet {}\ndelete table ip cppnet\n";

absl::Status RunNft(const std::string& script) {
  std::unique_ptr<nft_ctx, void (*)(nft_ctx*)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), nft_ctx_free);
  if (!ctx)
    return absl::InternalError("nftables table ip cppnet: cannot create an nftables context");
  nft_ctx_buffer_output(ctx.get());
  nft_ctx_buffer_error(ctx.get());
  if (nft_run_cmd_from_buffer(ctx.get(), script.c_str()) != 0) {
    std::string err = absl::StrReplaceAll(nft_ctx_get_error_buffer(ctx.get()), {{"\n", " "}});
    return absl::InternalError(
        absl::StrCat("nftables table ip cppnet: ", absl::StripTrailingAsciiWhitespace(err)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string MasqueradeRules(const Prefix4& network, const Prefix4& subnet) {
  const std::string n = FormatPrefix4(network), s = FormatPrefix4(subnet);
  // flanneld's rules: overlay-internal traffic is left alone; containers going out
  // are masqueraded (not multicast); outside traffic to our own subnet is left alone;
  // outside traffic (e.g. the host itself) to other subnets is masqueraded.
  return absl::StrCat(kReset, "table ip cppnet {\n", "  chain postrouting {\n",
                      "    type nat hook postrouting priority srcnat; policy accept;\n",
                      "    ip saddr ", n, " ip daddr ", n, " return\n", "    ip saddr ", n,
                      " ip daddr != 224.0.0.0/4 masquerade fully-random\n", "    ip saddr != ", n,
                      " ip daddr ", s, " return\n", "    ip saddr != ", n, " ip daddr ", n,
                      " masquerade fully-random\n", "  }\n}\n");
}

absl::Status InstallMasquerade(const Prefix4& network, const Prefix4& subnet) {
  return RunNft(MasqueradeRules(network, subnet));
}

absl::Status RemoveMasquerade() { return RunNft(kReset); }

}  // namespace cppnet
