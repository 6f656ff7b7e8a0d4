package org.edgepqrnn.demo;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

/**
 * What an edge-pqrnn artifact says about itself: the JSON that {@code edge-pqrnn export}
 * stores in the .tflite as metadata "edge_pqrnn" (labels, projection spec, toolkit
 * version). Read straight from the flatbuffer, so any exported model dropped into
 * assets/ brings its own labels.
 */
public final class ModelMetadata {
  /** The metadata entry edge-pqrnn writes (edge_pqrnn/converters/tflite_fuse.py). */
  public static final String NAME = "edge_pqrnn";
  /** The artifact format this app reads. */
  public static final String FORMAT = "edge-pqrnn/1";

  public final List<String> intents;
  /** BIO tags ("O", "B-x", "I-x"); empty without a slot head. */
  public final List<String> tags;
  public final int maxTokens;
  public final boolean charMode;
  public final boolean addBos;
  public final boolean addEos;
  public final String toolkitVersion;
  public final String json;

  private ModelMetadata(String json) {
    this.json = json;
    Object parsed = Json.parse(json);
    if (!(parsed instanceof Map)) throw new IllegalArgumentException("the edge_pqrnn metadata is not a JSON object");
    Map<?, ?> root = (Map<?, ?>) parsed;
    Object format = root.get("format");
    if (!FORMAT.equals(format)) {
      throw new IllegalArgumentException("artifact format " + format + " is not " + FORMAT
          + ": export the model with an edge-pqrnn release this app supports");
    }
    intents = strings(root, "intents");
    tags = root.containsKey("tags") && root.get("tags") != null ? strings(root, "tags") : Collections.<String>emptyList();
    if (intents.isEmpty()) throw new IllegalArgumentException("the artifact's metadata lists no intents");
    Object p = root.get("projection");
    if (!(p instanceof Map)) throw new IllegalArgumentException("the artifact's metadata has no projection spec");
    Map<?, ?> spec = (Map<?, ?>) p;
    maxTokens = ((Number) spec.get("max_tokens")).intValue();
    charMode = "char".equals(spec.get("mode"));
    addBos = Boolean.TRUE.equals(spec.get("add_bos"));
    addEos = Boolean.TRUE.equals(spec.get("add_eos"));
    Object version = root.get("toolkit_version");
    toolkitVersion = version == null ? "" : version.toString();
  }

  private static List<String> strings(Map<?, ?> root, String key) {
    Object value = root.get(key);
    if (!(value instanceof List)) throw new IllegalArgumentException("metadata field '" + key + "' is not a list");
    List<String> out = new ArrayList<>();
    for (Object o : (List<?>) value) out.add(String.valueOf(o));
    return Collections.unmodifiableList(out);
  }

  /** Reads the metadata of a .tflite (the buffer's position and limit are left as they are). */
  public static ModelMetadata read(ByteBuffer model) {
    ByteBuffer b = model.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    b.position(0);
    if (b.limit() < 8 || b.get(4) != 'T' || b.get(5) != 'F' || b.get(6) != 'L' || b.get(7) != '3') {
      throw new IllegalArgumentException("not a .tflite file (no TFL3 identifier): put an artifact from "
          + "`edge-pqrnn export` in assets/");
    }
    try {
      int root = b.getInt(0);
      int metadata = field(b, root, 6); // Model.metadata
      int buffers = field(b, root, 4); // Model.buffers
      if (metadata < 0 || buffers < 0) throw missing();
      int list = vector(b, metadata);
      for (int k = 0; k < b.getInt(list); k++) {
        int entry = table(b, list + 4 + 4 * k);
        int name = field(b, entry, 0);
        int index = field(b, entry, 1);
        if (name < 0 || index < 0 || !NAME.equals(string(b, name))) continue;
        int buffer = table(b, vector(b, buffers) + 4 + 4 * b.getInt(index));
        return new ModelMetadata(new String(bufferBytes(b, buffer), StandardCharsets.UTF_8));
      }
    } catch (IndexOutOfBoundsException e) {
      throw new IllegalArgumentException("the .tflite is truncated or corrupt: " + e.getMessage());
    }
    throw missing();
  }

  private static IllegalArgumentException missing() {
    return new IllegalArgumentException("this .tflite has no edge_pqrnn metadata: export it with `edge-pqrnn export`");
  }

  // Minimal flatbuffer access: a table field's position (or -1), vectors, strings.
  private static int field(ByteBuffer b, int table, int index) {
    int vtable = table - b.getInt(table);
    int vtableSize = b.getShort(vtable) & 0xffff;
    int slot = 4 + 2 * index;
    if (slot >= vtableSize) return -1;
    int offset = b.getShort(vtable + slot) & 0xffff;
    return offset == 0 ? -1 : table + offset;
  }

  private static int vector(ByteBuffer b, int at) {
    return at + b.getInt(at);
  }

  private static int table(ByteBuffer b, int at) {
    return at + b.getInt(at);
  }

  private static String string(ByteBuffer b, int at) {
    int v = vector(b, at);
    byte[] bytes = new byte[b.getInt(v)];
    for (int k = 0; k < bytes.length; k++) bytes[k] = b.get(v + 4 + k);
    return new String(bytes, StandardCharsets.UTF_8);
  }

  private static byte[] bufferBytes(ByteBuffer b, int buffer) {
    int data = field(b, buffer, 0); // Buffer.data
    if (data >= 0) {
      int v = vector(b, data);
      byte[] out = new byte[b.getInt(v)];
      for (int k = 0; k < out.length; k++) out[k] = b.get(v + 4 + k);
      return out;
    }
    int offset = field(b, buffer, 1); // Buffer.offset/size: data outside the flatbuffer (large models)
    int size = field(b, buffer, 2);
    if (offset < 0 || size < 0) throw missing();
    long start = b.getLong(offset);
    long length = b.getLong(size);
    if (start < 0 || length < 0 || start + length > b.limit()) throw new IllegalArgumentException("metadata buffer out of range");
    byte[] out = new byte[(int) length];
    for (int k = 0; k < out.length; k++) out[k] = b.get((int) start + k);
    return out;
  }
}
