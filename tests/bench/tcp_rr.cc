// TCP request/response latency over IPv4 or IPv6 for the benchmark's IPv6 modes (Debian's
// sockperf 3.7 speaks IPv4 only): 64-byte messages ping-ponged on one connection with
// TCP_NODELAY, as sockperf ping-pong does; reports one-way latency (half the round trip) in
// microseconds, as sockperf does, so the tables read the same.
//   tcp_rr server ADDR PORT        answers one connection, then exits
//   tcp_rr client ADDR PORT SECS   prints {"avg_us":…,"p50_us":…,"p99_us":…,"samples":…}
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr size_t kMsg = 64;

int Die(const char* what) {
  fprintf(stderr, "tcp_rr: %s: %s\n", what, strerror(errno));
  return 1;
}

bool Full(int fd, char* buf, bool send_it) {
  for (size_t done = 0; done < kMsg;) {
    ssize_t n =
        send_it ? send(fd, buf + done, kMsg - done, 0) : recv(fd, buf + done, kMsg - done, 0);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

int Socket(const char* addr, const char* port, sockaddr_storage* sa, socklen_t* len) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(addr, port, &hints, &res) != 0 || !res) return -1;
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  int fd = socket(res->ai_family, SOCK_STREAM, 0);
  freeaddrinfo(res);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || (std::string(argv[1]) == "client" && argc < 5)) {
    fprintf(stderr, "usage: tcp_rr server ADDR PORT | tcp_rr client ADDR PORT SECS\n");
    return 2;
  }
  sockaddr_storage sa{};
  socklen_t len = 0;
  int fd = Socket(argv[2], argv[3], &sa, &len);
  if (fd < 0) return Die("socket");
  const int one = 1;
  char buf[kMsg] = {};
  if (std::string(argv[1]) == "server") {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0 || listen(fd, 1) != 0)
      return Die("bind/listen");
    printf("listening\n");
    fflush(stdout);
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) return Die("accept");
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    while (Full(c, buf, false) && Full(c, buf, true)) {
    }
    close(c);
    close(fd);
    return 0;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), len) != 0) return Die("connect");
  using Clock = std::chrono::steady_clock;
  const auto end = Clock::now() + std::chrono::seconds(atoi(argv[4]));
  std::vector<double> us;
  us.reserve(1 << 20);
  for (auto t = Clock::now(); t < end;) {
    if (!Full(fd, buf, true) || !Full(fd, buf, false)) return Die("ping-pong");
    const auto t2 = Clock::now();
    us.push_back(std::chrono::duration<double, std::micro>(t2 - t).count() / 2);
    t = t2;
  }
  close(fd);
  if (us.empty()) return Die("no samples");
  double sum = 0;
  for (double v : us) sum += v;
  std::sort(us.begin(), us.end());
  printf("{\"avg_us\":%.3f,\"p50_us\":%.3f,\"p99_us\":%.3f,\"samples\":%zu}\n", sum / us.size(),
         us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)], us.size());
  return 0;
}
