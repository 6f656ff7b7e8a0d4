/*
 * The projection as a TFLite custom op, in two forms from one kernel:
 *   - an op-provider delegate (tflite_plugin_create_delegate / _destroy_delegate),
 *     loadable with load_delegate() in tf.lite, ai_edge_litert and tflite_runtime: its
 *     Prepare claims every CUSTOM node named EdgePqrnnProjection;
 *   - PQRNN_Register_PROJECTION(), a TfLiteRegistration for C++/Android op resolvers.
 *
 * Op signature: input 0 STRING [B] (raw UTF-8); outputs float32 features [B, T, F],
 * float32 mask [B, T], float32 pool_weights [B, T], int32 num_tokens [B]. Options: a
 * flexbuffer map (see projection_core.c). The kernel keeps no mutable global state, so
 * any number of interpreters may run it in parallel threads.
 */
#include "projection_core.h"
#include "tflite_abi.h"

#define OP_NAME "EdgePqrnnProjection"
#define NUM_OUTPUTS 4
#define MAX_NODES 16

#if defined(_WIN32)
#define PQRNN_EXPORT __declspec(dllexport)
#else
#define PQRNN_EXPORT __attribute__((visibility("default")))
#endif

/* The few libc functions we use, declared here to stay free of libc headers. */
void* malloc(size_t size);
void* calloc(size_t count, size_t size);
void free(void* ptr);

typedef struct {
  pqrnn_options options;
  int input;
  int outputs[NUM_OUTPUTS];
} node_info;

typedef struct {
  int count;
  node_info nodes[MAX_NODES];
  int failed;
  char error[PQRNN_ERROR_SIZE];
} kernel_data;

static void report(TfLiteContext* context, const char* message) {
  context->ReportError(context, "%s: %s", OP_NAME, message);
}

static void copy_message(const char* m, char* error) {
  int i = 0;
  while (m[i] && i < PQRNN_ERROR_SIZE - 1) error[i] = m[i], i++;
  error[i] = 0;
}

/* Records the node's tensor indices (the options are parsed separately). */
static int read_tensors(const TfLiteNode* node, node_info* info, char* error) {
  if (!node->inputs || node->inputs->size != 1 || !node->outputs || node->outputs->size != NUM_OUTPUTS) {
    copy_message("expects 1 input (STRING text) and 4 outputs (features, mask, pool_weights, num_tokens)", error);
    return -1;
  }
  info->input = node->inputs->data[0];
  for (int k = 0; k < NUM_OUTPUTS; k++) info->outputs[k] = node->outputs->data[k];
  return 0;
}

/* ------------------------------------------------------------ shared kernel */

static TfLiteIntArray* int_array(int size, const int* values) {
  /* The runtime takes ownership and releases it with TfLiteIntArrayFree == free(). */
  TfLiteIntArray* a = (TfLiteIntArray*)malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)size);
  if (!a) return 0;
  a->size = size;
  for (int i = 0; i < size; i++) a->data[i] = values[i];
  return a;
}

static TfLiteStatus resize(TfLiteContext* context, TfLiteTensor* t, int rank, const int* shape) {
  if (t->dims && t->dims->size == rank) {
    int same = 1;
    for (int i = 0; i < rank; i++) same &= t->dims->data[i] == shape[i];
    if (same) return kTfLiteOk;
  }
  TfLiteIntArray* dims = int_array(rank, shape);
  if (!dims) return kTfLiteError;
  return context->ResizeTensor(context, t, dims);
}

static int valid_index(const TfLiteContext* context, int index) {
  return index >= 0 && (size_t)index < context->tensors_size;
}

static TfLiteStatus prepare_node(TfLiteContext* context, const node_info* info) {
  static const TfLiteType kOutputTypes[NUM_OUTPUTS] = {kTfLiteFloat32, kTfLiteFloat32, kTfLiteFloat32,
                                                       kTfLiteInt32};
  if (!valid_index(context, info->input)) return report(context, "bad input tensor index"), kTfLiteError;
  const TfLiteTensor* input = &context->tensors[info->input];
  if (input->type != kTfLiteString) {
    context->ReportError(context, "%s: input must be a STRING tensor of UTF-8 text, got TfLiteType %d", OP_NAME,
                         (int)input->type);
    return kTfLiteError;
  }
  if (!input->dims || input->dims->size != 1) {
    context->ReportError(context, "%s: input must be 1-D [batch] text, got rank %d", OP_NAME,
                         input->dims ? input->dims->size : -1);
    return kTfLiteError;
  }
  const int B = input->dims->data[0], T = info->options.max_tokens, F = info->options.feature_size;
  const int shapes[NUM_OUTPUTS][3] = {{B, T, F}, {B, T, 0}, {B, T, 0}, {B, 0, 0}};
  const int ranks[NUM_OUTPUTS] = {3, 2, 2, 1};
  for (int k = 0; k < NUM_OUTPUTS; k++) {
    if (!valid_index(context, info->outputs[k])) return report(context, "bad output tensor index"), kTfLiteError;
    TfLiteTensor* out = &context->tensors[info->outputs[k]];
    if (out->type != kOutputTypes[k]) {
      context->ReportError(context, "%s: output %d must have TfLiteType %d, got %d", OP_NAME, k,
                           (int)kOutputTypes[k], (int)out->type);
      return kTfLiteError;
    }
    if (resize(context, out, ranks[k], shapes[k]) != kTfLiteOk) return kTfLiteError;
  }
  return kTfLiteOk;
}

