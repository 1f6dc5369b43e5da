// Control-plane benchmark helper, run inside a lab host next to cppnet-agent:
//   cp_bench fill N [BASE]     write N vxlan leases: subnets BASE+1, BASE+2, ... (BASE: a
//                              prefix, default 10.0.0.0/26), each with its own PublicIP in
//                              198.18.1.0 and up (data only: nothing is sent to any of them)
//   cp_bench wait-count N S    wait (≤ S s) until the routes map holds N entries; prints the
//                              CLOCK_MONOTONIC time (ns) at which it did
//   cp_bench latency N FIRST RATE [BASE]
//                              N changes at RATE per second: new leases FIRST, FIRST+1, ...
//                              and, every other change, the deletion of one written 20
//                              changes before; each timed from its etcd write until the
//                              routes map shows it (polled every 100 us). JSON out.
//   cp_bench attach N BRIDGE   N times: a new veth joins BRIDGE; time until the agent's tcx
//                              program (tcx) is on it. JSON out.
//   cp_bench republish N NETNS IFACE IP1 IP2
//                              N times: IFACE's address in network namespace NETNS flips
//                              between IP1 and IP2 (/24); time until the lease in etcd
//                              carries the new PublicIP. Run it outside NETNS: its own etcd
//                              connection must not ride on the address it changes.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <cstdio>
#include <string>
#include <vector>

#include "cppnet/lease.h"
#include "cppnet/maps.h"
#include "cppnet/etcd_client.h"
#include "cppnet/tc.h"

using namespace cppnet;

namespace {

const char* kPrefix = "/coreos.com/network/subnets/";

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Subnet i: the i-th prefix after g_base. By default in 10.0.0.0/8, which holds 262,144 /26
// subnets, room for the 100,000-lease run (198.18.0.0/15, the lab's range, has 32,768 /30s).
Prefix4 g_base{0x0a000000, 26};
Prefix4 SubnetFor(uint32_t i) { return Prefix4{g_base.addr + i * g_base.size(), g_base.len}; }

std::string LeaseFor(uint32_t i) {
  uint32_t ip = 0xc6120000 + 0x100 + (i % 0x1fe00);  // 198.18.1.0 and up: never sent to here
  return SerializeLease(Lease{ip, "vxlan", 1, VtepMacFor(ip)});
}

bool InMap(int fd, const Prefix4& p) {
  cppnet_route_key k{p.len, htonl(p.addr)};
  cppnet_route r;
  return bpf_map_lookup_elem(fd, &k, &r) == 0;
}

size_t CountEntries(int fd) {
  auto all = ListRoutes(fd);
  return all.ok() ? all->size() : 0;
}

// Polls `done` every `step_us` until it holds or `budget_s` has passed since `start`;
// returns the ns from `start` to the first time it held, or -1.
int64_t Poll(int64_t start, int budget_s, useconds_t step_us, const std::function<bool()>& done) {
  while (NowNs() < start + int64_t{budget_s} * 1'000'000'000) {
    if (done()) return NowNs() - start;
    usleep(step_us);
  }
  return -1;
}

double Pct(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))] / 1e6;
}

// One JSON line of latency percentiles; exit status 1 if any measurement timed out.
int Report(const char* what, const char* count_key, uint32_t n, const std::vector<int64_t>& lat) {
  const size_t lost = std::count(lat.begin(), lat.end(), -1);
  printf("{\"%s\": %u, \"%s_timeouts\": %zu, \"%s_p50_ms\": %.2f, \"%s_p99_ms\": %.2f}\n",
         count_key, n, what, lost, what, Pct(lat, 0.5), what, Pct(lat, 0.99));
  return lost ? 1 : 0;
}

