#include "json_util.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cppnet {

absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view text, absl::string_view what) {
  nlohmann::json j = nlohmann::json::parse(std::string(text), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": JSON value is not an object"));
  return j;
}

const nlohmann::json* FindKey(const nlohmann::json& obj, absl::string_view key) {
  if (!obj.is_object()) return nullptr;
  if (auto it = obj.find(std::string(key)); it != obj.end()) return &*it;
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (absl::EqualsIgnoreCase(it.key(), key)) return &*it;
  return nullptr;
}

absl::Status GetInt(const nlohmann::json& obj, absl::string_view key, int64_t* out, absl::string_view what) {
  const nlohmann::json* v = FindKey(obj, key);
  if (!v || v->is_null()) return absl::OkStatus();
  if (!v->is_number_integer() && !v->is_number_unsigned())
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", key, " must be an integer (got ", v->dump(), ")"));
  *out = v->get<int64_t>();
  return absl::OkStatus();
}

}  // namespace cppnet
