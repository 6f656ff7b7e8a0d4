/*
 * The projection as an onnxruntime custom op, from the same core as the TFLite op
 * (projection_op.c). Load the library with SessionOptions.register_custom_ops_library()
 * (Python) or RegisterCustomOpsLibrary_V2 (C): RegisterCustomOps adds the domain
 * PQRNN_ORT_DOMAIN with two ops, EdgePqrnnProjection and EdgePqrnnFoPool (below).
 *
 * Op signature: input 0 STRING [B] (UTF-8; invalid bytes are dropped, as by the TFLite
 * op and the numpy reference); outputs float32 features [B, T, F], float32 mask [B, T],
 * float32 pool_weights [B, T], int32 num_tokens [B]. Attributes (int): spec_version,
 * feature_size, max_tokens, char_mode, add_bos, add_eos, lowercase, the keys of
 * ProjectionSpec.op_options(), and the optional dynamic_tokens (0 or 1, default 0): 1
 * sizes features, mask and pool_weights to [B, n], n the rows of the batch's longest
 * text rounded up to a multiple of 4 (at most T), as the TFLite op's option of that name.
 * They are checked when the session is created; a bad one fails the session with a
 * message naming it. The kernel keeps no mutable state after creation, so sessions may
 * run it from any number of threads.
 *
 * The second op, EdgePqrnnFoPool, is one QRNN direction's fo-pooling in float32 (the
 * int8 .onnx keeps its recurrence in float): inputs z, k, o float32 [B, n, H]; output
 * h = o c with c = k z at the first step and c + k (z - c) after, step by step in
 * float32 as the unrolled graph computes it (no fused multiply-add: -ffp-contract=off),
 * over t = 0..n-1, or n-1..0 with the int attribute reverse = 1. Its numpy twin is
 * edge_pqrnn.projection.fo_pool.reference_float. O(n) per call, where the unrolled graph
 * runs T steps of small nodes.
 */
#include "ort_abi.h"
#include "pqrnn_common.h"
#include "projection_core.h"

#define OP_NAME PQRNN_PROJECTION_OP
#define FO_NAME PQRNN_FO_POOL_OP
#define NUM_OUTPUTS 4
/* Dynamic tokens: the outputs' rows are a multiple of this (as ROWS_GRANULE in projection_op.c). */
#define ROWS_GRANULE 4


/* The few libc functions we use, declared here to stay free of libc headers. */
void* malloc(size_t size);
void free(void* ptr);

typedef struct {
  const OrtApi* api;
  pqrnn_options options;
  int dynamic_tokens;
} kernel_state;

/* ------------------------------------------------------------ messages */

typedef struct {
  char text[PQRNN_ERROR_SIZE];
  int used;
} message;

static void put_str(message* m, const char* s) {
  while (*s && m->used < PQRNN_ERROR_SIZE - 1) m->text[m->used++] = *s++;
  m->text[m->used] = 0;
}

static void put_int(message* m, int64_t v) {
  char digits[24];
  int n = 0;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do digits[n++] = (char)('0' + u % 10), u /= 10;
  while (u);
  if (v < 0) put_str(m, "-");
  while (n) {
    char c[2] = {digits[--n], 0};
    put_str(m, c);
  }
}

static OrtStatus* fail(const OrtApi* api, OrtErrorCode code, message* m) {
  return ORT_FN(api, OrtCreateStatusFn, ORT_SLOT_CreateStatus)(code, m->text);
}

static OrtStatus* fail_op(const OrtApi* api, OrtErrorCode code, const char* op, const char* text) {
  message m = {{0}, 0};
  put_str(&m, op);
  put_str(&m, ": ");
  put_str(&m, text);
  return fail(api, code, &m);
}

static OrtStatus* fail_str(const OrtApi* api, OrtErrorCode code, const char* text) {
  return fail_op(api, code, OP_NAME, text);
}

