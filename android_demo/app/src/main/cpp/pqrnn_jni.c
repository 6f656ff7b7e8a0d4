/*
 * The JNI bridge of the demo app: the projection op and its op-provider delegate (from
 * edge_pqrnn/projection/native, unchanged) plus three Java entry points:
 *
 *   PqrnnNative.createDelegate()  -> tflite_plugin_create_delegate(): the TfLiteDelegate*
 *                                    that LiteRT's Interpreter.Options.addDelegate() takes
 *                                    (through ProjectionDelegate.getNativeHandle());
 *   PqrnnNative.deleteDelegate(h) -> tflite_plugin_destroy_delegate();
 *   PqrnnNative.tokenRows(...)    -> the byte span of every token row the op makes, so
 *                                    the app can map slot tags back to characters.
 *
 * Like the op, it uses no libc header and no C++: one source builds for Android
 * (clang --target=aarch64-linux-android24 / x86_64-linux-android24 -nostdlib) and for
 * the host JVM tests (x86_64 Linux). jni.h comes from the JDK; it includes <stdio.h>,
 * which android_demo/tools/shim/ replaces by an empty file for the Android builds.
 *
 * The core is included as source, not linked: the token scan below needs its private
 * UTF-8 decoder and character classes, and must mirror pqrnn_project_text() exactly
 * (the JVM tests compare the row count with the op's num_tokens and the spans with the
 * Python reference on every text).
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

/* The token rows of pqrnn_project_text() without the hashing: for row r, spans[3r] and
 * spans[3r+1] are its byte offsets [start, end) in text, spans[3r+2] is 1 for a marker
 * row (<BOS>, <EOS>, <null>: start = end) and 0 for a text token. Returns the row count
 * (at most max_rows rows are written; the count is exact either way). */
static int token_rows(const pqrnn_options* o, const uint8_t* text, size_t length, int32_t* spans, int max_rows) {
  const int limit = o->max_tokens - o->add_bos - o->add_eos;
  int rows = 0;
#define ROW(s, e, special)                    \
  do {                                        \
    if (rows < max_rows) {                    \
      spans[3 * rows] = (int32_t)(s);         \
      spans[3 * rows + 1] = (int32_t)(e);     \
      spans[3 * rows + 2] = (special);        \
    }                                         \
    rows++;                                   \
  } while (0)
  if (o->add_bos) ROW(0, 0, 1);
  int words = 0, have_token = 0, word_open = 0, open = 0;
  size_t tok_start = 0, tok_end = 0, i = 0;
  while (i < length) {
    size_t used;
    int32_t cp = utf8_next(text + i, length - i, &used);
    size_t at = i;
    i += used;
    if (cp < 0) continue;
    int cls = char_class(cp);
    if (cls == kIgnore) continue;
    if (cls == kJoin && open) {
      tok_end = i;
      continue;
    }
    int starts_new;
    if (o->char_mode) {
      starts_new = 1;
      word_open = 0;
    } else if (cls == kSpace) {
      open = word_open = 0;
      continue;
    } else if (cls == kWord || cls == kJoin) {
      starts_new = !(open && word_open);
      word_open = 1;
    } else {
      starts_new = 1;
      word_open = 0;
    }
    open = 1;
    if (!starts_new) {
      tok_end = i;
      continue;
    }
    if (have_token) {
      ROW(tok_start, tok_end, 0);
      words++;
      have_token = 0;
    }
    if (words == limit) break;
    tok_start = at;
    tok_end = i;
    have_token = 1;
  }
  if (have_token) ROW(tok_start, tok_end, 0);
  if (o->add_eos) ROW(length, length, 1);
  if (rows == 0) ROW(0, 0, 1);
#undef ROW
  return rows;
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
  int rows = token_rows(&o, (const uint8_t*)text, (size_t)length, spans, PQRNN_MAX_TOKENS);
  (*env)->ReleaseByteArrayElements(env, utf8, text, JNI_ABORT);
  if (rows > max_tokens) rows = max_tokens; /* cannot happen: the limit keeps rows <= T */
  jintArray out = (*env)->NewIntArray(env, 3 * rows);
  if (out) (*env)->SetIntArrayRegion(env, out, 0, 3 * rows, (const jint*)spans);
  return out;
}
