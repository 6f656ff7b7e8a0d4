/*
 * The JNI bridge of the demo app: the projection op and its op-provider delegate (from
 * edge_pqrnn/projection/native, unchanged) plus three Java entry points:
 *
 *   PqrnnNative.createDelegate()  -> tflite_plugin_create_delegate(): the TfLiteDelegate*
 *                                    that LiteRT's Interpreter.Options.addDelegate() takes
 *                                    (through ProjectionDelegate.getNativeHandle());
 *   PqrnnNative.deleteDelegate(h) -> tflite_plugin_destroy_delegate();
 *   PqrnnNative.tokenRows(...)    -> pqrnn_token_rows(): the byte span of every token row
 *                                    the op makes, so the app can map slot tags back to
 *                                    characters.
 *
 * Like the op, it uses no libc header and no C++: one source builds for Android
 * (clang --target=aarch64-linux-android24 / x86_64-linux-android24 -nostdlib) and for
 * the host JVM tests (x86_64 Linux). jni.h comes from the JDK; it includes <stdio.h>,
 * which android_demo/tools/shim/ replaces by an empty file for the Android builds.
 *
 * The core is included as source, not linked (one translation unit, no libc). Token
 * rows come from the same pqrnn_token_rows() the op projects (the JVM tests compare the
 * row count with the op's num_tokens and the spans with the Python reference).
 */
#include <jni.h>

#include "projection_core.c"
#include "tflite_abi.h"

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t count,
                                              void (*report_error)(const char*));
void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate);

#if defined(__ANDROID__)
int __android_log_write(int priority, const char* tag, const char* text);
static void log_error(const char* message) { __android_log_write(6 /* ANDROID_LOG_ERROR */, "pqrnn", message); }
#else
static void log_error(const char* message) { (void)message; }
#endif

JNIEXPORT jlong JNICALL Java_org_edgepqrnn_demo_PqrnnNative_createDelegate(JNIEnv* env, jclass cls) {
  (void)env;
  (void)cls;
  return (jlong)(intptr_t)tflite_plugin_create_delegate(0, 0, 0, log_error);
}

JNIEXPORT void JNICALL Java_org_edgepqrnn_demo_PqrnnNative_deleteDelegate(JNIEnv* env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  if (handle) tflite_plugin_destroy_delegate((TfLiteDelegate*)(intptr_t)handle);
}

JNIEXPORT jintArray JNICALL Java_org_edgepqrnn_demo_PqrnnNative_tokenRows(JNIEnv* env, jclass cls, jbyteArray utf8,
                                                                          jint max_tokens, jboolean char_mode,
                                                                          jboolean add_bos, jboolean add_eos) {
  (void)cls;
  if (!utf8 || max_tokens <= (add_bos ? 1 : 0) + (add_eos ? 1 : 0) || max_tokens > PQRNN_MAX_TOKENS) return 0;
  pqrnn_options o = {1, max_tokens, char_mode ? 1 : 0, add_bos ? 1 : 0, add_eos ? 1 : 0, 0};
  int32_t spans[3 * PQRNN_MAX_TOKENS];
  jsize length = (*env)->GetArrayLength(env, utf8);
  jbyte* text = (*env)->GetByteArrayElements(env, utf8, 0);
  if (!text) return 0; /* OutOfMemoryError pending */
  int rows = pqrnn_token_rows(&o, (const uint8_t*)text, (size_t)length, spans, PQRNN_MAX_TOKENS);
  (*env)->ReleaseByteArrayElements(env, utf8, text, JNI_ABORT);
  if (rows > max_tokens) rows = max_tokens; /* cannot happen: the limit keeps rows <= T */
  for (int r = 0; r < rows; r++) spans[3 * r + 2] = spans[3 * r + 2] != PQRNN_ROW_TEXT; /* Java: 1 = marker */
  jintArray out = (*env)->NewIntArray(env, 3 * rows);
  if (out) (*env)->SetIntArrayRegion(env, out, 0, 3 * rows, (const jint*)spans);
  return out;
}
