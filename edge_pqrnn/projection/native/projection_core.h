/*
 * The pQRNN text projection, free of the C and C++ standard libraries (only the
 * compiler's freestanding headers), so one source builds for x86_64 and aarch64 Linux
 * and for Android. The spec is docs/projection.md; the numpy reference is
 * edge_pqrnn/projection/reference.py, and the two are tested bit-exact.
 */
#ifndef PQRNN_PROJECTION_CORE_H_
#define PQRNN_PROJECTION_CORE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PQRNN_SPEC_VERSION 1
#define PQRNN_MAX_FEATURE_SIZE 8192
#define PQRNN_MAX_TOKENS 4096
#define PQRNN_ERROR_SIZE 256

typedef struct pqrnn_options {
  int feature_size; /* F: features per token row */
  int max_tokens;   /* T: rows per text, markers included */
  int char_mode;    /* 0: word tokens, 1: one token per character */
  int add_bos;
  int add_eos;
  int lowercase;
} pqrnn_options;

/* Parses and validates the op's flexbuffer custom options. Returns 0 on success; on
 * failure returns -1 and writes a message into error[PQRNN_ERROR_SIZE]. The optional
 * "dynamic_tokens" key is checked and not returned (see pqrnn_parse_op_options). */
int pqrnn_parse_options(const uint8_t* buffer, size_t length, pqrnn_options* options, char* error);

/* The same for the TFLite op, whose options may also hold "dynamic_tokens" (0 or 1,
 * default 0): 1 sizes the outputs to the longest text of the batch instead of T. */
int pqrnn_parse_op_options(const uint8_t* buffer, size_t length, pqrnn_options* options, int* dynamic_tokens,
                           char* error);

#define PQRNN_MAX_MAP_KEYS 16

/* Reads a flexbuffer map whose keys are exactly names[0..count) with integer or boolean
 * values into values[]. Returns 0, or -1 with a message in error[PQRNN_ERROR_SIZE]
 * (unknown, missing or non-integer key, corrupt buffer). Shared by every op's options. */
int pqrnn_read_int_map(const uint8_t* buffer, size_t length, const char* const* names, int count,
                       int64_t* values, char* error);

/* The same where only names[0..required) must be present; a missing optional key leaves
 * its value untouched. */
int pqrnn_read_int_map_optional(const uint8_t* buffer, size_t length, const char* const* names, int count,
                                int required, int64_t* values, char* error);

/* The kind of a token row (third value of each row of pqrnn_token_rows). */
#define PQRNN_ROW_TEXT 0 /* a token of the text */
#define PQRNN_ROW_BOS 1
#define PQRNN_ROW_EOS 2
#define PQRNN_ROW_NULL 3 /* the one row of a text without tokens */

/* The token rows pqrnn_project_text() makes, without hashing: for row r, spans[3r] and
 * spans[3r+1] are its byte offsets [start, end) in text (start = end for markers) and
 * spans[3r+2] its PQRNN_ROW_* kind. Writes at most max_rows rows; returns the row count
 * (exact either way; at most options->max_tokens). The one tokenizer of the C side. */
int pqrnn_token_rows(const pqrnn_options* options, const uint8_t* text, size_t length, int32_t* spans,
                     int max_rows);

/* Projects one UTF-8 text (invalid bytes are dropped) into T rows:
 * features[T*F], mask[T], pool_weights[T] (all fully written, zero past the tokens).
 * Returns the number of token rows (>= 1). */
int pqrnn_project_text(const pqrnn_options* options, const uint8_t* text, size_t length,
                       float* features, float* mask, float* pool_weights);

#ifdef __cplusplus
}
#endif
#endif /* PQRNN_PROJECTION_CORE_H_ */
