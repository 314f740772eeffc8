// libevent's HTTP client (evhttp), loaded at run time like libcurl (see CCurl): <event2/*.h> give the
// types and constants, and these functions call the library through dlopen/dlsym. libevent depends on
// nothing but libc and loads in a fraction of a millisecond, where libcurl and its thirty libraries take
// several: cml-run uses it for plain http://, where its overhead against a server is budgeted.
//
// One connection serves one thread: each exchange runs the connection's own event loop until the answer
// has arrived or failed.
#pragma once
#include <stddef.h>
// No libevent header here: <event2/util.h> brings <sys/select.h> into this module, whose fd_set then
// clashes with Swift's Glibc module. The C file maps these values onto libevent's.

/// Loads libevent once per process (thread-safe): `$CML_LIBEVENT`, else "libevent-2.1.so.7". NULL when it
/// is loaded; else why not, as one line. Call it before any other function here.
const char *cml_event_load(void);

typedef struct cml_event_connection cml_event_connection;

/// A connection to `host` (a name or an address) on `port`, made at the first exchange: each of the
/// host's addresses in turn until one accepts within `connect_timeout` seconds. NULL when the name does
/// not resolve, with why in `error` (as gai_strerror says it).
cml_event_connection *cml_event_connect(const char *host, int port, double connect_timeout, char *error, size_t error_size);

/// Whether the connection can take another request: still open, and nothing arrived since its last
/// answer (a server that closed a kept connection, or sent what no request asked for).
int cml_event_usable(cml_event_connection *connection);

void cml_event_close(cml_event_connection *connection);

/// Why an exchange failed; `CML_EVENT_OK` when an answer arrived whole.
enum cml_event_failure {
    CML_EVENT_OK = 0,
    /// No address of the host accepted (`error_number` says why: refused, timed out…).
    CML_EVENT_CONNECT_FAILED,
    CML_EVENT_TIMEOUT,
    CML_EVENT_CLOSED,
    CML_EVENT_MALFORMED,
    CML_EVENT_SEND_ERROR,
};

/// The methods evhttp can send.
enum cml_event_method {
    CML_EVENT_GET,
    CML_EVENT_POST,
    CML_EVENT_PUT,
    CML_EVENT_DELETE,
    CML_EVENT_HEAD,
    CML_EVENT_PATCH,
    CML_EVENT_OPTIONS,
};

/// One request and what came back of it.
struct cml_event_exchange {
    enum cml_event_method method;
    /// The path and query, as the request line carries them.
    const char *target;
    const char *const *header_names;
    const char *const *header_values;
    int header_count;
    /// The body: `body_length` bytes at `body`, or when `body_file` is not negative, `body_length` bytes
    /// of that file from its start (sent as they are read; the descriptor stays the caller's).
    const void *body;
    size_t body_length;
    int body_file;
    int has_body;
    /// Seconds without a byte moving; seconds the whole exchange may take. 0: no limit (the latter), a day
    /// (the former: libevent has no unlimited one).
    double idle_timeout;
    double total_timeout;

    /// Called once for each header of the answer, then with each piece of its body.
    void (*on_header)(void *context, const char *name, const char *value);
    void (*on_body)(void *context, const void *bytes, size_t length);
    void *context;

    // Results.
    int status;
    /// Whether the answer's head arrived (a failure after it lost the connection, not the server).
    int answered;
    enum cml_event_failure failure;
    /// errno when connecting or sending failed.
    int error_number;
};

/// Sends the request and waits for its answer. Returns 0 when the answer arrived whole, else -1 with
/// `failure` set; the connection is then closed and `cml_event_usable` says so.
int cml_event_exchange(cml_event_connection *connection, struct cml_event_exchange *exchange);
