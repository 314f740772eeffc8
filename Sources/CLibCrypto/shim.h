// SHA256_Init/Update/Final are deprecated since OpenSSL 3.0 in favour of EVP, but kept, and they run the
// same assembly without EVP's first-use cost (see SHA256Hasher): their deprecation warnings are off here.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
