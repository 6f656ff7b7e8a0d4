/*
 * edge-pqrnn's own minimal copy of the TensorFlow Lite C ABI: only the structs and
 * enums the projection and fo-pool ops touch. No registry ships TFLite's C headers, so we carry
 * this file instead of depending on a TensorFlow source tree.
 *
 * Layout source: tensorflow/lite/core/c/common.h, identical for the fields below in
 * TensorFlow Lite 2.14 (tflite-runtime 2.14), TensorFlow 2.21 (tf.lite) and LiteRT 2.3
 * (ai-edge-litert). Fields after the last one we use are omitted from structs the
 * runtime owns (TfLiteContext, TfLiteTensor, TfLiteNode): we never allocate those.
 * Structs WE allocate and hand to the runtime (TfLiteRegistration, TfLiteDelegate) are
 * complete, zero-filled, and TfLiteRegistration carries spare zeroed tail bytes so that
 * a runtime with a longer struct still reads zeros (it is passed by value).
 *
 * tests/test_native_op.py proves the layout against every runtime: the op reads the
 * input's type, dims, bytes and data, the node's inputs/outputs and custom options, and
 * resizes outputs; a misplaced field breaks those tests.
 */
#ifndef PQRNN_TFLITE_ABI_H_
#define PQRNN_TFLITE_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { kTfLiteOk = 0, kTfLiteError = 1 } TfLiteStatus;

typedef enum {
  kTfLiteNoType = 0,
  kTfLiteFloat32 = 1,
  kTfLiteInt32 = 2,
  kTfLiteUInt8 = 3,
  kTfLiteInt64 = 4,
  kTfLiteString = 5,
  kTfLiteBool = 6,
  kTfLiteInt16 = 7,
  kTfLiteComplex64 = 8,
  kTfLiteInt8 = 9
} TfLiteType;

/* BuiltinOperator_CUSTOM in the TFLite schema. */
#define PQRNN_BUILTIN_CUSTOM 32

enum { kTfLiteDelegateFlagsAllowDynamicTensors = 1 };

typedef struct TfLiteIntArray {
  int size;
  int data[];
} TfLiteIntArray;

typedef union TfLitePtrUnion {
  int32_t* i32;
  int64_t* i64;
  float* f;
  char* raw;
  const char* raw_const;
  uint8_t* uint8;
  int8_t* int8;
  void* data;
} TfLitePtrUnion;

typedef struct TfLiteQuantizationParams {
  float scale;
  int32_t zero_point;
} TfLiteQuantizationParams;

/* TfLiteQuantization.type; params then points to a TfLiteAffineQuantization. */
enum { kTfLiteNoQuantization = 0, kTfLiteAffineQuantization = 1 };

typedef struct TfLiteQuantization {
  int type;
  void* params;
} TfLiteQuantization;

typedef struct TfLiteFloatArray {
  int size;
  float data[];
} TfLiteFloatArray;

/* Runtime-owned; one scale and zero point per tensor, or per channel. */
typedef struct TfLiteAffineQuantization {
  TfLiteFloatArray* scale;
  TfLiteIntArray* zero_point;
  int32_t quantized_dimension;
} TfLiteAffineQuantization;

struct TfLiteDelegate;
struct TfLiteRegistration;

/* Prefix of TfLiteTensor (runtime-owned). */
typedef struct TfLiteTensor {
  TfLiteType type;
  TfLitePtrUnion data;
  TfLiteIntArray* dims;
  TfLiteQuantizationParams params;
  int allocation_type;
  size_t bytes;
  const void* allocation;
  const char* name;
  struct TfLiteDelegate* delegate;
  int buffer_handle;
  _Bool data_is_stale;
  _Bool is_variable;
  TfLiteQuantization quantization;
  void* sparsity;
  const TfLiteIntArray* dims_signature;
} TfLiteTensor;

/* Prefix of TfLiteNode (runtime-owned). */
typedef struct TfLiteNode {
  TfLiteIntArray* inputs;
  TfLiteIntArray* outputs;
  TfLiteIntArray* intermediates;
  TfLiteIntArray* temporaries;
  void* user_data;
  void* builtin_data;
  const void* custom_initial_data;
  int custom_initial_data_size;
  struct TfLiteDelegate* delegate;
  _Bool might_have_side_effect;
} TfLiteNode;

