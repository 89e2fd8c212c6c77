// The host model of tests/emulation/cuda_emulation.h: fibers on ucontext, one block at a time.
#include "emulation/cuda_emulation.h"

#include <ucontext.h>

#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "core/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define MG_EMULATION_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MG_EMULATION_ASAN 1
#endif
#endif
#ifdef MG_EMULATION_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace muongpt::emulation {
namespace {

// AddressSanitizer must be told about every stack switch (else it misreads the fiber stacks, for
// instance when an exception unwinds one): before a switch, the stack being switched to; after
// it, the saved state of the stack now running. No-ops in other builds.
void asan_before_switch(void** fake_stack_save, const void* bottom, size_t size) {
#ifdef MG_EMULATION_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}
void asan_after_switch(void* fake_stack_save, const void** bottom_old, size_t* size_old) {
#ifdef MG_EMULATION_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)size_old;
#endif
}

constexpr int kLanes = 32;
constexpr size_t kStackBytes = 256 * 1024;

enum class Op : uint8_t { shfl, ldmatrix, ldmatrix_trans, mma };

// One warp's collective in flight: each lane writes its inputs, the last to arrive computes every
// lane's outputs.
struct Warp {
  int arrived = 0;
  uint64_t generation = 0;
  Op op[kLanes];
  float f[kLanes];
  int lane_mask[kLanes];
  const void* addr[kLanes];
  uint32_t a[kLanes][4], b[kLanes][2];
  float c[kLanes][4];
  float f_out[kLanes];
  uint32_t r_out[kLanes][4];
  float c_out[kLanes][4];
};

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  ThreadIds ids;
  int tid = 0;
  bool done = false;
  std::exception_ptr error;
  void* asan_fake_stack = nullptr;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  size_t current = 0;
  std::vector<uint4> smem;
  size_t smem_bytes = 0;
  int live = 0;
  int barrier_arrived = 0;
  uint64_t barrier_generation = 0;
  uint64_t events = 0;  // arrivals, releases and exits: a pass without any is a deadlock
  std::vector<Warp> warps;
  const std::function<void()>* body = nullptr;
  const void* scheduler_stack = nullptr;  // the scheduler's stack, for AddressSanitizer
  size_t scheduler_stack_size = 0;
};

Block* g_block = nullptr;  // the block being run (launch() is not reentrant)

Fiber& running() {
  return g_block->fibers[g_block->current];
}
void yield() {
  Fiber& f = running();
  Block& b = *g_block;
  asan_before_switch(&f.asan_fake_stack, b.scheduler_stack, b.scheduler_stack_size);
  swapcontext(&f.ctx, &b.scheduler);
  asan_after_switch(f.asan_fake_stack, &b.scheduler_stack, &b.scheduler_stack_size);
}

void release_barrier_if_complete(Block& b) {
  if (b.barrier_arrived > 0 && b.barrier_arrived == b.live) {
    b.barrier_arrived = 0;
    ++b.barrier_generation;
  }
}

void trampoline() {
  asan_after_switch(nullptr, &g_block->scheduler_stack, &g_block->scheduler_stack_size);
  Fiber& f = running();
  try {
    (*g_block->body)();
  } catch (...) {
    f.error = std::current_exception();
  }
  f.done = true;
  --g_block->live;
  ++g_block->events;
  release_barrier_if_complete(*g_block);
  asan_before_switch(nullptr, g_block->scheduler_stack, g_block->scheduler_stack_size);
}  // returns to uc_link: the scheduler

// Deposits nothing itself: the caller has written its lane's inputs into `w`. Waits for all 32
// lanes, then the last one runs `compute`.
template <typename Compute>
void collective(Warp& w, int lane, Op op, Compute compute) {
  w.op[lane] = op;
  const uint64_t gen = w.generation;
  ++g_block->events;
  if (++w.arrived == kLanes) {
    for (int l = 0; l < kLanes; ++l)
      if (w.op[l] != op) fail("cuda emulation", "lanes of one warp reached different collectives");
    compute(w);
    w.arrived = 0;
    ++w.generation;
  } else {
    while (w.generation == gen) yield();
  }
}

Warp& my_warp(int* lane) {
  const int tid = running().tid;
  *lane = tid % kLanes;
  return g_block->warps[size_t(tid / kLanes)];
}

uint16_t lo(uint32_t x) {
  return uint16_t(x & 0xffffu);
}
uint16_t hi(uint32_t x) {
  return uint16_t(x >> 16);
}
float bf(uint16_t bits) {
  return bf16_to_float(bits);
}

// Element `col` (0..7) of the 8-element bf16 row at `row`, which must be a 16-byte aligned row
// inside the block's shared memory.
uint16_t smem_element(const void* row, int col) {
  const Block& b = *g_block;
  const char* base = reinterpret_cast<const char*>(b.smem.data());
  const char* p = static_cast<const char*>(row);
  if (p < base || p + 16 > base + b.smem_bytes)
    fail("cuda emulation", "ldmatrix row address outside the block's shared memory (offset ",
         p - base, " of ", b.smem_bytes, " bytes)");
  if ((p - base) % 16 != 0) fail("cuda emulation", "ldmatrix row address not 16-byte aligned");
  uint16_t v;
  std::memcpy(&v, p + 2 * col, sizeof v);
  return v;
}

}  // namespace

