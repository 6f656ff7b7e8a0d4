package android.content.res;

import java.io.IOException;

public final class AssetManager implements AutoCloseable {
  public AssetFileDescriptor openFd(String fileName) throws IOException { throw new UnsupportedOperationException("stub"); }
  @Override public void close() { throw new UnsupportedOperationException("stub"); }
}
