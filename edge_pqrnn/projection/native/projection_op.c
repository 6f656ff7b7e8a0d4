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
 *
 * The same delegate also claims EdgePqrnnFoPool nodes (fo_pool.h): inputs int8 z, k, o
 * [B, T, H], output int8 h [B, T, H]; options {"version": 1, "reverse": 0|1}. It replaces
 * the unrolled int8 SUB/MUL/ADD recurrence, whose rounding differs between the x86 and
 * ARM kernels of the runtimes; PQRNN_Register_FO_POOL() is its plain registration.
 *
 * And EdgePqrnnIntMatMul nodes (int_matmul.h), which a portable artifact has in place of
 * every int8 FULLY_CONNECTED and CONV_2D: inputs int8 x, constant int8 weights, constant
 * int32 bias (or none), output int8; options {"version": 1, "kind": 0 fully connected |
 * 1 conv 2-D, "activation": 0..3}. PQRNN_Register_INT_MATMUL() is its plain registration.
 * And EdgePqrnnDequantize (int8 -> float32 outputs of a portable artifact, one float
 * multiply): PQRNN_Register_DEQUANTIZE(); and EdgePqrnnQuantize (float32 -> int8 inputs,
 * one division, round half away): PQRNN_Register_QUANTIZE(). Both use mm_inputs[0] and
 * outputs[0].
 */
#include "fo_pool.h"
#include "int_matmul.h"
#include "pqrnn_common.h"
#include "projection_core.h"
#include "tflite_abi.h"

#define OP_NAME PQRNN_PROJECTION_OP
#define FO_OP_NAME PQRNN_FO_POOL_OP
#define MM_OP_NAME PQRNN_INT_MATMUL_OP
#define DQ_OP_NAME PQRNN_DEQUANTIZE_OP
#define Q_OP_NAME PQRNN_QUANTIZE_OP
#define NUM_OUTPUTS 4
/* Dynamic tokens: the outputs' rows are a multiple of this (see invoke_node). */
#define ROWS_GRANULE 4
#define FO_INPUTS 3
/* Nodes one delegate may claim in one graph: a projection, a fo-pool per direction and
 * layer, and in a portable artifact the matmuls (the default model has 1 + 4 + 8). */
#define MAX_NODES 64


/* The few libc functions we use, declared here to stay free of libc headers. */
void* malloc(size_t size);
void* calloc(size_t count, size_t size);
void free(void* ptr);

enum { kProjection = 0, kFoPool = 1, kIntMatMul = 2, kDequantize = 3, kQuantize = 4 };
/* kTfLiteMmapRo: a constant tensor whose data lives in the model file; kTfLiteDynamic: a
 * tensor ResizeTensor (re)allocates on the heap. */
#define PQRNN_ALLOCATION_MMAP_RO 1
#define PQRNN_ALLOCATION_DYNAMIC 4

typedef struct {
  int kind;
  pqrnn_options options; /* projection */
  int dynamic_tokens;    /* projection: outputs hold the longest text's rows, not T */
  int input;
  int outputs[NUM_OUTPUTS];
  int reverse; /* fo-pool: its inputs are z, k, o; outputs[0] is h */
  int fo_inputs[FO_INPUTS];
  pqrnn_fo_pool_params fo;
  /* int-matmul: inputs x, weights, bias (-1: none); outputs[0] is the result */
  pqrnn_matmul_options mm;
  int mm_inputs[3];
  pqrnn_matmul_geometry mm_geometry;
  pqrnn_matmul_channel* mm_channel; /* mm_channels of them, malloc'd in Prepare */
  int mm_channels;
  int16_t* mm_scratch; /* x widened: mm_scratch_size values, malloc'd in Prepare */
  size_t mm_scratch_size;
  int32_t mm_out_zero, mm_act_min, mm_act_max;
  float dq_scale; /* dequantize: mm_inputs[0] -> outputs[0], zero point in mm_out_zero */
  /* Delegate kernel: bit k set when outputs[k] feeds only other nodes of this kernel (e.g.
   * an int-matmul into an EdgePqrnnDequantize). The runtime's arena does not allocate
   * such a tensor, so Prepare makes it dynamic and sizes it. */
  int internal_mask;
} node_info;

typedef struct {
  int count;
  int failed;
  int failed_kind; /* which op's name prefixes the error */
  char error[PQRNN_ERROR_SIZE];
  node_info nodes[]; /* count of them */
} kernel_data;

