/* Empty on purpose: the JDK's jni.h includes <stdio.h> but uses nothing from it, and the
 * Android builds have no libc headers (clang -nostdlibinc, see build_native.sh). */
