#include "cppnet/nft.h"

#include <nftables/libnftables.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace cppnet {

absl::Status RunNft(const std::string& script, const std::string& what) {
  std::unique_ptr<nft_ctx, void (*)(nft_ctx*)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), nft_ctx_free);
  if (!ctx) return absl::InternalError(absl::StrCat(what, ": cannot create an nftables context"));
  nft_ctx_buffer_output(ctx.get());
  nft_ctx_buffer_error(ctx.get());
  if (nft_run_cmd_from_buffer(ctx.get(), script.c_str()) != 0) {
    std::string err = absl::StrReplaceAll(nft_ctx_get_error_buffer(ctx.get()), {{"\n", " "}});
    return absl::InternalError(absl::StrCat(what, ": ", absl::StripTrailingAsciiWhitespace(err)));
  }
  return absl::OkStatus();
}

}  // namespace cppnet