const ThreadIds& self() {
  return running().ids;
}

uint4* dynamic_smem() {
  return g_block->smem.data();
}

void syncthreads() {
  Block& b = *g_block;
  const uint64_t gen = b.barrier_generation;
  ++b.events;
  ++b.barrier_arrived;
  release_barrier_if_complete(b);
  while (b.barrier_generation == gen) yield();
}

float shfl_xor(float v, int lane_mask) {
  int lane;
  Warp& w = my_warp(&lane);
  w.f[lane] = v, w.lane_mask[lane] = lane_mask;
  collective(w, lane, Op::shfl, [](Warp& x) {
    for (int l = 0; l < kLanes; ++l) x.f_out[l] = x.f[(l ^ x.lane_mask[l]) % kLanes];
  });
  return w.f_out[lane];
}

void ldmatrix_x4(uint32_t r[4], const void* row_address, bool trans) {
  int lane;
  Warp& w = my_warp(&lane);
  w.addr[lane] = row_address;
  collective(w, lane, trans ? Op::ldmatrix_trans : Op::ldmatrix, [trans](Warp& x) {
    for (int l = 0; l < kLanes; ++l)
      for (int i = 0; i < 4; ++i) {
        uint16_t e0, e1;
        if (!trans) {  // row l/4, columns 2(l%4), 2(l%4) + 1
          e0 = smem_element(x.addr[8 * i + l / 4], 2 * (l % 4));
          e1 = smem_element(x.addr[8 * i + l / 4], 2 * (l % 4) + 1);
        } else {  // rows 2(l%4), 2(l%4) + 1 of column l/4
          e0 = smem_element(x.addr[8 * i + 2 * (l % 4)], l / 4);
          e1 = smem_element(x.addr[8 * i + 2 * (l % 4) + 1], l / 4);
        }
        x.r_out[l][i] = uint32_t(e0) | (uint32_t(e1) << 16);
      }
  });
  for (int i = 0; i < 4; ++i) r[i] = w.r_out[lane][i];
}

