/*
 * JVM tests only: a host stand-in for LiteRT's Java Interpreter (whose native part,
 * libtensorflowlite_jni.so, ships only in the Maven AAR). It embeds CPython and runs the
 * artifact in ai-edge-litert (the same LiteRT C++ interpreter), handing it the
 * TfLiteDelegate* that the app's own ProjectionDelegate.getNativeHandle() returns, as
 * Interpreter.Options.addDelegate() does on a device. No projection code here: the op
 * runs only if that handle provides it.
 *
 * Python is found through PYTHONHOME / PYTHONPATH (ci.sh sets them from `python`).
 */
#define PY_SSIZE_T_CLEAN /* Py_ssize_t lengths for "y#" */
#include <Python.h>
#include <dlfcn.h>
#include <jni.h>
#include <string.h>

static const char* kHelper =
    "import numpy as np\n"
    "from ai_edge_litert.interpreter import Interpreter\n"
    "class Handle:\n"
    "    # What load_delegate() returns, minus the library: just the native pointer.\n"
    "    def __init__(self, pointer): self.pointer = pointer\n"
    "    def _get_native_delegate_pointer(self): return self.pointer\n"
    "def open(model, delegate):\n"
    "    delegates = [Handle(delegate)] if delegate else []\n"
    "    interpreter = Interpreter(model_content=bytes(model), experimental_delegates=delegates)\n"
    "    return (interpreter, interpreter.get_signature_runner('serving_default'))\n"
    "def run(runner, text):\n"
    "    out = runner[1](text=np.array([bytes(text)], dtype=object))\n"
    "    intents = np.ascontiguousarray(out['intent_logits'][0], np.float32)\n"
    "    slots = out.get('slot_logits')\n"
    "    shape = (0, 0) if slots is None else slots.shape[1:]\n"
    "    slots = b'' if slots is None else np.ascontiguousarray(slots[0], np.float32).tobytes()\n"
    "    return (intents.tobytes(), slots, int(out['num_tokens'][0]), int(shape[0]), int(shape[1]))\n";

static PyObject* helper; /* the module above */

static void throw_java(JNIEnv* env, const char* what) {
  char message[2048];
  const char* detail = "";
  PyObject *type = 0, *value = 0, *trace = 0, *text = 0;
  if (PyErr_Occurred()) {
    PyErr_Fetch(&type, &value, &trace);
    text = value ? PyObject_Str(value) : 0;
    detail = text ? PyUnicode_AsUTF8(text) : "";
    if (!detail) detail = "";
  }
  snprintf(message, sizeof message, "%s%s%s", what, *detail ? ": " : "", detail);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(trace);
  Py_XDECREF(text);
  PyErr_Clear();
  (*env)->ThrowNew(env, (*env)->FindClass(env, "java/lang/IllegalStateException"), message);
}

static int start_python(JNIEnv* env) {
  if (helper) return 1;
  /* The JVM loaded us RTLD_LOCAL: numpy's extension modules need libpython's symbols
   * global, as in a python executable. */
  if (!dlopen(PY_LIBRARY, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD)) {
    (*env)->ThrowNew(env, (*env)->FindClass(env, "java/lang/IllegalStateException"), "cannot promote " PY_LIBRARY);
    return 0;
  }
  Py_InitializeEx(0); /* 0: leave the JVM's signal handlers alone */
  PyObject* code = Py_CompileString(kHelper, "host_litert", Py_file_input);
  helper = code ? PyImport_ExecCodeModule("host_litert", code) : 0;
  Py_XDECREF(code);
  if (!helper) {
    throw_java(env, "cannot import ai_edge_litert in the embedded Python (set PYTHONHOME/PYTHONPATH to a Python "
                    "with ai-edge-litert and numpy)");
    PyEval_SaveThread();
    return 0;
  }
  PyEval_SaveThread(); /* release the GIL: every call below takes it */
  return 1;
}

JNIEXPORT jlong JNICALL Java_org_edgepqrnn_demo_HostLiteRt_open(JNIEnv* env, jclass cls, jbyteArray model,
                                                                  jlong delegate) {
  (void)cls;
  static int started;
  if (!started) started = start_python(env);
  if (!started) return 0;
  PyGILState_STATE gil = PyGILState_Ensure();
  jsize n = (*env)->GetArrayLength(env, model);
  jbyte* bytes = (*env)->GetByteArrayElements(env, model, 0);
  PyObject* result = PyObject_CallMethod(helper, "open", "y#K", (const char*)bytes, (Py_ssize_t)n,
                                         (unsigned long long)delegate);
  (*env)->ReleaseByteArrayElements(env, model, bytes, JNI_ABORT);
  if (!result) throw_java(env, "LiteRT cannot open the artifact");
  PyGILState_Release(gil);
  return (jlong)(intptr_t)result;
}

/* Fills out[0] = intent logits, out[1] = slot logits (T*K, row-major); returns
 * {num_tokens, T, K}. */
JNIEXPORT jintArray JNICALL Java_org_edgepqrnn_demo_HostLiteRt_run(JNIEnv* env, jclass cls, jlong handle,
                                                                     jbyteArray text, jobjectArray out) {
  (void)cls;
  jintArray shape = 0;
  PyGILState_STATE gil = PyGILState_Ensure();
  jsize n = (*env)->GetArrayLength(env, text);
  jbyte* bytes = (*env)->GetByteArrayElements(env, text, 0);
  PyObject* result = PyObject_CallMethod(helper, "run", "Oy#", (PyObject*)(intptr_t)handle, (const char*)bytes,
                                         (Py_ssize_t)n);
  (*env)->ReleaseByteArrayElements(env, text, bytes, JNI_ABORT);
  const char *intents, *slots;
  Py_ssize_t intents_size, slots_size;
  int rows, t, k;
  if (!result || !PyArg_ParseTuple(result, "y#y#iii", &intents, &intents_size, &slots, &slots_size, &rows, &t, &k)) {
    throw_java(env, "LiteRT failed to run the artifact");
  } else {
    jfloatArray a = (*env)->NewFloatArray(env, (jsize)(intents_size / 4));
    jfloatArray b = (*env)->NewFloatArray(env, (jsize)(slots_size / 4));
    (*env)->SetFloatArrayRegion(env, a, 0, (jsize)(intents_size / 4), (const jfloat*)intents);
    (*env)->SetFloatArrayRegion(env, b, 0, (jsize)(slots_size / 4), (const jfloat*)slots);
    (*env)->SetObjectArrayElement(env, out, 0, a);
    (*env)->SetObjectArrayElement(env, out, 1, b);
    jint values[3] = {rows, t, k};
    shape = (*env)->NewIntArray(env, 3);
    (*env)->SetIntArrayRegion(env, shape, 0, 3, values);
  }
  Py_XDECREF(result);
  PyGILState_Release(gil);
  return shape;
}

JNIEXPORT void JNICALL Java_org_edgepqrnn_demo_HostLiteRt_close(JNIEnv* env, jclass cls, jlong handle) {
  (void)env;
  (void)cls;
  if (!handle) return;
  PyGILState_STATE gil = PyGILState_Ensure();
  Py_DECREF((PyObject*)(intptr_t)handle);
  PyGILState_Release(gil);
}
