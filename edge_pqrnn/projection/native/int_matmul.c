/* int8 matrix products in integers; see int_matmul.h. No libc, no floating point in the loop. */
#if defined(__GNUC__) && !defined(__clang__)
/* GCC's -O2 cost model ("very-cheap") vectorises no loop whose trip count is unknown,
 * which leaves the dot products scalar (4.5x slower, measured); its usual cost model
 * vectorises them. Clang vectorises them at -O2 as it is. Integer code: no bit changes. */
#pragma GCC optimize("vect-cost-model=dynamic")
#endif
#include "int_matmul.h"

#include "pqrnn_common.h"

static const char* const kMatmulOptionNames[] = {"version", "kind", "activation"};

int pqrnn_matmul_parse_options(const uint8_t* buffer, size_t length, pqrnn_matmul_options* options, char* error) {
  int64_t values[3];
  int pos = 0;
  if (pqrnn_read_int_map(buffer, length, kMatmulOptionNames, 3, values, error)) return -1;
  if (values[0] != PQRNN_INT_MATMUL_VERSION) {
    pqrnn_put(error, &pos, "unsupported version of the int-matmul options (this op library implements version 1); "
                     "use a matching edge-pqrnn op library or re-export the model");
    return -1;
  }
  if (values[1] != PQRNN_MATMUL_FULLY_CONNECTED && values[1] != PQRNN_MATMUL_CONV_2D) {
    pqrnn_put(error, &pos, "custom option 'kind' must be 0 (fully connected) or 1 (conv 2-D)");
    return -1;
  }
  if (values[2] < PQRNN_ACT_NONE || values[2] > PQRNN_ACT_RELU6) {
    pqrnn_put(error, &pos, "custom option 'activation' must be 0 (none), 1 (relu), 2 (relu_n1_to_1) or 3 (relu6)");
    return -1;
  }
  options->kind = (int)values[1];
  options->activation = (int)values[2];
  return 0;
}

static const char* const kDequantizeOptionNames[] = {"version"};

int pqrnn_dequantize_parse_options(const uint8_t* buffer, size_t length, char* error) {
  int64_t version;
  int pos = 0;
  if (pqrnn_read_int_map(buffer, length, kDequantizeOptionNames, 1, &version, error)) return -1;
  if (version != PQRNN_DEQUANTIZE_VERSION) {
    pqrnn_put(error, &pos, "unsupported version of the dequantize options (this op library implements version 1); "
                     "use a matching edge-pqrnn op library or re-export the model");
    return -1;
  }
  return 0;
}

int pqrnn_quantize_parse_options(const uint8_t* buffer, size_t length, char* error) {
  return pqrnn_dequantize_parse_options(buffer, length, error); /* the same {"version": 1} */
}