static int32_t read_i32(const char* p) {
  const uint8_t* b = (const uint8_t*)p;
  return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
}

static TfLiteStatus invoke_node(TfLiteContext* context, const node_info* info) {
  const TfLiteTensor* input = &context->tensors[info->input];
  TfLiteTensor* out[NUM_OUTPUTS];
  for (int k = 0; k < NUM_OUTPUTS; k++) out[k] = &context->tensors[info->outputs[k]];
  const int B = input->dims->data[0], T = info->options.max_tokens, F = info->options.feature_size;
  /* STRING layout: int32 count, count+1 int32 offsets, bytes. Checked in full: the
   * buffer may come from anywhere. */
  const char* raw = input->data.raw_const;
  const size_t bytes = input->bytes;
  if (!raw || bytes < 4) return report(context, "empty STRING buffer"), kTfLiteError;
  const int32_t count = read_i32(raw);
  if (count != B || count < 0 || (size_t)count + 2 > bytes / 4) {
    context->ReportError(context, "%s: STRING buffer holds %d strings but the tensor shape says %d", OP_NAME,
                         (int)count, B);
    return kTfLiteError;
  }
  /* Fuzz finding (corpus seed-kernel-empty-batch): an empty batch [0] has 0-byte outputs,
   * which the runtime leaves without a data pointer; that is not an error, there is
   * simply nothing to write. A data pointer is required only when bytes are. */
  for (int k = 0; k < NUM_OUTPUTS; k++) {
    const size_t need = 4 * (size_t)B * (k < 3 ? (size_t)T : 1) * (k == 0 ? (size_t)F : 1);
    if ((need && !out[k]->data.raw) || out[k]->bytes < need)
      return report(context, "output buffer too small"), kTfLiteError;
  }
  for (int b = 0; b < B; b++) {
    const int32_t start = read_i32(raw + 4 + 4 * (size_t)b), end = read_i32(raw + 8 + 4 * (size_t)b);
    if (start < 0 || end < start || (size_t)end > bytes) return report(context, "corrupt STRING offsets"), kTfLiteError;
    out[3]->data.i32[b] = pqrnn_project_text(&info->options, (const uint8_t*)raw + start, (size_t)(end - start),
                                             out[0]->data.f + (size_t)b * T * F, out[1]->data.f + (size_t)b * T,
                                             out[2]->data.f + (size_t)b * T);
  }
  return kTfLiteOk;
}

static void kernel_free(TfLiteContext* context, void* buffer) {
  (void)context;
  free(buffer);
}

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  kernel_data* data = (kernel_data*)node->user_data;
  if (!data) return report(context, "out of memory"), kTfLiteError;
  if (data->failed) return report(context, data->error), kTfLiteError;
  for (int i = 0; i < data->count; i++)
    if (prepare_node(context, &data->nodes[i]) != kTfLiteOk) return kTfLiteError;
  return kTfLiteOk;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  kernel_data* data = (kernel_data*)node->user_data;
  if (!data || data->failed) return kTfLiteError;
  for (int i = 0; i < data->count; i++)
    if (invoke_node(context, &data->nodes[i]) != kTfLiteOk) return kTfLiteError;
  return kTfLiteOk;
}

/* ------------------------------------------------------------ plain custom op */

static void* op_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)context;
  kernel_data* data = (kernel_data*)calloc(1, sizeof(kernel_data));
  if (!data) return 0;
  data->count = 1;
  if (pqrnn_parse_options((const uint8_t*)buffer, length, &data->nodes[0].options, data->error)) data->failed = 1;
  return data;
}

static TfLiteStatus op_prepare(TfLiteContext* context, TfLiteNode* node) {
  kernel_data* data = (kernel_data*)node->user_data;
  if (data && !data->failed && read_tensors(node, &data->nodes[0], data->error)) data->failed = 1;
  return kernel_prepare(context, node);
}

