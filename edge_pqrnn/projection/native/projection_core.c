/* The projection itself; see projection_core.h. No libc: every helper is here. */
#include "projection_core.h"

#include "unicode_data.h"

#define K_MUL 0xc6a4a7935bd1e995ULL
#define K_MUL2 0x9e3779b97f4a7835ULL

enum { kWord = 0, kSpace = 1, kAtom = 2, kSplit = 3, kJoin = 4, kIgnore = 5 };

/* ---------------------------------------------------------------- messages */

typedef struct {
  char* out;
  int pos;
} msg_buf;

static void msg_str(msg_buf* m, const char* s) {
  while (*s && m->pos < PQRNN_ERROR_SIZE - 1) m->out[m->pos++] = *s++;
  m->out[m->pos] = 0;
}

static void msg_int(msg_buf* m, long long v) {
  char digits[24];
  int n = 0;
  unsigned long long u = v < 0 ? (unsigned long long)(-(v + 1)) + 1 : (unsigned long long)v;
  if (v < 0) msg_str(m, "-");
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u && n < 23);
  while (n && m->pos < PQRNN_ERROR_SIZE - 1) m->out[m->pos++] = digits[--n];
  m->out[m->pos] = 0;
}

static int str_eq(const char* a, const char* b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

/* ---------------------------------------------------------------- flexbuffers */
/* Just enough of the flexbuffer format to read a map of scalar values, with every
 * read bounds-checked: custom options come from untrusted files. */

enum {
  kFbtInt = 1, kFbtUint = 2, kFbtKey = 4, kFbtIndirectInt = 6, kFbtIndirectUint = 7,
  kFbtMap = 9, kFbtBool = 26
};

typedef struct {
  const uint8_t* buf;
  size_t len;
} fb_view;

static int fb_read_uint(const fb_view* v, size_t at, int width, uint64_t* out) {
  if (width != 1 && width != 2 && width != 4 && width != 8) return -1;
  if (at > v->len || v->len - at < (size_t)width) return -1;
  uint64_t r = 0;
  for (int i = width - 1; i >= 0; i--) r = (r << 8) | v->buf[at + i];
  *out = r;
  return 0;
}

static int fb_read_int(const fb_view* v, size_t at, int width, int64_t* out) {
  uint64_t u;
  if (fb_read_uint(v, at, width, &u)) return -1;
  if (width < 8 && (u >> (width * 8 - 1)) & 1) u |= ~0ULL << (width * 8); /* sign-extend */
  *out = (int64_t)u;
  return 0;
}

/* Follows an offset stored at `at` (width bytes): target = at - offset. */
static int fb_indirect(const fb_view* v, size_t at, int width, size_t* target) {
  uint64_t off;
  if (fb_read_uint(v, at, width, &off) || off > at) return -1;
  *target = at - (size_t)off;
  return 0;
}

/* Reads a scalar (int, uint, bool, or indirect int/uint) as int64. */
static int fb_scalar(const fb_view* v, size_t at, int width, uint8_t packed, int64_t* out) {
  int type = packed >> 2;
  int child_width = 1 << (packed & 3);
  size_t target;
  uint64_t u;
  switch (type) {
    case kFbtInt:
      return fb_read_int(v, at, width, out);
    case kFbtUint:
    case kFbtBool:
      if (fb_read_uint(v, at, width, &u) || u > (uint64_t)INT64_MAX) return -1;
      *out = (int64_t)u;
      return 0;
    case kFbtIndirectInt:
      if (fb_indirect(v, at, width, &target)) return -1;
      return fb_read_int(v, target, child_width, out);
    case kFbtIndirectUint:
      if (fb_indirect(v, at, width, &target)) return -1;
      if (fb_read_uint(v, target, child_width, &u) || u > (uint64_t)INT64_MAX) return -1;
      *out = (int64_t)u;
      return 0;
    default:
      return -1;
  }
}

/* Copies a KEY (NUL-terminated) at `at` into out[64]; fails when longer or unterminated. */
static int fb_key(const fb_view* v, size_t at, char* out) {
  for (int i = 0; i < 63; i++) {
    if (at + i >= v->len) return -1;
    out[i] = (char)v->buf[at + i];
    if (!out[i]) return 0;
  }
  return -1;
}

int pqrnn_read_int_map(const uint8_t* buffer, size_t length, const char* const* names, int count,
                       int64_t* values, char* error) {
  return pqrnn_read_int_map_optional(buffer, length, names, count, count, values, error);
}

int pqrnn_read_int_map_optional(const uint8_t* buffer, size_t length, const char* const* names, int count,
                                int required, int64_t* values, char* error) {
  msg_buf m = {error, 0};
  fb_view v = {buffer, length};
  int seen[PQRNN_MAX_MAP_KEYS] = {0};
  error[0] = 0;
  if (count < 1 || count > PQRNN_MAX_MAP_KEYS) {
    msg_str(&m, "internal error: bad option count");
    return -1;
  }
  if (!buffer || length < 3) {
    msg_str(&m, "missing custom options (expected a flexbuffer map; re-export the model)");
    return -1;
  }
  int root_width = buffer[length - 1];
  uint8_t root_packed = buffer[length - 2];
  size_t root_at = length - 2;
  if (root_width != 1 && root_width != 2 && root_width != 4 && root_width != 8) goto corrupt;
  if (root_at < (size_t)root_width) goto corrupt;
  root_at -= root_width;
  if ((root_packed >> 2) != kFbtMap) {
    msg_str(&m, "custom options are not a flexbuffer map");
    return -1;
  }
  size_t map_at;
  if (fb_indirect(&v, root_at, root_width, &map_at)) goto corrupt;
  int width = 1 << (root_packed & 3);
  uint64_t size, keys_off_width;
  size_t keys_at;
  if (map_at < (size_t)(3 * width)) goto corrupt;
  if (fb_read_uint(&v, map_at - width, width, &size)) goto corrupt;
  if (fb_read_uint(&v, map_at - 2 * width, width, &keys_off_width)) goto corrupt;
  if (fb_indirect(&v, map_at - 3 * width, width, &keys_at)) goto corrupt;
  if (size > 64) goto corrupt;
  int key_width = (int)keys_off_width;
  uint64_t keys_size;
  if (keys_at < (size_t)key_width || fb_read_uint(&v, keys_at - key_width, key_width, &keys_size) ||
      keys_size != size)
    goto corrupt;
  for (uint64_t i = 0; i < size; i++) {
    size_t key_at;
    char key[64];
    if (fb_indirect(&v, keys_at + i * key_width, key_width, &key_at) || fb_key(&v, key_at, key)) goto corrupt;
    size_t type_at = map_at + size * width + i;
    if (type_at >= length) goto corrupt;
    int k;
    for (k = 0; k < count && !str_eq(key, names[k]); k++) {
    }
    if (k == count) {
      /* The key comes from the file: only printable ASCII goes into the message, so it
       * stays valid UTF-8 for runtimes that decode it. */
      for (int j = 0; key[j]; j++)
        if (key[j] < 0x20 || key[j] > 0x7e) key[j] = '?';
      msg_str(&m, "unknown custom option '");
      msg_str(&m, key);
      msg_str(&m, "'; allowed: ");
      for (int j = 0; j < count; j++) {
        if (j) msg_str(&m, ", ");
        msg_str(&m, names[j]);
      }
      return -1;
    }
    if (fb_scalar(&v, map_at + i * width, width, buffer[type_at], &values[k])) {
      msg_str(&m, "custom option '");
      msg_str(&m, key);
      msg_str(&m, "' is not an integer or boolean");
      return -1;
    }
    seen[k] = 1;
  }
  for (int k = 0; k < required; k++) {
    if (!seen[k]) {
      msg_str(&m, "missing custom option '");
      msg_str(&m, names[k]);
      msg_str(&m, "'");
      return -1;
    }
  }
  return 0;
corrupt:
  msg_str(&m, "custom options are not a valid flexbuffer map (corrupt model file?)");
  return -1;
}

/* The spec's options, then the op's own (optional: files written before it lack it). */
static const char* const kOptionNames[] = {"spec_version", "feature_size", "max_tokens",    "char_mode",
                                           "add_bos",      "add_eos",      "lowercase",     "dynamic_tokens"};
#define NUM_OPTIONS 7
#define NUM_OP_OPTIONS 8

int pqrnn_parse_options(const uint8_t* buffer, size_t length, pqrnn_options* options, char* error) {
  int dynamic_tokens; /* the op's concern: checked, then dropped */
  return pqrnn_parse_op_options(buffer, length, options, &dynamic_tokens, error);
}

int pqrnn_parse_op_options(const uint8_t* buffer, size_t length, pqrnn_options* options, int* dynamic_tokens,
                           char* error) {
  msg_buf m = {error, 0};
  int64_t values[NUM_OP_OPTIONS];
  values[NUM_OPTIONS] = 0;
  const int count = NUM_OP_OPTIONS;
  if (pqrnn_read_int_map_optional(buffer, length, kOptionNames, count, NUM_OPTIONS, values, error)) return -1;
  if (values[0] != PQRNN_SPEC_VERSION) {
    msg_str(&m, "spec_version ");
    msg_int(&m, values[0]);
    msg_str(&m, " is not supported by this op library (it implements version ");
    msg_int(&m, PQRNN_SPEC_VERSION);
    msg_str(&m, "); use a matching edge-pqrnn op library or re-export the model");
    return -1;
  }
  if (values[1] < 1 || values[1] > PQRNN_MAX_FEATURE_SIZE) {
    msg_str(&m, "feature_size must be 1..");
    msg_int(&m, PQRNN_MAX_FEATURE_SIZE);
    msg_str(&m, ", got ");
    msg_int(&m, values[1]);
    return -1;
  }
  for (int k = 3; k < count; k++) {
    if (values[k] != 0 && values[k] != 1) {
      msg_str(&m, "custom option '");
      msg_str(&m, kOptionNames[k]);
      msg_str(&m, "' must be a boolean, got ");
      msg_int(&m, values[k]);
      return -1;
    }
  }
  int markers = (int)(values[4] + values[5]);
  if (values[2] <= markers || values[2] > PQRNN_MAX_TOKENS) {
    msg_str(&m, "max_tokens must be ");
    msg_int(&m, markers + 1);
    msg_str(&m, "..");
    msg_int(&m, PQRNN_MAX_TOKENS);
    msg_str(&m, ", got ");
    msg_int(&m, values[2]);
    return -1;
  }
  options->feature_size = (int)values[1];
  options->max_tokens = (int)values[2];
  options->char_mode = (int)values[3];
  options->add_bos = (int)values[4];
  options->add_eos = (int)values[5];
  options->lowercase = (int)values[6];
  *dynamic_tokens = (int)values[NUM_OPTIONS];
  return 0;
}

/* ---------------------------------------------------------------- Unicode */

/* Strict UTF-8 (Unicode Table 3-7). Returns the code point and sets *used; on an
 * invalid sequence returns -1 with *used = 1: the byte is dropped, like Python's
 * bytes.decode("utf-8", "ignore"). */
static int32_t utf8_next(const uint8_t* s, size_t n, size_t* used) {
  uint8_t b0 = s[0];
  *used = 1;
  if (b0 < 0x80) return b0;
  int len;
  uint8_t lo = 0x80, hi = 0xBF;
  int32_t cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F; /* no surrogates */
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  if (n < (size_t)len) return -1;
  for (int i = 1; i < len; i++) {
    uint8_t b = s[i];
    if (b < lo || b > hi) return -1;
    lo = 0x80;
    hi = 0xBF;
    cp = (cp << 6) | (b & 0x3F);
  }
  *used = (size_t)len;
  return cp;
}

static int char_class(int32_t cp) {
  int lo = 0, hi = PQRNN_CLASS_RUN_COUNT - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if ((uint32_t)cp < kClassRuns[mid][0]) {
      hi = mid - 1;
    } else if ((uint32_t)cp > kClassRuns[mid][1]) {
      lo = mid + 1;
    } else {
      return (int)kClassRuns[mid][2];
    }
  }
  return kWord;
}

