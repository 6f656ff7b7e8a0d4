package android.widget;

import android.text.TextWatcher;
import android.view.View;

public class TextView extends View {
  public final void setText(CharSequence text) { throw new UnsupportedOperationException("stub"); }
  public void addTextChangedListener(TextWatcher watcher) { throw new UnsupportedOperationException("stub"); }
}