PQRNN_EXPORT TfLiteRegistration* PQRNN_Register_PROJECTION(void) {
  static TfLiteRegistration registration = {
      op_init, kernel_free, op_prepare, kernel_invoke, 0, PQRNN_BUILTIN_CUSTOM, OP_NAME, 1, 0, 0, 0, {0}};
  return &registration;
}

/* ------------------------------------------------------------ op-provider delegate */

static void* delegate_kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  kernel_data* data = (kernel_data*)calloc(1, sizeof(kernel_data));
  if (!data) return 0;
  const TfLiteIntArray* nodes = params->nodes_to_replace;
  for (int i = 0; i < nodes->size && !data->failed; i++) {
    TfLiteNode* node;
    TfLiteRegistration* reg;
    if (data->count == MAX_NODES || context->GetNodeAndRegistration(context, nodes->data[i], &node, &reg) != kTfLiteOk) {
      data->failed = 1;
      break;
    }
    node_info* info = &data->nodes[data->count];
    size_t size = node->custom_initial_data_size < 0 ? 0 : (size_t)node->custom_initial_data_size;
    if (read_tensors(node, info, data->error) ||
        pqrnn_parse_options((const uint8_t*)node->custom_initial_data, size, &info->options, data->error))
      data->failed = 1;
    data->count++;
  }
  return data;
}

static int is_projection(const TfLiteRegistration* reg) {
  if (reg->builtin_code != PQRNN_BUILTIN_CUSTOM || !reg->custom_name) return 0;
  const char* a = reg->custom_name;
  const char* b = OP_NAME;
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

static TfLiteStatus delegate_prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk) return kTfLiteError;
  int claimed[MAX_NODES];
  int count = 0;
  for (int i = 0; i < plan->size; i++) {
    TfLiteNode* node;
    TfLiteRegistration* reg;
    if (context->GetNodeAndRegistration(context, plan->data[i], &node, &reg) != kTfLiteOk) return kTfLiteError;
    if (!is_projection(reg)) continue;
    if (count == MAX_NODES) return report(context, "too many projection ops in one graph (max 16)"), kTfLiteError;
    claimed[count++] = plan->data[i];
  }
  if (count == 0) return kTfLiteOk;
  TfLiteIntArray* nodes = int_array(count, claimed);
  if (!nodes) return kTfLiteError;
  TfLiteRegistration kernel = {delegate_kernel_init, kernel_free, kernel_prepare, kernel_invoke,
                               0, 0, "EdgePqrnnProjectionDelegate", 1, 0, 0, 0, {0}};
  TfLiteStatus status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel, nodes, delegate);
  free(nodes); /* not owned by the runtime */
  return status;
}

PQRNN_EXPORT TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t count,
                                                           void (*report_error)(const char*)) {
  (void)keys;
  (void)values;
  if (count != 0) {
    if (report_error) report_error("the EdgePqrnnProjection delegate takes no options");
    return 0;
  }
  TfLiteDelegate* delegate = (TfLiteDelegate*)calloc(1, sizeof(TfLiteDelegate));
  if (!delegate) return 0;
  delegate->Prepare = delegate_prepare;
  delegate->flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  return delegate;
}

PQRNN_EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }

/* Plain entry points for tests, fuzzers and apps that do not go through TFLite. */
PQRNN_EXPORT int PQRNN_ParseOptions(const uint8_t* buffer, size_t length, pqrnn_options* options, char* error) {
  return pqrnn_parse_options(buffer, length, options, error);
}

/* Fuzz finding (corpus seed-struct-no-room): an app may fill the struct by hand instead of
 * through PQRNN_ParseOptions; with max_tokens <= add_bos + add_eos (or a flag of 2) no
 * word token ever reaches the row limit and the core wrote past max_tokens rows. So this
 * entry point checks the ranges PQRNN_ParseOptions guarantees, and for a struct outside
 * them returns 0 without touching any output. */
static int options_valid(const pqrnn_options* o) {
  if (!o || o->feature_size < 1 || o->feature_size > PQRNN_MAX_FEATURE_SIZE) return 0;
  if ((o->char_mode | o->add_bos | o->add_eos | o->lowercase) & ~1) return 0; /* each 0 or 1 */
  return o->max_tokens > o->add_bos + o->add_eos && o->max_tokens <= PQRNN_MAX_TOKENS;
}

PQRNN_EXPORT int PQRNN_ProjectText(const pqrnn_options* options, const uint8_t* text, size_t length, float* features,
                                   float* mask, float* pool_weights) {
  if (!options_valid(options)) return 0;
  return pqrnn_project_text(options, text, length, features, mask, pool_weights);
}

PQRNN_EXPORT int PQRNN_SpecVersion(void) { return PQRNN_SPEC_VERSION; }
