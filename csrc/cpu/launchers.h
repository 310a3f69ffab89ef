// The CPU kernels' launchers: what csrc/bindings.cpp registers for the CPU dispatch key.
#pragma once

#include "../draw.h"
#include "../engine.h"
#include "../loader.h"
#include "../swapkern.h"

namespace swapkern {

void exchange_cpu(const Plan& plan);                                          // exchange_cpu.cpp
void exchange_packed_cpu(const Plan* plans, const int64_t* prefix, int64_t n);  // exchange_cpu.cpp
void load_cpu(const LoadParams& p);                                           // loader_cpu.cpp
void draw_cpu(const DrawParams& p);                                           // draw_cpu.cpp
void engine_draw_cpu(const Engine& e, uint64_t seed, uint64_t step);          // engine_cpu.cpp
void engine_apply_cpu(const Engine& e, const Wave& w);                        // engine_cpu.cpp

}  // namespace swapkern