/* An optional int attribute that must be 0 or 1 (missing: 0). */
static OrtStatus* read_flag(const OrtApi* api, const OrtKernelInfo* info, const char* op, const char* name,
                            int* flag) {
  int64_t v = 0;
  OrtStatus* status = ORT_FN(api, OrtKernelInfoGetAttributeInt64Fn, ORT_SLOT_KernelInfoGetAttribute_int64)(info, name, &v);
  if (status) { /* absent (or not an int): the default */
    ORT_FN(api, OrtReleaseStatusFn, ORT_SLOT_ReleaseStatus)(status);
    v = 0;
  }
  if (v != 0 && v != 1) {
    message m = {{0}, 0};
    put_str(&m, op);
    put_str(&m, ": attribute '");
    put_str(&m, name);
    put_str(&m, "' must be 0 or 1, got ");
    put_int(&m, v);
    return fail(api, ORT_INVALID_ARGUMENT, &m);
  }
  *flag = (int)v;
  return 0;
}

/* ------------------------------------------------------------ kernel creation */

static const char* const kAttributes[] = {"spec_version", "feature_size", "max_tokens", "char_mode",
                                          "add_bos",      "add_eos",      "lowercase"};
#define NUM_ATTRIBUTES 7

/* Reads and checks the node's attributes (the same ranges as pqrnn_parse_options). */
static OrtStatus* read_options(const OrtApi* api, const OrtKernelInfo* info, pqrnn_options* options) {
  int64_t v[NUM_ATTRIBUTES];
  message m = {{0}, 0};
  put_str(&m, OP_NAME ": ");
  for (int k = 0; k < NUM_ATTRIBUTES; k++) {
    OrtStatus* status =
        ORT_FN(api, OrtKernelInfoGetAttributeInt64Fn, ORT_SLOT_KernelInfoGetAttribute_int64)(info, kAttributes[k], &v[k]);
    if (status) {
      ORT_FN(api, OrtReleaseStatusFn, ORT_SLOT_ReleaseStatus)(status);
      put_str(&m, "missing or non-integer attribute '");
      put_str(&m, kAttributes[k]);
      put_str(&m, "'; the node needs int attributes spec_version, feature_size, max_tokens, char_mode, add_bos, "
                  "add_eos, lowercase (re-export the model)");
      return fail(api, ORT_INVALID_ARGUMENT, &m);
    }
  }
  if (v[0] != PQRNN_SPEC_VERSION) {
    put_str(&m, "spec_version ");
    put_int(&m, v[0]);
    put_str(&m, " is not supported by this op library (it implements version ");
    put_int(&m, PQRNN_SPEC_VERSION);
    put_str(&m, "); use a matching edge-pqrnn op library or re-export the model");
    return fail(api, ORT_INVALID_ARGUMENT, &m);
  }
  if (v[1] < 1 || v[1] > PQRNN_MAX_FEATURE_SIZE) {
    put_str(&m, "feature_size must be 1..");
    put_int(&m, PQRNN_MAX_FEATURE_SIZE);
    put_str(&m, ", got ");
    put_int(&m, v[1]);
    return fail(api, ORT_INVALID_ARGUMENT, &m);
  }
  for (int k = 3; k < NUM_ATTRIBUTES; k++) {
    if (v[k] != 0 && v[k] != 1) {
      put_str(&m, "attribute '");
      put_str(&m, kAttributes[k]);
      put_str(&m, "' must be 0 or 1, got ");
      put_int(&m, v[k]);
      return fail(api, ORT_INVALID_ARGUMENT, &m);
    }
  }
  const int64_t markers = v[4] + v[5];
  if (v[2] <= markers || v[2] > PQRNN_MAX_TOKENS) {
    put_str(&m, "max_tokens must be ");
    put_int(&m, markers + 1);
    put_str(&m, "..");
    put_int(&m, PQRNN_MAX_TOKENS);
    put_str(&m, ", got ");
    put_int(&m, v[2]);
    return fail(api, ORT_INVALID_ARGUMENT, &m);
  }
  options->feature_size = (int)v[1];
  options->max_tokens = (int)v[2];
  options->char_mode = (int)v[3];
  options->add_bos = (int)v[4];
  options->add_eos = (int)v[5];
  options->lowercase = (int)v[6];
  return 0;
}

static OrtStatus* ORT_ABI_CALL create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info,
                                             void** kernel) {
  (void)op;
  *kernel = 0;
  kernel_state* state = (kernel_state*)malloc(sizeof(kernel_state));
  if (!state) return fail_str(api, ORT_FAIL, "out of memory");
  state->api = api;
  OrtStatus* status = read_options(api, info, &state->options);
  if (!status) status = read_flag(api, info, OP_NAME, "dynamic_tokens", &state->dynamic_tokens);
  if (status) {
    free(state);
    return status;
  }
  *kernel = state;
  return 0;
}