/* Prefix of TfLiteContext (runtime-owned): up to ReplaceNodeSubsetsWithDelegateKernels. */
typedef struct TfLiteContext {
  size_t tensors_size;
  TfLiteStatus (*GetExecutionPlan)(struct TfLiteContext* context, TfLiteIntArray** execution_plan);
  TfLiteTensor* tensors;
  void* impl_;
  TfLiteStatus (*ResizeTensor)(struct TfLiteContext*, TfLiteTensor* tensor, TfLiteIntArray* new_size);
  void (*ReportError)(struct TfLiteContext*, const char* msg, ...);
  TfLiteStatus (*AddTensors)(struct TfLiteContext*, int tensors_to_add, int* first_new_tensor_index);
  TfLiteStatus (*GetNodeAndRegistration)(struct TfLiteContext*, int node_index, TfLiteNode** node,
                                         struct TfLiteRegistration** registration);
  /* The registration is passed BY VALUE: see the tail padding below. */
  TfLiteStatus (*ReplaceNodeSubsetsWithDelegateKernels)(struct TfLiteContext*,
                                                         struct TfLiteRegistration registration,
                                                         const TfLiteIntArray* nodes_to_replace,
                                                         struct TfLiteDelegate* delegate);
} TfLiteContext;

/* Complete TfLiteRegistration of TFLite 2.14..2.21, plus zeroed spare room. */
typedef struct TfLiteRegistration {
  void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
  void (*free)(TfLiteContext* context, void* buffer);
  TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
  TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
  const char* (*profiling_string)(const TfLiteContext* context, const TfLiteNode* node);
  int32_t builtin_code;
  const char* custom_name;
  int version;
  void* registration_external; /* must stay NULL: we are not a TfLiteOperator */
  void* async_kernel;          /* NULL: no asynchronous execution */
  uint64_t inplace_operator;   /* 0 = kTfLiteInplaceOpNone */
  void* reserved_tail[8];      /* zeros for fields a newer runtime may append */
} TfLiteRegistration;

/* Parameters a delegate kernel's init() receives as its buffer. */
typedef struct TfLiteDelegateParams {
  struct TfLiteDelegate* delegate;
  TfLiteIntArray* nodes_to_replace;
  TfLiteIntArray* input_tensors;
  TfLiteIntArray* output_tensors;
} TfLiteDelegateParams;

/* Complete TfLiteDelegate. */
typedef struct TfLiteDelegate {
  void* data_;
  TfLiteStatus (*Prepare)(TfLiteContext* context, struct TfLiteDelegate* delegate);
  TfLiteStatus (*CopyFromBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, TfLiteTensor*);
  TfLiteStatus (*CopyToBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int, TfLiteTensor*);
  void (*FreeBufferHandle)(TfLiteContext*, struct TfLiteDelegate*, int* handle);
  int64_t flags;
  void* opaque_delegate_builder; /* must stay NULL, or the runtime ignores Prepare */
} TfLiteDelegate;

#if defined(__LP64__) || defined(_LP64)
/* Offsets on 64-bit targets (x86_64, aarch64), checked at compile time. */
_Static_assert(offsetof(TfLiteTensor, data) == 8, "TfLiteTensor.data");
_Static_assert(offsetof(TfLiteTensor, dims) == 16, "TfLiteTensor.dims");
_Static_assert(offsetof(TfLiteTensor, bytes) == 40, "TfLiteTensor.bytes");
_Static_assert(offsetof(TfLiteTensor, dims_signature) == 104, "TfLiteTensor.dims_signature");
_Static_assert(offsetof(TfLiteNode, custom_initial_data) == 48, "TfLiteNode.custom_initial_data");
_Static_assert(offsetof(TfLiteNode, custom_initial_data_size) == 56, "TfLiteNode.custom_initial_data_size");
_Static_assert(offsetof(TfLiteContext, ReplaceNodeSubsetsWithDelegateKernels) == 64,
               "TfLiteContext.ReplaceNodeSubsetsWithDelegateKernels");
_Static_assert(offsetof(TfLiteRegistration, inplace_operator) == 80, "TfLiteRegistration.inplace_operator");
_Static_assert(offsetof(TfLiteDelegate, opaque_delegate_builder) == 48, "TfLiteDelegate.opaque_delegate_builder");
#endif

#ifdef __cplusplus
}
#endif
#endif /* PQRNN_TFLITE_ABI_H_ */
