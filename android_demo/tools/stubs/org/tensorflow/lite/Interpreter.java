package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

public final class Interpreter implements AutoCloseable {
  public static class Options {
    public Options() {}
    public Options addDelegate(Delegate delegate) { throw new UnsupportedOperationException("stub"); }
    public Options setNumThreads(int numThreads) { throw new UnsupportedOperationException("stub"); }
  }

  public Interpreter(ByteBuffer byteBuffer, Options options) { throw new UnsupportedOperationException("stub"); }
  public void runSignature(Map<String, Object> inputs, Map<String, Object> outputs, String signatureKey) {
    throw new UnsupportedOperationException("stub");
  }
  @Override public void close() { throw new UnsupportedOperationException("stub"); }
}