// Paced changes (see the usage above). A change not visible within 5 s counts as a timeout.
int Latency(EtcdClient* etcd, int routes_fd, uint32_t n, uint32_t first, double rate) {
  struct Pending {
    Prefix4 subnet;
    bool add;
    int64_t t0;
  };
  std::vector<Pending> pending;
  std::vector<int64_t> add, del;
  const int64_t start = NowNs();
  const int64_t step = static_cast<int64_t>(1e9 / rate);
  uint32_t next_new = first, next_del = first;
  auto poll = [&] {
    for (size_t i = 0; i < pending.size();) {
      Pending& p = pending[i];
      const int64_t now = NowNs();
      const bool done = InMap(routes_fd, p.subnet) == p.add;
      if (!done && now - p.t0 < 5'000'000'000) {
        i++;
        continue;
      }
      (p.add ? add : del).push_back(done ? now - p.t0 : -1);
      pending[i] = pending.back();
      pending.pop_back();
    }
  };
  for (uint32_t c = 0; c < n; c++) {
    while (NowNs() < start + int64_t{c} * step) {
      poll();
      usleep(100);
    }
    const bool is_add = c % 2 == 0 || next_del + 10 > next_new;
    const uint32_t i = is_add ? next_new++ : next_del++;
    const std::string key = kPrefix + FormatSubnetKey(SubnetFor(i));
    const int64_t t0 = NowNs();
    const bool written = is_add ? etcd->Put(key, LeaseFor(i)).ok() : etcd->Delete(key).ok();
    if (!written) return 1;
    pending.push_back({SubnetFor(i), is_add, t0});
  }
  while (!pending.empty()) {
    poll();
    usleep(100);
  }
  for (uint32_t i = next_del; i < next_new; i++)  // leave the store as it was
    (void)etcd->Delete(kPrefix + FormatSubnetKey(SubnetFor(i)));
  const size_t lost =
      std::count(add.begin(), add.end(), -1) + std::count(del.begin(), del.end(), -1);
  printf(
      "{\"changes\": %u, \"changes_per_s\": %.0f, \"timeouts\": %zu, \"add_p50_ms\": %.2f, "
      "\"add_p99_ms\": %.2f, \"del_p50_ms\": %.2f, \"del_p99_ms\": %.2f}\n",
      n, rate, lost, Pct(add, 0.5), Pct(add, 0.99), Pct(del, 0.5), Pct(del, 0.99));
  return lost ? 1 : 0;
}

bool Sh(const std::string& cmd) { return system(cmd.c_str()) == 0; }

// The agent's program on a container veth: a tcx link (BPF_TCX_INGRESS, 46: newer than
// bookworm's headers), found by a program query on the interface.
bool HasOurProgram(int ifindex) {
  uint32_t ids[4], count = 4, flags = 0;
  return bpf_prog_query(ifindex, static_cast<bpf_attach_type>(46), 0, &flags, ids, &count) == 0 &&
         count > 0;
}

int Attach(uint32_t n, const std::string& bridge) {
  std::vector<int64_t> lat;
  for (uint32_t i = 0; i < n; i++) {
    const std::string name = "cpb" + std::to_string(i);
    if (!Sh("ip link add " + name + " type veth peer name " + name + "p")) return 1;
    const int64_t t0 = NowNs();
    if (!Sh("ip link set " + name + " master " + bridge + " up")) return 1;
    const int ifindex = static_cast<int>(if_nametoindex(name.c_str()));
    const int64_t t = Poll(t0, 5, 100, [&] { return HasOurProgram(ifindex); });
    lat.push_back(t);
    Sh("ip link del " + name);
  }
  return Report("attach", "veths", n, lat);
}

