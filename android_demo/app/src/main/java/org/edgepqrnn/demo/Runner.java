package org.edgepqrnn.demo;

/**
 * Runs the artifact on one text: raw UTF-8 in, logits out. The app's runner is
 * {@link LiteRtRunner} (LiteRT's Interpreter + {@link ProjectionDelegate}); the JVM tests
 * plug in a host runtime with the same delegate handle.
 */
public interface Runner extends AutoCloseable {
  /** The artifact's outputs for one text (without lone surrogates: see IntentParser). */
  Outputs run(String text);

  @Override
  void close();

  /** The signature outputs of one text. */
  final class Outputs {
    /** intent_logits [num_intents]. */
    public final float[] intentLogits;
    /** slot_logits [T][num_tags], or null for a model without a slot head. */
    public final float[][] slotLogits;
    /** num_tokens: the token rows the op made (markers included). */
    public final int numTokens;

    public Outputs(float[] intentLogits, float[][] slotLogits, int numTokens) {
      this.intentLogits = intentLogits;
      this.slotLogits = slotLogits;
      this.numTokens = numTokens;
    }
  }
}
