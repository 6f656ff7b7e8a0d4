package org.edgepqrnn.demo;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The app's code on the JVM, against a real artifact: the JNI bridge (the host build of
 * the library that ships in jniLibs/), ModelMetadata, IntentParser, and the artifact run
 * by LiteRT with the op supplied only through ProjectionDelegate. Expected values come
 * from the Python package (tools/make_reference.py); -Dpqrnn.reference=DIR points at them.
 * -Dpqrnn.arm64=FILE adds the outputs the arm64 library gave under qemu (tools/run_arm64.py).
 */
public class DemoJvmTest {
  private static byte[] model;
  private static Map<?, ?> expected;
  private static List<Map<?, ?>> cases;
  private static IntentParser parser;

  @BeforeClass
  public static void load() throws IOException {
    Path dir = Paths.get(System.getProperty("pqrnn.reference", "build/reference"));
    model = Files.readAllBytes(dir.resolve("model.tflite"));
    expected = (Map<?, ?>) Json.parse(new String(Files.readAllBytes(dir.resolve("expected.json")), StandardCharsets.UTF_8));
    cases = new ArrayList<>();
    for (Object c : (List<?>) expected.get("cases")) cases.add((Map<?, ?>) c);
    ModelMetadata metadata = ModelMetadata.read(ByteBuffer.wrap(model));
    parser = new IntentParser(metadata, new HostLiteRt(model, new ProjectionDelegate()));
  }

  @AfterClass
  public static void close() {
    if (parser != null) parser.close();
  }

  /** Code-point offset of a UTF-16 offset (Python's str indexes code points). */
  private static int cp(String text, int utf16) {
    return text.codePointCount(0, utf16);
  }

  private static float[] floats(Object list) {
    List<?> values = (List<?>) list;
    float[] out = new float[values.size()];
    for (int k = 0; k < out.length; k++) out[k] = ((Number) values.get(k)).floatValue();
    return out;
  }

  private static List<String> slotsAsPython(IntentParser.Prediction p) {
    List<String> out = new ArrayList<>();
    for (IntentParser.Slot s : p.slots) out.add(Arrays.asList(cp(p.text, s.start), cp(p.text, s.end), s.type, s.text).toString());
    return out;
  }

  private static List<String> expectedSlots(Map<?, ?> c) {
    List<String> out = new ArrayList<>();
    for (Object s : (List<?>) c.get("slots")) {
      List<?> v = (List<?>) s;
      out.add(Arrays.asList(((Number) v.get(0)).intValue(), ((Number) v.get(1)).intValue(), v.get(2), v.get(3)).toString());
    }
    return out;
  }

  /** Compares one prediction with the Python reference; returns the largest logit difference. */
  private static double check(Map<?, ?> c, IntentParser.Prediction p, String where) {
    String text = (String) c.get("text");
    String label = where + " " + Json.quote(text);
    assertEquals(label + ": intent", c.get("intent"), p.intent);
    assertEquals(label + ": num_tokens", ((Number) c.get("num_tokens")).intValue(), p.numTokens);
    assertEquals(label + ": score", ((Number) c.get("score")).floatValue(), p.score, 1e-6f);
    float[] logits = floats(c.get("intent_logits"));
    assertEquals(label + ": logit count", logits.length, p.intentLogits.length);
    double diff = 0;
    for (int k = 0; k < logits.length; k++) diff = Math.max(diff, Math.abs(logits[k] - p.intentLogits[k]));
    assertTrue(label + ": intent logits differ by " + diff, diff <= 1e-5);
    assertEquals(label + ": slots", expectedSlots(c), slotsAsPython(p));
    return diff;
  }

  @Test
  public void delegateHandleIsLiveUntilClosed() {
    ProjectionDelegate delegate = new ProjectionDelegate();
    long handle = delegate.getNativeHandle();
    assertNotEquals(0L, handle);
    delegate.close();
    delegate.close(); // idempotent
    try {
      delegate.getNativeHandle();
      fail("a closed delegate gave a handle");
    } catch (IllegalStateException expected) {
      assertTrue(expected.getMessage().contains("closed"));
    }
  }

