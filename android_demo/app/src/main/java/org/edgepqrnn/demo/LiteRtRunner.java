package org.edgepqrnn.demo;

import java.nio.ByteBuffer;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import org.tensorflow.lite.Interpreter;

/** The artifact in LiteRT's Interpreter, with the projection op from {@link ProjectionDelegate}. */
public final class LiteRtRunner implements Runner {
  /** The artifact's signature (edge-pqrnn export writes this one). */
  public static final String SIGNATURE = "serving_default";

  private final ProjectionDelegate delegate;
  private final Interpreter interpreter;
  private final ModelMetadata metadata;

  /**
   * @param model the .tflite, as a direct (e.g. memory-mapped) buffer that outlives the runner
   * @param metadata its metadata (label counts give the output shapes)
   */
  public LiteRtRunner(ByteBuffer model, ModelMetadata metadata) {
    this.metadata = metadata;
    this.delegate = new ProjectionDelegate();
    Interpreter.Options options = new Interpreter.Options().addDelegate(delegate).setNumThreads(2);
    Interpreter created;
    try {
      created = new Interpreter(model, options);
    } catch (RuntimeException e) {
      delegate.close();
      throw e;
    }
    this.interpreter = created;
  }

  @Override
  public Outputs run(String text) {
    Map<String, Object> inputs = Collections.<String, Object>singletonMap("text", new String[] {text});
    float[][] intents = new float[1][metadata.intents.size()];
    int[] numTokens = new int[1];
    float[][][] slots = metadata.tags.isEmpty() ? null : new float[1][metadata.maxTokens][metadata.tags.size()];
    Map<String, Object> outputs = new HashMap<>();
    outputs.put("intent_logits", intents);
    outputs.put("num_tokens", numTokens);
    if (slots != null) outputs.put("slot_logits", slots);
    interpreter.runSignature(inputs, outputs, SIGNATURE);
    return new Outputs(intents[0], slots == null ? null : slots[0], numTokens[0]);
  }

  @Override
  public void close() {
    interpreter.close();
    delegate.close(); // after the interpreter: it holds the kernel until then
  }
}
