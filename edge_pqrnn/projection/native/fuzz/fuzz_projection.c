/*
 * libFuzzer harness for the projection op: the options parser, the core projection,
 * the plain C entry points and the TFLite kernel, built with ASan + UBSan by
 * tools/fuzz.sh. Besides memory errors it traps on every broken promise of the API
 * (rows out of range, an output element left unwritten, a parser that accepts values
 * outside the documented ranges, a kernel that disagrees with the core).
 *
 * Input layout (fuzz_input.py states the same layout in Python, for the replay test and
 * for writing seeds; keep the two in step):
 *
 *   byte 0     flags: bit0 char_mode, bit1 add_bos, bit2 add_eos, bit3 lowercase,
 *              bits 4-5 target: 0 and 3 core, 1 unchecked struct, 2 TFLite kernel
 *   bytes 1-2  little-endian u16 -> feature_size F = 1 + v % 8192
 *   bytes 3-4  little-endian u16 -> max_tokens  T = markers + 1 + v % (4096 - markers)
 *              then F = min(F, max(1, BUDGET / T)), so one input stays fast
 *   byte 5     n: length of the raw custom options that follow
 *   6 .. 6+n   raw custom options (a flexbuffer, or anything), clipped to the input
 *   the rest   the text (target 2: a TFLite STRING tensor buffer)
 * Missing header bytes read as 0, so every input is meaningful.
 *
 * Every input: PQRNN_ParseOptions(raw options); when it accepts, the values must be in
 * range and the text is projected with them too (if T*F <= BUDGET).
 *   target 0/3: PQRNN_ProjectText(derived options, text).
 *   target 1:   PQRNN_ProjectText with a struct filled from the first 6 option bytes as
 *               signed ints (a hand-filled struct in an app): must return 0 and write
 *               nothing when the struct is out of range, else behave as target 0.
 *   target 2:   the registration from PQRNN_Register_PROJECTION() (init with the raw
 *               options, prepare, invoke) on a fake TfLiteContext whose input tensor is
 *               the text bytes as a STRING buffer; a well-formed buffer with valid
 *               options must succeed and match the core row for row.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../projection_core.h"
#include "../tflite_abi.h"

int PQRNN_ParseOptions(const uint8_t* buffer, size_t length, pqrnn_options* options, char* error);
int PQRNN_ProjectText(const pqrnn_options* options, const uint8_t* text, size_t length, float* features,
                      float* mask, float* pool_weights);
TfLiteRegistration* PQRNN_Register_PROJECTION(void);

/* Floats per projected text (T*F): keeps the zeroing of the outputs from dominating the
 * run time while still reaching F = 8192 (T = 1) and T = 4096 (F = 2). */
#define BUDGET 8192
#define HEADER 6
#define MAX_BATCH 64

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

/* Outputs are pre-filled with 0xff bytes, a NaN no code path produces: an element still
 * holding it after a call was never written, although the API promises every element.
 * (memset, not a loop: ASan checks it once instead of per element.) */
#define POISON_BYTE 0xff

static int is_poison(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u == 0xffffffffu;
}

static int options_in_range(const pqrnn_options* o) {
  int markers = o->add_bos + o->add_eos;
  return o->feature_size >= 1 && o->feature_size <= PQRNN_MAX_FEATURE_SIZE && o->char_mode >= 0 &&
         o->char_mode <= 1 && o->add_bos >= 0 && o->add_bos <= 1 && o->add_eos >= 0 && o->add_eos <= 1 &&
         o->lowercase >= 0 && o->lowercase <= 1 && o->max_tokens > markers && o->max_tokens <= PQRNN_MAX_TOKENS;
}

/* The promises of pqrnn_project_text for one text: rows in [markers or 1, T], ternary
 * features, mask and pool weights exactly as documented, zeros past the rows. */
static void check_rows(const pqrnn_options* o, int rows, const float* features, const float* mask,
                       const float* pool) {
  const int T = o->max_tokens, F = o->feature_size;
  int min_rows = o->add_bos + o->add_eos;
  CHECK(rows >= (min_rows ? min_rows : 1) && rows <= T);
  const float weight = 1.0f / (float)rows;
  for (int t = 0; t < T; t++) {
    CHECK(mask[t] == (t < rows ? 1.0f : 0.0f));
    CHECK(pool[t] == (t < rows ? weight : 0.0f));
    for (int f = 0; f < F; f++) {
      float v = features[(size_t)t * F + f];
      CHECK(!is_poison(v) && (v == 0.0f || (t < rows && (v == 1.0f || v == -1.0f))));
    }
  }
}

/* Projects with `o` into poisoned, exactly sized heap buffers (ASan sees any overflow)
 * and checks the result. Returns the row count. */
