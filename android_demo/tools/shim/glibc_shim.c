/*
 * Lets the Android builds of libpqrnn_demo.so load into a glibc process (the host's
 * x86_64 Python, or the emulated aarch64 one under qemu): they were linked against
 * bionic's libc.so and liblog.so, which glibc systems do not have. run_android_libs.py
 * builds this file twice per ISA and puts the folder on LD_LIBRARY_PATH:
 *   libc.so   (SHIM_LIBC)   defines nothing and needs libc.so.6, which has malloc & co;
 *   liblog.so (SHIM_LIBLOG) gives __android_log_write on stderr.
 * A proof that the code runs on that ISA, not a proof for bionic's dynamic linker.
 */
#ifdef SHIM_LIBLOG
#include <stdio.h>

int __android_log_write(int priority, const char* tag, const char* text) {
  return fprintf(stderr, "android log %d %s: %s\n", priority, tag, text);
}
#else
int pqrnn_glibc_shim; /* an object needs one symbol */
#endif