static int32_t to_lower(int32_t cp) {
  int lo = 0, hi = PQRNN_LOWER_PAIR_COUNT - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if ((uint32_t)cp < kLowerPairs[mid][0]) {
      hi = mid - 1;
    } else if ((uint32_t)cp > kLowerPairs[mid][0]) {
      lo = mid + 1;
    } else {
      return (int32_t)kLowerPairs[mid][1];
    }
  }
  return cp;
}

static int utf8_encode(int32_t cp, uint8_t* out) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | (cp >> 18));
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

/* ---------------------------------------------------------------- hashing */
/* seq_flow_lite's MurmurHash2-64-derived hash, fed incrementally so that a token of
 * any length needs no buffer: the length must be known first (it seeds h1). */

typedef struct {
  uint64_t h1, h2;
  uint8_t block[8];
  int filled;
} hasher;

static uint64_t shift_mix(uint64_t v) { return v ^ (v >> 47); }

static void hash_start(hasher* h, uint64_t length) {
  h->h1 = length * K_MUL;
  h->h2 = 0;
  h->filled = 0;
}

static uint64_t load_le(const uint8_t* b, int n) {
  uint64_t d = 0;
  for (int i = n - 1; i >= 0; i--) d = (d << 8) | b[i];
  return d;
}

static void hash_byte(hasher* h, uint8_t byte) {
  h->block[h->filled++] = byte;
  if (h->filled == 8) {
    uint64_t d = load_le(h->block, 8);
    h->h1 ^= shift_mix(d * K_MUL) * K_MUL;
    h->h1 *= K_MUL;
    h->h2 ^= h->h1;
    h->filled = 0;
  }
}

