/* datalink_c: the C ABI of the Datalink library (libdatalink.so), for bindings (Python's
 * ctypes) and C programs. It wraps dl::Datalink / dl::Databridge (lib/datalink.h).
 *
 * Handles are opaque. Every function is thread-safe for one handle, except dl_close() which
 * must not race with other calls on the same handle. No function takes ownership of, or frees,
 * memory owned by the caller; strings passed in are copied; error texts are written into
 * caller buffers (truncated, always NUL-terminated when errlen > 0).
 *
 * Timeouts are in milliseconds: < 0 waits forever, 0 does not wait.
 * proto: "native" (default when NULL or ""), "classic" (the seed's wire format), "auto"
 * (servers only: native and classic peers alike).
 */
#ifndef DATALINK_C_H_
#define DATALINK_C_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dl_handle dl_handle;
typedef struct dl_bridge dl_bridge;

/* Options for dl_server_opts/dl_client_opts; dl_options_init() fills in the defaults. */
typedef struct dl_options {
  int timeout_ms;        /* receive timeout; <= 0 disables (default 10000) */
  int keepalive_ms;      /* 0: a third of the shorter timeout of both sides; < 0: none */
  unsigned max_message;  /* bytes (default 16 MiB) */
  int drop_negative_ts;  /* classic: drop frames with a negative timestamp, as the seed does */
  double reconnect_s;    /* < 0: keep trying forever (default) */
  size_t window;         /* replay window in bytes (default 8 MiB) */
  int close_timeout_ms;  /* bound of dl_close()'s graceful part (default 5000) */
  const char* proto;     /* see above; NULL = native */
} dl_options;

void dl_options_init(dl_options* options);

/* listen_endpoint: "127.0.0.1:0", "9000" (all addresses), "[::1]:0", "unix:/path".
 * Returns NULL on failure with the reason in err. */
dl_handle* dl_server(const char* listen_endpoint, int timeout_ms, const char* proto, char* err, size_t errlen);
dl_handle* dl_client(const char* host, int port, int timeout_ms, const char* proto, char* err, size_t errlen);
dl_handle* dl_server_opts(const char* listen_endpoint, const dl_options* options, char* err, size_t errlen);
dl_handle* dl_client_opts(const char* host, int port, const dl_options* options, char* err, size_t errlen);
/* The same with keys: TLS 1.3 with the pre-shared key in psk_file (one line "[IDENTITY ]KEY",
 * mode 0600, the same file on both sides; dl-security(7)). NULL or "" = no keys. A wrong key is
 * final: the link fails (dl_last_error says "handshake failed: wrong pre-shared key"). */
dl_handle* dl_server_psk(const char* listen_endpoint, const dl_options* options, const char* psk_file, char* err,
                         size_t errlen);
dl_handle* dl_client_psk(const char* host, int port, const dl_options* options, const char* psk_file, char* err,
                         size_t errlen);

int dl_port(const dl_handle* h);     /* the listening port (server) or the dialled port */
int dl_is_ready(const dl_handle* h); /* 1: connected and handshake done */

/* Sends one message (copied); waits up to timeout_ms while the window is full.
 * 1 sent, 0 timed out (nothing sent), -1 error (closed, fatal link error, too large). */
int dl_write(dl_handle* h, const void* data, size_t size, double timestamp, int timeout_ms);
int dl_has_data(const dl_handle* h);
/* Size of the next message, waiting up to timeout_ms; -1 when there is none (timeout, closed,
 * or the peer ended its direction and everything was read). */
long long dl_next_size(dl_handle* h, int timeout_ms);
/* Copies the next message into dst and removes it: 1 done; 0 no message; -1 cap too small
 * (*size tells the size needed; the message stays). size/timestamp may be NULL. */
int dl_read_into(dl_handle* h, void* dst, size_t cap, size_t* size, double* timestamp);
// Pops the next message only if it is exactly n bytes: 1 done, 0 none, -2 it has another size
// (kept).
int dl_read_exact(dl_handle* h, void* dst, size_t n, double* timestamp);
int dl_write_keepalive(dl_handle* h);   /* 1 sent, 0 not connected */
int dl_flush(dl_handle* h, int timeout_ms);  /* 1: everything written was acknowledged */
/* 1 when the peer ended its direction (native END) and every message was read. */
int dl_peer_finished(const dl_handle* h);
/* Closes gracefully (bounded) and frees the handle. NULL is accepted. */
void dl_close(dl_handle* h);
/* The latest error text; h NULL: the latest factory error of this thread. Returns 1 if there
 * is one, 0 if not (buf gets ""). */
int dl_last_error(const dl_handle* h, char* buf, size_t len);
/* 1 when the link failed for good (then dl_last_error() says why). */
int dl_failed(const dl_handle* h);

/* Forwards messages both ways until dl_bridge_close() or either handle is closed (closing a
 * handle closes its bridges first; the dl_bridge must still be freed with dl_bridge_close). */
dl_bridge* dl_bridge_open(dl_handle* left, dl_handle* right);
void dl_bridge_close(dl_bridge* b);
unsigned long long dl_bridge_forwarded(const dl_bridge* b);

const char* dl_version(void);

#ifdef __cplusplus
}
#endif

#endif /* DATALINK_C_H_ */
