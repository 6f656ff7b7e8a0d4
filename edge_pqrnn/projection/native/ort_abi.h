/*
 * edge-pqrnn's own minimal copy of the onnxruntime C ABI: only what the projection's
 * custom op touches. The onnxruntime wheel ships no C headers, so we carry this file
 * instead of depending on an onnxruntime source tree.
 *
 * Facts taken from onnxruntime's include/onnxruntime/core/session/onnxruntime_c_api.h:
 *   - OrtApi is a struct of function pointers that only ever grows at its end (each
 *     release appends; nothing is reordered or removed). We never dereference the
 *     struct as a C type: each function is read from its slot index (ORT_SLOT_*),
 *     counted from the start of the struct in the API-29 header; all 17 slots hold the
 *     same functions in the API-1 header (102 entries then), so the indices hold for
 *     every API version.
 *   - OrtCustomOp: a version field, then callbacks that only grow at the end. onnxruntime
 *     reads a callback only when op->version is high enough for it (GetInputCharacteristic
 *     from 8, GetInputMemoryType from 13, CreateKernelV2/KernelComputeV2 from 16,
 *     InferOutputShapeFn/GetStartVersion from 17...). We declare version
 *     PQRNN_ORT_OP_VERSION (16) and fill every callback up to KernelComputeV2; the later
 *     members are declared (zero) so the struct matches the header's layout.
 *   - A custom op library exports RegisterCustomOps(OrtSessionOptions*, const OrtApiBase*).
 *
 * Checked against onnxruntime 1.32.0 (API 32) by tests/test_onnx_op.py: a wrong slot
 * or member offset fails those tests (wrong results, or a crash in a subprocess).
 */
#ifndef PQRNN_ORT_ABI_H_
#define PQRNN_ORT_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define ORT_ABI_CALL __stdcall
#else
#define ORT_ABI_CALL
#endif

/* Opaque runtime objects. */
typedef struct OrtStatus OrtStatus;
typedef struct OrtValue OrtValue;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtShapeInferContext OrtShapeInferContext;
typedef struct OrtCustomOp OrtCustomOp;

/* The OrtApi table: read by slot index, never as a struct. */
typedef struct OrtApi OrtApi;

typedef enum {
  ORT_OK = 0,
  ORT_FAIL = 1,
  ORT_INVALID_ARGUMENT = 2,
} OrtErrorCode;

/* ONNXTensorElementDataType: the values we use (TensorProto.DataType numbering). */
typedef enum {
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 = 6,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING = 8,
} ONNXTensorElementDataType;

typedef enum { INPUT_OUTPUT_REQUIRED = 0, INPUT_OUTPUT_OPTIONAL = 1, INPUT_OUTPUT_VARIADIC = 2 } OrtCustomOpInputOutputCharacteristic;

typedef enum { OrtMemTypeDefault = 0 } OrtMemType;

typedef struct OrtApiBase {
  const OrtApi*(ORT_ABI_CALL* GetApi)(uint32_t version);
  const char*(ORT_ABI_CALL* GetVersionString)(void);
} OrtApiBase;

/* Slot indices in OrtApi (0-based). */
#define ORT_SLOT_CreateStatus 0
#define ORT_SLOT_CreateCustomOpDomain 26
#define ORT_SLOT_CustomOpDomain_Add 27
#define ORT_SLOT_AddCustomOpDomain 28
#define ORT_SLOT_GetTensorMutableData 51
#define ORT_SLOT_GetStringTensorDataLength 53
#define ORT_SLOT_GetStringTensorContent 54
#define ORT_SLOT_GetTensorElementType 60
#define ORT_SLOT_GetDimensionsCount 61
#define ORT_SLOT_GetDimensions 62
#define ORT_SLOT_GetTensorTypeAndShape 65
#define ORT_SLOT_KernelInfoGetAttribute_int64 86
#define ORT_SLOT_KernelContext_GetInput 90
#define ORT_SLOT_KernelContext_GetOutput 91
#define ORT_SLOT_ReleaseStatus 93
#define ORT_SLOT_ReleaseTensorTypeAndShapeInfo 99
#define ORT_SLOT_ReleaseCustomOpDomain 101

/* Function types of those slots (all return OrtStatus*, NULL on success, unless noted). */
typedef OrtStatus*(ORT_ABI_CALL* OrtCreateStatusFn)(OrtErrorCode code, const char* msg);
typedef OrtStatus*(ORT_ABI_CALL* OrtCreateCustomOpDomainFn)(const char* domain, OrtCustomOpDomain** out);
typedef OrtStatus*(ORT_ABI_CALL* OrtCustomOpDomainAddFn)(OrtCustomOpDomain* domain, const OrtCustomOp* op);
typedef OrtStatus*(ORT_ABI_CALL* OrtAddCustomOpDomainFn)(OrtSessionOptions* options, OrtCustomOpDomain* domain);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetTensorMutableDataFn)(OrtValue* value, void** out);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetStringTensorDataLengthFn)(const OrtValue* value, size_t* len);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetStringTensorContentFn)(const OrtValue* value, void* s, size_t s_len,
                                                              size_t* offsets, size_t offsets_len);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetTensorElementTypeFn)(const OrtTensorTypeAndShapeInfo* info,
                                                            ONNXTensorElementDataType* out);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetDimensionsCountFn)(const OrtTensorTypeAndShapeInfo* info, size_t* out);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetDimensionsFn)(const OrtTensorTypeAndShapeInfo* info, int64_t* dims,
                                                     size_t dims_length);
