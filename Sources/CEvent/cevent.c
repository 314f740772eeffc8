// POLLRDHUP (a peer that closed its end) is a GNU extension.
#define _GNU_SOURCE
#include "cevent.h"
#include "csupport.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// The functions used, resolved by name.
static struct {
    struct event_base *(*base_new)(void);
    void (*base_free)(struct event_base *);
    int (*base_loop)(struct event_base *, int);
    int (*base_loopbreak)(struct event_base *);
    struct event *(*event_new)(struct event_base *, evutil_socket_t, short, event_callback_fn, void *);
    int (*event_add)(struct event *, const struct timeval *);
    void (*event_free)(struct event *);
    struct evhttp_connection *(*connection_new)(struct event_base *, struct evdns_base *, const char *, ev_uint16_t);
    void (*connection_free)(struct evhttp_connection *);
    void (*connection_set_timeout_tv)(struct evhttp_connection *, const struct timeval *);
    void (*connection_set_retries)(struct evhttp_connection *, int);
    struct bufferevent *(*connection_get_bufferevent)(struct evhttp_connection *);
    evutil_socket_t (*bufferevent_getfd)(struct bufferevent *);
    struct evhttp_request *(*request_new)(void (*)(struct evhttp_request *, void *), void *);
    void (*request_set_error_cb)(struct evhttp_request *, void (*)(enum evhttp_request_error, void *));
    void (*request_set_header_cb)(struct evhttp_request *, int (*)(struct evhttp_request *, void *));
    void (*request_set_chunked_cb)(struct evhttp_request *, void (*)(struct evhttp_request *, void *));
    struct evkeyvalq *(*request_get_output_headers)(struct evhttp_request *);
    struct evkeyvalq *(*request_get_input_headers)(struct evhttp_request *);
    struct evbuffer *(*request_get_output_buffer)(struct evhttp_request *);
    struct evbuffer *(*request_get_input_buffer)(struct evhttp_request *);
    int (*request_get_response_code)(const struct evhttp_request *);
    int (*add_header)(struct evkeyvalq *, const char *, const char *);
    int (*make_request)(struct evhttp_connection *, struct evhttp_request *, enum evhttp_cmd_type, const char *);
    void (*cancel_request)(struct evhttp_request *);
    int (*buffer_add)(struct evbuffer *, const void *, size_t);
    int (*buffer_add_file)(struct evbuffer *, int, ev_off_t, ev_off_t);
    size_t (*buffer_get_length)(const struct evbuffer *);
    int (*buffer_peek)(struct evbuffer *, ev_ssize_t, struct evbuffer_ptr *, struct evbuffer_iovec *, int);
    int (*buffer_drain)(struct evbuffer *, size_t);
} ev;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int loaded;
static char load_error[512];

static void load(void) {
    static const char *const symbols[] = {
        "event_base_new", "event_base_free", "event_base_loop", "event_base_loopbreak", "event_new", "event_add",
        "event_free", "evhttp_connection_base_new", "evhttp_connection_free", "evhttp_connection_set_timeout_tv",
        "evhttp_connection_set_retries", "evhttp_connection_get_bufferevent", "bufferevent_getfd", "evhttp_request_new",
        "evhttp_request_set_error_cb", "evhttp_request_set_header_cb", "evhttp_request_set_chunked_cb",
        "evhttp_request_get_output_headers", "evhttp_request_get_input_headers", "evhttp_request_get_output_buffer",
        "evhttp_request_get_input_buffer", "evhttp_request_get_response_code", "evhttp_add_header", "evhttp_make_request",
        "evhttp_cancel_request", "evbuffer_add", "evbuffer_add_file", "evbuffer_get_length", "evbuffer_peek", "evbuffer_drain",
    };
    void **const destinations[] = {
        (void **)&ev.base_new, (void **)&ev.base_free, (void **)&ev.base_loop, (void **)&ev.base_loopbreak,
        (void **)&ev.event_new, (void **)&ev.event_add, (void **)&ev.event_free, (void **)&ev.connection_new,
        (void **)&ev.connection_free, (void **)&ev.connection_set_timeout_tv, (void **)&ev.connection_set_retries,
        (void **)&ev.connection_get_bufferevent, (void **)&ev.bufferevent_getfd, (void **)&ev.request_new,
        (void **)&ev.request_set_error_cb, (void **)&ev.request_set_header_cb, (void **)&ev.request_set_chunked_cb,
        (void **)&ev.request_get_output_headers, (void **)&ev.request_get_input_headers,
        (void **)&ev.request_get_output_buffer, (void **)&ev.request_get_input_buffer,
        (void **)&ev.request_get_response_code, (void **)&ev.add_header, (void **)&ev.make_request,
        (void **)&ev.cancel_request, (void **)&ev.buffer_add, (void **)&ev.buffer_add_file, (void **)&ev.buffer_get_length,
        (void **)&ev.buffer_peek, (void **)&ev.buffer_drain,
    };
    _Static_assert(sizeof symbols / sizeof *symbols == sizeof destinations / sizeof *destinations, "a symbol for each function");
    loaded = cml_load_library("CML_LIBEVENT", "libevent-2.1.so.7", "libevent-2.1-7", symbols, destinations,
                              sizeof symbols / sizeof *symbols, load_error, sizeof load_error);
}

