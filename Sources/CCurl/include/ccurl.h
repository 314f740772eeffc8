// libcurl, loaded at run time: <curl/curl.h> gives the types and constants, and these wrappers call
// the library through dlopen/dlsym, so that no executable links libcurl and a run against a local store
// loads none of it (libcurl and its TLS, compression and IDN libraries cost milliseconds at each start).
// The wrappers are not variadic, so Swift can call them.
#pragma once
#include <curl/curl.h>

/// Loads libcurl once per process (thread-safe) and calls curl_global_init: `$CML_LIBCURL`, else
/// "libcurl.so.4". NULL when it is loaded; else why not, as one line. Call it before any other function
/// here.
const char *cml_curl_load(void);

CURL *cml_curl_easy_init(void);
void cml_curl_easy_cleanup(CURL *handle);
/// Forgets every option set on `handle`; its connections, DNS and TLS session caches stay.
void cml_curl_easy_reset(CURL *handle);
CURLcode cml_curl_easy_perform(CURL *handle);
const char *cml_curl_easy_strerror(CURLcode code);

CURLcode cml_curl_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode cml_curl_setopt_off(CURL *handle, CURLoption option, curl_off_t value);
/// A string (libcurl copies it), a list, or the user data pointer given to a callback.
CURLcode cml_curl_setopt_pointer(CURL *handle, CURLoption option, const void *value);
/// CURLOPT_WRITEFUNCTION, CURLOPT_HEADERFUNCTION and CURLOPT_READFUNCTION take this one signature.
CURLcode cml_curl_setopt_transfer_callback(CURL *handle, CURLoption option, curl_write_callback callback);
/// CURLOPT_SEEKFUNCTION.
CURLcode cml_curl_setopt_seek_callback(CURL *handle, curl_seek_callback callback);

CURLcode cml_curl_getinfo_long(CURL *handle, CURLINFO info, long *value);

struct curl_slist *cml_curl_slist_append(struct curl_slist *list, const char *string);
void cml_curl_slist_free_all(struct curl_slist *list);
