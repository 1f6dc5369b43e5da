// CNI plugin "cppnet" (CNI spec 1.0.0): attaches containers to the cppnet overlay.
// {"network":"overlay"} does what flannel's CNI plugin does: it reads the agent's
// subnet.env and delegates to the standard bridge plugin (bridge cni0, gateway = the
// subnet's first address, host-local IPAM over the leased subnet). The agent then
// finds the bridge and attaches its programs to it and to every container veth.
// VLAN networks (cppnetctl network create) are recognised; their endpoints need the
// VLAN datapath, which this version does not have yet.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/paths.h"
#include "core/subnet_env.h"

using nlohmann::json;
using namespace cppnet;

namespace {

const char* const kVersions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0"};
// CNI error codes (spec: "Error"); 100+ are this plugin's own.
enum { kIncompatibleVersion = 1, kInvalidEnv = 4, kIoFailure = 5, kDecodeFailure = 6, kInvalidConfig = 7,
       kNotSupported = 100 };

std::string g_version = "1.0.0";

int Error(int code, const std::string& msg, const std::string& details = "") {
  json e = {{"cniVersion", g_version}, {"code", code}, {"msg", msg}};
  if (!details.empty()) e["details"] = details;
  std::cout << e.dump() << std::endl;
  return 1;
}

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

// Runs the delegate plugin `type` from CNI_PATH with `conf` on stdin; its stdout is
// passed through (a result, or its own error JSON) and its exit status returned.
int Delegate(const std::string& type, const json& conf) {
  std::string path;
  for (absl::string_view dir : absl::StrSplit(Env("CNI_PATH"), ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", type);
    if (access(candidate.c_str(), X_OK) == 0) {
      path = candidate;
      break;
    }
  }
  if (path.empty()) return Error(kIoFailure, absl::StrCat("delegate plugin ", type, " not found in CNI_PATH"), Env("CNI_PATH"));
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return Error(kIoFailure, absl::StrCat("pipe: ", strerror(errno)));
  pid_t pid = fork();
  if (pid < 0) return Error(kIoFailure, absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[0]), close(in[1]), close(out[0]), close(out[1]);
    execl(path.c_str(), type.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  const std::string text = conf.dump();
  for (size_t off = 0; off < text.size();) {
    ssize_t n = write(in[1], text.data() + off, text.size() - off);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  close(in[1]);
  std::string result;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof(buf))) > 0;) result.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::cout << result;
  if (!result.empty() && result.back() != '\n') std::cout << std::endl;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

// The bridge plugin's configuration for the overlay, as flannel's CNI plugin builds it.
json OverlayDelegate(const json& conf, const SubnetEnv& env) {
  json d = {{"cniVersion", conf.value("cniVersion", "1.0.0")},
            {"name", conf.value("name", "cppnet")},
            {"type", "bridge"},
            {"bridge", conf.value("bridge", "cni0")},
            {"isGateway", true},
            {"isDefaultGateway", true},
            // The agent masquerades (--ip-masq) with the cluster network in mind; the
            // bridge plugin's own NAT would also rewrite overlay traffic.
            {"ipMasq", false},
            {"hairpinMode", true},
            {"mtu", env.mtu},
            {"ipam",
             {{"type", "host-local"},
              {"ranges", json::array({json::array({{{"subnet", FormatPrefix4(env.subnet)}}})})},
              {"dataDir", absl::StrCat(kRunDir, "/ipam")}}}};
  if (conf.contains("prevResult")) d["prevResult"] = conf["prevResult"];
  return d;
}

}  // namespace

int main() {
  const std::string cmd = Env("CNI_COMMAND");
  if (cmd == "VERSION") {
    std::cout << json{{"cniVersion", "1.0.0"}, {"supportedVersions", kVersions}}.dump() << std::endl;
    return 0;
  }
  if (cmd != "ADD" && cmd != "DEL" && cmd != "CHECK")
    return Error(kInvalidEnv, cmd.empty() ? "CNI_COMMAND is not set" : absl::StrCat("unknown CNI_COMMAND ", cmd));
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  json conf = json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (!conf.is_object()) return Error(kDecodeFailure, "network configuration on stdin is not a JSON object");
  if (conf.contains("cniVersion") && conf["cniVersion"].is_string()) {
    g_version = conf["cniVersion"].get<std::string>();
    if (std::find(std::begin(kVersions), std::end(kVersions), g_version) == std::end(kVersions))
      return Error(kIncompatibleVersion, absl::StrCat("cniVersion ", g_version, " is not supported"), "1.0.0");
  }
  for (const char* v : {"CNI_CONTAINERID", "CNI_IFNAME"})
    if (Env(v).empty()) return Error(kInvalidEnv, absl::StrCat(v, " is not set"));
  if (cmd != "DEL" && Env("CNI_NETNS").empty()) return Error(kInvalidEnv, "CNI_NETNS is not set");
  if (!conf.contains("network") || !conf["network"].is_string())
    return Error(kInvalidConfig, "\"network\" is required: \"overlay\" or a cppnet VLAN network name");
  const std::string network = conf["network"].get<std::string>();

  if (network == "overlay") {
    const std::string file = conf.value("subnetFile", "/run/flannel/subnet.env");
    auto env = ReadSubnetEnvFile(file);
    if (!env.ok()) {
      // DEL must succeed when there is nothing left to remove.
      if (cmd == "DEL") return 0;
      return Error(kIoFailure, absl::StrCat("overlay: ", env.status().message(), " (is cppnet-agent running?)"));
    }
    return Delegate("bridge", OverlayDelegate(conf, *env));
  }
  const std::string def = absl::StrCat(NetworksDir(conf.value("configDir", kConfigDirDefault)), "/", network, ".json");
  if (network.find('/') != std::string::npos || !std::filesystem::exists(def)) {
    if (cmd == "DEL") return 0;
    return Error(kInvalidConfig, absl::StrCat("network ", network, " not found: \"overlay\", or define it with "
                                              "cppnetctl network create"));
  }
  if (cmd == "DEL") return 0;
  return Error(kNotSupported, absl::StrCat("network ", network, ": VLAN network endpoints are not supported by this "
                                           "version of cppnet yet"));
}
