// Force-included first in every translation unit by setup.py (-include): keeps swapkern._C within the glibc 2.28
// symbol set that a manylinux_2_28 wheel promises when it is built on a newer glibc (auditwheel checks it).
//  - dlsym (torch/csrc/stable/macros.h calls it): glibc 2.34 moved it into libc as dlsym@GLIBC_2.34; bind the
//    reference to the x86-64 base version that every glibc provides.
//  - __libc_single_threaded (glibc 2.32; libstdc++'s <ext/atomicity.h> reads it to skip atomic reference counts in
//    single-threaded processes): read a function that answers "not single-threaded" instead, so reference counts
//    are always atomic, as with an older glibc in a process that has threads (every torch process does).
// Nothing changes on another libc, on another architecture or in device code.
#pragma once
#if defined(__linux__) && !defined(__CUDA_ARCH__) && __has_include(<features.h>)
#include <features.h>
#if defined(__GLIBC__) && defined(__x86_64__)
#if __GLIBC_PREREQ(2, 34)
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
#endif
#if __GLIBC_PREREQ(2, 32) && defined(__cplusplus)
#define __libc_single_threaded swapkern_libc_single_threaded_false()
extern "C" inline __attribute__((visibility("hidden"))) char swapkern_libc_single_threaded_false() {
  return 0;
}
#endif
#endif
#endif