static void hash_finish(hasher* h) {
  if (h->filled) {
    h->h1 ^= load_le(h->block, h->filled);
    h->h1 *= K_MUL;
    h->h2 ^= h->h1;
  }
  h->h1 = shift_mix(h->h1) * K_MUL;
  h->h2 ^= h->h1;
  h->h1 = shift_mix(h->h1);
  h->h2 = shift_mix(h->h2 * K_MUL2) * K_MUL2;
}

/* Writes F ternary features from the finished hash: 32 per 64-bit word, low bits first. */
static void write_features(const hasher* h, int feature_size, float* row) {
  static const float kTernary[4] = {0.0f, 1.0f, -1.0f, 0.0f};
  uint64_t lo = h->h1, hi = h->h2;
  int f = 0;
  for (int pair = 0; f < feature_size; pair++) {
    if (pair > 0) {
      uint64_t t = shift_mix(lo) * K_MUL;
      hi ^= t;
      lo = shift_mix(hi * K_MUL2) * K_MUL2;
      hi = shift_mix(t);
    }
    uint64_t words[2] = {lo, hi};
    for (int w = 0; w < 2 && f < feature_size; w++) {
      uint64_t word = words[w];
      for (int j = 0; j < 32 && f < feature_size; j++, word >>= 2) row[f++] = kTernary[word & 3];
    }
  }
}