static kernel_data* kernel_data_new(int count) {
  return (kernel_data*)calloc(1, sizeof(kernel_data) + sizeof(node_info) * (size_t)count);
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

static int read_fo_tensors(const TfLiteNode* node, node_info* info, char* error) {
  if (!node->inputs || node->inputs->size != FO_INPUTS || !node->outputs || node->outputs->size != 1) {
    copy_message("expects 3 inputs (int8 z, k, o [B, T, H]) and 1 output (int8 h [B, T, H])",
                 error);
    return -1;
  }
  for (int k = 0; k < FO_INPUTS; k++) info->fo_inputs[k] = node->inputs->data[k];
  info->outputs[0] = node->outputs->data[0];
  return 0;
}

static int read_mm_tensors(const TfLiteNode* node, node_info* info, char* error) {
  if (!node->inputs || (node->inputs->size != 2 && node->inputs->size != 3) || !node->outputs ||
      node->outputs->size != 1) {
    copy_message("expects 2 or 3 inputs (int8 x, int8 weights, optional int32 bias) and 1 "
                 "output (int8)",
                 error);
    return -1;
  }
  info->mm_inputs[2] = -1;
  for (int k = 0; k < node->inputs->size; k++) info->mm_inputs[k] = node->inputs->data[k];
  info->outputs[0] = node->outputs->data[0];
  return 0;
}

static int read_dq_tensors(const TfLiteNode* node, node_info* info, char* error) {
  if (!node->inputs || node->inputs->size != 1 || !node->outputs || node->outputs->size != 1) {
    copy_message("expects 1 input and 1 output", error);
    return -1;
  }
  info->mm_inputs[0] = node->inputs->data[0];
  info->outputs[0] = node->outputs->data[0];
  return 0;
}

/* Each op's options parser, in one signature for the table below. */
static int parse_projection(const uint8_t* buffer, size_t length, node_info* info, char* error) {
  return pqrnn_parse_op_options(buffer, length, &info->options, &info->dynamic_tokens, error);
}

static int parse_fo(const uint8_t* buffer, size_t length, node_info* info, char* error) {
  return pqrnn_fo_pool_parse_options(buffer, length, &info->reverse, error);
}

static int parse_mm(const uint8_t* buffer, size_t length, node_info* info, char* error) {
  return pqrnn_matmul_parse_options(buffer, length, &info->mm, error);
}

static int parse_dq(const uint8_t* buffer, size_t length, node_info* info, char* error) {
  (void)info;
  return pqrnn_dequantize_parse_options(buffer, length, error);
}

static int parse_q(const uint8_t* buffer, size_t length, node_info* info, char* error) {
  (void)info;
  return pqrnn_quantize_parse_options(buffer, length, error);
}

/* The ops, by kind: the custom name in the graph, how a node's tensors are read and its
 * options parsed. The plain registrations and the delegate set nodes up through it. */
static const struct {
  const char* name;
  int (*read_tensors)(const TfLiteNode* node, node_info* info, char* error);
  int (*parse_options)(const uint8_t* buffer, size_t length, node_info* info, char* error);
} kOps[] = {
    [kProjection] = {OP_NAME, read_tensors, parse_projection},
    [kFoPool] = {FO_OP_NAME, read_fo_tensors, parse_fo},
    [kIntMatMul] = {MM_OP_NAME, read_mm_tensors, parse_mm},
    [kDequantize] = {DQ_OP_NAME, read_dq_tensors, parse_dq},
    [kQuantize] = {Q_OP_NAME, read_dq_tensors, parse_q},
};
#define NUM_KINDS ((int)(sizeof(kOps) / sizeof(kOps[0])))

/* Reports an error, prefixed with the name of the op it comes from; returns kTfLiteError. */
static TfLiteStatus report_op(TfLiteContext* context, int kind, const char* message) {
  context->ReportError(context, "%s: %s", kOps[kind].name, message);
  return kTfLiteError;
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

static TfLiteStatus prepare_node(TfLiteContext* context, node_info* info) {
  static const TfLiteType kOutputTypes[NUM_OUTPUTS] = {kTfLiteFloat32, kTfLiteFloat32, kTfLiteFloat32,
                                                       kTfLiteInt32};
  if (!valid_index(context, info->input)) return report_op(context, kProjection, "bad input tensor index");
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
    if (!valid_index(context, info->outputs[k])) return report_op(context, kProjection, "bad output tensor index");
    TfLiteTensor* out = &context->tensors[info->outputs[k]];
    if (out->type != kOutputTypes[k]) {
      context->ReportError(context, "%s: output %d must have TfLiteType %d, got %d", OP_NAME, k,
                           (int)kOutputTypes[k], (int)out->type);
      return kTfLiteError;
    }
    /* With dynamic tokens, features, mask and pool_weights live on the heap: Invoke
     * resizes them to the batch's longest text and the runtime re-prepares the nodes
     * after it (only when that length changed since the last call). Prepared at T. */
    if (info->dynamic_tokens && k < 3) {
      /* Always through ResizeTensor, which allocates the heap buffer (the shape may
       * already be [B, T, F] from the model file, and then resize() would skip it). */
      TfLiteIntArray* dims = int_array(ranks[k], shapes[k]);
      if (!dims) return report_op(context, kProjection, "out of memory");
      out->allocation_type = PQRNN_ALLOCATION_DYNAMIC;
      if (context->ResizeTensor(context, out, dims) != kTfLiteOk) return kTfLiteError;
      continue;
    }
    if (resize(context, out, ranks[k], shapes[k]) != kTfLiteOk) return kTfLiteError;
  }
  return kTfLiteOk;
}

/* The tensor's per-tensor int8 quantization, or a message why it has none. */
static const char* int8_quantization(const TfLiteTensor* t, float* scale, int32_t* zero) {
  if (t->type != kTfLiteInt8) return "every input and the output must be int8 tensors";
  if (t->quantization.type != kTfLiteAffineQuantization || !t->quantization.params)
    return "every input and the output need int8 quantization parameters (scale, zero point)";
  const TfLiteAffineQuantization* q = (const TfLiteAffineQuantization*)t->quantization.params;
  if (!q->scale || q->scale->size != 1 || !q->zero_point || q->zero_point->size != 1)
    return "per-tensor quantization is required (one scale and zero point per tensor)";
  *scale = q->scale->data[0];
  *zero = q->zero_point->data[0];
  return 0;
}

static TfLiteStatus prepare_fo_node(TfLiteContext* context, node_info* info) {
  const TfLiteTensor* in[FO_INPUTS];
  float scales[FO_INPUTS + 1];
  int32_t zeros[FO_INPUTS + 1];
  for (int k = 0; k < FO_INPUTS; k++) {
    if (!valid_index(context, info->fo_inputs[k])) return report_op(context, kFoPool, "bad input tensor index");
    in[k] = &context->tensors[info->fo_inputs[k]];
  }
  if (!valid_index(context, info->outputs[0])) return report_op(context, kFoPool, "bad output tensor index");
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  for (int k = 0; k <= FO_INPUTS; k++) {
    const char* problem = int8_quantization(k < FO_INPUTS ? in[k] : out, &scales[k], &zeros[k]);
    if (problem) return report_op(context, kFoPool, problem);
  }
  const TfLiteIntArray* dims = in[0]->dims;
  if (!dims || dims->size != 3) {
    context->ReportError(context, "%s: inputs must be rank 3 [batch, steps, units], got rank %d", FO_OP_NAME,
                         dims ? dims->size : -1);
    return kTfLiteError;
  }
  for (int k = 1; k < FO_INPUTS; k++) {
    const TfLiteIntArray* d = in[k]->dims;
    if (!d || d->size != 3 || d->data[0] != dims->data[0] || d->data[1] != dims->data[1] ||
        d->data[2] != dims->data[2])
      return report_op(context, kFoPool, "z, k and o must have the same shape [batch, steps, units]");
  }
  char error[PQRNN_ERROR_SIZE];
  if (pqrnn_fo_pool_params_init(scales[0], zeros[0], scales[1], zeros[1], scales[2], zeros[2], scales[3], zeros[3],
                                info->reverse, &info->fo, error))
    return report_op(context, kFoPool, error);
  return resize(context, out, 3, dims->data);
}

static TfLiteStatus invoke_fo_node(TfLiteContext* context, const node_info* info) {
  const TfLiteTensor* z = &context->tensors[info->fo_inputs[0]];
  const TfLiteTensor* k = &context->tensors[info->fo_inputs[1]];
  const TfLiteTensor* o = &context->tensors[info->fo_inputs[2]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  const int B = z->dims->data[0], T = z->dims->data[1], H = z->dims->data[2];
  if (B < 0 || T < 0 || H < 0) return report_op(context, kFoPool, "negative dimension");
  const size_t need = (size_t)B * (size_t)T * (size_t)H;
  if (need == 0) return kTfLiteOk; /* an empty batch: nothing to write */
  if (!z->data.raw || !k->data.raw || !o->data.raw || !out->data.raw || z->bytes < need || k->bytes < need ||
      o->bytes < need || out->bytes < need)
    return report_op(context, kFoPool, "tensor buffers are missing or smaller than their shape");
  pqrnn_fo_pool_run(&info->fo, z->data.int8, k->data.int8, o->data.int8, out->data.int8, B, T, H);
  return kTfLiteOk;
}

static int64_t dims_product(const TfLiteIntArray* d, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; i++) n *= d->data[i] < 0 ? 0 : d->data[i];
  return n;
}

static TfLiteStatus prepare_mm_node(TfLiteContext* context, node_info* info) {
  for (int k = 0; k < 3; k++)
    if (info->mm_inputs[k] != -1 && !valid_index(context, info->mm_inputs[k]))
      return report_op(context, kIntMatMul, "bad input tensor index");
  if (!valid_index(context, info->outputs[0])) return report_op(context, kIntMatMul, "bad output tensor index");
  const TfLiteTensor* x = &context->tensors[info->mm_inputs[0]];
  const TfLiteTensor* w = &context->tensors[info->mm_inputs[1]];
  const TfLiteTensor* bias = info->mm_inputs[2] == -1 ? 0 : &context->tensors[info->mm_inputs[2]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  float x_scale, out_scale, unused_scale;
  int32_t x_zero, out_zero, unused_zero;
  const char* problem = int8_quantization(x, &x_scale, &x_zero);
  if (!problem) problem = int8_quantization(out, &out_scale, &out_zero);
  if (problem) return report_op(context, kIntMatMul, problem);
  (void)unused_scale, (void)unused_zero;
  /* The weights: constant int8, symmetric, one scale or one per output channel (axis 0). */
  if (w->type != kTfLiteInt8) return report_op(context, kIntMatMul, "the weights must be an int8 tensor");
  if (w->allocation_type != PQRNN_ALLOCATION_MMAP_RO || !w->data.raw)
    return report_op(context, kIntMatMul, "the weights must be a constant tensor of the model");
  const int w_rank = info->mm.kind == PQRNN_MATMUL_CONV_2D ? 4 : 2;
  if (!w->dims || w->dims->size != w_rank) {
    context->ReportError(context, "%s: the weights must have rank %d (%s), got rank %d", MM_OP_NAME, w_rank,
                         w_rank == 4 ? "[out, kernel_h, kernel_w, in]" : "[out, in]", w->dims ? w->dims->size : -1);
    return kTfLiteError;
  }
  const int N = w->dims->data[0];
  const int64_t per_channel = dims_product(w->dims, 1, w_rank);
  if (N < 1 || per_channel < 1 || per_channel > PQRNN_MATMUL_MAX_DEPTH || w->bytes < (size_t)N * (size_t)per_channel)
    return report_op(context, kIntMatMul, "the weights must be [out, ...] with 1..65536 values per output channel");
  if (w->quantization.type != kTfLiteAffineQuantization || !w->quantization.params)
    return report_op(context, kIntMatMul, "the weights need int8 quantization parameters");
  const TfLiteAffineQuantization* wq = (const TfLiteAffineQuantization*)w->quantization.params;
  if (!wq->scale || !wq->zero_point || (wq->scale->size != 1 && wq->scale->size != N) ||
      wq->zero_point->size != wq->scale->size || (wq->scale->size > 1 && wq->quantized_dimension != 0))
    return report_op(context, kIntMatMul, "the weights need one scale, or one per output channel (axis 0)");
  for (int i = 0; i < wq->zero_point->size; i++)
    if (wq->zero_point->data[i] != 0)
      return report_op(context, kIntMatMul, "the weights must be symmetric (zero point 0)");
  if (bias) {
    if (bias->type != kTfLiteInt32 || !bias->dims || bias->dims->size != 1 || bias->dims->data[0] != N)
      return report_op(context, kIntMatMul, "the bias must be an int32 tensor [out]");
    if (bias->allocation_type != PQRNN_ALLOCATION_MMAP_RO || !bias->data.raw || bias->bytes < 4 * (size_t)N)
      return report_op(context, kIntMatMul, "the bias must be a constant tensor of the model");
  }
  /* The geometry (int_matmul.h) and the output shape. */
  const TfLiteIntArray* xd = x->dims;
  pqrnn_matmul_geometry* g = &info->mm_geometry;
  int shape[4], rank;
  if (info->mm.kind == PQRNN_MATMUL_CONV_2D) {
    const int* wd = w->dims->data;
    if (!xd || xd->size != 4 || xd->data[3] != wd[3] || xd->data[0] < 0 || xd->data[1] < wd[1] ||
        xd->data[2] < wd[2])
      return report_op(context, kIntMatMul,
                       "conv 2-D needs x [batch, height, width, in] at least as large as the kernel, with the "
                       "weights' in");
    g->batch = xd->data[0], g->height = xd->data[1], g->width = xd->data[2], g->depth = xd->data[3];
    g->kernel_h = wd[1], g->kernel_w = wd[2];
    rank = 4, shape[0] = g->batch, shape[1] = g->height - g->kernel_h + 1, shape[2] = g->width - g->kernel_w + 1;
    shape[3] = N;
  } else {
    const int64_t numel = xd ? dims_product(xd, 0, xd->size) : -1;
    if (!xd || xd->size < 1 || numel % per_channel != 0 || numel / per_channel > 0x7fffffff)
      return report_op(context, kIntMatMul, "fully connected needs x whose size is a multiple of the weights' in");
    /* rows of K values, as TFLite's FULLY_CONNECTED (keep_num_dims false): out [rows, N] */
    g->batch = 1, g->height = 1, g->width = (int)(numel / per_channel), g->depth = (int)per_channel;
    g->kernel_h = g->kernel_w = 1;
    rank = 2, shape[0] = g->width, shape[1] = N;
  }
  g->channels = N;
  if (info->mm_channels != N) {
    free(info->mm_channel);
    info->mm_channels = 0;
    info->mm_channel = (pqrnn_matmul_channel*)malloc(sizeof(pqrnn_matmul_channel) * (size_t)N);
    if (!info->mm_channel) return report_op(context, kIntMatMul, "out of memory");
    info->mm_channels = N;
  }
  const size_t in_size = (size_t)g->batch * (size_t)g->height * (size_t)g->width * (size_t)g->depth;
  if (info->mm_scratch_size < in_size) {
    free(info->mm_scratch);
    info->mm_scratch_size = 0;
    info->mm_scratch = (int16_t*)malloc(sizeof(int16_t) * (in_size ? in_size : 1));
    if (!info->mm_scratch) return report_op(context, kIntMatMul, "out of memory");
    info->mm_scratch_size = in_size;
  }
  char error[PQRNN_ERROR_SIZE];
  if (pqrnn_matmul_params_init(x_scale, x_zero, wq->scale->data, wq->scale->size, w->data.int8, N, (int)per_channel,
                               bias ? bias->data.i32 : 0, out_scale, out_zero, info->mm.activation, info->mm_channel,
                               &info->mm_act_min, &info->mm_act_max, error))
    return report_op(context, kIntMatMul, error);
  info->mm_out_zero = out_zero;
  return resize(context, out, rank, shape);
}

static TfLiteStatus invoke_mm_node(TfLiteContext* context, const node_info* info) {
  const TfLiteTensor* x = &context->tensors[info->mm_inputs[0]];
  const TfLiteTensor* w = &context->tensors[info->mm_inputs[1]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  const pqrnn_matmul_geometry* g = &info->mm_geometry;
  const size_t in_need = (size_t)g->batch * (size_t)g->height * (size_t)g->width * (size_t)g->depth;
  const size_t out_need = (size_t)g->batch * (size_t)(g->height - g->kernel_h + 1) *
                          (size_t)(g->width - g->kernel_w + 1) * (size_t)g->channels;
  if (out_need == 0) return kTfLiteOk; /* an empty batch: nothing to write */
  if (!x->data.raw || !w->data.raw || !out->data.raw || x->bytes < in_need || out->bytes < out_need)
    return report_op(context, kIntMatMul, "tensor buffers are missing or smaller than their shape");
  if (info->mm_scratch_size < in_need) return report_op(context, kIntMatMul, "input larger than prepared");
  pqrnn_matmul_run(g, info->mm_channel, x->data.int8, w->data.int8, out->data.int8, info->mm_out_zero,
                   info->mm_act_min, info->mm_act_max, info->mm_scratch);
  return kTfLiteOk;
}

static TfLiteStatus prepare_dq_node(TfLiteContext* context, node_info* info) {
  if (!valid_index(context, info->mm_inputs[0])) return report_op(context, kDequantize, "bad input tensor index");
  if (!valid_index(context, info->outputs[0])) return report_op(context, kDequantize, "bad output tensor index");
  const TfLiteTensor* in = &context->tensors[info->mm_inputs[0]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  float scale;
  int32_t zero;
  const char* problem = int8_quantization(in, &scale, &zero);
  if (problem) return report_op(context, kDequantize, problem);
  if (!(scale > 0.0f && scale < 3.0e38f) || zero < -128 || zero > 127)
    return report_op(context, kDequantize, "the input needs a finite scale > 0 and a zero point in -128..127");
  if (out->type != kTfLiteFloat32) return report_op(context, kDequantize, "the output must be a float32 tensor");
  if (!in->dims || in->dims->size > 8) return report_op(context, kDequantize, "the input must have rank 0..8");
  info->mm_out_zero = zero;
  info->dq_scale = scale;
  return resize(context, out, in->dims->size, in->dims->data);
}

static TfLiteStatus prepare_q_node(TfLiteContext* context, node_info* info) {
  if (!valid_index(context, info->mm_inputs[0])) return report_op(context, kQuantize, "bad input tensor index");
  if (!valid_index(context, info->outputs[0])) return report_op(context, kQuantize, "bad output tensor index");
  const TfLiteTensor* in = &context->tensors[info->mm_inputs[0]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  float scale;
  int32_t zero;
  if (in->type != kTfLiteFloat32) return report_op(context, kQuantize, "the input must be a float32 tensor");
  const char* problem = int8_quantization(out, &scale, &zero);
  if (problem) return report_op(context, kQuantize, problem);
  if (!(scale > 0.0f && scale < 3.0e38f) || zero < -128 || zero > 127)
    return report_op(context, kQuantize, "the output needs a finite scale > 0 and a zero point in -128..127");
  if (!in->dims || in->dims->size > 8) return report_op(context, kQuantize, "the input must have rank 0..8");
  info->mm_out_zero = zero;
  info->dq_scale = scale;
  return resize(context, out, in->dims->size, in->dims->data);
}

static TfLiteStatus invoke_q_node(TfLiteContext* context, const node_info* info) {
  const TfLiteTensor* in = &context->tensors[info->mm_inputs[0]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  const size_t count = (size_t)dims_product(in->dims, 0, in->dims->size);
  if (count == 0) return kTfLiteOk;
  if (!in->data.raw || !out->data.raw || in->bytes < 4 * count || out->bytes < count)
    return report_op(context, kQuantize, "tensor buffers are missing or smaller than their shape");
  pqrnn_quantize_run(in->data.f, out->data.int8, count, info->dq_scale, info->mm_out_zero);
  return kTfLiteOk;
}

static TfLiteStatus invoke_dq_node(TfLiteContext* context, const node_info* info) {
  const TfLiteTensor* in = &context->tensors[info->mm_inputs[0]];
  TfLiteTensor* out = &context->tensors[info->outputs[0]];
  const size_t count = (size_t)dims_product(in->dims, 0, in->dims->size);
  if (count == 0) return kTfLiteOk;
  if (!in->data.raw || !out->data.raw || in->bytes < count || out->bytes < 4 * count)
    return report_op(context, kDequantize, "tensor buffers are missing or smaller than their shape");
  pqrnn_dequantize_run(in->data.int8, out->data.f, count, info->mm_out_zero, info->dq_scale);
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
  const int B = input->dims->data[0], F = info->options.feature_size;
  int T = info->options.max_tokens;
  /* STRING layout: int32 count, count+1 int32 offsets, bytes. Checked in full: the
   * buffer may come from anywhere. */
  const char* raw = input->data.raw_const;
  const size_t bytes = input->bytes;
  if (!raw || bytes < 4) return report_op(context, kProjection, "empty STRING buffer");
  const int32_t count = read_i32(raw);
  if (count != B || count < 0 || (size_t)count + 2 > bytes / 4) {
    context->ReportError(context, "%s: STRING buffer holds %d strings but the tensor shape says %d", OP_NAME,
                         (int)count, B);
    return kTfLiteError;
  }
  for (int b = 0; b < B; b++) {
    const int32_t start = read_i32(raw + 4 + 4 * (size_t)b), end = read_i32(raw + 8 + 4 * (size_t)b);
    if (start < 0 || end < start || (size_t)end > bytes)
      return report_op(context, kProjection, "corrupt STRING offsets");
  }
  pqrnn_options options = info->options;
  /* An empty batch keeps the T rows Prepare gave it: nothing is computed either way, and
   * XNNPACK fails to reshape a convolution to a batch of 0. */
  if (info->dynamic_tokens && B > 0) {
    /* The rows of the longest text (each text fits in them exactly as in T rows: no
     * truncation below T happens), rounded up to a multiple of ROWS_GRANULE (at most T):
     * texts of similar length then share a shape, and a shape change re-prepares every
     * node after the op (~30 us for the default ATIS model, about 3 token rows of work).
     * Rounding up by 4 cut the p50 over the ATIS test texts in turn by ~10%; by 8 it
     * computed more padding than it saved. */
    int rows = 1;
    for (int b = 0; b < B; b++) {
      const int32_t start = read_i32(raw + 4 + 4 * (size_t)b), end = read_i32(raw + 8 + 4 * (size_t)b);
      const int n = pqrnn_token_rows(&info->options, (const uint8_t*)raw + start, (size_t)(end - start), 0, 0);
      rows = n > rows ? n : rows;
    }
    rows = (rows + ROWS_GRANULE - 1) / ROWS_GRANULE * ROWS_GRANULE;
    if (rows > info->options.max_tokens) rows = info->options.max_tokens;
    const int shapes[3][3] = {{B, rows, F}, {B, rows, 0}, {B, rows, 0}};
    for (int k = 0; k < 3; k++)
      if (resize(context, out[k], k ? 2 : 3, shapes[k]) != kTfLiteOk) return kTfLiteError;
    T = options.max_tokens = rows;
  }
  /* Fuzz finding (corpus seed-kernel-empty-batch): an empty batch [0] has 0-byte outputs,
   * which the runtime leaves without a data pointer; that is not an error, there is
   * simply nothing to write. A data pointer is required only when bytes are. */
  for (int k = 0; k < NUM_OUTPUTS; k++) {
    const size_t need = 4 * (size_t)B * (k < 3 ? (size_t)T : 1) * (k == 0 ? (size_t)F : 1);
    if ((need && !out[k]->data.raw) || out[k]->bytes < need)
      return report_op(context, kProjection, "output buffer too small");
  }
  for (int b = 0; b < B; b++) {
    const int32_t start = read_i32(raw + 4 + 4 * (size_t)b), end = read_i32(raw + 8 + 4 * (size_t)b);
    out[3]->data.i32[b] = pqrnn_project_text(&options, (const uint8_t*)raw + start, (size_t)(end - start),
                                             out[0]->data.f + (size_t)b * T * F, out[1]->data.f + (size_t)b * T,
                                             out[2]->data.f + (size_t)b * T);
  }
  return kTfLiteOk;
}

static void kernel_free(TfLiteContext* context, void* buffer) {
  (void)context;
  kernel_data* data = (kernel_data*)buffer;
  if (data)
    for (int i = 0; i < data->count; i++) free(data->nodes[i].mm_channel), free(data->nodes[i].mm_scratch);
  free(buffer);
}

/* How each kind prepares and runs a node (same order as kOps). */
static const struct {
  TfLiteStatus (*prepare)(TfLiteContext* context, node_info* info);
  TfLiteStatus (*invoke)(TfLiteContext* context, const node_info* info);
} kKernels[] = {
    [kProjection] = {prepare_node, invoke_node},
    [kFoPool] = {prepare_fo_node, invoke_fo_node},
    [kIntMatMul] = {prepare_mm_node, invoke_mm_node},
    [kDequantize] = {prepare_dq_node, invoke_dq_node},
    [kQuantize] = {prepare_q_node, invoke_q_node},
};

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  kernel_data* data = (kernel_data*)node->user_data;
  if (!data) return report_op(context, kProjection, "out of memory");
  if (data->failed) return report_op(context, data->failed_kind, data->error);
  for (int i = 0; i < data->count; i++) {
    node_info* info = &data->nodes[i];
    if (kKernels[info->kind].prepare(context, info) != kTfLiteOk) return kTfLiteError;
    for (int k = 0; k < NUM_OUTPUTS; k++) {
      if (!(info->internal_mask & (1 << k))) continue;
      TfLiteTensor* t = &context->tensors[info->outputs[k]];
      if (!t->dims) return report_op(context, kProjection, "an internal tensor has no shape");
      TfLiteIntArray* dims = int_array(t->dims->size, t->dims->data);
      if (!dims) return report_op(context, kProjection, "out of memory");
      t->allocation_type = PQRNN_ALLOCATION_DYNAMIC;
      if (context->ResizeTensor(context, t, dims) != kTfLiteOk) return kTfLiteError;
    }
  }
  return kTfLiteOk;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  kernel_data* data = (kernel_data*)node->user_data;
  if (!data || data->failed) return kTfLiteError;
  for (int i = 0; i < data->count; i++) {
    if (kKernels[data->nodes[i].kind].invoke(context, &data->nodes[i]) != kTfLiteOk) return kTfLiteError;
  }
  return kTfLiteOk;
}

/* ------------------------------------------------------------ plain custom ops */

/* Init parses the options (the buffer is the node's custom options); Prepare reads the
 * node's tensors. An error is kept and reported by Prepare, prefixed with the op's name. */
static void* single_init(int kind, const char* buffer, size_t length) {
  kernel_data* data = kernel_data_new(1);
  if (!data) return 0;
  data->count = 1;
  data->nodes[0].kind = kind;
  if (kOps[kind].parse_options((const uint8_t*)buffer, length, &data->nodes[0], data->error))
    data->failed = 1, data->failed_kind = kind;
  return data;
}

static TfLiteStatus single_prepare(TfLiteContext* context, TfLiteNode* node) {
  kernel_data* data = (kernel_data*)node->user_data;
  if (data && !data->failed) {
    node_info* info = &data->nodes[0];
    if (kOps[info->kind].read_tensors(node, info, data->error)) data->failed = 1, data->failed_kind = info->kind;
  }
  return kernel_prepare(context, node);
}

/* TFLite's init gets no op identity, hence one small init per op. */
static void* op_init(TfLiteContext* c, const char* b, size_t n) { return (void)c, single_init(kProjection, b, n); }
static void* fo_op_init(TfLiteContext* c, const char* b, size_t n) { return (void)c, single_init(kFoPool, b, n); }
static void* mm_op_init(TfLiteContext* c, const char* b, size_t n) { return (void)c, single_init(kIntMatMul, b, n); }
static void* dq_op_init(TfLiteContext* c, const char* b, size_t n) { return (void)c, single_init(kDequantize, b, n); }
static void* q_op_init(TfLiteContext* c, const char* b, size_t n) { return (void)c, single_init(kQuantize, b, n); }

PQRNN_EXPORT TfLiteRegistration* PQRNN_Register_PROJECTION(void) {
  static TfLiteRegistration registration = {
      op_init, kernel_free, single_prepare, kernel_invoke, 0, PQRNN_BUILTIN_CUSTOM, OP_NAME, 1, 0, 0, 0, {0}};
  return &registration;
}

PQRNN_EXPORT TfLiteRegistration* PQRNN_Register_FO_POOL(void) {
  static TfLiteRegistration registration = {
      fo_op_init, kernel_free, single_prepare, kernel_invoke, 0, PQRNN_BUILTIN_CUSTOM, FO_OP_NAME, 1, 0, 0, 0, {0}};
  return &registration;
}

PQRNN_EXPORT TfLiteRegistration* PQRNN_Register_INT_MATMUL(void) {
  static TfLiteRegistration registration = {
      mm_op_init, kernel_free, single_prepare, kernel_invoke, 0, PQRNN_BUILTIN_CUSTOM, MM_OP_NAME, 1, 0, 0, 0, {0}};
  return &registration;
}

PQRNN_EXPORT TfLiteRegistration* PQRNN_Register_DEQUANTIZE(void) {
  static TfLiteRegistration registration = {
      dq_op_init, kernel_free, single_prepare, kernel_invoke, 0, PQRNN_BUILTIN_CUSTOM, DQ_OP_NAME, 1, 0, 0, 0, {0}};
  return &registration;
}

PQRNN_EXPORT TfLiteRegistration* PQRNN_Register_QUANTIZE(void) {
  static TfLiteRegistration registration = {
      q_op_init, kernel_free, single_prepare, kernel_invoke, 0, PQRNN_BUILTIN_CUSTOM, Q_OP_NAME, 1, 0, 0, 0, {0}};
  return &registration;
}

/* ------------------------------------------------------------ op-provider delegate */

/* The kind of one of our CUSTOM nodes, or -1 for any other node. */
static int kind_of(const TfLiteRegistration* reg) {
  if (reg->builtin_code != PQRNN_BUILTIN_CUSTOM || !reg->custom_name) return -1;
  for (int kind = 0; kind < NUM_KINDS; kind++) {
    const char *a = reg->custom_name, *b = kOps[kind].name;
    while (*a && *a == *b) a++, b++;
    if (*a == *b) return kind;
  }
  return -1;
}

static void* delegate_kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  const TfLiteIntArray* nodes = params->nodes_to_replace;
  kernel_data* data = kernel_data_new(nodes->size);
  if (!data) return 0;
  for (int i = 0; i < nodes->size && !data->failed; i++) {
    TfLiteNode* node;
    TfLiteRegistration* reg;
    if (context->GetNodeAndRegistration(context, nodes->data[i], &node, &reg) != kTfLiteOk) {
      copy_message("the runtime could not return a delegated node", data->error);
      data->failed = 1;
      break;
    }
    node_info* info = &data->nodes[data->count];
    const uint8_t* options = (const uint8_t*)node->custom_initial_data;
    size_t size = node->custom_initial_data_size < 0 ? 0 : (size_t)node->custom_initial_data_size;
    const int kind = kind_of(reg); /* >= 0: Prepare claimed only our nodes */
    info->kind = kind < 0 ? kProjection : kind;
    if (kind < 0) copy_message("the runtime delegated a node that is not an edge-pqrnn op", data->error);
    if (kind < 0 || kOps[kind].read_tensors(node, info, data->error) ||
        kOps[kind].parse_options(options, size, info, data->error))
      data->failed = 1, data->failed_kind = info->kind;
    const int outputs = info->kind == kProjection ? NUM_OUTPUTS : 1;
    for (int k = 0; k < outputs && !data->failed; k++) {
      int external = 0;
      for (int j = 0; params->output_tensors && j < params->output_tensors->size; j++)
        external |= params->output_tensors->data[j] == info->outputs[k];
      if (!external) info->internal_mask |= 1 << k;
    }
    data->count++;
  }
  return data;
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
    if (kind_of(reg) < 0) continue;
    if (count == MAX_NODES) return report_op(context, kProjection, "too many edge-pqrnn ops in one graph (max 64)");
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
