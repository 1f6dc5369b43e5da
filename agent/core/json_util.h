// JSON helpers for documents written by flanneld (Go): keys match case-insensitively,
// as Go's encoding/json does, and unknown fields are ignored.
#pragma once
#include "absl/strings/string_view.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cppnet {

absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view text, absl::string_view what);
const nlohmann::json* FindKey(const nlohmann::json& obj, absl::string_view key);
// Integer field; leaves *out unchanged when absent or null.
absl::Status GetInt(const nlohmann::json& obj, absl::string_view key, int64_t* out, absl::string_view what);

}  // namespace cppnet