const char *cml_event_load(void) {
    pthread_once(&load_once, load);
    return loaded ? NULL : load_error;
}

enum { MAX_ADDRESSES = 8 };

struct cml_event_connection {
    struct event_base *base;
    struct evhttp_connection *http;
    /// The host's addresses, tried in turn until one accepts; `address` is the one `http` connects to.
    char addresses[MAX_ADDRESSES][NI_MAXHOST];
    int address_count;
    int address;
    int port;
    double connect_timeout;
    /// Whether `http` connected: then a failure may have reached the server, and no other address is tried.
    int connected;
    /// Set once a failure reset the connection: evhttp would connect again on its own.
    int broken;
};

/// A new evhttp connection to the current address, replacing any before it.
static int open_http(cml_event_connection *connection) {
    if (connection->http) ev.connection_free(connection->http);
    connection->http = ev.connection_new(connection->base, NULL, connection->addresses[connection->address], (ev_uint16_t)connection->port);
    if (!connection->http) return -1;
    // A failure is the caller's to retry: evhttp would otherwise connect again on its own.
    ev.connection_set_retries(connection->http, 0);
    return 0;
}

/// 0 when `address` accepts a connection within `timeout` seconds, else errno's account of why not.
/// evhttp keeps the reason a connect failed to itself: this asks again, only after such a failure.
static int connect_error(const char *address, int port, double timeout) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM}, *found;
    if (getaddrinfo(address, service, &hints, &found) != 0) return EADDRNOTAVAIL;
    int error = 0;
    int descriptor = socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, found->ai_protocol);
    if (descriptor < 0) {
        error = errno;
    } else if (connect(descriptor, found->ai_addr, found->ai_addrlen) < 0) {
        error = errno;
        if (error == EINPROGRESS) {
            struct pollfd watched = {.fd = descriptor, .events = POLLOUT};
            int ready;
            do ready = poll(&watched, 1, (int)(timeout * 1000) + 1); while (ready < 0 && errno == EINTR);
            socklen_t length = sizeof error;
            if (ready == 0) error = ETIMEDOUT;
            else if (ready < 0) error = errno;
            else if (getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
        }
    }
    if (descriptor >= 0) close(descriptor);
    freeaddrinfo(found);
    return error;
}

/// Whether evhttp's socket is connected to the server.
static int socket_connected(cml_event_connection *connection) {
    evutil_socket_t descriptor = ev.bufferevent_getfd(ev.connection_get_bufferevent(connection->http));
    struct sockaddr_storage peer;
    socklen_t length = sizeof peer;
    return descriptor >= 0 && getpeername(descriptor, (struct sockaddr *)&peer, &length) == 0;
}

cml_event_connection *cml_event_connect(const char *host, int port, double connect_timeout, char *error, size_t error_size) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
    int code = getaddrinfo(host, service, &hints, &found);
    if (code != 0) {
        snprintf(error, error_size, "%s", code == EAI_SYSTEM ? strerror(errno) : gai_strerror(code));
        return NULL;
    }
    cml_event_connection *connection = calloc(1, sizeof *connection);
    if (!connection) { freeaddrinfo(found); snprintf(error, error_size, "%s", strerror(ENOMEM)); return NULL; }
    for (struct addrinfo *address = found; address && connection->address_count < MAX_ADDRESSES; address = address->ai_next) {
        char *numeric = connection->addresses[connection->address_count];
        if (getnameinfo(address->ai_addr, address->ai_addrlen, numeric, NI_MAXHOST, NULL, 0, NI_NUMERICHOST) == 0) {
            connection->address_count++;
        }
    }
    freeaddrinfo(found);
    connection->port = port;
    connection->connect_timeout = connect_timeout;
    connection->base = ev.base_new();
    if (!connection->base || connection->address_count == 0 || open_http(connection) < 0) {
        snprintf(error, error_size, "cannot start libevent's HTTP client");
        cml_event_close(connection);
        return NULL;
    }
    return connection;
}

