// The README example of the C++ API (lib/datalink.h): a server on an ephemeral port, a client
// that connects to it, one message each way.
//   bazel run //examples:datalink_example
#include <cstdio>
#include <string>

#include "lib/api/datalink.h"

int main() {
  dl::Error error;
  auto server = dl::Datalink::server("127.0.0.1:0", /*timeout_ms=*/5000, {}, &error);
  if (!server) {
    std::fprintf(stderr, "server: %s\n", error.message().c_str());
    return 1;
  }
  auto client = dl::Datalink::client("127.0.0.1", server->port(), 5000, {}, &error);
  if (!client) {
    std::fprintf(stderr, "client: %s\n", error.message().c_str());
    return 1;
  }

  std::string hello = "hello from the client";
  client->write(hello.data(), hello.size(), /*timestamp=*/1.5);  // connects in the background
  auto m = server->read(/*timeout_ms=*/5000);
  if (!m) {
    std::fprintf(stderr, "no message\n");
    return 1;
  }
  std::printf("server got \"%s\" (timestamp %.1f) on port %u\n",
              std::string(m->bytes.begin(), m->bytes.end()).c_str(), m->timestamp, server->port());

  std::string reply = "hello from the server";
  server->write(reply.data(), reply.size());  // timestamp: now
  if (auto r = client->read(5000)) {
    std::printf("client got \"%s\"\n", std::string(r->bytes.begin(), r->bytes.end()).c_str());
  }
  client->close();  // ends our direction; the server sees the end of its input
  return 0;
}
