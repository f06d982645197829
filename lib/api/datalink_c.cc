#include "lib/api/datalink_c.h"

#include <cstring>
#include <memory>
#include <string>

#include "lib/api/datalink.h"

struct dl_handle {
  std::unique_ptr<dl::Datalink> link;
};

struct dl_bridge {
  std::unique_ptr<dl::Databridge> bridge;
};

namespace {

thread_local std::string g_factory_error;

void copy_text(const std::string& text, char* buf, std::size_t len) {
  if (!buf || len == 0) return;
  std::size_t n = std::min(text.size(), len - 1);
  std::memcpy(buf, text.data(), n);
  buf[n] = '\0';
}

bool parse_proto_arg(const char* proto, dl::Proto* out, std::string* err) {
  if (!proto || !*proto) {
    *out = dl::Proto::native;
    return true;
  }
  auto p = dl::parse_proto(proto);
  if (!p) {
    *err = p.error().message();
    return false;
  }
  *out = *p;
  return true;
}

dl_handle* fail(const std::string& text, char* err, std::size_t errlen) {
  g_factory_error = text;
  copy_text(text, err, errlen);
  return nullptr;
}

dl::DatalinkOptions convert(const dl_options* o, int* timeout_ms) {
  dl::DatalinkOptions d;
  dl_options defaults;
  dl_options_init(&defaults);
  if (!o) o = &defaults;
  *timeout_ms = o->timeout_ms;
  d.keepalive_ms = o->keepalive_ms;
  d.max_message = o->max_message ? o->max_message : dl::kDefaultMaxMessage;
  d.drop_negative_ts = o->drop_negative_ts != 0;
  d.reconnect_s = o->reconnect_s;
  if (o->window) d.window = o->window;
  d.close_timeout_ms = o->close_timeout_ms;
  return d;
}

dl_handle* make_server(const char* ep, int timeout_ms, dl::DatalinkOptions o, char* err, std::size_t errlen) {
  if (!ep || !*ep) return fail("server: no listen endpoint", err, errlen);
  dl::Error e;
  auto link = dl::Datalink::server(std::string(ep), timeout_ms, o, &e);
  if (!link) return fail(e.message(), err, errlen);
  g_factory_error.clear();
  return new dl_handle{std::move(link)};
}

dl_handle* make_client(const char* host, int port, int timeout_ms, dl::DatalinkOptions o, char* err,
                       std::size_t errlen) {
  if (!host || !*host) return fail("client: no host", err, errlen);
  if (port <= 0 || port > 65535) return fail("client: port out of range: " + std::to_string(port), err, errlen);
  dl::Error e;
  auto link = dl::Datalink::client(host, static_cast<std::uint16_t>(port), timeout_ms, o, &e);
  if (!link) return fail(e.message(), err, errlen);
  g_factory_error.clear();
  return new dl_handle{std::move(link)};
}

}  // namespace