typedef OrtStatus*(ORT_ABI_CALL* OrtGetTensorTypeAndShapeFn)(const OrtValue* value, OrtTensorTypeAndShapeInfo** out);
typedef OrtStatus*(ORT_ABI_CALL* OrtKernelInfoGetAttributeInt64Fn)(const OrtKernelInfo* info, const char* name,
                                                                   int64_t* out);
typedef OrtStatus*(ORT_ABI_CALL* OrtKernelContextGetInputFn)(const OrtKernelContext* context, size_t index,
                                                             const OrtValue** out);
typedef OrtStatus*(ORT_ABI_CALL* OrtKernelContextGetOutputFn)(OrtKernelContext* context, size_t index,
                                                              const int64_t* dims, size_t dim_count, OrtValue** out);
typedef void(ORT_ABI_CALL* OrtReleaseStatusFn)(OrtStatus* status);
typedef void(ORT_ABI_CALL* OrtReleaseTensorTypeAndShapeInfoFn)(OrtTensorTypeAndShapeInfo* info);
typedef void(ORT_ABI_CALL* OrtReleaseCustomOpDomainFn)(OrtCustomOpDomain* domain);

/* The function in slot `slot` of the table, as type `type`. */
#define ORT_FN(api, type, slot) ((type)(((void* const*)(const void*)(api))[slot]))

/* The OrtCustomOp version we declare (see above). */
#define PQRNN_ORT_OP_VERSION 16

struct OrtCustomOp {
  uint32_t version;
  void*(ORT_ABI_CALL* CreateKernel)(const struct OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char*(ORT_ABI_CALL* GetName)(const struct OrtCustomOp* op);
  const char*(ORT_ABI_CALL* GetExecutionProviderType)(const struct OrtCustomOp* op);
  ONNXTensorElementDataType(ORT_ABI_CALL* GetInputType)(const struct OrtCustomOp* op, size_t index);
  size_t(ORT_ABI_CALL* GetInputTypeCount)(const struct OrtCustomOp* op);
  ONNXTensorElementDataType(ORT_ABI_CALL* GetOutputType)(const struct OrtCustomOp* op, size_t index);
  size_t(ORT_ABI_CALL* GetOutputTypeCount)(const struct OrtCustomOp* op);
  void(ORT_ABI_CALL* KernelCompute)(void* kernel, OrtKernelContext* context);
  void(ORT_ABI_CALL* KernelDestroy)(void* kernel);
  /* version >= 8 */
  OrtCustomOpInputOutputCharacteristic(ORT_ABI_CALL* GetInputCharacteristic)(const struct OrtCustomOp* op,
                                                                             size_t index);
  OrtCustomOpInputOutputCharacteristic(ORT_ABI_CALL* GetOutputCharacteristic)(const struct OrtCustomOp* op,
                                                                              size_t index);
  /* version >= 13 */
  OrtMemType(ORT_ABI_CALL* GetInputMemoryType)(const struct OrtCustomOp* op, size_t index);
  /* version >= 14 (read only for a variadic input/output) */
  int(ORT_ABI_CALL* GetVariadicInputMinArity)(const struct OrtCustomOp* op);
  int(ORT_ABI_CALL* GetVariadicInputHomogeneity)(const struct OrtCustomOp* op);
  int(ORT_ABI_CALL* GetVariadicOutputMinArity)(const struct OrtCustomOp* op);
  int(ORT_ABI_CALL* GetVariadicOutputHomogeneity)(const struct OrtCustomOp* op);
  /* version >= 16 */
  OrtStatus*(ORT_ABI_CALL* CreateKernelV2)(const struct OrtCustomOp* op, const OrtApi* api,
                                           const OrtKernelInfo* info, void** kernel);
  OrtStatus*(ORT_ABI_CALL* KernelComputeV2)(void* kernel, OrtKernelContext* context);
  /* version >= 17 and later: not used by us (version 16), declared for the layout. */
  OrtStatus*(ORT_ABI_CALL* InferOutputShapeFn)(const struct OrtCustomOp* op, OrtShapeInferContext* context);
  int(ORT_ABI_CALL* GetStartVersion)(const struct OrtCustomOp* op);
  int(ORT_ABI_CALL* GetEndVersion)(const struct OrtCustomOp* op);
  size_t(ORT_ABI_CALL* GetMayInplace)(int** input_index, int** output_index);
  void(ORT_ABI_CALL* ReleaseMayInplace)(int* input_index, int* output_index);
  size_t(ORT_ABI_CALL* GetAliasMap)(int** input_index, int** output_index);
  void(ORT_ABI_CALL* ReleaseAliasMap)(int* input_index, int* output_index);
};

#ifdef __cplusplus
}
#endif
#endif /* PQRNN_ORT_ABI_H_ */
