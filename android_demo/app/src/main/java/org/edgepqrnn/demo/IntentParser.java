package org.edgepqrnn.demo;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Text in, intent + score + slot spans out: the Java twin of
 * {@code edge_pqrnn.artifact.Artifact.predict} (softmax in double precision, arg-max tag
 * per token row, seqeval-style BIO chunking). Spans are UTF-16 offsets into the text
 * given, so they index a Java String / an EditText directly.
 */
public final class IntentParser implements AutoCloseable {
  /** One predicted slot: {@code text.substring(start, end)} is {@code text}, of type {@code type}. */
  public static final class Slot {
    public final int start;
    public final int end;
    public final String type;
    public final String text;

    Slot(int start, int end, String type, String text) {
      this.start = start;
      this.end = end;
      this.type = type;
      this.text = text;
    }

    @Override
    public String toString() {
      return type + "=" + text + "[" + start + "," + end + ")";
    }
  }

  /** What the model says about one text. */
  public static final class Prediction {
    public final String text;
    public final String intent;
    /** The intent's softmax probability. */
    public final float score;
    public final float[] intentLogits;
    public final List<Slot> slots;
    public final int numTokens;

    Prediction(String text, String intent, float score, float[] intentLogits, List<Slot> slots, int numTokens) {
      this.text = text;
      this.intent = intent;
      this.score = score;
      this.intentLogits = intentLogits;
      this.slots = slots;
      this.numTokens = numTokens;
    }
  }

  private final ModelMetadata metadata;
  private final Runner runner;

  public IntentParser(ModelMetadata metadata, Runner runner) {
    this.metadata = metadata;
    this.runner = runner;
  }

  public ModelMetadata metadata() {
    return metadata;
  }

  /** Runs the model on {@code text} and decodes its outputs. */
  public Prediction parse(String text) {
    Cleaned cleaned = Cleaned.of(text);
    return decode(cleaned, runner.run(cleaned.text));
  }

  /**
   * The text the model sees. The op drops bytes that are not valid UTF-8, and Python
   * drops lone surrogates with them; Java's encoder would turn them into '?'. So they
   * are removed here, and {@code index} maps the cleaned text's chars back to the
   * caller's ({@code index[cleaned.length()]} is the original length).
   */
  static final class Cleaned {
    final String original;
    final String text;
    final int[] index;

    private Cleaned(String original, String text, int[] index) {
      this.original = original;
      this.text = text;
      this.index = index;
    }

    static Cleaned of(String text) {
      StringBuilder clean = new StringBuilder(text.length());
      int[] index = new int[text.length() + 1];
      for (int k = 0; k < text.length(); k++) {
        char c = text.charAt(k);
        boolean paired = Character.isHighSurrogate(c)
            ? k + 1 < text.length() && Character.isLowSurrogate(text.charAt(k + 1))
            : Character.isLowSurrogate(c) && k > 0 && Character.isHighSurrogate(text.charAt(k - 1));
        if (Character.isSurrogate(c) && !paired) continue;
        index[clean.length()] = k;
        clean.append(c);
      }
      index[clean.length()] = text.length();
      return new Cleaned(text, clean.toString(), index);
    }
  }

  /** Decodes one text's outputs (also what the tests feed recorded arm64 outputs to). */
  Prediction decode(Cleaned cleaned, Runner.Outputs out) {
    String text = cleaned.original;
    float[] logits = out.intentLogits;
    if (logits.length != metadata.intents.size()) {
      throw new IllegalStateException("the model gives " + logits.length + " intent logits for "
          + metadata.intents.size() + " labels in its metadata: a corrupt artifact");
    }
    int best = 0;
    double max = Double.NEGATIVE_INFINITY;
    for (int k = 0; k < logits.length; k++) {
      if (logits[k] > max) {
        max = logits[k];
        best = k;
      }
    }
    double sum = 0;
    for (float v : logits) sum += Math.exp(v - max);
    float score = (float) (1.0 / sum);
    List<Slot> slots = out.slotLogits == null ? Collections.<Slot>emptyList() : slots(cleaned, out);
    return new Prediction(text, metadata.intents.get(best), score, logits, slots, out.numTokens);
  }

  private List<Slot> slots(Cleaned c, Runner.Outputs out) {
    String text = c.original, cleaned = c.text;
    int[] index = c.index;
    byte[] utf8 = cleaned.getBytes(StandardCharsets.UTF_8);
    int[] rows = PqrnnNative.tokenRows(utf8, metadata.maxTokens, metadata.charMode, metadata.addBos, metadata.addEos);
    if (rows == null || rows.length / 3 != out.numTokens) {
      throw new IllegalStateException("the projection op made " + out.numTokens + " token rows where the app's "
          + "token scan makes " + (rows == null ? "none" : String.valueOf(rows.length / 3))
          + ": libpqrnn_demo.so is from another edge-pqrnn version; rebuild it with build_native.sh");
    }
    // UTF-8 byte offset -> char offset in `cleaned` (every boundary the op can report).
    int[] charAt = new int[utf8.length + 1];
    int bytePos = 0;
    for (int k = 0; k < cleaned.length(); ) {
      int cp = cleaned.codePointAt(k);
      int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      for (int j = 0; j < n; j++) charAt[bytePos + j] = k;
      bytePos += n;
      k += Character.charCount(cp);
    }
    charAt[utf8.length] = cleaned.length();

    List<Slot> spans = new ArrayList<>();
    int openStart = -1, openEnd = -1;
    String openType = null;
    for (int r = 0; r < out.numTokens; r++) {
      float[] row = out.slotLogits[r];
      int tag = 0;
      for (int k = 1; k < row.length; k++) if (row[k] > row[tag]) tag = k;
      String name = metadata.tags.get(tag);
      boolean special = rows[3 * r + 2] != 0;
      char kind = 'O';
      String type = "";
      if (!special && !"O".equals(name)) {
        if (name.length() <= 2 || !(name.startsWith("B-") || name.startsWith("I-"))) {
          throw new IllegalStateException("invalid tag '" + name + "' in the model's metadata");
        }
        kind = name.charAt(0);
        type = name.substring(2);
      }
      if (openType != null && (kind != 'I' || !type.equals(openType))) {
        spans.add(slot(text, index, charAt, openStart, openEnd, openType));
        openType = null;
      }
      if (kind == 'O') continue;
      if (openType != null) {
        openEnd = rows[3 * r + 1];
      } else {
        openStart = rows[3 * r];
        openEnd = rows[3 * r + 1];
        openType = type;
      }
    }
    if (openType != null) spans.add(slot(text, index, charAt, openStart, openEnd, openType));
    return Collections.unmodifiableList(spans);
  }

  private static Slot slot(String text, int[] index, int[] charAt, int startByte, int endByte, String type) {
    int start = index[charAt[startByte]];
    int endClean = charAt[endByte];
    int end = endClean == 0 ? index[0] : index[endClean - 1] + 1;
    return new Slot(start, end, type, text.substring(start, end));
  }

  @Override
  public void close() {
    runner.close();
  }
}
