#include "cppnet/underlay.h"

#include <regex>

#include "absl/strings/str_cat.h"

namespace cppnet {

absl::StatusOr<UnderlayPick> MatchUnderlay(const std::vector<Interface>& links,
                                           const UnderlayFlags& flags,
                                           std::vector<std::string>* notes) {
  for (const std::string& want : flags.ifaces) {
    auto ip = ParseIp4(want);
    for (const Interface& i : links) {
      if (i.name == want) return UnderlayPick{i, 0, absl::StrCat("--iface ", want)};
      if (!ip.ok()) continue;
      for (const Prefix4& a : i.addrs)
        if (a.addr == *ip) return UnderlayPick{i, a.addr, absl::StrCat("--iface ", want)};
    }
    notes->push_back(absl::StrCat("--iface ", want, ": ",
                                  ip.ok() ? "no interface has this address" : "no such device"));
  }
  for (const std::string& pattern : flags.regexes) {
    std::regex re;
    try {
      re = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--iface-regex \"", pattern, "\": invalid regular expression (", e.what(), ")"));
    }
    const std::string how = absl::StrCat("--iface-regex ", pattern);
    for (const Interface& i : links)
      for (const Prefix4& a : i.addrs)
        if (std::regex_search(FormatIp4(a.addr), re)) return UnderlayPick{i, a.addr, how};
    for (const Interface& i : links)
      if (std::regex_search(i.name, re)) return UnderlayPick{i, 0, how};
    notes->push_back(absl::StrCat(how, ": matches no interface name or address"));
  }
  return absl::NotFoundError("no interface matches");
}

}  // namespace cppnet
