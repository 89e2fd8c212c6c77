#include "core/rendezvous.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <thread>
#include <vector>

#include "core/error.h"

namespace muongpt {

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr uint32_t kMagic = 0x6d756f6e;  // "muon"

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&&) = delete;
};

// Waits until fd is ready for `events` or the deadline passes (false).
bool wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const double left = seconds_left(deadline);
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, int(std::min(left, 1.0) * 1000) + 1);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

bool send_all(int fd, const void* data, size_t n, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (!wait_for(fd, POLLOUT, deadline)) return false;
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

bool recv_all(int fd, void* data, size_t n, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    if (!wait_for(fd, POLLIN, deadline)) return false;
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return false;
    p += k;
    n -= size_t(k);
  }
  return true;
}

// Header of every message: magic, world size, a length or a rank.
struct Header {
  uint32_t magic, world, value;
};

std::string tcp_serve(int world, int port, const std::string& blob, Clock::time_point deadline,
                      double timeout_s) {
  const std::string where = "rendezvous (TCP port " + std::to_string(port) + ")";
  Fd s(::socket(AF_INET, SOCK_STREAM, 0));
  if (s.fd < 0) fail(where, "socket: ", std::strerror(errno));
  int one = 1;
  ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(uint16_t(port));
  if (::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    fail(where, "rank 0 cannot listen: ", std::strerror(errno),
         " (another job on this port? set MUONGPT_RENDEZVOUS_PORT)");
  if (::listen(s.fd, world) != 0) fail(where, "listen: ", std::strerror(errno));
  std::vector<bool> seen(size_t(world), false);
  for (int joined = 1; joined < world;) {
    if (!wait_for(s.fd, POLLIN, deadline))
      fail(where, "rank 0 waited ", timeout_s, " s but only ", joined, " of ", world,
           " ranks connected");
    Fd c(::accept(s.fd, nullptr, nullptr));
    if (c.fd < 0) continue;
    Header h{};
    if (!recv_all(c.fd, &h, sizeof h, deadline) || h.magic != kMagic) continue;  // not ours
    if (int(h.world) != world || int(h.value) <= 0 || int(h.value) >= world)
      fail(where, "a rank of another job connected (world ", h.world, ", rank ", h.value,
           "; this job has ", world, " ranks)");
    if (seen[h.value]) fail(where, "rank ", h.value, " connected twice");
    const Header reply{kMagic, uint32_t(world), uint32_t(blob.size())};
    if (!send_all(c.fd, &reply, sizeof reply, deadline) ||
        !send_all(c.fd, blob.data(), blob.size(), deadline))
      fail(where, "lost rank ", h.value, " while sending it the id");
    seen[h.value] = true;
    ++joined;
  }
  return blob;
}

std::string tcp_join(int rank, int world, const std::string& host, int port,
                     Clock::time_point deadline, double timeout_s) {
  const std::string where = "rendezvous (TCP " + host + ":" + std::to_string(port) + ")";
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    fail(where, "cannot resolve the host: ", gai_strerror(rc));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
  std::string last = "no answer";
  while (seconds_left(deadline) > 0) {
    Fd c(::socket(AF_INET, SOCK_STREAM, 0));
    if (::connect(c.fd, res->ai_addr, res->ai_addrlen) != 0) {
      last = std::strerror(errno);  // rank 0 not listening yet: try again shortly
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    const Header h{kMagic, uint32_t(world), uint32_t(rank)};
    Header reply{};
    if (!send_all(c.fd, &h, sizeof h, deadline) || !recv_all(c.fd, &reply, sizeof reply, deadline))
      fail(where, "rank ", rank, " lost the connection to rank 0");
    if (reply.magic != kMagic || int(reply.world) != world)
      fail(where, "rank 0 answered for a job of ", reply.world, " ranks, this one has ", world);
    std::string blob(reply.value, '\0');
    if (!recv_all(c.fd, blob.data(), blob.size(), deadline))
      fail(where, "rank ", rank, " lost the connection to rank 0");
    return blob;
  }
  fail(where, "rank ", rank, " could not reach rank 0 in ", timeout_s, " s (last: ", last, ")");
}

}  // namespace

std::string rendezvous_tcp(int rank, int world, const std::string& host, int port,
                           const std::string& blob, double timeout_s) {
  MG_CHECK(rank >= 0 && rank < world, "rank ", rank, " of ", world);
  if (port <= 0 || port > 65535) fail("rendezvous", "TCP port ", port, " is out of range");
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  if (world == 1) return blob;
  return rank == 0 ? tcp_serve(world, port, blob, deadline, timeout_s)
                   : tcp_join(rank, world, host, port, deadline, timeout_s);
}

std::string rendezvous_file(int rank, int world, const std::string& path, const std::string& blob,
                            double timeout_s) {
  MG_CHECK(rank >= 0 && rank < world, "rank ", rank, " of ", world);
  const std::string where = "rendezvous file " + path;
  if (world == 1) return blob;
  // The file holds: "muongpt <world> <length>\n" then the blob.
  if (rank == 0) {
    if (fs::exists(path))
      fail(where,
           "already exists (left by an earlier job?): remove it, or give this job a new "
           "path");
    const std::string tmp = path + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << "muongpt " << world << " " << blob.size() << "\n" << blob;
      if (!out.flush()) fail(where, "cannot write ", tmp);
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) fail(where, "cannot rename ", tmp, " into place: ", ec.message());
    return blob;
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  while (seconds_left(deadline) > 0) {
    std::ifstream in(path, std::ios::binary);
    if (in) {
      std::string magic;
      int w = 0;
      size_t len = 0;
      in >> magic >> w >> len;
      in.get();
      std::string data(std::istreambuf_iterator<char>(in), {});
      if (magic != "muongpt" || data.size() != len) fail(where, "is not a muongpt rendezvous file");
      if (w != world)
        fail(where, "was written by a job of ", w, " ranks, this one has ", world,
             " (a leftover? remove it)");
      return data;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  fail(where, "rank ", rank, " waited ", timeout_s, " s and rank 0 never wrote it");
}

}  // namespace muongpt
