package org.edgepqrnn.demo;

import android.app.Activity;
import android.content.res.AssetFileDescriptor;
import android.os.Bundle;
import android.text.Editable;
import android.text.TextWatcher;
import android.util.Log;
import android.widget.EditText;
import android.widget.TextView;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.util.Locale;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

/** A text box; as you type, the intent, its score and the slot spans of the text. */
public class MainActivity extends Activity {
  /** The artifact in assets/ (build.gradle keeps it uncompressed, so it can be memory-mapped). */
  static final String MODEL_ASSET = "model.tflite";
  private static final String TAG = "pqrnn-demo";

  // One worker thread owns the parser: LiteRT interpreters are not thread-safe.
  private final ExecutorService worker = Executors.newSingleThreadExecutor();
  private final AtomicLong generation = new AtomicLong();
  private IntentParser parser;
  private TextView intentView;
  private TextView slotsView;

  @Override
  protected void onCreate(Bundle savedInstanceState) {
    super.onCreate(savedInstanceState);
    setContentView(R.layout.activity_main);
    EditText input = findViewById(R.id.input);
    intentView = findViewById(R.id.intent);
    slotsView = findViewById(R.id.slots);
    worker.execute(new Runnable() {
      @Override
      public void run() {
        try {
          MappedByteBuffer model = mapAsset(MODEL_ASSET);
          ModelMetadata metadata = ModelMetadata.read(model);
          parser = new IntentParser(metadata, new LiteRtRunner(model, metadata));
          show(getString(R.string.ready, metadata.intents.size(), metadata.tags.size()), "");
        } catch (IOException | RuntimeException e) {
          Log.e(TAG, "cannot load " + MODEL_ASSET, e);
          show(getString(R.string.load_failed, MODEL_ASSET, String.valueOf(e.getMessage())), "");
        }
      }
    });
    input.addTextChangedListener(new TextWatcher() {
      @Override
      public void beforeTextChanged(CharSequence s, int start, int count, int after) {}

      @Override
      public void onTextChanged(CharSequence s, int start, int before, int count) {}

      @Override
      public void afterTextChanged(Editable s) {
        final String text = s.toString();
        final long mine = generation.incrementAndGet();
        worker.execute(new Runnable() {
          @Override
          public void run() {
            if (parser == null || mine != generation.get()) return; // a newer keystroke is queued
            long start = System.nanoTime();
            IntentParser.Prediction p = parser.parse(text);
            double ms = (System.nanoTime() - start) / 1e6;
            show(String.format(Locale.US, "%s  %.3f  (%.1f ms)", p.intent, p.score, ms), markup(p));
          }
        });
      }
    });
  }

  /** The text with each slot as [value]type, e.g. "flights to [boston]toloc". */
  static String markup(IntentParser.Prediction p) {
    StringBuilder out = new StringBuilder();
    int at = 0;
    for (IntentParser.Slot slot : p.slots) {
      out.append(p.text, at, slot.start).append('[').append(slot.text).append(']').append(slot.type);
      at = slot.end;
    }
    return out.append(p.text.substring(at)).toString();
  }

  private MappedByteBuffer mapAsset(String name) throws IOException {
    try (AssetFileDescriptor fd = getAssets().openFd(name);
         FileInputStream in = new FileInputStream(fd.getFileDescriptor());
         FileChannel channel = in.getChannel()) {
      return channel.map(FileChannel.MapMode.READ_ONLY, fd.getStartOffset(), fd.getDeclaredLength());
    }
  }

  private void show(final String intent, final String slots) {
    runOnUiThread(new Runnable() {
      @Override
      public void run() {
        intentView.setText(intent);
        slotsView.setText(slots);
      }
    });
  }

  @Override
  protected void onDestroy() {
    worker.execute(new Runnable() {
      @Override
      public void run() {
        if (parser != null) parser.close();
      }
    });
    worker.shutdown();
    super.onDestroy();
  }
}