/* Hashes the literal marker (<BOS>, <EOS>, <null>) into a row. */
static void project_literal(const char* literal, int feature_size, float* row) {
  hasher h;
  uint64_t n = 0;
  while (literal[n]) n++;
  hash_start(&h, n);
  for (uint64_t i = 0; i < n; i++) hash_byte(&h, (uint8_t)literal[i]);
  hash_finish(&h);
  write_features(&h, feature_size, row);
}

/* Hashes the token in text[start, end): its non-IGNORE code points, optionally lower-
 * cased, as UTF-8. Two passes: the byte length seeds the hash. */
static void project_token(const pqrnn_options* o, const uint8_t* text, size_t start, size_t end, float* row) {
  hasher h;
  uint8_t enc[4];
  uint64_t total = 0;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1) hash_start(&h, total);
    size_t i = start;
    while (i < end) {
      size_t used;
      int32_t cp = utf8_next(text + i, end - i, &used);
      i += used;
      if (cp < 0 || char_class(cp) == kIgnore) continue;
      if (o->lowercase) cp = to_lower(cp);
      int n = utf8_encode(cp, enc);
      if (pass == 0) {
        total += (uint64_t)n;
      } else {
        for (int k = 0; k < n; k++) hash_byte(&h, enc[k]);
      }
    }
  }
  hash_finish(&h);
  write_features(&h, o->feature_size, row);
}

/* ---------------------------------------------------------------- tokens */

/* Called once per token row, in order: row index, byte span [start, end), PQRNN_ROW_* kind. */
typedef void (*row_fn)(void* ctx, int row, size_t start, size_t end, int kind);

/* The one tokenizer of the C side: hands each row to `emit` as soon as it is complete, so
 * callers need no buffer of spans (a 4096-row one was 48 KB of stack per text). */