int Republish(EtcdClient* etcd, uint32_t n, const std::string& netns, const std::string& iface,
              const std::string& ip1, const std::string& ip2) {
  auto flip = [&](const std::string& from, const std::string& to) {
    // Deleting a primary address would take a secondary of the same prefix with it: the
    // old address goes first.
    return Sh("ip -n " + netns + " addr del " + from + "/24 dev " + iface + " && ip -n " + netns +
              " addr add " + to + "/24 dev " + iface);
  };
  std::vector<int64_t> lat;
  auto ours = [&](const std::string& ip) -> std::string {  // our lease's key, if published
    auto want = ParseIp4(ip);
    auto r = etcd->RangePrefix(kPrefix);
    if (!want.ok() || !r.ok()) return "";
    for (const EtcdKV& kv : r->kvs)
      if (auto l = ParseLease(kv.value); l.ok() && l->public_ip == *want) return kv.key;
    return "";
  };
  const std::string key = ours(ip1);
  if (key.empty()) {
    fprintf(stderr, "cp_bench: no lease with PublicIP %s\n", ip1.c_str());
    return 1;
  }
  for (uint32_t i = 0; i < n; i++) {
    const std::string& from = i % 2 ? ip2 : ip1;
    const std::string& to = i % 2 ? ip1 : ip2;
    const int64_t t0 = NowNs();
    if (!flip(from, to)) return 1;
    auto want = ParseIp4(to);
    const int64_t t = Poll(t0, 10, 500, [&] {
      auto kv = etcd->Get(key);
      if (!kv.ok() || !kv->has_value()) return false;
      auto l = ParseLease((*kv)->value);
      return l.ok() && l->public_ip == *want;
    });
    lat.push_back(t);
  }
  if (n % 2) flip(ip2, ip1);
  return Report("republish", "republish_changes", n, lat);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(
        stderr,
        "usage: cp_bench fill N | wait-count N SECONDS | latency N FIRST RATE | attach N BRIDGE | "
        "republish N NETNS IFACE IP1 IP2\n");
    return 2;
  }
  const std::string cmd = argv[1];
  const uint32_t n = static_cast<uint32_t>(std::stoul(argv[2]));
  const char* ep = getenv("CPPNET_ETCD_ENDPOINTS");
  auto etcd = EtcdClient::Create(ep ? ep : "http://127.0.0.1:2379");
  if (!etcd.ok()) {
    fprintf(stderr, "cp_bench: %s\n", std::string(etcd.status().message()).c_str());
    return 1;
  }
  if (cmd == "attach" && argc >= 4) return Attach(n, argv[3]);
  // The optional BASE of fill and latency.
  if (const int at = cmd == "fill" ? 3 : cmd == "latency" ? 5 : 0; at && argc > at) {
    auto base = ParsePrefix4(argv[at]);
    if (!base.ok()) {
      fprintf(stderr, "cp_bench: %s\n", std::string(base.status().message()).c_str());
      return 2;
    }
    g_base = *base;
  }
  if (cmd == "republish" && argc >= 7)
    return Republish(etcd->get(), n, argv[3], argv[4], argv[5], argv[6]);
  if (cmd == "fill") {
    for (uint32_t i = 1; i <= n; i++) {
      if (auto st = (*etcd)->Put(kPrefix + FormatSubnetKey(SubnetFor(i)), LeaseFor(i)); !st.ok()) {
        fprintf(stderr, "cp_bench: %s\n", std::string(st.message()).c_str());
        return 1;
      }
    }
    return 0;
  }
  auto maps = MapFds::OpenPinned(CPPNET_PIN_DIR_DEFAULT);
  if (cmd == "wait-count") {
    const int64_t deadline = NowNs() + std::stoll(argv[3]) * 1'000'000'000;
    while (NowNs() < deadline) {
      if (!maps.ok())
        maps = MapFds::OpenPinned(CPPNET_PIN_DIR_DEFAULT);  // agent may not have pinned yet
      if (maps.ok() && CountEntries(maps->routes()) >= n) {
        printf("%lld\n", static_cast<long long>(NowNs()));
        return 0;
      }
      usleep(10000);
    }
    fprintf(stderr, "cp_bench: routes map did not reach %u entries\n", n);
    return 1;
  }
  if (cmd == "latency" && argc >= 5 && maps.ok()) {
    const uint32_t first = static_cast<uint32_t>(std::stoul(argv[3]));
    const double rate = std::stod(argv[4]);
    return Latency((*etcd).get(), maps->routes(), n, first, rate);
  }
  fprintf(stderr, "cp_bench: %s\n",
          maps.ok() ? "bad command" : std::string(maps.status().message()).c_str());
  return 2;
}
