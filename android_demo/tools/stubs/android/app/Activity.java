package android.app;

import android.content.res.AssetManager;
import android.os.Bundle;
import android.view.View;

public class Activity {
  protected void onCreate(Bundle savedInstanceState) { throw new UnsupportedOperationException("stub"); }
  protected void onDestroy() { throw new UnsupportedOperationException("stub"); }
  public void setContentView(int layoutResID) { throw new UnsupportedOperationException("stub"); }
  public <T extends View> T findViewById(int id) { throw new UnsupportedOperationException("stub"); }
  public AssetManager getAssets() { throw new UnsupportedOperationException("stub"); }
  public final String getString(int resId, Object... formatArgs) { throw new UnsupportedOperationException("stub"); }
  public final void runOnUiThread(Runnable action) { throw new UnsupportedOperationException("stub"); }
}
