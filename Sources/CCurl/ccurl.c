#include "ccurl.h"
#include "csupport.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

// The functions used, resolved by name; variadic ones are called with exactly one argument of the type
// their option takes.
static struct {
    CURLcode (*global_init)(long flags);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} curl;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int loaded;
static char load_error[512];

static void load(void) {
    static const char *const symbols[] = {
        "curl_global_init", "curl_easy_init", "curl_easy_cleanup", "curl_easy_reset", "curl_easy_perform",
        "curl_easy_strerror", "curl_easy_setopt", "curl_easy_getinfo", "curl_slist_append", "curl_slist_free_all",
    };
    void **const destinations[] = {
        (void **)&curl.global_init, (void **)&curl.easy_init, (void **)&curl.easy_cleanup, (void **)&curl.easy_reset,
        (void **)&curl.easy_perform, (void **)&curl.easy_strerror, (void **)&curl.easy_setopt, (void **)&curl.easy_getinfo,
        (void **)&curl.slist_append, (void **)&curl.slist_free_all,
    };
    _Static_assert(sizeof symbols / sizeof *symbols == sizeof destinations / sizeof *destinations, "a symbol for each function");
    if (!cml_load_library("CML_LIBCURL", "libcurl.so.4", "libcurl4", symbols, destinations, sizeof symbols / sizeof *symbols,
                          load_error, sizeof load_error)) {
        return;
    }
    CURLcode code = curl.global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        snprintf(load_error, sizeof load_error, "cannot initialise libcurl: %s", curl.easy_strerror(code));
        return;
    }
    loaded = 1;
}

const char *cml_curl_load(void) {
    pthread_once(&load_once, load);
    return loaded ? NULL : load_error;
}

CURL *cml_curl_easy_init(void) { return curl.easy_init(); }
void cml_curl_easy_cleanup(CURL *handle) { curl.easy_cleanup(handle); }
void cml_curl_easy_reset(CURL *handle) { curl.easy_reset(handle); }
CURLcode cml_curl_easy_perform(CURL *handle) { return curl.easy_perform(handle); }
const char *cml_curl_easy_strerror(CURLcode code) { return curl.easy_strerror(code); }

CURLcode cml_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl.easy_setopt(handle, option, value);
}

CURLcode cml_curl_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl.easy_setopt(handle, option, value);
}

CURLcode cml_curl_setopt_pointer(CURL *handle, CURLoption option, const void *value) {
    return curl.easy_setopt(handle, option, value);
}

CURLcode cml_curl_setopt_transfer_callback(CURL *handle, CURLoption option, curl_write_callback callback) {
    return curl.easy_setopt(handle, option, callback);
}

CURLcode cml_curl_setopt_seek_callback(CURL *handle, curl_seek_callback callback) {
    return curl.easy_setopt(handle, CURLOPT_SEEKFUNCTION, callback);
}

CURLcode cml_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl.easy_getinfo(handle, info, value);
}

struct curl_slist *cml_curl_slist_append(struct curl_slist *list, const char *string) {
    return curl.slist_append(list, string);
}

void cml_curl_slist_free_all(struct curl_slist *list) { curl.slist_free_all(list); }