int cml_event_usable(cml_event_connection *connection) {
    if (connection->broken) return 0;
    evutil_socket_t descriptor = ev.bufferevent_getfd(ev.connection_get_bufferevent(connection->http));
    // No socket: not connected yet (evhttp connects at the first request), or closed by evhttp after an
    // answer that said `Connection: close`.
    if (descriptor < 0) return !connection->connected;
    struct pollfd watched = {.fd = descriptor, .events = POLLIN | POLLRDHUP};
    return poll(&watched, 1, 0) == 0;
}

void cml_event_close(cml_event_connection *connection) {
    if (!connection) return;
    if (connection->http) ev.connection_free(connection->http);
    if (connection->base) ev.base_free(connection->base);
    free(connection);
}

struct exchange_state {
    struct cml_event_exchange *exchange;
    cml_event_connection *connection;
    struct event_base *base;
    struct evhttp_request *request;
    int done;
};

static void finish(struct exchange_state *state, enum cml_event_failure failure) {
    if (state->done) return;
    state->done = 1;
    state->exchange->failure = failure;
    ev.base_loopbreak(state->base);
}

static int on_head(struct evhttp_request *request, void *context) {
    struct exchange_state *state = context;
    state->exchange->answered = 1;
    state->connection->connected = 1;
    state->exchange->status = ev.request_get_response_code(request);
    struct evkeyvalq *headers = ev.request_get_input_headers(request);
    for (struct evkeyval *header = headers->tqh_first; header; header = header->next.tqe_next) {
        state->exchange->on_header(state->exchange->context, header->key, header->value);
    }
    return 0;
}

/// Hands what arrived of the body over, and drains it.
static void on_body(struct evhttp_request *request, void *context) {
    struct exchange_state *state = context;
    struct evbuffer *input = ev.request_get_input_buffer(request);
    int count = ev.buffer_peek(input, -1, NULL, NULL, 0);
    if (count <= 0) return;
    struct evbuffer_iovec *pieces = calloc((size_t)count, sizeof *pieces);
    if (!pieces) return;
    count = ev.buffer_peek(input, -1, NULL, pieces, count);
    for (int index = 0; index < count; index++) {
        state->exchange->on_body(state->exchange->context, pieces[index].iov_base, pieces[index].iov_len);
    }
    free(pieces);
    ev.buffer_drain(input, ev.buffer_get_length(input));
}

static void on_error(enum evhttp_request_error error, void *context) {
    struct exchange_state *state = context;
    state->request = NULL;  // freed by evhttp
    switch (error) {
    case EVREQ_HTTP_TIMEOUT: finish(state, CML_EVENT_TIMEOUT); break;
    case EVREQ_HTTP_INVALID_HEADER: case EVREQ_HTTP_DATA_TOO_LONG: finish(state, CML_EVENT_MALFORMED); break;
    case EVREQ_HTTP_BUFFER_ERROR: state->exchange->error_number = errno; finish(state, CML_EVENT_SEND_ERROR); break;
    default: finish(state, CML_EVENT_CLOSED); break;
    }
}

static void on_done(struct evhttp_request *request, void *context) {
    struct exchange_state *state = context;
    state->request = NULL;
    // NULL: a failure already said by on_error. No answer: the connection failed before one.
    if (!request) { finish(state, CML_EVENT_CLOSED); return; }
    if (!state->exchange->answered) { finish(state, CML_EVENT_CLOSED); return; }
    on_body(request, context);
    finish(state, CML_EVENT_OK);
}

/// The connect's limit: a socket not connected by then fails the exchange as a connect that timed out.
static void on_connect_deadline(evutil_socket_t descriptor, short what, void *context) {
    (void)descriptor, (void)what;
    struct exchange_state *state = context;
    if (socket_connected(state->connection)) {
        state->connection->connected = 1;
        return;
    }
    struct evhttp_request *request = state->request;
    state->exchange->error_number = ETIMEDOUT;
    finish(state, CML_EVENT_CONNECT_FAILED);
    if (request) ev.cancel_request(request);
}

static void on_deadline(evutil_socket_t descriptor, short what, void *context) {
    (void)descriptor, (void)what;
    struct exchange_state *state = context;
    struct evhttp_request *request = state->request;
    finish(state, CML_EVENT_TIMEOUT);
    if (request) ev.cancel_request(request);
}