static int project_checked(const pqrnn_options* o, const uint8_t* text, size_t length) {
  const size_t T = (size_t)o->max_tokens, F = (size_t)o->feature_size;
  float* features = malloc(sizeof(float) * T * F);
  float* mask = malloc(sizeof(float) * T);
  float* pool = malloc(sizeof(float) * T);
  CHECK(features && mask && pool);
  memset(features, POISON_BYTE, sizeof(float) * T * F);
  memset(mask, POISON_BYTE, sizeof(float) * T);
  memset(pool, POISON_BYTE, sizeof(float) * T);
  int rows = PQRNN_ProjectText(o, text, length, features, mask, pool);
  check_rows(o, rows, features, mask, pool);
  free(features);
  free(mask);
  free(pool);
  return rows;
}

/* ------------------------------------------------------------ target 1 */

static int32_t signed_byte(const uint8_t* raw, size_t n, size_t i) { return i < n ? (int8_t)raw[i] : 0; }

static void fuzz_unchecked_struct(const uint8_t* raw, size_t n, const uint8_t* text, size_t length) {
  pqrnn_options o = {signed_byte(raw, n, 0), signed_byte(raw, n, 1), signed_byte(raw, n, 2),
                     signed_byte(raw, n, 3), signed_byte(raw, n, 4), signed_byte(raw, n, 5)};
  if (options_in_range(&o)) {
    project_checked(&o, text, length);
    return;
  }
  /* Out of range: the call must not touch its outputs at all (zero-sized buffers, so
   * ASan reports any write). */
  float* none = malloc(1);
  CHECK(none);
  CHECK(PQRNN_ProjectText(&o, text, length, none, none, none) == 0);
  free(none);
}

/* ------------------------------------------------------------ target 2 */

static TfLiteIntArray* make_array(int size, const int* values) {
  TfLiteIntArray* a = malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)size);
  CHECK(a);
  a->size = size;
  for (int i = 0; i < size; i++) a->data[i] = values[i];
  return a;
}

/* Like TFLite's arena: a tensor resized to 0 bytes has no data pointer at all. */
static TfLiteStatus fake_resize(TfLiteContext* context, TfLiteTensor* t, TfLiteIntArray* dims) {
  (void)context;
  size_t count = 1;
  for (int i = 0; i < dims->size; i++) {
    CHECK(dims->data[i] >= 0);
    count *= (size_t)dims->data[i];
  }
  free(t->dims);
  free(t->data.raw);
  t->dims = dims;
  t->bytes = count * 4; /* every output is float32 or int32 */
  t->data.raw = count ? malloc(t->bytes) : NULL;
  if (count) memset(t->data.raw, POISON_BYTE, t->bytes);
  return kTfLiteOk;
}

static void fake_report(TfLiteContext* context, const char* format, ...) {
  (void)context;
  (void)format;
}

