/* What every C file of the op library shares: the exported-symbol macro, the custom op
 * names and ONNX domain (the Python side defines the same strings once, in
 * edge_pqrnn/format.py; tests/test_architecture.py checks that they agree), and the small
 * integer helpers of the int8 kernels (fo_pool.c, int_matmul.c). Freestanding: no libc. */
#ifndef PQRNN_COMMON_H_
#define PQRNN_COMMON_H_

#include <stdint.h>

#include "projection_core.h"

#if defined(_WIN32)
#define PQRNN_EXPORT __declspec(dllexport)
#else
#define PQRNN_EXPORT __attribute__((visibility("default")))
#endif

#define PQRNN_PROJECTION_OP "EdgePqrnnProjection"
#define PQRNN_FO_POOL_OP "EdgePqrnnFoPool"
#define PQRNN_INT_MATMUL_OP "EdgePqrnnIntMatMul"
#define PQRNN_DEQUANTIZE_OP "EdgePqrnnDequantize"
#define PQRNN_QUANTIZE_OP "EdgePqrnnQuantize"
#define PQRNN_ORT_DOMAIN "ai.edge_pqrnn"

/* Append s to the error buffer (PQRNN_ERROR_SIZE bytes, always NUL-terminated). */
static inline void pqrnn_put(char* error, int* pos, const char* s) {
  while (*s && *pos < PQRNN_ERROR_SIZE - 1) error[(*pos)++] = *s++;
  error[*pos] = 0;
}

/* Round half away from zero, on doubles only (exact IEEE operations on every ISA). */
static inline int64_t pqrnn_round_away(double x) { return x >= 0 ? (int64_t)(x + 0.5) : -(int64_t)(-x + 0.5); }

/* A quantization scale the kernels accept: finite and > 0 (also rejects NaN). */
static inline int pqrnn_scale_ok(float s) { return s > 0.0f && s < 3.0e38f; }

/* The fixed-point form of a real multiplier m > 0: *mq in [2^(bits-1), 2^bits) and the
 * returned shift n with mq 2^-n = m (rounded half away). Scaling by 2 is exact in double,
 * so every ISA gets the same (mq, n); the caller checks n's range. */
static inline int pqrnn_fixed_point(double m, int bits, int64_t* mq) {
  const double low = (double)((int64_t)1 << (bits - 1)), high = (double)((int64_t)1 << bits);
  int n = 0;
  while (m < low && n < 200) m *= 2.0, n++;
  while (m >= high && n > -200) m *= 0.5, n--;
  *mq = pqrnn_round_away(m);
  if (*mq == ((int64_t)1 << bits)) *mq = (int64_t)1 << (bits - 1), n--;
  return n;
}

#endif /* PQRNN_COMMON_H_ */