extern "C" {

void dl_options_init(dl_options* o) {
  if (!o) return;
  dl::DatalinkOptions d;
  o->timeout_ms = 10000;
  o->keepalive_ms = d.keepalive_ms;
  o->max_message = d.max_message;
  o->drop_negative_ts = d.drop_negative_ts ? 1 : 0;
  o->reconnect_s = d.reconnect_s;
  o->window = d.window;
  o->close_timeout_ms = d.close_timeout_ms;
  o->proto = nullptr;
}

dl_handle* dl_server(const char* listen_endpoint, int timeout_ms, const char* proto, char* err, size_t errlen) {
  dl::DatalinkOptions o;
  std::string why;
  if (!parse_proto_arg(proto, &o.proto, &why)) return fail(why, err, errlen);
  return make_server(listen_endpoint, timeout_ms, o, err, errlen);
}

dl_handle* dl_client(const char* host, int port, int timeout_ms, const char* proto, char* err, size_t errlen) {
  dl::DatalinkOptions o;
  std::string why;
  if (!parse_proto_arg(proto, &o.proto, &why)) return fail(why, err, errlen);
  return make_client(host, port, timeout_ms, o, err, errlen);
}

dl_handle* dl_server_opts(const char* listen_endpoint, const dl_options* options, char* err, size_t errlen) {
  return dl_server_psk(listen_endpoint, options, nullptr, err, errlen);
}

dl_handle* dl_client_opts(const char* host, int port, const dl_options* options, char* err, size_t errlen) {
  return dl_client_psk(host, port, options, nullptr, err, errlen);
}

dl_handle* dl_server_psk(const char* listen_endpoint, const dl_options* options, const char* psk_file, char* err,
                         size_t errlen) {
  int timeout_ms = 0;
  dl::DatalinkOptions o = convert(options, &timeout_ms);
  std::string why;
  if (!parse_proto_arg(options ? options->proto : nullptr, &o.proto, &why)) return fail(why, err, errlen);
  if (psk_file) o.psk_file = psk_file;
  return make_server(listen_endpoint, timeout_ms, o, err, errlen);
}

dl_handle* dl_client_psk(const char* host, int port, const dl_options* options, const char* psk_file, char* err,
                         size_t errlen) {
  int timeout_ms = 0;
  dl::DatalinkOptions o = convert(options, &timeout_ms);
  std::string why;
  if (!parse_proto_arg(options ? options->proto : nullptr, &o.proto, &why)) return fail(why, err, errlen);
  if (psk_file) o.psk_file = psk_file;
  return make_client(host, port, timeout_ms, o, err, errlen);
}

int dl_port(const dl_handle* h) { return h ? h->link->port() : 0; }

int dl_is_ready(const dl_handle* h) { return h && h->link->is_ready() ? 1 : 0; }

int dl_write(dl_handle* h, const void* data, size_t size, double timestamp, int timeout_ms) {
  if (!h || (!data && size)) return -1;
  return h->link->write_for(data, size, timestamp, timeout_ms);
}

int dl_has_data(const dl_handle* h) { return h && h->link->has_data() ? 1 : 0; }

long long dl_next_size(dl_handle* h, int timeout_ms) {
  if (!h) return -1;
  auto n = h->link->next_size(timeout_ms);
  return n ? static_cast<long long>(*n) : -1;
}

int dl_read_into(dl_handle* h, void* dst, size_t cap, size_t* size, double* timestamp) {
  if (!h) return 0;
  std::size_t n = 0;
  double ts = 0;
  bool ok = h->link->read_into(dst, cap, &n, &ts);
  if (size) *size = n;
  if (timestamp) *timestamp = ts;
  if (ok) return 1;
  return n > cap ? -1 : 0;
}

int dl_read_exact(dl_handle* h, void* dst, size_t n, double* timestamp) {
  if (!h) return 0;
  std::size_t got = 0;
  double ts = 0;
  bool ok = h->link->read_into(dst, n, &got, &ts, true);
  if (timestamp) *timestamp = ts;
  if (ok) return 1;
  return h->link->has_data() && got != n ? -2 : 0;
}

int dl_write_keepalive(dl_handle* h) { return h && h->link->write_keep_alive() ? 1 : 0; }

int dl_flush(dl_handle* h, int timeout_ms) { return h && h->link->flush(timeout_ms) ? 1 : 0; }

int dl_peer_finished(const dl_handle* h) { return h && h->link->peer_finished() ? 1 : 0; }

void dl_close(dl_handle* h) {
  if (!h) return;
  h->link->close();
  delete h;
}

int dl_last_error(const dl_handle* h, char* buf, size_t len) {
  std::string text;
  if (!h) {
    text = g_factory_error;
  } else if (auto e = h->link->last_error()) {
    text = e->message();
  }
  copy_text(text, buf, len);
  return text.empty() ? 0 : 1;
}

int dl_failed(const dl_handle* h) { return h && h->link->error() ? 1 : 0; }

dl_bridge* dl_bridge_open(dl_handle* left, dl_handle* right) {
  if (!left || !right) return nullptr;
  return new dl_bridge{std::make_unique<dl::Databridge>(*left->link, *right->link)};
}

void dl_bridge_close(dl_bridge* b) {
  if (!b) return;
  b->bridge->close();
  delete b;
}

unsigned long long dl_bridge_forwarded(const dl_bridge* b) { return b ? b->bridge->forwarded() : 0; }

const char* dl_version(void) { return "datalink 0.1.0 (native protocol 1, classic compatible)"; }

}  // extern "C"