static void ORT_ABI_CALL destroy_kernel(void* kernel) { free(kernel); }

/* ------------------------------------------------------------ compute */

/* Rank and batch size of the text input; a clear error for anything but a 1-D string tensor. */
static OrtStatus* text_batch(const OrtApi* api, const OrtValue* input, int64_t* batch) {
  OrtTensorTypeAndShapeInfo* info = 0;
  OrtStatus* status = ORT_FN(api, OrtGetTensorTypeAndShapeFn, ORT_SLOT_GetTensorTypeAndShape)(input, &info);
  if (status) return status;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0;
  int64_t dims[1] = {0};
  status = ORT_FN(api, OrtGetTensorElementTypeFn, ORT_SLOT_GetTensorElementType)(info, &type);
  if (!status) status = ORT_FN(api, OrtGetDimensionsCountFn, ORT_SLOT_GetDimensionsCount)(info, &rank);
  if (!status && rank == 1) status = ORT_FN(api, OrtGetDimensionsFn, ORT_SLOT_GetDimensions)(info, dims, 1);
  ORT_FN(api, OrtReleaseTensorTypeAndShapeInfoFn, ORT_SLOT_ReleaseTensorTypeAndShapeInfo)(info);
  if (status) return status;
  if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    message m = {{0}, 0};
    put_str(&m, OP_NAME ": input must be a string tensor of UTF-8 text, got element type ");
    put_int(&m, (int64_t)type);
    return fail(api, ORT_INVALID_ARGUMENT, &m);
  }
  if (rank != 1) {
    message m = {{0}, 0};
    put_str(&m, OP_NAME ": input must be 1-D [batch] text, got rank ");
    put_int(&m, (int64_t)rank);
    return fail(api, ORT_INVALID_ARGUMENT, &m);
  }
  *batch = dims[0];
  return 0;
}

/* The outputs, shaped [B, T, F], [B, T], [B, T], [B]. */
static OrtStatus* get_outputs(const OrtApi* api, OrtKernelContext* context, int64_t B, int64_t T, int64_t F,
                              void* out[NUM_OUTPUTS]) {
  const int64_t shapes[NUM_OUTPUTS][3] = {{B, T, F}, {B, T, 0}, {B, T, 0}, {B, 0, 0}};
  const size_t ranks[NUM_OUTPUTS] = {3, 2, 2, 1};
  for (size_t k = 0; k < NUM_OUTPUTS; k++) {
    OrtValue* value = 0;
    OrtStatus* status = ORT_FN(api, OrtKernelContextGetOutputFn, ORT_SLOT_KernelContext_GetOutput)(
        context, k, shapes[k], ranks[k], &value);
    if (status) return status;
    out[k] = 0;
    status = ORT_FN(api, OrtGetTensorMutableDataFn, ORT_SLOT_GetTensorMutableData)(value, &out[k]);
    if (status) return status;
    if (!out[k] && B > 0) return fail_str(api, ORT_FAIL, "no output buffer");
  }
  return 0;
}

/* Projects the B texts (bytes + starts) into the outputs at T rows each. */
static OrtStatus* project_batch(const OrtApi* api, OrtKernelContext* context, const pqrnn_options* o, int64_t B,
                                int dynamic_tokens, const uint8_t* bytes, const size_t* starts, size_t total) {
  for (int64_t b = 0; b < B; b++) {
    const size_t start = starts[b], end = b + 1 < B ? starts[b + 1] : total;
    if (start > end || end > total) return fail_str(api, ORT_FAIL, "corrupt string offsets from onnxruntime");
  }
  pqrnn_options options = *o;
  if (dynamic_tokens && B > 0) {
    /* The rows of the longest text (each text fits in them exactly as in T rows), rounded
     * up to a multiple of ROWS_GRANULE, at most T: the TFLite op's rule (projection_op.c). */
    int rows = 1;
    for (int64_t b = 0; b < B; b++) {
      const size_t start = starts[b], end = b + 1 < B ? starts[b + 1] : total;
      const int n = pqrnn_token_rows(o, bytes + start, end - start, 0, 0);
      rows = n > rows ? n : rows;
    }
    rows = (rows + ROWS_GRANULE - 1) / ROWS_GRANULE * ROWS_GRANULE;
    options.max_tokens = rows < o->max_tokens ? rows : o->max_tokens;
  }
  const int64_t T = options.max_tokens, F = options.feature_size;
  void* out[NUM_OUTPUTS];
  OrtStatus* status = get_outputs(api, context, B, T, F, out);
  if (status || B == 0) return status;
  float* features = (float*)out[0];
  float* mask = (float*)out[1];
  float* pool = (float*)out[2];
  int32_t* counts = (int32_t*)out[3];
  for (int64_t b = 0; b < B; b++) {
    const size_t start = starts[b], end = b + 1 < B ? starts[b + 1] : total;
    counts[b] = pqrnn_project_text(&options, bytes + start, end - start, features + (size_t)b * (size_t)(T * F),
                                   mask + (size_t)b * (size_t)T, pool + (size_t)b * (size_t)T);
  }
  return 0;
}