void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  int lane;
  Warp& w = my_warp(&lane);
  for (int i = 0; i < 4; ++i) w.a[lane][i] = a[i], w.c[lane][i] = c[i];
  w.b[lane][0] = b[0], w.b[lane][1] = b[1];
  collective(w, lane, Op::mma, [](Warp& x) {
    // The m16n8k16 fragments: g = l/4, t = l%4. A [16][16]: a0a1 (g, 2t..), a2a3 (g+8, 2t..),
    // a4a5 (g, 2t+8..), a6a7 (g+8, 2t+8..). B [16][8]: b0b1 (2t.., g), b2b3 (2t+8.., g).
    // C, D [16][8]: c0 c1 (g, 2t..), c2 c3 (g+8, 2t..).
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < kLanes; ++l) {
      const int g = l / 4, t = l % 4;
      const uint32_t* a4 = x.a[l];
      A[g][2 * t] = bf(lo(a4[0])), A[g][2 * t + 1] = bf(hi(a4[0]));
      A[g + 8][2 * t] = bf(lo(a4[1])), A[g + 8][2 * t + 1] = bf(hi(a4[1]));
      A[g][2 * t + 8] = bf(lo(a4[2])), A[g][2 * t + 9] = bf(hi(a4[2]));
      A[g + 8][2 * t + 8] = bf(lo(a4[3])), A[g + 8][2 * t + 9] = bf(hi(a4[3]));
      B[2 * t][g] = bf(lo(x.b[l][0])), B[2 * t + 1][g] = bf(hi(x.b[l][0]));
      B[2 * t + 8][g] = bf(lo(x.b[l][1])), B[2 * t + 9][g] = bf(hi(x.b[l][1]));
      C[g][2 * t] = x.c[l][0], C[g][2 * t + 1] = x.c[l][1];
      C[g + 8][2 * t] = x.c[l][2], C[g + 8][2 * t + 1] = x.c[l][3];
    }
    float D[16][8];
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 8; ++j) {
        float s = C[i][j];
        for (int k = 0; k < 16; ++k) s += A[i][k] * B[k][j];
        D[i][j] = s;
      }
    for (int l = 0; l < kLanes; ++l) {
      const int g = l / 4, t = l % 4;
      x.c_out[l][0] = D[g][2 * t], x.c_out[l][1] = D[g][2 * t + 1];
      x.c_out[l][2] = D[g + 8][2 * t], x.c_out[l][3] = D[g + 8][2 * t + 1];
    }
  });
  for (int i = 0; i < 4; ++i) c[i] = w.c_out[lane][i];
}

void launch(dim3 grid, dim3 block, size_t smem_bytes, const std::function<void()>& body) {
  if (g_block) fail("cuda emulation", "launch() inside a kernel");
  const int n = int(block.x * block.y * block.z);
  if (n <= 0 || n % kLanes != 0)
    fail("cuda emulation", "blocks of ", n, " threads (whole warps only here)");
  Block b;
  b.fibers.resize(size_t(n));
  for (Fiber& f : b.fibers) f.stack = std::make_unique<char[]>(kStackBytes);
  b.smem_bytes = smem_bytes;
  b.body = &body;
  struct Reset {  // g_block must not outlive b, also when an error is thrown
    ~Reset() { g_block = nullptr; }
  } reset;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.smem.assign((smem_bytes + 15) / 16, uint4{~0u, ~0u, ~0u, ~0u});
        b.warps.assign(size_t(n / kLanes), Warp{});
        b.live = n, b.barrier_arrived = 0;
        for (int t = 0; t < n; ++t) {
          Fiber& f = b.fibers[size_t(t)];
          f.tid = t, f.done = false, f.error = nullptr;
          f.ids.thread = {unsigned(t) % block.x, (unsigned(t) / block.x) % block.y,
                          unsigned(t) / (block.x * block.y)};
          f.ids.block = {bx, by, bz};
          f.ids.block_dim = block;
          f.ids.grid_dim = grid;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.get();
          f.ctx.uc_stack.ss_size = kStackBytes;
          f.ctx.uc_link = &b.scheduler;
          makecontext(&f.ctx, trampoline, 0);
        }
        g_block = &b;
        while (b.live > 0) {
          const uint64_t before = b.events;
          for (size_t t = 0; t < b.fibers.size(); ++t) {
            if (b.fibers[t].done) continue;
            b.current = t;
            void* fake_stack = nullptr;
            asan_before_switch(&fake_stack, b.fibers[t].stack.get(), kStackBytes);
            swapcontext(&b.scheduler, &b.fibers[t].ctx);
            asan_after_switch(fake_stack, nullptr, nullptr);
            if (b.fibers[t].error) std::rethrow_exception(b.fibers[t].error);
          }
          if (b.live > 0 && b.events == before)
            fail("cuda emulation", "deadlock in block (", bx, ", ", by, ", ", bz, "): ", b.live,
                 " threads wait at a barrier or warp collective that the others never reach");
        }
        g_block = nullptr;
      }
}

}  // namespace muongpt::emulation
