// nftables through libnftables: the agent's masquerading tables and the CNI plugin's.
#pragma once
#include <string>

#include "absl/status/status.h"

namespace cppnet {

// Runs `script` as one nftables transaction (all or nothing). Errors name `what` (the tables)
// and carry nft's own message.
absl::Status RunNft(const std::string& script, const std::string& what);

}  // namespace cppnet