static OrtStatus* ORT_ABI_CALL compute(void* kernel, OrtKernelContext* context) {
  const kernel_state* state = (const kernel_state*)kernel;
  const OrtApi* api = state->api;
  const pqrnn_options* o = &state->options;
  const OrtValue* input = 0;
  OrtStatus* status = ORT_FN(api, OrtKernelContextGetInputFn, ORT_SLOT_KernelContext_GetInput)(context, 0, &input);
  if (status) return status;
  if (!input) return fail_str(api, ORT_INVALID_ARGUMENT, "missing text input");
  int64_t B = 0;
  status = text_batch(api, input, &B);
  if (status) return status;
  const int64_t T = o->max_tokens, F = o->feature_size;
  /* B*T*F floats must be addressable; onnxruntime refuses the allocation beyond that anyway. */
  if (B < 0 || (uint64_t)B > (uint64_t)SIZE_MAX / 4 / (uint64_t)(T * F))
    return fail_str(api, ORT_INVALID_ARGUMENT, "batch too large for the output buffers");
  /* An empty batch keeps T rows: nothing to read or compute. */
  if (B == 0) return project_batch(api, context, o, 0, 0, 0, 0, 0);

  /* All strings at once: one buffer of the concatenated bytes plus B start offsets. */
  size_t total = 0;
  status = ORT_FN(api, OrtGetStringTensorDataLengthFn, ORT_SLOT_GetStringTensorDataLength)(input, &total);
  if (status) return status;
  uint8_t* bytes = (uint8_t*)malloc(total ? total : 1);
  size_t* starts = (size_t*)malloc(sizeof(size_t) * (size_t)B);
  if (!bytes || !starts) {
    free(bytes);
    free(starts);
    return fail_str(api, ORT_FAIL, "out of memory copying the text batch");
  }
  status = ORT_FN(api, OrtGetStringTensorContentFn, ORT_SLOT_GetStringTensorContent)(input, bytes, total, starts,
                                                                                      (size_t)B);
  if (!status) status = project_batch(api, context, o, B, state->dynamic_tokens, bytes, starts, total);
  free(bytes);
  free(starts);
  return status;
}

/* ------------------------------------------------------------ EdgePqrnnFoPool (float) */

typedef struct {
  const OrtApi* api;
  int reverse;
} fo_state;

static OrtStatus* ORT_ABI_CALL fo_create_kernel(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info,
                                                void** kernel) {
  (void)op;
  *kernel = 0;
  fo_state* state = (fo_state*)malloc(sizeof(fo_state));
  if (!state) return fail_op(api, ORT_FAIL, FO_NAME, "out of memory");
  state->api = api;
  OrtStatus* status = read_flag(api, info, FO_NAME, "reverse", &state->reverse);
  if (status) {
    free(state);
    return status;
  }
  *kernel = state;
  return 0;
}