static struct timeval duration(double seconds) {
    struct timeval value = {.tv_sec = (time_t)seconds, .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    return value;
}

static enum evhttp_cmd_type libevent_method(enum cml_event_method method) {
    switch (method) {
    case CML_EVENT_POST: return EVHTTP_REQ_POST;
    case CML_EVENT_PUT: return EVHTTP_REQ_PUT;
    case CML_EVENT_DELETE: return EVHTTP_REQ_DELETE;
    case CML_EVENT_HEAD: return EVHTTP_REQ_HEAD;
    case CML_EVENT_PATCH: return EVHTTP_REQ_PATCH;
    case CML_EVENT_OPTIONS: return EVHTTP_REQ_OPTIONS;
    default: return EVHTTP_REQ_GET;
    }
}

/// One try on the current address.
static void exchange_once(cml_event_connection *connection, struct cml_event_exchange *exchange) {
    exchange->status = 0;
    exchange->answered = 0;
    exchange->failure = CML_EVENT_OK;
    exchange->error_number = 0;
    struct exchange_state state = {.exchange = exchange, .connection = connection, .base = connection->base};
    struct evhttp_request *request = ev.request_new(on_done, &state);
    if (!request) { exchange->failure = CML_EVENT_SEND_ERROR; exchange->error_number = ENOMEM; return; }
    ev.request_set_error_cb(request, on_error);
    ev.request_set_header_cb(request, on_head);
    ev.request_set_chunked_cb(request, on_body);
    struct evkeyvalq *headers = ev.request_get_output_headers(request);
    for (int index = 0; index < exchange->header_count; index++) {
        ev.add_header(headers, exchange->header_names[index], exchange->header_values[index]);
    }
    if (exchange->has_body) {
        char length[32];
        snprintf(length, sizeof length, "%zu", exchange->body_length);
        ev.add_header(headers, "Content-Length", length);
        struct evbuffer *output = ev.request_get_output_buffer(request);
        if (exchange->body_file >= 0) {
            // evbuffer_add_file closes the descriptor it is given once it is sent.
            int copy = dup(exchange->body_file);
            if (copy < 0 || ev.buffer_add_file(output, copy, 0, (ev_off_t)exchange->body_length) < 0) {
                exchange->failure = CML_EVENT_SEND_ERROR;
                exchange->error_number = errno;
                return;
            }
        } else if (exchange->body_length > 0) {
            ev.buffer_add(output, exchange->body, exchange->body_length);
        }
    }
    struct timeval idle = duration(exchange->idle_timeout > 0 ? exchange->idle_timeout : 86400);
    ev.connection_set_timeout_tv(connection->http, &idle);
    struct event *deadline = NULL, *connect_deadline = NULL;
    if (exchange->total_timeout > 0) {
        deadline = ev.event_new(connection->base, -1, 0, on_deadline, &state);
        struct timeval limit = duration(exchange->total_timeout);
        if (deadline) ev.event_add(deadline, &limit);
    }
    if (!connection->connected) {
        connect_deadline = ev.event_new(connection->base, -1, 0, on_connect_deadline, &state);
        struct timeval limit = duration(connection->connect_timeout);
        if (connect_deadline) ev.event_add(connect_deadline, &limit);
    }

    state.request = request;
    if (ev.make_request(connection->http, request, libevent_method(exchange->method), exchange->target) < 0) {
        state.request = NULL;
        exchange->error_number = errno;
        finish(&state, CML_EVENT_SEND_ERROR);
    }
    // 0: stopped by a callback; anything else (nothing left to wait for, an error) ends it too.
    while (!state.done && ev.base_loop(connection->base, 0) == 0) {}
    if (!state.done) finish(&state, CML_EVENT_CLOSED);
    if (deadline) ev.event_free(deadline);
    if (connect_deadline) ev.event_free(connect_deadline);
}

int cml_event_exchange(cml_event_connection *connection, struct cml_event_exchange *exchange) {
    // libevent writes without MSG_NOSIGNAL: a server that closed the connection would raise SIGPIPE, which
    // stays blocked on this thread while it sends, and is taken back if it was raised here.
    sigset_t pipe_signal, previous, pending;
    sigemptyset(&pipe_signal);
    sigaddset(&pipe_signal, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_signal, &previous);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);

    exchange_once(connection, exchange);
    for (;;) {
        // Closed with no answer on a connection never known to be made: a connect that failed, when the
        // address refuses a second try too. When that one is accepted, the first may have reached the
        // server, so it is a closed connection, not sent again.
        if (exchange->failure == CML_EVENT_CLOSED && !exchange->answered && !connection->connected) {
            int error = connect_error(connection->addresses[connection->address], connection->port, connection->connect_timeout);
            if (error) {
                exchange->failure = CML_EVENT_CONNECT_FAILED;
                exchange->error_number = error;
            }
        }
        if (exchange->failure != CML_EVENT_CONNECT_FAILED || connection->address + 1 >= connection->address_count) break;
        connection->address++;
        if (open_http(connection) < 0) break;
        exchange_once(connection, exchange);
    }

    sigpending(&pending);
    if (!was_pending && sigismember(&pending, SIGPIPE)) {
        struct timespec now = {0, 0};
        sigtimedwait(&pipe_signal, NULL, &now);
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);

    if (exchange->failure != CML_EVENT_OK) connection->broken = 1;
    return exchange->failure == CML_EVENT_OK ? 0 : -1;
}
