package org.edgepqrnn.demo;

import org.tensorflow.lite.Delegate;

/**
 * The projection op as a LiteRT delegate: hand it to {@code Interpreter.Options.addDelegate}
 * and the interpreter runs the artifact's EdgePqrnnProjection custom op with our kernel.
 * The native side is the same op-provider delegate that Python loads with
 * {@code load_delegate(edge_pqrnn.op_library())}. Close it after the interpreter.
 */
public final class ProjectionDelegate implements Delegate {
  private long handle;

  public ProjectionDelegate() {
    handle = PqrnnNative.createDelegate();
    if (handle == 0) {
      throw new IllegalStateException("tflite_plugin_create_delegate failed (out of memory?)");
    }
  }

  @Override
  public synchronized long getNativeHandle() {
    if (handle == 0) throw new IllegalStateException("the projection delegate was closed");
    return handle;
  }

  @Override
  public synchronized void close() {
    if (handle != 0) {
      PqrnnNative.deleteDelegate(handle);
      handle = 0;
    }
  }
}