  @Test
  public void metadataComesFromTheFlatbuffer() {
    ModelMetadata m = ModelMetadata.read(ByteBuffer.wrap(model));
    assertEquals(expected.get("intents"), m.intents);
    assertEquals(expected.get("tags"), m.tags);
    Map<?, ?> spec = (Map<?, ?>) expected.get("projection");
    assertEquals(((Number) spec.get("max_tokens")).intValue(), m.maxTokens);
    assertEquals("char".equals(spec.get("mode")), m.charMode);
    assertEquals(spec.get("add_bos"), m.addBos);
    assertEquals(spec.get("add_eos"), m.addEos);
    assertEquals(expected.get("toolkit_version"), m.toolkitVersion);
  }

  @Test
  public void metadataRefusesOtherFilesWithTheFix() {
    String[] messages = new String[3];
    byte[][] files = {"not a model".getBytes(StandardCharsets.UTF_8), Arrays.copyOf(model, 600), new byte[0]};
    for (int k = 0; k < files.length; k++) {
      try {
        ModelMetadata.read(ByteBuffer.wrap(files[k]));
        fail("read metadata from file " + k);
      } catch (IllegalArgumentException e) {
        messages[k] = e.getMessage();
      }
    }
    assertTrue(messages[0], messages[0].contains("not a .tflite file") && messages[0].contains("edge-pqrnn export"));
    assertTrue(messages[1], messages[1].contains("truncated") || messages[1].contains("no edge_pqrnn metadata"));
    assertTrue(messages[2], messages[2].contains("not a .tflite file"));
  }

  @Test
  public void predictionsMatchThePythonReference() {
    double worst = 0;
    long start = System.nanoTime();
    for (Map<?, ?> c : cases) worst = Math.max(worst, check(c, parser.parse((String) c.get("text")), "x86_64 JVM"));
    double ms = (System.nanoTime() - start) / 1e6 / cases.size();
    System.out.println(String.format(Locale.US, "  JVM + host LiteRT: %d texts match the Python reference "
        + "(max intent-logit diff %.3g, %.2f ms per text)", cases.size(), worst, ms));
  }

  @Test
  public void tokenRowsMatchTheReferenceTokenizer() {
    Map<?, ?> spec = (Map<?, ?>) expected.get("projection");
    for (Map<?, ?> c : cases) {
      String text = IntentParser.Cleaned.of((String) c.get("text")).text;
      byte[] utf8 = text.getBytes(StandardCharsets.UTF_8);
      int[] rows = PqrnnNative.tokenRows(utf8, ((Number) spec.get("max_tokens")).intValue(),
          "char".equals(spec.get("mode")), Boolean.TRUE.equals(spec.get("add_bos")), Boolean.TRUE.equals(spec.get("add_eos")));
      assertNotNull(rows);
      List<String> got = new ArrayList<>();
      for (int r = 0; r < rows.length / 3; r++) {
        int start = new String(utf8, 0, rows[3 * r], StandardCharsets.UTF_8).codePointCount(0,
            new String(utf8, 0, rows[3 * r], StandardCharsets.UTF_8).length());
        String upToEnd = new String(utf8, 0, rows[3 * r + 1], StandardCharsets.UTF_8);
        got.add(Arrays.asList(start, upToEnd.codePointCount(0, upToEnd.length()), rows[3 * r + 2]).toString());
      }
      List<String> want = new ArrayList<>();
      for (Object t : (List<?>) c.get("tokens")) {
        List<?> v = (List<?>) t;
        want.add(Arrays.asList(((Number) v.get(0)).intValue(), ((Number) v.get(1)).intValue(),
            ((Number) v.get(2)).intValue()).toString());
      }
      assertEquals("token rows of " + Json.quote(text), want, got);
    }
    assertEquals(null, PqrnnNative.tokenRows(new byte[0], 1, false, false, true)); // no room for a word: refused
  }

  @Test
  public void repeatedParsesAreIdentical() {
    for (int round = 0; round < 20; round++) {
      for (Map<?, ?> c : cases) check(c, parser.parse((String) c.get("text")), "round " + round);
    }
  }

