/* fo-pooling in integers; see fo_pool.h. No libc, no floating point in the loop. */
#include "fo_pool.h"

#include "pqrnn_common.h"

/* x / 2^n rounded half up (n >= 1). >> on a negative int64 is arithmetic in GCC and
 * Clang on every target we build for; the numpy twin uses the same floor shift. */
static int64_t shift_round(int64_t x, int n) { return (x + ((int64_t)1 << (n - 1))) >> n; }


int pqrnn_fo_pool_params_init(float z_scale, int32_t z_zero, float k_scale, int32_t k_zero, float o_scale,
                              int32_t o_zero, float out_scale, int32_t out_zero, int reverse,
                              pqrnn_fo_pool_params* p, char* error) {
  int pos = 0;
  error[0] = 0;
  if (!pqrnn_scale_ok(z_scale) || !pqrnn_scale_ok(k_scale) || !pqrnn_scale_ok(o_scale) || !pqrnn_scale_ok(out_scale)) {
    pqrnn_put(error, &pos, "every tensor needs a finite scale > 0 (int8 per-tensor quantization)");
    return -1;
  }
  const int32_t zeros[4] = {z_zero, k_zero, o_zero, out_zero};
  for (int i = 0; i < 4; i++) {
    if (zeros[i] < -128 || zeros[i] > 127) {
      pqrnn_put(error, &pos, "zero points must lie in -128..127 (int8)");
      return -1;
    }
  }
  p->z_zero = z_zero, p->out_zero = out_zero, p->reverse = reverse ? 1 : 0;
  for (int q = -128; q < 128; q++) {
    int64_t g = pqrnn_round_away((double)k_scale * (double)(q - k_zero) * (double)PQRNN_FO_GATE_MAX);
    p->gate[q + 128] = (int32_t)(g > PQRNN_FO_GATE_MAX ? PQRNN_FO_GATE_MAX : g < 0 ? 0 : g);
  }
  /* multiplier m in [2^23, 2^24) and shift n with m 2^-n = the real multiplier; the
   * scaling by 2 is exact in double. */
  int64_t mq;
  const int n = pqrnn_fixed_point(((double)o_scale * (double)z_scale) /
                                       ((double)out_scale * (double)(1 << PQRNN_FO_STATE_BITS)), 24, &mq);
  if (n < 1) {
    pqrnn_put(error, &pos, "the output scale is too small for the inputs' scales (o_scale z_scale / out_scale must stay below 2^39)");
    return -1;
  }
  /* |o - o_zero| < 2^8, |c| < 2^24 and m < 2^24: a shift past 62 leaves only rounding. */
  p->out_multiplier = n > 62 ? 0 : mq;
  p->out_shift = n > 62 ? 63 : n;
  for (int q = -128; q < 128; q++) p->o_times_multiplier[q + 128] = (int64_t)(q - o_zero) * p->out_multiplier;
  return 0;
}

static const char* const kFoOptionNames[] = {"version", "reverse"};

int pqrnn_fo_pool_parse_options(const uint8_t* buffer, size_t length, int* reverse, char* error) {
  int64_t values[2];
  int pos = 0;
  if (pqrnn_read_int_map(buffer, length, kFoOptionNames, 2, values, error)) return -1;
  if (values[0] != PQRNN_FO_POOL_VERSION) {
    pqrnn_put(error, &pos, "unsupported version of the fo-pool options (this op library implements version 1); "
                     "use a matching edge-pqrnn op library or re-export the model");
    return -1;
  }
  if (values[1] != 0 && values[1] != 1) {
    pqrnn_put(error, &pos, "custom option 'reverse' must be a boolean");
    return -1;
  }
  *reverse = (int)values[1];
  return 0;
}

#define FO_CHUNK 256 /* units whose state lives on the stack at a time */

void pqrnn_fo_pool_run(const pqrnn_fo_pool_params* p, const int8_t* z, const int8_t* k, const int8_t* o,
                       int8_t* out, int batch, int steps, int hidden) {
  /* With out_shift 63 the multiplier is 0 and the table all zeros: q = out_zero. */
  const int shift = p->out_shift < 63 ? p->out_shift : 62;
  int64_t state[FO_CHUNK];
  for (int b = 0; b < batch; b++) {
    const size_t base = (size_t)b * (size_t)steps * (size_t)hidden;
    for (int u0 = 0; u0 < hidden; u0 += FO_CHUNK) {
      const int width = hidden - u0 < FO_CHUNK ? hidden - u0 : FO_CHUNK;
      for (int u = 0; u < width; u++) state[u] = 0;
      /* Steps outer, units inner: each step reads contiguous rows. */
      for (int i = 0; i < steps; i++) {
        const int t = p->reverse ? steps - 1 - i : i;
        const size_t row = base + (size_t)t * (size_t)hidden + (size_t)u0;
        const int8_t *zr = z + row, *kr = k + row, *orow = o + row;
        int8_t* hr = out + row;
        for (int u = 0; u < width; u++) {
          const int64_t target = (int64_t)((int32_t)zr[u] - p->z_zero) * ((int64_t)1 << PQRNN_FO_STATE_BITS);
          const int64_t c =
              state[u] + shift_round((int64_t)p->gate[(int32_t)kr[u] + 128] * (target - state[u]), PQRNN_FO_GATE_BITS);
          state[u] = c;
          const int64_t q = p->out_zero + shift_round(p->o_times_multiplier[(int32_t)orow[u] + 128] * c, shift);
          hr[u] = (int8_t)(q > 127 ? 127 : q < -128 ? -128 : q);
        }
      }
    }
  }
}
