/*
 * Link-time stand-ins for bionic's libc.so and liblog.so (no NDK here, DESIGN.md §14):
 * build_native.sh compiles this file twice per ABI, as libc.so and as liblog.so, only
 * so that lld records DT_NEEDED entries and resolves the symbols. They never ship: on a
 * device the real bionic libraries provide these functions. The bodies are not meant
 * to run (they are never loaded), but are kept correct anyway.
 */
#include <stddef.h>

#ifdef STUB_LIBC
void* malloc(size_t size) { (void)size; return 0; }
void* calloc(size_t count, size_t size) { (void)count; (void)size; return 0; }
void free(void* ptr) { (void)ptr; }
void* memset(void* dst, int value, size_t n) {
  unsigned char* d = (unsigned char*)dst;
  while (n--) *d++ = (unsigned char)value;
  return dst;
}
void* memcpy(void* dst, const void* src, size_t n) {
  unsigned char* d = (unsigned char*)dst;
  const unsigned char* s = (const unsigned char*)src;
  while (n--) *d++ = *s++;
  return dst;
}
void* memmove(void* dst, const void* src, size_t n) { return memcpy(dst, src, n); }
void __stack_chk_fail(void) {}
unsigned long __stack_chk_guard;
#endif

#ifdef STUB_LIBLOG
int __android_log_write(int priority, const char* tag, const char* text) {
  (void)priority; (void)tag; (void)text;
  return 0;
}
#endif