/* The shape of input k: float32 of rank 3 and the shape of input 0, or an error. */
static OrtStatus* fo_input(const OrtApi* api, OrtKernelContext* context, size_t k, int64_t dims[3],
                           const float** data) {
  const OrtValue* value = 0;
  OrtStatus* status = ORT_FN(api, OrtKernelContextGetInputFn, ORT_SLOT_KernelContext_GetInput)(context, k, &value);
  if (status) return status;
  if (!value) return fail_op(api, ORT_INVALID_ARGUMENT, FO_NAME, "missing input");
  OrtTensorTypeAndShapeInfo* info = 0;
  status = ORT_FN(api, OrtGetTensorTypeAndShapeFn, ORT_SLOT_GetTensorTypeAndShape)(value, &info);
  if (status) return status;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0;
  int64_t shape[3] = {0, 0, 0};
  status = ORT_FN(api, OrtGetTensorElementTypeFn, ORT_SLOT_GetTensorElementType)(info, &type);
  if (!status) status = ORT_FN(api, OrtGetDimensionsCountFn, ORT_SLOT_GetDimensionsCount)(info, &rank);
  if (!status && rank == 3) status = ORT_FN(api, OrtGetDimensionsFn, ORT_SLOT_GetDimensions)(info, shape, 3);
  ORT_FN(api, OrtReleaseTensorTypeAndShapeInfoFn, ORT_SLOT_ReleaseTensorTypeAndShapeInfo)(info);
  if (status) return status;
  if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || rank != 3)
    return fail_op(api, ORT_INVALID_ARGUMENT, FO_NAME, "inputs z, k, o must be float32 [batch, steps, units]");
  for (int d = 0; d < 3; d++) {
    if (k == 0) dims[d] = shape[d];
    else if (shape[d] != dims[d])
      return fail_op(api, ORT_INVALID_ARGUMENT, FO_NAME, "inputs z, k, o must have the same shape");
  }
  void* p = 0;
  status = ORT_FN(api, OrtGetTensorMutableDataFn, ORT_SLOT_GetTensorMutableData)((OrtValue*)value, &p);
  *data = (const float*)p;
  return status;
}

static OrtStatus* ORT_ABI_CALL fo_compute(void* kernel, OrtKernelContext* context) {
  const fo_state* state = (const fo_state*)kernel;
  const OrtApi* api = state->api;
  int64_t dims[3] = {0, 0, 0};
  const float* in[3] = {0, 0, 0};
  for (size_t k = 0; k < 3; k++) {
    OrtStatus* status = fo_input(api, context, k, dims, &in[k]);
    if (status) return status;
  }
  OrtValue* value = 0;
  OrtStatus* status = ORT_FN(api, OrtKernelContextGetOutputFn, ORT_SLOT_KernelContext_GetOutput)(context, 0, dims, 3,
                                                                                               &value);
  void* p = 0;
  if (!status) status = ORT_FN(api, OrtGetTensorMutableDataFn, ORT_SLOT_GetTensorMutableData)(value, &p);
  if (status) return status;
  const int64_t B = dims[0], steps = dims[1], H = dims[2];
  if (B * steps * H == 0) return 0;
  if (!p || !in[0] || !in[1] || !in[2]) return fail_op(api, ORT_FAIL, FO_NAME, "no tensor data");
  const float *z = in[0], *kk = in[1], *o = in[2];
  float* h = (float*)p;
  /* Steps outer, units inner (contiguous rows); the state of a row lives in h itself:
   * c is written to h, read back at the next step, and multiplied by o in place after. */
  for (int64_t b = 0; b < B; b++) {
    const size_t base = (size_t)(b * steps * H);
    for (int64_t i = 0; i < steps; i++) {
      const int64_t t = state->reverse ? steps - 1 - i : i;
      const size_t row = base + (size_t)(t * H);
      const float* zr = z + row;
      const float* kr = kk + row;
      float* cr = h + row;
      if (i == 0) {
        for (int64_t u = 0; u < H; u++) cr[u] = kr[u] * zr[u];
      } else {
        const float* prev = h + base + (size_t)((state->reverse ? t + 1 : t - 1) * H);
        for (int64_t u = 0; u < H; u++) cr[u] = prev[u] + kr[u] * (zr[u] - prev[u]);
      }
    }
    for (size_t j = base; j < base + (size_t)(steps * H); j++) h[j] = o[j] * h[j];
  }
  return 0;
}

/* ------------------------------------------------------------ the op and its registration */

static const char* ORT_ABI_CALL op_name(const OrtCustomOp* op) {
  (void)op;
  return OP_NAME;
}

static const char* ORT_ABI_CALL op_provider(const OrtCustomOp* op) {
  (void)op;
  return 0; /* the CPU execution provider */
}

