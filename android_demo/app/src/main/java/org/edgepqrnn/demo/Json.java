package org.edgepqrnn.demo;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small strict JSON reader for the artifact's metadata (no dependency: org.json is not
 * on the JVM test classpath). Objects become Maps, arrays Lists, numbers Doubles.
 */
final class Json {
  private final String s;
  private int i;

  private Json(String s) {
    this.s = s;
  }

  static Object parse(String text) {
    Json p = new Json(text);
    Object value = p.value();
    p.space();
    if (p.i != text.length()) throw p.error("trailing characters");
    return value;
  }

  /** A string as a JSON literal (for messages). */
  static String quote(String text) {
    StringBuilder out = new StringBuilder("\"");
    for (int k = 0; k < text.length(); k++) {
      char c = text.charAt(k);
      if (c == '"' || c == '\\') out.append('\\').append(c);
      else if (c < 0x20 || Character.isSurrogate(c)) out.append(String.format("\\u%04x", (int) c));
      else out.append(c);
    }
    return out.append('"').toString();
  }

  private IllegalArgumentException error(String what) {
    return new IllegalArgumentException("invalid JSON metadata at character " + i + ": " + what);
  }

  private void space() {
    while (i < s.length() && " \t\r\n".indexOf(s.charAt(i)) >= 0) i++;
  }

  private char peek() {
    space();
    if (i >= s.length()) throw error("unexpected end");
    return s.charAt(i);
  }

  private void expect(char c) {
    if (peek() != c) throw error("expected '" + c + "'");
    i++;
  }

  private Object value() {
    char c = peek();
    if (c == '{') {
      Map<String, Object> map = new LinkedHashMap<>();
      i++;
      if (peek() == '}') {
        i++;
        return map;
      }
      do {
        String key = string();
        expect(':');
        map.put(key, value());
      } while (comma('}'));
      return map;
    }
    if (c == '[') {
      List<Object> list = new ArrayList<>();
      i++;
      if (peek() == ']') {
        i++;
        return list;
      }
      do {
        list.add(value());
      } while (comma(']'));
      return list;
    }
    if (c == '"') return string();
    if (s.startsWith("true", i)) return literal(4, Boolean.TRUE);
    if (s.startsWith("false", i)) return literal(5, Boolean.FALSE);
    if (s.startsWith("null", i)) return literal(4, null);
    int start = i;
    while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
    try {
      return Double.valueOf(s.substring(start, i));
    } catch (NumberFormatException e) {
      i = start;
      throw error("unexpected character '" + c + "'");
    }
  }

  private Object literal(int length, Object value) {
    i += length;
    return value;
  }

  private boolean comma(char close) {
    char c = peek();
    i++;
    if (c == ',') return true;
    if (c == close) return false;
    i--;
    throw error("expected ',' or '" + close + "'");
  }

  private String string() {
    expect('"');
    StringBuilder out = new StringBuilder();
    while (true) {
      if (i >= s.length()) throw error("unterminated string");
      char c = s.charAt(i++);
      if (c == '"') return out.toString();
      if (c != '\\') {
        out.append(c);
        continue;
      }
      if (i >= s.length()) throw error("unterminated escape");
      char e = s.charAt(i++);
      switch (e) {
        case 'n': out.append('\n'); break;
        case 't': out.append('\t'); break;
        case 'r': out.append('\r'); break;
        case 'b': out.append('\b'); break;
        case 'f': out.append('\f'); break;
        case 'u':
          if (i + 4 > s.length()) throw error("short \\u escape");
          out.append((char) Integer.parseInt(s.substring(i, i + 4), 16));
          i += 4;
          break;
        default: out.append(e); // \" \\ \/
      }
    }
  }
}