static int scan_rows(const pqrnn_options* o, const uint8_t* text, size_t length, row_fn emit, void* ctx) {
  const int limit = o->max_tokens - o->add_bos - o->add_eos; /* word tokens that fit */
  int rows = 0;
#define ROW(s, e, kind)                  \
  do {                                   \
    emit(ctx, rows, (s), (e), (kind));   \
    rows++;                              \
  } while (0)
  if (o->add_bos) ROW(0, 0, PQRNN_ROW_BOS);

  /* The open token [tok_start, tok_end); `word_open`: WORD characters may extend it;
   * `open`: JOIN characters may extend it. Mirrors reference.tokenize(). */
  int words = 0, have_token = 0, word_open = 0, open = 0;
  size_t tok_start = 0, tok_end = 0, i = 0;
  while (i < length) {
    size_t used;
    int32_t cp = utf8_next(text + i, length - i, &used);
    size_t at = i;
    i += used;
    if (cp < 0) continue;
    int cls = char_class(cp);
    if (cls == kIgnore) continue;
    if (cls == kJoin && open) {
      tok_end = i;
      continue;
    }
    int starts_new;
    if (o->char_mode) {
      starts_new = 1;
      word_open = 0;
    } else if (cls == kSpace) {
      open = word_open = 0;
      continue;
    } else if (cls == kWord || cls == kJoin) {
      starts_new = !(open && word_open);
      word_open = 1;
    } else { /* ATOM, SPLIT */
      starts_new = 1;
      word_open = 0;
    }
    open = 1;
    if (!starts_new) {
      tok_end = i;
      continue;
    }
    if (have_token) { /* the previous token is complete */
      ROW(tok_start, tok_end, PQRNN_ROW_TEXT);
      words++;
      have_token = 0;
    }
    if (words == limit) break; /* truncated: later text cannot change these rows */
    tok_start = at;
    tok_end = i;
    have_token = 1;
  }
  if (have_token) ROW(tok_start, tok_end, PQRNN_ROW_TEXT);
  if (o->add_eos) ROW(length, length, PQRNN_ROW_EOS);
  if (rows == 0) ROW(0, 0, PQRNN_ROW_NULL);
#undef ROW
  return rows;
}

typedef struct {
  int32_t* spans;
  int max_rows;
} span_sink;

static void store_span(void* ctx, int row, size_t start, size_t end, int kind) {
  span_sink* sink = (span_sink*)ctx;
  if (row >= sink->max_rows) return;
  sink->spans[3 * row] = (int32_t)start;
  sink->spans[3 * row + 1] = (int32_t)end;
  sink->spans[3 * row + 2] = kind;
}

int pqrnn_token_rows(const pqrnn_options* o, const uint8_t* text, size_t length, int32_t* spans, int max_rows) {
  span_sink sink = {spans, max_rows};
  return scan_rows(o, text, length, store_span, &sink);
}

typedef struct {
  const pqrnn_options* options;
  const uint8_t* text;
  float* features;
} feature_sink;

static void project_row(void* ctx, int row, size_t start, size_t end, int kind) {
  static const char* const kMarkers[] = {"", "<BOS>", "<EOS>", "<null>"}; /* by PQRNN_ROW_* */
  const feature_sink* sink = (const feature_sink*)ctx;
  const int F = sink->options->feature_size;
  float* out = sink->features + (size_t)row * F; /* the options keep rows <= T */
  if (kind == PQRNN_ROW_TEXT) {
    project_token(sink->options, sink->text, start, end, out);
  } else {
    project_literal(kMarkers[kind], F, out);
  }
}

int pqrnn_project_text(const pqrnn_options* o, const uint8_t* text, size_t length, float* features,
                       float* mask, float* pool_weights) {
  const int F = o->feature_size, T = o->max_tokens;
  for (long long i = 0; i < (long long)T * F; i++) features[i] = 0.0f;
  feature_sink sink = {o, text, features};
  const int rows = scan_rows(o, text, length, project_row, &sink);

  const float weight = 1.0f / (float)rows;
  for (int t = 0; t < T; t++) {
    mask[t] = t < rows ? 1.0f : 0.0f;
    pool_weights[t] = t < rows ? weight : 0.0f;
  }
  return rows;
}