  @Test
  public void withoutTheDelegateLiteRtCannotRunTheOp() {
    try (HostLiteRt bare = new HostLiteRt(model, null)) {
      bare.run("flights to boston");
      fail("the artifact ran without the projection delegate");
    } catch (IllegalStateException e) {
      assertTrue(e.getMessage(), e.getMessage().contains("EdgePqrnnProjection"));
    }
  }

  @Test
  public void markupShowsTheSlots() {
    IntentParser.Prediction p = parser.parse("show me flights from boston to new york");
    assertEquals("show me flights from [boston]fromloc to [new york]toloc", MainActivity.markup(p));
  }

  @Test
  public void arm64OutputsUnderQemuDecodeToTheReference() throws IOException {
    String file = System.getProperty("pqrnn.arm64");
    if (file == null || file.isEmpty()) fail("no -Dpqrnn.arm64=FILE: run tools/run_arm64.py first (ci.sh does)");
    Map<?, ?> arm = (Map<?, ?>) Json.parse(new String(Files.readAllBytes(Paths.get(file)), StandardCharsets.UTF_8));
    List<?> outputs = (List<?>) arm.get("outputs");
    assertEquals(cases.size(), outputs.size());
    for (int k = 0; k < cases.size(); k++) {
      Map<?, ?> o = (Map<?, ?>) outputs.get(k);
      List<?> rows = (List<?>) o.get("slot_logits");
      float[][] slots = new float[rows.size()][];
      for (int t = 0; t < slots.length; t++) slots[t] = floats(rows.get(t));
      Runner.Outputs out = new Runner.Outputs(floats(o.get("intent_logits")), slots, ((Number) o.get("num_tokens")).intValue());
      IntentParser.Prediction p = parser.decode(IntentParser.Cleaned.of((String) cases.get(k).get("text")), out);
      check(cases.get(k), p, "arm64 (qemu)");
      assertArrayEquals("arm64 logits are x86's bits", floats(cases.get(k).get("intent_logits")), p.intentLogits, 0f);
    }
    System.out.println("  arm64-v8a libpqrnn_demo.so under qemu: " + outputs.size() + " texts decode to the reference, "
        + arm.get("summary"));
  }

  @Test
  public void apkHoldsTheModelTheLibrariesAndASignature() throws IOException {
    String file = System.getProperty("pqrnn.apk");
    if (file == null || file.isEmpty()) fail("no -Dpqrnn.apk=FILE: ci.sh packages the APK first");
    Path libs = Paths.get(System.getProperty("pqrnn.jnilibs", "app/src/main/jniLibs"));
    try (ZipFile apk = new ZipFile(file)) {
      for (String name : new String[] {"AndroidManifest.xml", "resources.arsc", "res/layout/activity_main.xml"}) {
        assertNotNull(name + " in the APK", apk.getEntry(name));
      }
      ZipEntry modelEntry = apk.getEntry("assets/" + MainActivity.MODEL_ASSET);
      assertNotNull("assets/model.tflite in the APK", modelEntry);
      assertEquals("the model is stored uncompressed (memory-mapped on the device)", ZipEntry.STORED, modelEntry.getMethod());
      byte[] packed = apk.getInputStream(modelEntry).readAllBytes();
      assertArrayEquals(model, packed);
      assertEquals(expected.get("intents"), ModelMetadata.read(ByteBuffer.wrap(packed)).intents);
      String[][] abis = {{"arm64-v8a", "183"}, {"x86_64", "62"}}; // ELF e_machine: EM_AARCH64, EM_X86_64
      for (String[] abi : abis) {
        ZipEntry lib = apk.getEntry("lib/" + abi[0] + "/libpqrnn_demo.so");
        assertNotNull(abi[0] + " library in the APK", lib);
        byte[] so = apk.getInputStream(lib).readAllBytes();
        assertArrayEquals(abi[0] + " library = jniLibs/", Files.readAllBytes(libs.resolve(abi[0]).resolve("libpqrnn_demo.so")), so);
        assertEquals(abi[0] + " ELF machine", Integer.parseInt(abi[1]), (so[18] & 0xff) | (so[19] & 0xff) << 8);
      }
    }
    byte[] whole = Files.readAllBytes(Paths.get(file));
    assertTrue("an APK Signature Scheme v2+ block", new String(whole, StandardCharsets.ISO_8859_1).contains("APK Sig Block 42"));
  }
}
