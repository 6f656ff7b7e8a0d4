package org.edgepqrnn.demo;

/**
 * The JNI bridge, libpqrnn_demo.so (app/src/main/cpp/pqrnn_jni.c): the projection op's
 * op-provider delegate and the op's token scan. Built by build_native.sh for arm64-v8a
 * and x86_64 (jniLibs/) and for the host JVM tests.
 */
public final class PqrnnNative {
  /** The library name for System.loadLibrary (the file is libpqrnn_demo.so). */
  public static final String LIBRARY = "pqrnn_demo";

  static {
    try {
      System.loadLibrary(LIBRARY);
    } catch (UnsatisfiedLinkError e) {
      throw new UnsatisfiedLinkError("cannot load lib" + LIBRARY + ".so (" + e.getMessage() + "): run "
          + "android_demo/build_native.sh to build it into app/src/main/jniLibs/ (or, for the JVM tests, pass "
          + "-Djava.library.path=android_demo/build/host)");
    }
  }

  private PqrnnNative() {}

  /** A new TfLiteDelegate* that claims the EdgePqrnnProjection op (0 on failure). */
  static native long createDelegate();

  /** Frees a handle from {@link #createDelegate}. */
  static native void deleteDelegate(long handle);

  /**
   * The op's token rows for UTF-8 text: {start, end, special} byte offsets per row, in
   * the order of the model's rows; null for an invalid spec.
   */
  static native int[] tokenRows(byte[] utf8, int maxTokens, boolean charMode, boolean addBos, boolean addEos);
}
