#include "cppnet/json_util.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cppnet {

absl::Status CheckJsonBounds(absl::string_view text, absl::string_view what, size_t max_bytes,
                             int max_depth) {
  if (text.size() > max_bytes)
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", text.size(), " bytes, more than the limit of ", max_bytes));
  // Brackets outside strings; a linear scan, so the parser never meets a deeper document.
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        return absl::InvalidArgumentError(
            absl::StrCat(what, ": JSON nested deeper than ", max_depth, " levels"));
    } else if (c == ']' || c == '}') {
      depth--;
    }
  }
  return absl::OkStatus();
}

std::string DescribeJson(const nlohmann::json& v) {
  if (v.is_structured())
    return absl::StrCat(v.is_array() ? "an array of " : "an object of ", v.size(), " entries");
  std::string s = v.dump();
  if (s.size() > 64) s = absl::StrCat(s.substr(0, 61), "...");
  return s;
}

absl::StatusOr<nlohmann::json> ParseJsonObject(absl::string_view text, absl::string_view what,
                                               size_t max_bytes) {
  if (auto st = CheckJsonBounds(text, what, max_bytes); !st.ok()) return st;
  nlohmann::json j = nlohmann::json::parse(std::string(text), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(what, ": not valid JSON"));
  if (!j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(what, ": JSON value is not an object"));
  return j;
}

absl::StatusOr<std::string> RequiredString(const nlohmann::json& obj, absl::string_view key) {
  const nlohmann::json* v = FindKey(obj, key);
  if (!v || !v->is_string())
    return absl::InvalidArgumentError(absl::StrCat("\"", key, "\" (a string) is required"));
  return v->get<std::string>();
}

const nlohmann::json* FindKey(const nlohmann::json& obj, absl::string_view key) {
  if (!obj.is_object()) return nullptr;
  if (auto it = obj.find(std::string(key)); it != obj.end()) return &*it;
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (absl::EqualsIgnoreCase(it.key(), key)) return &*it;
  return nullptr;
}

absl::Status GetInt(const nlohmann::json& obj, absl::string_view key, int64_t* out,
                    absl::string_view what) {
  const nlohmann::json* v = FindKey(obj, key);
  if (!v || v->is_null()) return absl::OkStatus();
  if (!v->is_number_integer() && !v->is_number_unsigned())
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", key, " must be an integer (got ", DescribeJson(*v), ")"));
  *out = v->get<int64_t>();
  return absl::OkStatus();
}

}  // namespace cppnet