static int32_t read_le32(const uint8_t* p) {
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* Whether `buf` is a STRING buffer a runtime could hand us: count, count+1 ordered
 * offsets inside the buffer. Stricter than the kernel needs (it must accept these). */
static int well_formed_strings(const uint8_t* buf, size_t n, int count) {
  if (n < 4 || read_le32(buf) != count || (size_t)count + 2 > n / 4) return 0;
  for (int b = 0; b <= count; b++) {
    int32_t at = read_le32(buf + 4 + 4 * (size_t)b);
    if (at < 4 * (count + 2) || (size_t)at > n) return 0;
    if (b > 0 && at < read_le32(buf + 4 * (size_t)b)) return 0;
  }
  return 1;
}

static void fuzz_kernel(const uint8_t* raw, size_t n, const uint8_t* buf, size_t length) {
  /* The batch size the tensor shape claims: the buffer's own count when plausible (so
   * the fuzzer gets past the count check), else 1 (a mismatch the kernel must refuse). */
  int32_t count = length >= 4 ? read_le32(buf) : -1;
  const int B = count >= 0 && count <= MAX_BATCH ? count : 1;
  const int dims_b[1] = {B};
  TfLiteTensor tensors[5];
  memset(tensors, 0, sizeof(tensors));
  tensors[0].type = kTfLiteString;
  tensors[0].dims = make_array(1, dims_b);
  tensors[0].bytes = length;
  /* An exactly sized copy, so ASan catches a read past the STRING buffer. */
  tensors[0].data.raw = length ? malloc(length) : NULL;
  if (length) memcpy(tensors[0].data.raw, buf, length);
  for (int k = 1; k <= 3; k++) tensors[k].type = kTfLiteFloat32;
  tensors[4].type = kTfLiteInt32;

  TfLiteContext context;
  memset(&context, 0, sizeof(context));
  context.tensors_size = 5;
  context.tensors = tensors;
  context.ResizeTensor = fake_resize;
  context.ReportError = fake_report;

  const int in[1] = {0}, out[4] = {1, 2, 3, 4};
  TfLiteNode node;
  memset(&node, 0, sizeof(node));
  node.inputs = make_array(1, in);
  node.outputs = make_array(4, out);

  /* The options, too, in an exactly sized buffer of their own. */
  char* options = malloc(n ? n : 1);
  CHECK(options);
  memcpy(options, raw, n);
  TfLiteRegistration* reg = PQRNN_Register_PROJECTION();
  node.user_data = reg->init(&context, options, n);
  pqrnn_options parsed;
  char error[PQRNN_ERROR_SIZE];
  const int valid = PQRNN_ParseOptions((const uint8_t*)options, n, &parsed, error) == 0;
  TfLiteStatus prepared = reg->prepare(&context, &node);
  CHECK(prepared == (valid ? kTfLiteOk : kTfLiteError));
  const int small = valid && (size_t)B * (size_t)parsed.max_tokens * (size_t)parsed.feature_size <= 4 * BUDGET;
  if (prepared == kTfLiteOk && small) {
    TfLiteStatus invoked = reg->invoke(&context, &node);
    if (well_formed_strings(buf, length, B)) CHECK(invoked == kTfLiteOk);
    if (invoked == kTfLiteOk) {
      /* Row for row what the core gives for each string. */
      const size_t T = (size_t)parsed.max_tokens, F = (size_t)parsed.feature_size;
      float* features = malloc(sizeof(float) * T * F);
      float* mask = malloc(sizeof(float) * T);
      float* pool = malloc(sizeof(float) * T);
      CHECK(features && mask && pool);
      for (int b = 0; b < B; b++) {
        int32_t start = read_le32(buf + 4 + 4 * (size_t)b), end = read_le32(buf + 8 + 4 * (size_t)b);
        int rows = PQRNN_ProjectText(&parsed, buf + start, (size_t)(end - start), features, mask, pool);
        CHECK(tensors[4].data.i32[b] == rows);
        CHECK(!memcmp(tensors[1].data.f + (size_t)b * T * F, features, sizeof(float) * T * F));
        CHECK(!memcmp(tensors[2].data.f + (size_t)b * T, mask, sizeof(float) * T));
        CHECK(!memcmp(tensors[3].data.f + (size_t)b * T, pool, sizeof(float) * T));
        check_rows(&parsed, rows, features, mask, pool);
      }
      free(features);
      free(mask);
      free(pool);
    }
  }
  reg->free(&context, node.user_data);
  free(options);
  free(node.inputs);
  free(node.outputs);
  for (int k = 0; k < 5; k++) {
    free(tensors[k].dims);
    free(tensors[k].data.raw);
  }
}

/* ------------------------------------------------------------ entry */

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t h[HEADER];
  for (size_t i = 0; i < HEADER; i++) h[i] = i < size ? data[i] : 0;
  const size_t at = size < HEADER ? size : HEADER;
  const size_t n = h[5] < size - at ? h[5] : size - at;
  const uint8_t* text = data + at + n;
  const size_t length = size - at - n;

  pqrnn_options o;
  o.char_mode = h[0] & 1;
  o.add_bos = (h[0] >> 1) & 1;
  o.add_eos = (h[0] >> 2) & 1;
  o.lowercase = (h[0] >> 3) & 1;
  const int markers = o.add_bos + o.add_eos;
  o.feature_size = 1 + (h[1] | h[2] << 8) % PQRNN_MAX_FEATURE_SIZE;
  o.max_tokens = markers + 1 + (h[3] | h[4] << 8) % (PQRNN_MAX_TOKENS - markers);
  const int cap = BUDGET / o.max_tokens;
  if (o.feature_size > cap) o.feature_size = cap > 1 ? cap : 1;

  /* The parser on the raw options, from an exactly sized copy: a read past them would
   * otherwise land in the text and go unnoticed. */
  uint8_t* raw = malloc(n ? n : 1);
  CHECK(raw);
  memcpy(raw, data + at, n);
  char* error = malloc(PQRNN_ERROR_SIZE);
  CHECK(error);
  pqrnn_options parsed;
  if (PQRNN_ParseOptions(raw, n, &parsed, error) == 0) {
    CHECK(options_in_range(&parsed));
    if ((size_t)parsed.max_tokens * (size_t)parsed.feature_size <= BUDGET) project_checked(&parsed, text, length);
  } else {
    CHECK(error[0] != 0 && memchr(error, 0, PQRNN_ERROR_SIZE) != NULL); /* a message, terminated */
  }
  free(error);

  switch ((h[0] >> 4) & 3) {
    case 1:
      fuzz_unchecked_struct(raw, n, text, length);
      break;
    case 2:
      fuzz_kernel(raw, n, text, length);
      break;
    default:
      project_checked(&o, text, length);
  }
  free(raw);
  return 0;
}
