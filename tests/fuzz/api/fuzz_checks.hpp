#pragma once

#include <cstdio>
#include <cstdlib>

// A violated property ends the run as a crash, so libFuzzer keeps the input.
#define KEEL_FUZZ_CHECK(cond)                                                            \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)
