// JSON helpers for documents written by flanneld (Go): keys match case-insensitively,
// as Go's encoding/json does, and unknown fields are ignored.
#pragma once
#include <string>
#include "absl/strings/string_view.h"

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace cppnet {

// Documents from etcd, CNI runtimes and networks.d are bounded before they are parsed:
// a hostile value can neither exhaust memory nor nest deep enough to overflow a stack.
inline constexpr size_t kMaxJsonBytes = 64 * 1024;
inline constexpr int kMaxJsonDepth = 64;
// OK when `text` is at most max_bytes long and nests arrays/objects at most max_depth deep.
absl::Status CheckJsonBounds(absl::string_view text, absl::string_view what,
                             size_t max_bytes = kMaxJsonBytes, int max_depth = kMaxJsonDepth);
absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view text, absl::string_view what,
                                               size_t max_bytes = kMaxJsonBytes);
// A value for an error message: short scalars as JSON, anything else by its type and
// size (never a re-serialisation of an arbitrarily large or deep value).
std::string DescribeJson(const nlohmann::json& v);
const nlohmann::json* FindKey(const nlohmann::json& obj, absl::string_view key);
// A required string field ("\"KEY\" (a string) is required" otherwise).
absl::StatusOr<std::string> RequiredString(const nlohmann::json& obj, absl::string_view key);
// Integer field; leaves *out unchanged when absent or null.
absl::Status GetInt(const nlohmann::json& obj, absl::string_view key, int64_t* out,
                    absl::string_view what);

}  // namespace cppnet
