/*
 * int8 matrix products as one op (EdgePqrnnIntMatMul), in integer arithmetic only, with
 * one rounding rule, so x86_64 and aarch64 (and any runtime) give the same bits. It
 * stands in for the builtin int8 FULLY_CONNECTED and CONV_2D of a portable artifact
 * (`export --portable-kernels`): tflite-runtime's builtin kernels round exact
 * requantisation ties of negative values differently on x86 and ARM. Freestanding.
 *
 *   acc[p, n] = bias[n] + sum_i (x[p, i] - x_zero) w[n, i]          (int32 products)
 *   out[p, n] = clamp(out_zero + round(acc[p, n] m_n 2^-s_n), act_min, act_max)
 *
 * where m_n 2^-s_n (m_n a Q31 multiplier in [2^30, 2^31)) is the double
 * x_scale w_scale[n] / out_scale, round() is half away from zero, done once on the exact
 * int64 product, and [act_min, act_max] is the int8 range narrowed by a fused RELU,
 * RELU_N1_TO_1 or RELU6 exactly as TFLite computes it. The numpy twin is
 * edge_pqrnn/projection/int_matmul.py (tested bit-exact); docs/matrix.md says why.
 *
 * Geometry: a VALID, stride-1, undilated 2-D convolution of x [B, H, W, C] (NHWC) with
 * w [N, KH, KW, C] (OHWI) into out [B, H-KH+1, W-KW+1, N]; a fully connected layer is the
 * same with H = W = KH = KW = 1 and C = K (x [rows, K], w [N, K]). A window row (KW C
 * values) is contiguous in x and in w, so the inner loop is a plain int8 dot product.
 */
#ifndef PQRNN_INT_MATMUL_H_
#define PQRNN_INT_MATMUL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PQRNN_INT_MATMUL_VERSION 1
enum { PQRNN_MATMUL_FULLY_CONNECTED = 0, PQRNN_MATMUL_CONV_2D = 1 };
/* TFLite's ActivationFunctionType codes the op accepts. */
enum { PQRNN_ACT_NONE = 0, PQRNN_ACT_RELU = 1, PQRNN_ACT_RELU_N1_TO_1 = 2, PQRNN_ACT_RELU6 = 3 };
/* K (values per output) at most 2^16: |x w| <= 2^14, so the int32 dot product cannot
 * overflow and |acc| < 2^32, |acc m| < 2^63 in int64. */
#define PQRNN_MATMUL_MAX_DEPTH 65536

typedef struct pqrnn_matmul_options {
  int kind;       /* PQRNN_MATMUL_* */
  int activation; /* PQRNN_ACT_* */
} pqrnn_matmul_options;

/* Per output channel: bias with the input zero point folded in, multiplier and shift. */
typedef struct pqrnn_matmul_channel {
  int64_t bias;       /* bias[n] - x_zero sum_i w[n, i] */
  int64_t multiplier; /* m_n in [2^30, 2^31), or 0 when the scale is below 2^-62 */
  int shift;          /* s_n in 1..62 */
} pqrnn_matmul_channel;

typedef struct pqrnn_matmul_geometry {
  int batch, height, width, depth;  /* x [B, H, W, C] */
  int kernel_h, kernel_w, channels; /* w [N, KH, KW, C] */
} pqrnn_matmul_geometry;

/* Parses the op's flexbuffer options {"version": 1, "kind": 0|1, "activation": 0..3}. */
int pqrnn_matmul_parse_options(const uint8_t* buffer, size_t length, pqrnn_matmul_options* options, char* error);

/* Fills channel[0..channels) and the clamp range from the tensors' quantization, the
 * constant weights w [channels, per_channel] and bias (may be NULL). w_scales holds 1
 * (per-tensor) or `channels` scales. Returns 0, or -1 with a message in
 * error[PQRNN_ERROR_SIZE]. Uses IEEE double arithmetic only (the same on every ISA). */
int pqrnn_matmul_params_init(float x_scale, int32_t x_zero, const float* w_scales, int w_scale_count,
                             const int8_t* w, int channels, int per_channel, const int32_t* bias, float out_scale,
                             int32_t out_zero, int activation, pqrnn_matmul_channel* channel, int32_t* act_min,
                             int32_t* act_max, char* error);

/* x, w, out as in the geometry above, row-major; scratch has room for B H W C int16
 * (x widened once). */
void pqrnn_matmul_run(const pqrnn_matmul_geometry* g, const pqrnn_matmul_channel* channel, const int8_t* x,
                      const int8_t* w, int8_t* out, int32_t out_zero, int32_t act_min, int32_t act_max,
                      int16_t* scratch);

/* EdgePqrnnDequantize, the portable artifact's int8 -> float32 output step:
 * out = (float)(q - zero) * scale, one IEEE float multiply (correctly rounded, the same on
 * every ISA; the runtimes' NEON paths compute q scale - zero scale with a fused
 * multiply-add on ARM and differ by an ulp). Options {"version": 1}. */
#define PQRNN_DEQUANTIZE_VERSION 1
int pqrnn_dequantize_parse_options(const uint8_t* buffer, size_t length, char* error);
void pqrnn_dequantize_run(const int8_t* q, float* out, size_t count, int32_t zero, float scale);

/* EdgePqrnnQuantize, the portable artifact's float32 -> int8 inputs:
 * out = clamp(round(x / scale) + zero), one IEEE float division and round half away from
 * zero (tflite-runtime's ARM path multiplies by 1 / scale and rounds otherwise: exact
 * ties such as pool weights 1/n land on other codes). NaN gives the zero point. Options
 * {"version": 1}. */
int pqrnn_quantize_parse_options(const uint8_t* buffer, size_t length, char* error);
void pqrnn_quantize_run(const float* x, int8_t* out, size_t count, float scale, int32_t zero);

#ifdef __cplusplus
}
#endif
#endif /* PQRNN_INT_MATMUL_H_ */