static ONNXTensorElementDataType ORT_ABI_CALL input_type(const OrtCustomOp* op, size_t index) {
  (void)op;
  (void)index;
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING;
}

static size_t ORT_ABI_CALL one(const OrtCustomOp* op) {
  (void)op;
  return 1;
}

static ONNXTensorElementDataType ORT_ABI_CALL output_type(const OrtCustomOp* op, size_t index) {
  (void)op;
  return index == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static size_t ORT_ABI_CALL four(const OrtCustomOp* op) {
  (void)op;
  return NUM_OUTPUTS;
}

static OrtCustomOpInputOutputCharacteristic ORT_ABI_CALL required(const OrtCustomOp* op, size_t index) {
  (void)op;
  (void)index;
  return INPUT_OUTPUT_REQUIRED;
}

static OrtMemType ORT_ABI_CALL input_memory(const OrtCustomOp* op, size_t index) {
  (void)op;
  (void)index;
  return OrtMemTypeDefault;
}

static const OrtCustomOp kProjectionOp = {
    PQRNN_ORT_OP_VERSION,
    0, /* CreateKernel: replaced by CreateKernelV2 (version 16) */
    op_name,
    op_provider,
    input_type,
    one,
    output_type,
    four,
    0, /* KernelCompute: replaced by KernelComputeV2 */
    destroy_kernel,
    required,
    required,
    input_memory,
    0, 0, 0, 0, /* variadic: none */
    create_kernel,
    compute,
    0, 0, 0, 0, 0, 0, 0, /* version 17+: not declared */
};

static const char* ORT_ABI_CALL fo_name(const OrtCustomOp* op) {
  (void)op;
  return FO_NAME;
}

static ONNXTensorElementDataType ORT_ABI_CALL float_type(const OrtCustomOp* op, size_t index) {
  (void)op;
  (void)index;
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
}

static size_t ORT_ABI_CALL three(const OrtCustomOp* op) {
  (void)op;
  return 3;
}

static const OrtCustomOp kFoPoolOp = {
    PQRNN_ORT_OP_VERSION,
    0, /* CreateKernel: replaced by CreateKernelV2 (version 16) */
    fo_name,
    op_provider,
    float_type,
    three,
    float_type,
    one,
    0, /* KernelCompute: replaced by KernelComputeV2 */
    destroy_kernel,
    required,
    required,
    input_memory,
    0, 0, 0, 0, /* variadic: none */
    fo_create_kernel,
    fo_compute,
    0, 0, 0, 0, 0, 0, 0, /* version 17+: not declared */
};

/* Registers the ops' domain on the session options. The domain object must outlive every
 * session made from them, so it is never released (a few bytes per registration). */
PQRNN_EXPORT OrtStatus* ORT_ABI_CALL RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  if (!base || !base->GetApi) return 0; /* nothing to report an error through */
  const OrtApi* api = base->GetApi(PQRNN_ORT_OP_VERSION);
  if (!api) { /* onnxruntime older than 1.16: report through the API-1 table, which all have */
    const OrtApi* old = base->GetApi(1);
    return old ? ORT_FN(old, OrtCreateStatusFn, ORT_SLOT_CreateStatus)(
                     ORT_FAIL, OP_NAME ": this op library needs onnxruntime 1.16 or newer (C API 16)")
               : 0;
  }
  OrtCustomOpDomain* domain = 0;
  OrtStatus* status = ORT_FN(api, OrtCreateCustomOpDomainFn, ORT_SLOT_CreateCustomOpDomain)(PQRNN_ORT_DOMAIN, &domain);
  if (status) return status;
  status = ORT_FN(api, OrtCustomOpDomainAddFn, ORT_SLOT_CustomOpDomain_Add)(domain, &kProjectionOp);
  if (!status) status = ORT_FN(api, OrtCustomOpDomainAddFn, ORT_SLOT_CustomOpDomain_Add)(domain, &kFoPoolOp);
  if (!status) status = ORT_FN(api, OrtAddCustomOpDomainFn, ORT_SLOT_AddCustomOpDomain)(options, domain);
  if (status) ORT_FN(api, OrtReleaseCustomOpDomainFn, ORT_SLOT_ReleaseCustomOpDomain)(domain);
  return status;
}
