/*
 * fo-pooling of one QRNN direction as one int8 op (EdgePqrnnFoPool), in integer
 * arithmetic only, so x86_64 and aarch64 (and any compiler that keeps C's integer
 * semantics) give the same bits. Freestanding, like the projection core.
 *
 *   c_t = c_{t-1} + k_t (z_t - c_{t-1}),  c = 0 before the first step,  h_t = o_t c_t
 *
 * over t = 0..T-1 (forward) or T-1..0 (reverse), per batch row and unit. The numpy twin
 * is edge_pqrnn/projection/fo_pool.py (tested bit-exact); docs/matrix.md says why.
 */
#ifndef PQRNN_FO_POOL_H_
#define PQRNN_FO_POOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PQRNN_FO_POOL_VERSION 1
/* The state c is kept in units of z_scale / 2^16; k as a Q24 fraction. */
#define PQRNN_FO_STATE_BITS 16
#define PQRNN_FO_GATE_BITS 24
/* k is a gate: clamped to [0, 1], so c stays between its old value and z (a convex
 * combination, rounding included), |c| <= 255 2^16, and no product leaves int64. */
#define PQRNN_FO_GATE_MAX (1 << PQRNN_FO_GATE_BITS)

typedef struct pqrnn_fo_pool_params {
  int32_t z_zero, out_zero;
  int32_t gate[256];      /* k of every int8 code (index q + 128), Q24, clamped to [0, 1] */
  int64_t out_multiplier; /* o_scale z_scale / (out_scale 2^16) = out_multiplier 2^-out_shift */
  int64_t o_times_multiplier[256]; /* (q - o_zero) out_multiplier for every int8 code q */
  int out_shift;          /* 1..62, or 63: the output is out_zero everywhere (a tiny multiplier) */
  int reverse;
} pqrnn_fo_pool_params;

/* Computes the integer parameters from the tensors' quantization. Returns 0, or -1 with
 * a message in error[PQRNN_ERROR_SIZE] (a scale that is not finite and > 0, or a zero
 * point outside int8). Uses IEEE double arithmetic only (the same on both ISAs). */
int pqrnn_fo_pool_params_init(float z_scale, int32_t z_zero, float k_scale, int32_t k_zero, float o_scale,
                              int32_t o_zero, float out_scale, int32_t out_zero, int reverse,
                              pqrnn_fo_pool_params* params, char* error);

/* Parses the op's flexbuffer options {"version": 1, "reverse": 0|1}. */
int pqrnn_fo_pool_parse_options(const uint8_t* buffer, size_t length, int* reverse, char* error);

/* z, k, o and out are [batch, steps, hidden] int8, row-major. */
void pqrnn_fo_pool_run(const pqrnn_fo_pool_params* params, const int8_t* z, const int8_t* k, const int8_t* o,
                       int8_t* out, int batch, int steps, int hidden);

#ifdef __cplusplus
}
#endif
#endif /* PQRNN_FO_POOL_H_ */