void pqrnn_quantize_run(const float* x, int8_t* out, size_t count, float scale, int32_t zero) {
  for (size_t i = 0; i < count; i++) {
    const float r = x[i] / scale; /* one correctly rounded float division */
    const double d = (double)r;   /* exact */
    int64_t q;
    if (!(d == d)) q = 0;
    else if (d > 1e6) q = 1000000;
    else if (d < -1e6) q = -1000000;
    else q = pqrnn_round_away(d);
    q += zero;
    out[i] = (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
  }
}

void pqrnn_dequantize_run(const int8_t* q, float* out, size_t count, int32_t zero, float scale) {
  for (size_t i = 0; i < count; i++) out[i] = (float)((int32_t)q[i] - zero) * scale; /* exact int -> float */
}

/* TFLite's quantize(f) of an activation bound: zero + round(f / scale), the division in
 * float as TFLite does it, rounded half away from zero; saturated far outside int8. */
static int32_t quantize_bound(float f, float scale, int32_t zero) {
  const double q = (double)(f / scale);
  if (q > 1024.0) return 1024;
  if (q < -1024.0) return -1024;
  return zero + (int32_t)pqrnn_round_away(q);
}

int pqrnn_matmul_params_init(float x_scale, int32_t x_zero, const float* w_scales, int w_scale_count,
                             const int8_t* w, int channels, int per_channel, const int32_t* bias, float out_scale,
                             int32_t out_zero, int activation, pqrnn_matmul_channel* channel, int32_t* act_min,
                             int32_t* act_max, char* error) {
  int pos = 0;
  error[0] = 0;
  if (!pqrnn_scale_ok(x_scale) || !pqrnn_scale_ok(out_scale)) {
    pqrnn_put(error, &pos, "the input and output need a finite scale > 0 (int8 quantization)");
    return -1;
  }
  if (x_zero < -128 || x_zero > 127 || out_zero < -128 || out_zero > 127) {
    pqrnn_put(error, &pos, "zero points must lie in -128..127 (int8)");
    return -1;
  }
  if (w_scale_count != 1 && w_scale_count != channels) {
    pqrnn_put(error, &pos, "the weights need one scale, or one per output channel");
    return -1;
  }
  if (per_channel < 1 || per_channel > PQRNN_MATMUL_MAX_DEPTH) {
    pqrnn_put(error, &pos, "the weights must have 1..65536 values per output channel");
    return -1;
  }
  for (int n = 0; n < channels; n++) {
    const float ws = w_scales[w_scale_count == 1 ? 0 : n];
    if (!pqrnn_scale_ok(ws)) {
      pqrnn_put(error, &pos, "every weight scale must be finite and > 0");
      return -1;
    }
    /* m 2^-s = x_scale w_scale / out_scale with m in [2^30, 2^31); scaling by 2 is exact. */
    int64_t mq;
    const int s = pqrnn_fixed_point((double)x_scale * (double)ws / (double)out_scale, 31, &mq);
    if (s < 1) {
      pqrnn_put(error, &pos, "the output scale is too small for the input and weight scales (their ratio must stay below 2^30)");
      return -1;
    }
    /* |acc| < 2^32 and m < 2^31: a shift past 62 leaves only the rounding of 0. */
    channel[n].multiplier = s > 62 ? 0 : mq;
    channel[n].shift = s > 62 ? 62 : s;
    int64_t sum = 0;
    const int8_t* row = w + (size_t)n * (size_t)per_channel;
    for (int i = 0; i < per_channel; i++) sum += row[i];
    channel[n].bias = (bias ? (int64_t)bias[n] : 0) - (int64_t)x_zero * sum;
  }
  int32_t lo = -128, hi = 127;
  if (activation == PQRNN_ACT_RELU || activation == PQRNN_ACT_RELU6) {
    const int32_t z = quantize_bound(0.0f, out_scale, out_zero);
    lo = z > lo ? z : lo;
  }
  if (activation == PQRNN_ACT_RELU6) {
    const int32_t six = quantize_bound(6.0f, out_scale, out_zero);
    hi = six < hi ? six : hi;
  }
  if (activation == PQRNN_ACT_RELU_N1_TO_1) {
    const int32_t a = quantize_bound(-1.0f, out_scale, out_zero), b = quantize_bound(1.0f, out_scale, out_zero);
    lo = a > lo ? a : lo;
    hi = b < hi ? b : hi;
  }
  *act_min = lo;
  *act_max = hi;
  return 0;
}

/* acc m 2^-s rounded half away from zero: floor((p + 2^(s-1) - [p < 0]) / 2^s). >> on a
 * negative int64 is arithmetic in GCC and Clang on every target we build for. */
static int32_t requantize(int64_t acc, const pqrnn_matmul_channel* c, int32_t zero, int32_t lo, int32_t hi) {
  const int64_t p = acc * c->multiplier;
  const int64_t q = zero + ((p + ((int64_t)1 << (c->shift - 1)) - (p < 0)) >> c->shift);
  return (int32_t)(q < lo ? lo : q > hi ? hi : q);
}

/* Four dot products of len values sharing the weight row w: r[j] = sum_i xj[i] w[i].
 * Plain reductions over contiguous int16 x int8 into int32: the vectorisers turn them
 * into widening multiply-adds (pmaddwd on x86, smlal on ARM); integer sums are exact in
 * any order, so the vector width changes no bit. x is widened to int16 once per call
 * (not once per output channel): 2-3x faster than int8 x int8 here, measured. */
static void dot4(const int16_t* x0, const int16_t* x1, const int16_t* x2, const int16_t* x3, const int8_t* w,
                 int len, int32_t r[4]) {
  int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (int i = 0; i < len; i++) {
    const int16_t wv = w[i];
    s0 += x0[i] * wv, s1 += x1[i] * wv, s2 += x2[i] * wv, s3 += x3[i] * wv;
  }
  r[0] = s0, r[1] = s1, r[2] = s2, r[3] = s3;
}

static int32_t dot1(const int16_t* x, const int8_t* w, int len) {
  int32_t s = 0;
  for (int i = 0; i < len; i++) s += x[i] * (int16_t)w[i];
  return s;
}

void pqrnn_matmul_run(const pqrnn_matmul_geometry* g, const pqrnn_matmul_channel* channel, const int8_t* x8,
                      const int8_t* w, int8_t* out, int32_t out_zero, int32_t act_min, int32_t act_max,
                      int16_t* scratch) {
  const size_t total = (size_t)g->batch * (size_t)g->height * (size_t)g->width * (size_t)g->depth;
  for (size_t i = 0; i < total; i++) scratch[i] = x8[i];
  const int16_t* x = scratch;
  const int out_h = g->height - g->kernel_h + 1, out_w = g->width - g->kernel_w + 1;
  const int N = g->channels, row_len = g->kernel_w * g->depth; /* one contiguous window row */
  const size_t x_row = (size_t)g->width * (size_t)g->depth;   /* one input row of x */
  const size_t w_len = (size_t)g->kernel_h * (size_t)row_len; /* one output channel of w */
  for (int b = 0; b < g->batch; b++) {
    for (int oh = 0; oh < out_h; oh++) {
      const int16_t* xb = x + ((size_t)b * (size_t)g->height + (size_t)oh) * x_row;
      int8_t* ob = out + ((size_t)b * (size_t)out_h + (size_t)oh) * (size_t)out_w * (size_t)N;
      int ow = 0;
      /* Four output pixels at a time: each weight row is read once for the four. */
      for (; ow + 4 <= out_w; ow += 4) {
        const int16_t* xp = xb + (size_t)ow * (size_t)g->depth;
        for (int n = 0; n < N; n++) {
          int64_t acc[4] = {channel[n].bias, channel[n].bias, channel[n].bias, channel[n].bias};
          for (int kh = 0; kh < g->kernel_h; kh++) {
            const int16_t* xr = xp + (size_t)kh * x_row;
            int32_t r[4];
            dot4(xr, xr + g->depth, xr + 2 * (size_t)g->depth, xr + 3 * (size_t)g->depth,
                 w + (size_t)n * w_len + (size_t)kh * (size_t)row_len, row_len, r);
            for (int j = 0; j < 4; j++) acc[j] += r[j];
          }
          for (int j = 0; j < 4; j++)
            ob[(size_t)(ow + j) * (size_t)N + (size_t)n] =
                (int8_t)requantize(acc[j], &channel[n], out_zero, act_min, act_max);
        }
      }
      for (; ow < out_w; ow++) {
        const int16_t* xp = xb + (size_t)ow * (size_t)g->depth;
        for (int n = 0; n < N; n++) {
          int64_t acc = channel[n].bias;
          for (int kh = 0; kh < g->kernel_h; kh++)
            acc += dot1(xp + (size_t)kh * x_row, w + (size_t)n * w_len + (size_t)kh * (size_t)row_len, row_len);
          ob[(size_t)ow * (size_t)N + (size_t)n] = (int8_t)requantize(acc, &channel[n], out_zero, act_min, act_max);
        }
      }
    }
  }
}
