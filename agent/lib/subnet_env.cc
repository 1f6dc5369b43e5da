#include "cppnet/subnet_env.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"

namespace cppnet {

std::string RenderSubnetEnv(const SubnetEnv& e) {
  // flanneld's order: IPv4 (none in an IPv6-only network), IPv6, MTU, IPMASQ.
  std::string out;
  if (e.subnet.len)
    out = absl::StrCat("FLANNEL_NETWORK=", FormatPrefix4(e.network), "\n",
                       "FLANNEL_SUBNET=", FormatIp4(e.subnet.addr + 1), "/", e.subnet.len, "\n");
  if (e.network6 && e.subnet6)
    absl::StrAppend(&out, "FLANNEL_IPV6_NETWORK=", FormatPrefix6(*e.network6), "\n",
                    "FLANNEL_IPV6_SUBNET=", FormatIp6(e.subnet6->addr + 1), "/", e.subnet6->len,
                    "\n");
  absl::StrAppend(&out, "FLANNEL_MTU=", e.mtu, "\n", "FLANNEL_IPMASQ=", e.ipmasq ? "true" : "false",
                  "\n");
  return out;
}

std::optional<Prefix6> ReadSubnet6FromEnvFile(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "FLANNEL_IPV6_SUBNET=")) continue;
    auto p = ParsePrefix6(v);
    if (p.ok()) return *p;
  }
  return std::nullopt;
}

std::optional<Prefix4> ReadSubnetFromEnvFile(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    if (!absl::ConsumePrefix(&v, "FLANNEL_SUBNET=")) continue;
    auto p = ParsePrefix4(v, /*strict=*/false);
    if (p.ok()) return *p;
  }
  return std::nullopt;
}

absl::StatusOr<SubnetEnv> ReadSubnetEnvFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  SubnetEnv e;
  bool net = false, sub = false, mtu = false;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view v = line;
    if (absl::ConsumePrefix(&v, "FLANNEL_NETWORK=")) {
      auto p = ParsePrefix4(v, /*strict=*/false);
      if (!p.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": FLANNEL_NETWORK: ", p.status().message()));
      e.network = *p;
      net = true;
    } else if (absl::ConsumePrefix(&v, "FLANNEL_SUBNET=")) {
      auto p = ParsePrefix4(v, /*strict=*/false);
      if (!p.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": FLANNEL_SUBNET: ", p.status().message()));
      e.subnet = Prefix4{p->addr & p->mask(), p->len};
      sub = true;
    } else if (absl::ConsumePrefix(&v, "FLANNEL_MTU=")) {
      mtu = absl::SimpleAtoi(v, &e.mtu) && e.mtu >= 576;
      if (!mtu)
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": FLANNEL_MTU: \"", v, "\" is not an MTU"));
    } else if (absl::ConsumePrefix(&v, "FLANNEL_IPV6_NETWORK=")) {
      auto p = ParsePrefix6(v);
      if (!p.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": FLANNEL_IPV6_NETWORK: ", p.status().message()));
      e.network6 = *p;
    } else if (absl::ConsumePrefix(&v, "FLANNEL_IPV6_SUBNET=")) {
      auto p = ParsePrefix6(v);
      if (!p.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": FLANNEL_IPV6_SUBNET: ", p.status().message()));
      e.subnet6 = *p;
    } else if (absl::ConsumePrefix(&v, "FLANNEL_IPMASQ=")) {
      e.ipmasq = v == "true";
    }
  }
  const bool v6only = !net && !sub && e.network6 && e.subnet6;
  if ((!(net && sub) && !v6only) || !mtu)
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ": FLANNEL_NETWORK, FLANNEL_SUBNET (or, IPv6 only, FLANNEL_IPV6_NETWORK and "
                     "FLANNEL_IPV6_SUBNET) and FLANNEL_MTU are required"));
  return e;
}

absl::StatusOr<std::string> ReadFileHead(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  std::string text(limit, '\0');
  in.read(text.data(), static_cast<std::streamsize>(limit));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat(p.parent_path().string(), ": ", ec.message()));
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat(tmp, ": ", strerror(errno)));
  ssize_t n = write(fd, contents.data(), contents.size());
  int err = n == static_cast<ssize_t>(contents.size()) ? 0 : (n < 0 ? errno : EIO);
  if (!err && fsync(fd) != 0) err = errno;
  close(fd);
  if (!err && rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace cppnet
