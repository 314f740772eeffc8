// CRC-32C (Castagnoli): the checksum a manifest keeps beside each file's sha256, so that checkout can
// verify what it writes at memory speed. On x86-64 it runs on the SSE4.2 crc32 instruction in three
// interleaved streams (the instruction's latency is three times its throughput), joined by GF(2)
// arithmetic; elsewhere, one table lookup per byte.
#include "csupport.h"
#include <pthread.h>
#include <stdint.h>
#include <string.h>

// The Castagnoli polynomial, bit-reflected: bit 31 holds x^0, bit 0 holds x^31.
#define CRC32C_POLYNOMIAL 0x82F63B78u

// a * b modulo the polynomial, both bit-reflected.
static uint32_t multiply_modulo(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (int power = 0; power < 32; power++) {
        if (a & (0x80000000u >> power)) product ^= b;
        b = (b >> 1) ^ ((b & 1) ? CRC32C_POLYNOMIAL : 0);  // b * x
    }
    return product;
}

// x^exponent modulo the polynomial, by repeated squaring.
static uint32_t power_of_x(uint64_t exponent) {
    uint32_t result = 0x80000000u, square = 0x40000000u;  // x^0, x^1
    for (; exponent; exponent >>= 1) {
        if (exponent & 1) result = multiply_modulo(result, square);
        square = multiply_modulo(square, square);
    }
    return result;
}

// With the initial and final inversions, crc(A B) = crc(A) * x^(8|B|) xor crc(B): the inversions of
// the two sides cancel.
uint32_t cml_crc32c_combine(uint32_t first, uint32_t second, uint64_t second_length) {
    return multiply_modulo(first, power_of_x(8 * second_length)) ^ second;
}

static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;
static void fill_table(void) {
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ ((crc & 1) ? CRC32C_POLYNOMIAL : 0);
        table[byte] = crc;
    }
}

// The register after `length` more bytes (no inversion here).
static uint32_t update_software(uint32_t crc, const unsigned char *bytes, size_t length) {
    pthread_once(&table_once, fill_table);
    while (length--) crc = table[(crc ^ *bytes++) & 0xFF] ^ (crc >> 8);
    return crc;
}

uint32_t cml_crc32c_software(uint32_t crc, const void *data, size_t length) {
    return ~update_software(~crc, data, length);
}

#if defined(__x86_64__)
#include <nmmintrin.h>

// Three streams of `stream` bytes each, as long as `length` holds them: `first` carries the register in,
// the two others start from 0 and are joined to it (the shift constant moves a register past one stream).
__attribute__((target("sse4.2")))
static uint64_t three_streams(uint64_t first, const unsigned char **bytes, size_t *length, size_t stream,
                              uint32_t *cached_shift) {
    if (*length < 3 * stream) return first;
    uint32_t shift = __atomic_load_n(cached_shift, __ATOMIC_RELAXED);
    if (shift == 0) {  // never 0 once computed: the polynomial does not divide x^n
        shift = power_of_x(8 * (uint64_t)stream);
        __atomic_store_n(cached_shift, shift, __ATOMIC_RELAXED);
    }
    const unsigned char *at = *bytes;
    size_t left = *length;
    while (left >= 3 * stream) {
        uint64_t second = 0, third = 0;
        for (size_t offset = 0; offset < stream; offset += 8) {
            uint64_t a, b, c;
            memcpy(&a, at + offset, 8);
            memcpy(&b, at + stream + offset, 8);
            memcpy(&c, at + 2 * stream + offset, 8);
            first = _mm_crc32_u64(first, a);
            second = _mm_crc32_u64(second, b);
            third = _mm_crc32_u64(third, c);
        }
        // Linearity: crc(r, A B) = crc(r, A) * x^(8|B|) xor crc(0, B).
        first = multiply_modulo((uint32_t)first, shift) ^ (uint32_t)second;
        first = multiply_modulo((uint32_t)first, shift) ^ (uint32_t)third;
        at += 3 * stream;
        left -= 3 * stream;
    }
    *bytes = at;
    *length = left;
    return first;
}

__attribute__((target("sse4.2")))
static uint32_t update_hardware(uint32_t crc, const unsigned char *bytes, size_t length) {
    // Long streams while the data lasts, then short ones (joining costs about as much as 1 KiB of
    // crc32 instructions, so shorter streams would not pay), then one stream for the rest.
    static uint32_t shift_long, shift_short;
    uint64_t first = crc;
    first = three_streams(first, &bytes, &length, 4096, &shift_long);
    first = three_streams(first, &bytes, &length, 1024, &shift_short);
    for (; length >= 8; bytes += 8, length -= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        first = _mm_crc32_u64(first, word);
    }
    uint32_t rest = (uint32_t)first;
    for (; length; bytes++, length--) rest = _mm_crc32_u8(rest, *bytes);
    return rest;
}

uint32_t cml_crc32c(uint32_t crc, const void *data, size_t length) {
    static int hardware = -1;
    int known = __atomic_load_n(&hardware, __ATOMIC_RELAXED);
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        __atomic_store_n(&hardware, known, __ATOMIC_RELAXED);
    }
    return ~(known ? update_hardware(~crc, data, length) : update_software(~crc, data, length));
}
#else
uint32_t cml_crc32c(uint32_t crc, const void *data, size_t length) {
    return cml_crc32c_software(crc, data, length);
}
#endif
