// Control-plane benchmark helper, run inside a lab host next to cppnet-agent:
//   cp_bench fill N            write N vxlan leases (198.19.0.0/16, /30 subnets) to etcd
//   cp_bench wait-count N S    wait (≤ S s) until the routes map holds N entries; prints the
//                              CLOCK_MONOTONIC time (ns) at which it did
//   cp_bench latency N FIRST   N times: write lease FIRST+i, time until its route is in the
//                              map; then delete it, time until the route is gone. JSON out.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cppnet/lease.h"
#include "cppnet/maps.h"
#include "cppnet/etcd_client.h"

using namespace cppnet;

namespace {

const char* kPrefix = "/coreos.com/network/subnets/";

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

Prefix4 SubnetFor(uint32_t i) { return Prefix4{0xc6130000 + i * 4, 30}; }

std::string LeaseFor(uint32_t i) {
  uint32_t ip = 0xc6120000 + 0x100 + (i % 250);  // 198.18.1.x: never used for traffic here
  return SerializeLease(Lease{ip, "vxlan", 1, VtepMacFor(ip)});
}

bool InMap(int fd, const Prefix4& p) {
  cppnet_route_key k{p.len, htonl(p.addr)};
  cppnet_route r;
  return bpf_map_lookup_elem(fd, &k, &r) == 0;
}

size_t CountEntries(int fd) {
  cppnet_route_key k{}, next{};
  size_t n = 0;
  void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    n++;
    k = next;
    prev = &k;
  }
  return n;
}

// Poll (bounded) until the route's presence equals `want`; returns ns waited or -1.
int64_t WaitRoute(int fd, const Prefix4& p, bool want, int64_t start) {
  const int64_t deadline = start + 5'000'000'000;
  while (NowNs() < deadline) {
    if (InMap(fd, p) == want) return NowNs() - start;
    usleep(20);
  }
  return -1;
}

double Pct(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))] / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: cp_bench fill N | wait-count N SECONDS | latency N FIRST\n");
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
  if (cmd == "latency" && argc >= 4 && maps.ok()) {
    const uint32_t first = static_cast<uint32_t>(std::stoul(argv[3]));
    std::vector<int64_t> add, del;
    for (uint32_t i = first; i < first + n; i++) {
      const std::string key = kPrefix + FormatSubnetKey(SubnetFor(i));
      int64_t t0 = NowNs();
      if (!(*etcd)->Put(key, LeaseFor(i)).ok()) return 1;
      add.push_back(WaitRoute(maps->routes(), SubnetFor(i), true, t0));
      t0 = NowNs();
      if (!(*etcd)->Delete(key).ok()) return 1;
      del.push_back(WaitRoute(maps->routes(), SubnetFor(i), false, t0));
    }
    size_t lost = std::count(add.begin(), add.end(), -1) + std::count(del.begin(), del.end(), -1);
    printf(
        "{\"changes\": %u, \"timeouts\": %zu, \"add_p50_ms\": %.2f, \"add_p99_ms\": %.2f, "
        "\"del_p50_ms\": %.2f, \"del_p99_ms\": %.2f}\n",
        n, lost, Pct(add, 0.5), Pct(add, 0.99), Pct(del, 0.5), Pct(del, 0.99));
    return lost ? 1 : 0;
  }
  fprintf(stderr, "cp_bench: %s\n",
          maps.ok() ? "bad command" : std::string(maps.status().message()).c_str());
  return 2;
}
