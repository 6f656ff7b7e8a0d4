package org.edgepqrnn.demo;

/**
 * Tests only: the artifact in the host's LiteRT (ai-edge-litert, embedded through
 * jvm_tests/native/host_litert.c), given the app's {@link ProjectionDelegate} exactly as
 * {@link LiteRtRunner} gives it to LiteRT's Java Interpreter on a device.
 */
final class HostLiteRt implements Runner {
  static {
    System.loadLibrary("pqrnn_host_litert");
  }

  private final ProjectionDelegate delegate;
  private long handle;

  /** @param delegate the op's delegate, or null to open the artifact without it */
  HostLiteRt(byte[] model, ProjectionDelegate delegate) {
    this.delegate = delegate;
    this.handle = open(model, delegate == null ? 0 : delegate.getNativeHandle());
  }

  @Override
  public Outputs run(String text) {
    float[][] out = new float[2][];
    int[] shape = run(handle, text.getBytes(java.nio.charset.StandardCharsets.UTF_8), out);
    float[][] slots = null;
    if (shape[1] > 0) {
      slots = new float[shape[1]][shape[2]];
      for (int t = 0; t < shape[1]; t++) System.arraycopy(out[1], t * shape[2], slots[t], 0, shape[2]);
    }
    return new Outputs(out[0], slots, shape[0]);
  }

  @Override
  public void close() {
    close(handle);
    handle = 0;
    if (delegate != null) delegate.close();
  }

  private static native long open(byte[] model, long delegate);

  private static native int[] run(long handle, byte[] text, float[][] out);

  private static native void close(long handle);
}
