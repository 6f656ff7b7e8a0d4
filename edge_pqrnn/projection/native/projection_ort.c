/*
 * The projection as an onnxruntime custom op, from the same core as the TFLite op
 * (projection_op.c). Load the library with SessionOptions.register_custom_ops_library()
 * (Python) or RegisterCustomOpsLibrary_V2 (C): RegisterCustomOps adds the domain
 * PQRNN_ORT_DOMAIN with one op, EdgePqrnnProjection.
 *
 * Op signature: input 0 STRING [B] (UTF-8; invalid bytes are dropped, as by the TFLite
 * op and the numpy reference); outputs float32 features [B, T, F], float32 mask [B, T],
 * float32 pool_weights [B, T], int32 num_tokens [B]. Attributes (int): spec_version,
 * feature_size, max_tokens, char_mode, add_bos, add_eos, lowercase, the keys of
 * ProjectionSpec.op_options(). They are checked when the session is created; a bad one
 * fails the session with a message naming it. The kernel keeps no mutable state after
 * creation, so sessions may run it from any number of threads.
 */
#include "ort_abi.h"
#include "pqrnn_common.h"
#include "projection_core.h"

#define OP_NAME PQRNN_PROJECTION_OP
#define NUM_OUTPUTS 4


/* The few libc functions we use, declared here to stay free of libc headers. */
void* malloc(size_t size);
void free(void* ptr);

typedef struct {
  const OrtApi* api;
  pqrnn_options options;
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

static OrtStatus* fail_str(const OrtApi* api, OrtErrorCode code, const char* text) {
  message m = {{0}, 0};
  put_str(&m, OP_NAME ": ");
  put_str(&m, text);
  return fail(api, code, &m);
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

  const int64_t shapes[NUM_OUTPUTS][3] = {{B, T, F}, {B, T, 0}, {B, T, 0}, {B, 0, 0}};
  const size_t ranks[NUM_OUTPUTS] = {3, 2, 2, 1};
  void* out[NUM_OUTPUTS];
  for (size_t k = 0; k < NUM_OUTPUTS; k++) {
    OrtValue* value = 0;
    status = ORT_FN(api, OrtKernelContextGetOutputFn, ORT_SLOT_KernelContext_GetOutput)(context, k, shapes[k],
                                                                                        ranks[k], &value);
    if (status) return status;
    out[k] = 0;
    status = ORT_FN(api, OrtGetTensorMutableDataFn, ORT_SLOT_GetTensorMutableData)(value, &out[k]);
    if (status) return status;
    if (!out[k] && B > 0) return fail_str(api, ORT_FAIL, "no output buffer");
  }
  if (B == 0) return 0;

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
  if (!status) {
    float* features = (float*)out[0];
    float* mask = (float*)out[1];
    float* pool = (float*)out[2];
    int32_t* counts = (int32_t*)out[3];
    for (int64_t b = 0; b < B; b++) {
      const size_t start = starts[b], end = b + 1 < B ? starts[b + 1] : total;
      if (start > end || end > total) {
        status = fail_str(api, ORT_FAIL, "corrupt string offsets from onnxruntime");
        break;
      }
      counts[b] = pqrnn_project_text(o, bytes + start, end - start, features + (size_t)b * (size_t)(T * F),
                                     mask + (size_t)b * (size_t)T, pool + (size_t)b * (size_t)T);
    }
  }
  free(bytes);
  free(starts);
  return status;
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

/* Registers the op's domain on the session options. The domain object must outlive every
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
  if (!status) status = ORT_FN(api, OrtAddCustomOpDomainFn, ORT_SLOT_AddCustomOpDomain)(options, domain);
  if (status) ORT_FN(api, OrtReleaseCustomOpDomainFn, ORT_SLOT_ReleaseCustomOpDomain)(domain);
  return status;
}
