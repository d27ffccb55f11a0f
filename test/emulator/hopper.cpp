// The sm_90 instruction families (PTX ISA 9.0): mbarrier objects (§9.7.13.15 "Parallel
// Synchronization and Communication Instructions: mbarrier"), cp.async.mbarrier.arrive
// (§9.7.9.25.3.3), cp.async.bulk.tensor in tile mode, the default (§9.7.9.25.5 "Tensor copy"),
// wgmma (§9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions"),
// mapa (§9.7.9.23, clusters of one CTA), elect.sync and setmaxnreg.
//
// Asynchrony, as late as the ISA allows: a TMA copy's bytes land in shared memory (and
// complete their transaction bytes) only when its mbarrier is polled by test_wait or when no
// thread of the block can run otherwise; cp.async copies land when their group is waited for
// or when their cp.async.mbarrier.arrive triggers; wgmma accumulators are written at the
// wgmma.wait_group that retires their group, and any other instruction naming one before
// that is reported.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "decode.hpp"
#include "machine.hpp"
#include "numeric.hpp"
#include "tensor_map.hpp"

namespace emu {
namespace {

//! The payload of the mbarrier forms and of cp.async.mbarrier.arrive.
struct mbarrier_payload {
  bool expect_tx;  //!< arrive.expect_tx; expect_tx (else complete_tx)
  bool parity;     //!< test_wait / try_wait .parity (else a state token)
  bool noinc;      //!< cp.async.mbarrier.arrive.noinc
};

struct bulk_tensor_payload {
  uint8_t dimensions;  //!< .1d to .5d
};

[[noreturn]] void synccheck(block_state& b, thread_state& t, const instruction& in, const std::string& detail) {
  fail_launch(b, &t, &in, cudaErrorLaunchFailure, "synccheck", detail);
}

//! The shared-memory offset of an address operand of `bytes` bytes (in .shared or generic
//! space), after the bounds and alignment checks; an address outside shared memory is an
//! illegal address.
uint32_t shared_offset(block_state& b, thread_state& t, const instruction& in, const operand& o, uint32_t bytes,
                       uint32_t align) {
  const space s = in.state == space::generic ? space::generic : space::shared;
  const uint8_t* p = access(b, t, in, s, address_of(t, o), bytes, align, false);
  if (p < b.shared.data() || p >= b.shared.data() + b.shared.size())
    fail_launch(b, &t, &in, cudaErrorIllegalAddress, "illegal address",
                in.opcode + " operand " + hex(address_of(t, o)) + " is not in shared memory");
  return static_cast<uint32_t>(p - b.shared.data());
}

// Every mbarrier state change goes through here (a sync event for the deadlock detection).
void complete_phase_if_done(block_state& b, mbarrier_state& m) {
  ++b.sync_events;
  if (m.pending == 0 && m.tx == 0) {
    m.completed_level = m.level;  // profiling: the round-trip level its waiters go on at
    m.level = 0;
    ++m.phase;
    m.pending = m.expected;
    m.completed = std::move(m.arrived);  // what its waiters acquire
    m.arrived.clear();
  }
}

// ---- mbarrier ---------------------------------------------------------------------------

// mbarrier.init[.shared{::cta}].b64 [addr], count: phase 0, count arrivals pending, no bytes.
void exec_mbarrier_init(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t offset = shared_offset(b, t, in, in.ops[0], 8, 8);
  const uint64_t count = value(b, t, in.ops[1]) & 0xFFFFFFFFu;
  if (count < 1 || count > (1u << 20) - 1)
    synccheck(b, t, in, "mbarrier.init count " + std::to_string(count) + " outside [1, 2^20 - 1]");
  mbarrier_state& m = b.mbarriers[offset];
  m = mbarrier_state{};
  m.expected = m.pending = static_cast<uint32_t>(count);
  m.offset = offset;
  m.init_line = in.line;
  ++b.sync_events;
}

// mbarrier.inval[.shared{::cta}].b64 [addr]
void exec_mbarrier_inval(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t offset = shared_offset(b, t, in, in.ops[0], 8, 8);
  find_mbarrier(b, t, in, offset);
  b.mbarriers.erase(offset);
}

// mbarrier.arrive[.expect_tx][.sem][.scope][.space].b64 state, [addr][, count | txCount]:
// `state` receives the phase the arrival belongs to (the token of test_wait / try_wait).
void exec_mbarrier_arrive(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t offset = shared_offset(b, t, in, in.ops[1], 8, 8);
  mbarrier_state& m = find_mbarrier(b, t, in, offset);
  const bool expect_tx = payload<mbarrier_payload>(in).expect_tx;
  const uint64_t operand = in.op_count > 2 ? value(b, t, in.ops[2]) & 0xFFFFFFFFu : 1;
  set(t, in.ops[0], m.phase);
  mbarrier_arrive(b, t, in, m, expect_tx ? 1 : static_cast<uint32_t>(operand), expect_tx ? int64_t(operand) : 0);
}

// mbarrier.expect_tx / mbarrier.complete_tx [.sem][.scope][.space].b64 [addr], txCount
void exec_mbarrier_tx(block_state& b, thread_state& t, const instruction& in) {
  mbarrier_state& m = find_mbarrier(b, t, in, shared_offset(b, t, in, in.ops[0], 8, 8));
  const int64_t bytes = static_cast<int64_t>(value(b, t, in.ops[1]) & 0xFFFFFFFFu);
  const bool expect_tx = payload<mbarrier_payload>(in).expect_tx;  // else complete_tx
  m.tx += expect_tx ? bytes : -bytes;
  m.level = std::max(m.level, t.issue);
  if (!expect_tx) race_release(b, t, m.arrived);
  complete_phase_if_done(b, m);
}

// The completed-phase count that ends a wait of test_wait / try_wait: for .parity, the phase
// of that parity has completed when it is not the current phase's parity; for a state token
// (a phase number from arrive), once that phase has completed.
uint32_t wait_target(block_state& b, thread_state& t, const instruction& in, const mbarrier_state& m) {
  const uint64_t operand = value(b, t, in.ops[2]);
  if (payload<mbarrier_payload>(in).parity) return (m.phase & 1) != (operand & 1) ? m.phase : m.phase + 1;
  return static_cast<uint32_t>(operand) + 1;
}

// mbarrier.test_wait[.parity][.sem][.scope][.space].b64 waitComplete, [addr], state|phaseParity:
// a poll, which delivers the TMA copies pending on the barrier. A failing poll yields: the
// thread's group gives way (it would poll again at once).
void exec_mbarrier_test_wait(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t offset = shared_offset(b, t, in, in.ops[1], 8, 8);
  mbarrier_state* m = &find_mbarrier(b, t, in, offset);
  const uint32_t target = wait_target(b, t, in, *m);
  if (m->phase < target && land_bulk_copies(b, offset)) m = &find_mbarrier(b, t, in, offset);
  set(t, in.ops[0], m->phase >= target);
  if (m->phase >= target) {
    race_acquire(b, t, m->completed);
    t.result = std::max(t.result, m->completed_level);
  } else {
    b.yield = true;
  }
}

// mbarrier.try_wait[.parity]...: waits (sync_kind::mbarrier) until the phase completes (true)
// or its time limit expires (false), which the scheduler decides: the limit expires when no
// thread of the block can run otherwise. Records the wait; the scheduler ends it.
void exec_mbarrier_try_wait(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t offset = shared_offset(b, t, in, in.ops[1], 8, 8);
  const mbarrier_state& m = find_mbarrier(b, t, in, offset);
  t.mbarrier = offset;
  t.mbarrier_phase = wait_target(b, t, in, m);
}

// cp.async.mbarrier.arrive[.noinc][.shared{::cta}].b64 [addr]: the thread's prior cp.async
// copies land, then an arrive-on; without .noinc the pending count was raised by one for it
// first, so the arrival changes nothing.
void exec_cp_async_mbarrier_arrive(block_state& b, thread_state& t, const instruction& in) {
  mbarrier_state& m = find_mbarrier(b, t, in, shared_offset(b, t, in, in.ops[0], 8, 8));
  m.level = std::max(m.level, complete_async_copies(b, t, in, 0, true));  // the copies arrive as they land
  if (payload<mbarrier_payload>(in).noinc) mbarrier_arrive(b, t, in, m, 1, 0);
  else race_release(b, t, m.arrived);  // the copies are published to whoever sees the phase complete
}

// ---- cp.async.bulk.tensor -----------------------------------------------------------------

//! The bit pattern an out-of-range element gets with OOB fill NAN_REQUEST_ZERO_FMA.
uint64_t nan_pattern(unsigned bytes) {
  return bytes == 2 ? 0x7FFFu : bytes == 4 ? 0x7FFFFFFFu : 0x7FFFFFFFFFFFFFFFull;
}

// cp.async.bulk.tensor.Nd.shared::cluster.global[.tile].mbarrier::complete_tx::bytes[.L2::cache_hint]
//     [dstMem], [tensorMap, {c0, ..., cN-1}], [mbar][, policy]
// The box at the (signed) coordinates, innermost dimension first, elements outside the tensor
// as zeros (or NaN); ceil(box[i] / elementStrides[i]) elements per dimension.
void exec_bulk_tensor(block_state& b, thread_state& t, const instruction& in) {
  const uint8_t* raw = access(b, t, in, space::generic, address_of(t, in.ops[1]), sizeof(tensor_map), 64, false);
  tensor_map map;
  std::memcpy(&map, raw, sizeof map);
  if (map.magic != tensor_map::tag)
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                "the tensor map at " + hex(address_of(t, in.ops[1])) + " was not written by cuTensorMapEncodeTiled");
  const unsigned dimensions = payload<bulk_tensor_payload>(in).dimensions;
  if (map.rank != dimensions)
    fail_launch(b, &t, &in, cudaErrorIllegalInstruction, "illegal instruction",
                std::to_string(dimensions) + "d copy through a tensor map of rank " + std::to_string(map.rank));
  const unsigned eb = map.element_bytes;
  uint64_t counts[5] = {1, 1, 1, 1, 1};
  int64_t start[5] = {0, 0, 0, 0, 0};
  uint64_t elements = 1;
  for (unsigned i = 0; i < map.rank; ++i) {
    counts[i] = (map.box[i] + map.element_strides[i] - 1) / map.element_strides[i];
    start[i] = sign_extend(value(b, t, b.k.vector_elements[in.ops[2].first + i]), 4);
    elements *= counts[i];
  }
  const uint64_t inner_bytes = counts[0] * eb;
  if (elements * eb > b.shared.size())  // before any narrowing: a box larger than shared memory
    fail_launch(b, &t, &in, cudaErrorIllegalAddress, "illegal address",
                "a TMA box of " + std::to_string(elements * eb) + " bytes exceeds the block's " +
                    std::to_string(b.shared.size()) + " bytes of shared memory");
  if (map.swizzle_bits != 0 && inner_bytes != (16u << map.swizzle_bits))
    fail_launch(b, &t, &in, cudaErrorNotSupported, "not emulated",
                "a swizzled box whose inner dimension (" + std::to_string(inner_bytes) +
                    " bytes) is narrower than the swizzle span");
  const uint32_t bytes = static_cast<uint32_t>(elements * eb);
  bulk_copy copy;
  copy.destination = shared_offset(b, t, in, in.ops[0], bytes, 128);
  copy.mbarrier = shared_offset(b, t, in, in.ops[3], 8, 8);
  find_mbarrier(b, t, in, copy.mbarrier);
  copy.swizzle_bits = map.swizzle_bits;
  copy.issuer = t.linear;
  copy.line = in.line;
  if (b.race) copy.issuer_clocks = b.race->vector_of(t.linear);
  copy.box.resize(bytes);
  const uint64_t fill = map.nan_fill ? nan_pattern(eb) : 0;
  for (uint64_t e = 0; e < elements; e += counts[0]) {  // one innermost row per step
    uint64_t rest = e / counts[0];
    bool row_inside = true;
    uint64_t offset = 0;
    for (unsigned i = 1; i < map.rank; ++i) {
      const int64_t x = start[i] + int64_t(rest % counts[i]) * map.element_strides[i];
      rest /= counts[i];
      row_inside &= x >= 0 && uint64_t(x) < map.dims[i];
      offset += uint64_t(x) * map.strides[i];
    }
    uint8_t* row = copy.box.data() + e * eb;
    for (uint64_t j = 0; j < counts[0]; ++j) std::memcpy(row + j * eb, &fill, eb);
    if (!row_inside) continue;
    const int64_t lo = std::max<int64_t>(0, -start[0]);
    const int64_t hi = std::min<int64_t>(int64_t(counts[0]), int64_t(map.dims[0]) - start[0]);
    if (lo >= hi) continue;
    const uint64_t address = map.global_address + offset + uint64_t(start[0] + lo) * eb;
    const uint8_t* src = access(b, t, in, space::global, address, static_cast<uint32_t>((hi - lo) * eb), eb, false);
    std::memcpy(row + lo * eb, src, size_t(hi - lo) * eb);
  }
  copy.ready = t.result;  // profiling: a round trip after the issue
  b.bulk_copies.push_back(std::move(copy));
}

// ---- wgmma ---------------------------------------------------------------------------------

//! A shared-memory matrix descriptor (PTX ISA "Matrix Descriptor Format").
struct matrix_descriptor {
  uint32_t start, leading, stride, base_offset, swizzle_bits;
  explicit matrix_descriptor(uint64_t d)
      : start(uint32_t(d & 0x3FFF) << 4),
        leading(uint32_t(d >> 16 & 0x3FFF) << 4),
        stride(uint32_t(d >> 32 & 0x3FFF) << 4),
        base_offset(uint32_t(d >> 49 & 7)),
        swizzle_bits(d >> 62 == 1 ? 3 : d >> 62 == 2 ? 2 : d >> 62 == 3 ? 1 : 0) {}

  //! Shared address of byte `kb` along K of row `row` of a K-major operand (32 bytes of K: 16
  //! 16-bit or 32 8-bit elements), in the canonical layouts: without swizzle 8 × 16-byte core
  //! matrices, rows 16 bytes apart, the two 16-byte K chunks `leading` apart; swizzled, rows of
  //! 16·2^b bytes with both K chunks in them, then bits [4, 4+b) of the address XORed with bits
  //! [7, 7+b); 8-row groups `stride` apart.
  uint32_t element(uint32_t row, uint32_t kb) const {
    if (swizzle_bits == 0) return start + row / 8 * stride + kb / 16 * leading + row % 8 * 16 + kb % 16;
    const uint32_t a = start + row / 8 * stride + row % 8 * (16u << swizzle_bits) + kb;
    return a ^ ((a >> 7 & ((1u << swizzle_bits) - 1)) << 4);
  }

  //! Shared address of the element at byte `mnb` along M or N and row k (< 16) along K of an
  //! MN-major operand (imm-trans 1; swizzled layouts only), in the canonical layouts: swizzle
  //! atoms of 8 K rows of 16·2^b bytes of MN ((T,2^b,m),(8,k)):((1,T,LBO),(2^b·T,SBO)), K rows
  //! 16·2^b bytes apart, 8-row groups along K `stride` apart, the next atom along MN `leading`
  //! apart; then the swizzle, as element().
  uint32_t element_mn(uint32_t mnb, uint32_t k) const {
    const uint32_t span = 16u << swizzle_bits;
    const uint32_t a = start + mnb / span * leading + k / 8 * stride + k % 8 * span + mnb % span;
    return a ^ ((a >> 7 & ((1u << swizzle_bits) - 1)) << 4);
  }
};

//! A register's value as the wgmma chain sees it: its newest in-flight value, else the register.
uint64_t accumulator(const thread_state& t, int32_t slot) {
  return !t.wgmma_writes.empty() && t.wgmma_writes[size_t(slot)] ? t.wgmma_latest[size_t(slot)] : reg(t, slot);
}

//! wgmma operand element types.
enum wgmma_type : uint32_t { wgmma_f16, wgmma_bf16, wgmma_e4m3, wgmma_e5m2 };

//! The payload of wgmma.mma_async.
struct wgmma_payload {
  uint16_t n;                  //!< the shape's N
  uint8_t a_type, b_type;      //!< wgmma_type
  bool negate_a, negate_b;     //!< imm-scale-a / imm-scale-b of -1
  bool f16_accumulators;       //!< .f16 D (else .f32)
  bool a_registers;            //!< A from registers (else a shared-memory descriptor)
  bool trans_a, trans_b;       //!< imm-trans-a / imm-trans-b of 1: M-major A, N-major B
};

//! The value of a wgmma operand element of type `type` in the low bits of `v`, exactly.
double element_value(uint32_t v, uint32_t type) {
  if (type == wgmma_e4m3 || type == wgmma_e5m2) {
    static const auto table = [] {  // [e5m2?][code]
      std::array<std::array<double, 256>, 2> t{};
      for (uint32_t c = 0; c < 256; ++c) {
        t[0][c] = static_cast<double>(decode_float(c, e4m3_format));
        t[1][c] = static_cast<double>(decode_float(c, e5m2_format));
      }
      return t;
    }();
    return table[type == wgmma_e5m2][v & 0xFF];
  }
  return half_value(v, type == wgmma_bf16);
}

// wgmma.mma_async.sync.aligned.m64nNk16.{f32,f16}.{bf16,f16}.{bf16,f16} d, a-desc | a, b-desc, scale-d,
// imm-scale-a, imm-scale-b[, imm-trans-a], imm-trans-b and (PTX ISA 8.0) m64nNk32.{f32,f16}.{e4m3,e5m2}.
// {e4m3,e5m2} d, a-desc | a, b-desc, scale-d, imm-scale-a, imm-scale-b: D = A·B + (scale-d ? D : 0), A
// 64 × K (K = 32 bytes of elements) and B (N × K) from shared memory, K-major (imm-trans 0) or, for the
// 16-bit types, MN-major in a swizzled layout (imm-trans 1; without swizzle: not emulated), or A from four
// registers per thread ("Register Fragments"): register r of lane l (g = l / 4, q = l % 4) holds the
// e = 4 / (element bytes) elements of row 16w + g + 8 (r % 2), columns e·q + (K / 2)(r / 2) onwards,
// the first in its low bits. Warp w of the warpgroup owns rows 16w + g and 16w + g + 8: element
// 4i + j of its accumulators is row 16w + g + 8·(j / 2), column 8i + 2q + j % 2, one .f32 register
// each, or two to an .f16x2 register (the lower-numbered in the low half). Each element is
// accumulated in double and rounded once to f32 (or f16).
void warp_wgmma(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
  thread_state& first = *lanes[0];
  if ((first.warp / 4) * 4 + 3 >= b.warp_count)
    fail_launch(b, &first, &in, cudaErrorLaunchFailure, "collective mismatch",
                "wgmma needs the four warps of a warpgroup; the block has " + std::to_string(b.warp_count) + " warps");
  const wgmma_payload& p = payload<wgmma_payload>(in);
  const bool a_registers = p.a_registers;
  const uint64_t a_bits = a_registers ? 0 : value(b, first, in.ops[1]), b_bits = value(b, first, in.ops[2]);
  for (int l = 1; l < 32; ++l)
    if ((!a_registers && value(b, *lanes[l], in.ops[1]) != a_bits) || value(b, *lanes[l], in.ops[2]) != b_bits)
      fail_launch(b, lanes[l], &in, cudaErrorLaunchFailure, "collective mismatch",
                  "lanes of a warp pass different wgmma descriptors");
  const matrix_descriptor da(a_bits), db(b_bits);
  if (da.base_offset != 0 || db.base_offset != 0)
    fail_launch(b, &first, &in, cudaErrorNotSupported, "not emulated", "a matrix descriptor with a base offset");
  if ((p.trans_a && da.swizzle_bits == 0) || (p.trans_b && db.swizzle_bits == 0))
    fail_launch(b, &first, &in, cudaErrorNotSupported, "not emulated", "an MN-major operand without a swizzle");
  const int n = p.n;
  const uint32_t a_type = p.a_type, b_type = p.b_type;
  const uint32_t bytes = a_type >= wgmma_e4m3 ? 1 : 2, k_count = 32 / bytes;
  if (b.profile) b.profile->record.tensor_macs += 16 * uint64_t(n) * k_count;  // this warp's 16 rows
  const double sa = p.negate_a ? -1.0 : 1.0, sb = p.negate_b ? -1.0 : 1.0;
  std::vector<uint32_t> operand_reads;  // racecheck: recorded when the group retires
  // Row `row` of an operand: its two 16-byte K chunks, each contiguous in shared memory (the
  // swizzle moves whole chunks), as `k_count` element values times `scale`.
  const auto load_row = [&](const matrix_descriptor& d, uint32_t row, uint32_t type, double scale, double* into) {
    for (uint32_t chunk = 0; chunk < 2; ++chunk) {
      const uint32_t address = d.element(row, 16 * chunk);
      if (uint64_t(address) + 16 > b.shared.size()) {  // name the first element beyond the end
        uint32_t at = address;
        while (uint64_t(at) + bytes <= b.shared.size()) at += bytes;
        fail_launch(b, &first, &in, cudaErrorIllegalAddress, "illegal address",
                    "wgmma operand element at shared " + hex(at) + " beyond the block's " +
                        std::to_string(b.shared.size()) + " bytes");
      }
      if (b.race) operand_reads.push_back(address);
      const uint8_t* chunk_bytes = b.shared.data() + address;
      for (uint32_t e = 0; e < 16 / bytes; ++e) {
        const uint32_t v = bytes == 1 ? chunk_bytes[e] : uint32_t(load_bytes(chunk_bytes + 2 * e, 2));
        into[chunk * (16 / bytes) + e] = scale * element_value(v, type);
      }
    }
  };
  // Row `row` (along M or N) of an MN-major operand: its `k_count` elements, one per K row, 2
  // bytes each (16-bit types only), times `scale`.
  const auto load_mn_row = [&](const matrix_descriptor& d, uint32_t row, uint32_t type, double scale, double* into) {
    for (uint32_t k = 0; k < k_count; ++k) {
      const uint32_t address = d.element_mn(2 * row, k);
      if (uint64_t(address) + 2 > b.shared.size())
        fail_launch(b, &first, &in, cudaErrorIllegalAddress, "illegal address",
                    "wgmma operand element at shared " + hex(address) + " beyond the block's " +
                        std::to_string(b.shared.size()) + " bytes");
      if (b.race) operand_reads.push_back(address & ~15u);  // its 16-byte chunk
      into[k] = scale * element_value(uint32_t(load_bytes(b.shared.data() + address, 2)), type);
    }
  };
  const uint32_t row0 = 16 * (first.warp % 4);
  double A[16][32];
  std::vector<double> B(size_t(n) * k_count), Bt(size_t(k_count) * n);
  if (a_registers) {
    const uint32_t per_register = 4 / bytes;
    for (int l = 0; l < 32; ++l)
      for (uint32_t r = 0; r < 4; ++r) {
        const uint64_t v = value(b, *lanes[l], b.k.vector_elements[in.ops[1].first + r]);
        for (uint32_t e = 0; e < per_register; ++e)
          A[l / 4 + 8 * (r % 2)][per_register * (l % 4) + k_count / 2 * (r / 2) + e] =
              sa * element_value(uint32_t(v >> (8 * bytes * e)), a_type);
      }
  } else {
    for (uint32_t r = 0; r < 16; ++r) {
      if (p.trans_a) load_mn_row(da, row0 + r, a_type, sa, A[r]);
      else load_row(da, row0 + r, a_type, sa, A[r]);
    }
  }
  for (int c = 0; c < n; ++c) {
    if (p.trans_b) load_mn_row(db, uint32_t(c), b_type, sb, &B[size_t(c) * k_count]);
    else load_row(db, uint32_t(c), b_type, sb, &B[size_t(c) * k_count]);
  }
  for (int c = 0; c < n; ++c)
    for (uint32_t k = 0; k < k_count; ++k) Bt[size_t(k) * n + c] = B[size_t(c) * k_count + k];
  const bool f16_d = p.f16_accumulators;
  const operand& d = in.ops[0];
  const auto& ve = b.k.vector_elements;
  // The warp's 16 × n tile: each element from its lane's accumulator (or 0 without scale-d), then
  // summed in k order; a row's n elements are independent chains.
  std::vector<double> D(size_t(16) * n);
  const auto element_of = [&](int l, int e) {  // lane l's element e: (row, column) of the tile
    return std::pair<int, int>{l / 4 + 8 * (e % 4 / 2), 8 * (e / 4) + 2 * (l % 4) + e % 2};
  };
  for (int l = 0; l < 32; ++l) {
    const thread_state& t = *lanes[l];
    const bool scale_d = predicate(b, t, in.ops[3]);
    for (int e = 0; e < n / 2; ++e) {
      const auto [row, col] = element_of(l, e);
      const uint64_t current = accumulator(t, ve[d.first + (f16_d ? e / 2 : e)].reg);
      D[size_t(row) * n + col] = !scale_d ? 0.0 : f16_d ? half_value(current >> (16 * (e % 2)), false) : double(as_f32(current));
    }
  }
  for (int row = 0; row < 16; ++row)
    for (uint32_t k = 0; k < k_count; ++k) {
      const double a = A[row][k];
      double* const out_row = &D[size_t(row) * n];
      const double* const b_row = &Bt[size_t(k) * n];
      for (int col = 0; col < n; ++col) out_row[col] += a * b_row[col];
    }
  std::vector<uint64_t> out(d.count);
  for (int l = 0; l < 32; ++l) {
    thread_state& t = *lanes[l];
    if (t.wgmma_writes.empty()) {
      t.wgmma_writes.assign(b.k.register_count, 0);
      t.wgmma_latest.assign(b.k.register_count, 0);
    }
    if (!t.wgmma_open) {
      t.wgmma_groups.push_back({{}, in.line, {}});
      t.wgmma_open = true;
    }
    pending_accumulators& group = t.wgmma_groups.back();
    if (l == 0) group.operand_reads.insert(group.operand_reads.end(), operand_reads.begin(), operand_reads.end());
    std::fill(out.begin(), out.end(), 0);
    for (int e = 0; e < n / 2; ++e) {
      const auto [row, col] = element_of(l, e);
      const double sum = D[size_t(row) * n + col];
      if (f16_d) out[size_t(e / 2)] |= encode_float(sum, f16_format, rounding::rn) << (16 * (e % 2));
      else out[size_t(e)] = bits(static_cast<float>(sum));
    }
    for (uint32_t i = 0; i < d.count; ++i) {
      const int32_t slot = ve[d.first + i].reg;
      group.writes.emplace_back(slot, out[i]);
      t.wgmma_latest[size_t(slot)] = out[i];
      ++t.wgmma_writes[size_t(slot)];
      ++t.wgmma_in_flight;
    }
  }
}

// wgmma.fence.sync.aligned: orders register accesses before the next mma_async (nothing to do
// in a sequential engine).
void warp_wgmma_fence(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
}

// wgmma.commit_group.sync.aligned: the mma_async since the last commit form a group (possibly
// empty).
void warp_wgmma_commit(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
  for (int l = 0; l < 32; ++l) {
    thread_state& t = *lanes[l];
    if (!t.wgmma_open) t.wgmma_groups.push_back({{}, in.line, {}});
    t.wgmma_open = false;
  }
}

// wgmma.wait_group.sync.aligned N: retires the oldest committed groups until at most N are in
// flight; their accumulators are written now.
void warp_wgmma_wait(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  require_full_warp(b, lanes, mask, in);
  const size_t keep = static_cast<size_t>(in.ops[0].imm);
  for (int l = 0; l < 32; ++l) {
    thread_state& t = *lanes[l];
    size_t committed = t.wgmma_groups.size() - (t.wgmma_open ? 1 : 0), retired = 0;
    for (; committed > keep; --committed, ++retired) {
      // The operands may be read until now: a stage released before this wait still races.
      for (uint32_t address : t.wgmma_groups[retired].operand_reads)
        race_access(b, t, in, address, 16, false, "this warp's wgmma.mma_async (retired here)");
      for (const auto& [slot, v] : t.wgmma_groups[retired].writes) {
        reg(t, slot) = v;
        --t.wgmma_writes[size_t(slot)];
        --t.wgmma_in_flight;
      }
    }
    t.wgmma_groups.erase(t.wgmma_groups.begin(), t.wgmma_groups.begin() + std::ptrdiff_t(retired));
  }
}

// ---- mapa --------------------------------------------------------------------------------------

// mapa{.shared::cluster}.{u32,u64} d, a, b (PTX ISA 9.7.9.23): d is the address in CTA b of the
// cluster that corresponds to a (a shared::cluster address, or with no space a generic one). Every
// block runs as a cluster of one CTA, rank 0: the address maps to itself, and no other rank exists.
void exec_mapa(block_state& b, thread_state& t, const instruction& in) {
  const uint32_t rank = static_cast<uint32_t>(value(b, t, in.ops[2]));
  if (rank != 0)
    fail_launch(b, &t, &in, cudaErrorIllegalAddress, "illegal address",
                "mapa to CTA rank " + std::to_string(rank) + " of a cluster of 1 CTA");
  set(t, in.ops[0], truncate(value(b, t, in.ops[1]), type_bytes(in.type)));
}

// ---- elect, setmaxnreg, griddepcontrol -------------------------------------------------------

// elect.sync d|p, membermask: the leader is the lowest lane of the participating lanes; every
// lane gets its id in d, and p is true in the leader alone.
void warp_elect(block_state& b, thread_state* const* lanes, uint32_t mask, const instruction& in) {
  (void)b;
  const uint32_t leader = static_cast<uint32_t>(__builtin_ctz(mask));
  for (uint32_t m = mask; m; m &= m - 1) {
    const uint32_t l = __builtin_ctz(m);
    set(*lanes[l], in.ops[0], leader);
    if (in.pair >= 0) reg(*lanes[l], in.pair) = l == leader;
  }
}

void warp_nothing(block_state&, thread_state* const*, uint32_t, const instruction&) {}

}  // namespace

mbarrier_state& find_mbarrier(block_state& b, thread_state& t, const instruction& in, uint32_t offset) {
  const auto it = b.mbarriers.find(offset);
  if (it == b.mbarriers.end())
    synccheck(b, t, in, in.opcode + " on shared " + hex(offset) + ", which no mbarrier.init initialised");
  return it->second;
}

void mbarrier_arrive(block_state& b, thread_state& t, const instruction& in, mbarrier_state& m, uint32_t count,
                     int64_t tx) {
  if (count > m.pending)
    synccheck(b, t, in,
              "arrival of " + std::to_string(count) + " on the mbarrier at shared " +
                  hex(m.offset) + " (initialised at " + b.k.line_text(m.init_line) +
                  ") with " + std::to_string(m.pending) + " of " + std::to_string(m.expected) +
                  " arrivals pending in phase " + std::to_string(m.phase) +
                  ": more arrivals than the phase expects");
  m.tx += tx;
  m.pending -= count;
  m.level = std::max(m.level, t.issue);
  race_release(b, t, m.arrived);
  complete_phase_if_done(b, m);
}

bool land_bulk_copies(block_state& b, uint32_t offset) {
  bool landed = false;
  std::vector<bulk_copy> later;
  std::vector<bulk_copy> copies = std::move(b.bulk_copies);
  b.bulk_copies.clear();
  for (bulk_copy& c : copies) {
    if (offset != UINT32_MAX && c.mbarrier != offset) {
      later.push_back(std::move(c));
      continue;
    }
    const uint32_t mask = (1u << c.swizzle_bits) - 1;
    for (uint32_t o = 0; o < c.box.size(); o += 16) {
      const uint32_t a = c.destination + o, to = a ^ ((a >> 7 & mask) << 4);
      if (b.race)
        race_access(b, c.issuer, c.issuer_clocks[c.issuer], c.issuer_clocks.data(), nullptr, c.line, to, 16, true,
                    "the TMA copy this thread issued");
      std::memcpy(b.shared.data() + to, c.box.data() + o, 16);
    }
    const auto it = b.mbarriers.find(c.mbarrier);
    if (it == b.mbarriers.end())
      fail_launch(b, &b.threads[c.issuer], nullptr, cudaErrorLaunchFailure, "synccheck",
                  "the TMA copy of " + b.k.line_text(c.line) + " completes on shared " + hex(c.mbarrier) +
                      ", no longer an mbarrier");
    it->second.tx -= int64_t(c.box.size());
    it->second.level = std::max(it->second.level, c.ready);
    if (b.race) race_join(b, it->second.arrived, c.issuer_clocks.data());  // the copy completes on the phase
    complete_phase_if_done(b, it->second);
    landed = true;
  }
  b.bulk_copies = std::move(later);
  return landed;
}

void mark_accumulator_uses(kernel& k) {
  std::vector<bool> accumulators(k.register_count, false);
  bool any = false;
  for (const instruction& in : k.code) {
    if (in.opcode != "wgmma" || in.warp_exec != warp_wgmma) continue;
    for (uint32_t i = 0; i < in.ops[0].count; ++i) accumulators[size_t(k.vector_elements[in.ops[0].first + i].reg)] = true;
    any = true;
  }
  if (!any) return;
  const auto names = [&](const operand& o) {
    if ((o.k == operand::kind::reg || o.k == operand::kind::address) && o.reg >= 0) return bool(accumulators[size_t(o.reg)]);
    if (o.k != operand::kind::vector) return false;
    for (uint32_t i = 0; i < o.count; ++i) {
      const operand& e = k.vector_elements[o.first + i];
      if (e.k == operand::kind::reg && accumulators[size_t(e.reg)]) return true;
    }
    return false;
  };
  for (instruction& in : k.code) {
    if (in.opcode == "wgmma") continue;
    for (int i = 0; i < in.op_count && !in.touches_accumulators; ++i) in.touches_accumulators = names(in.ops[i]);
  }
}

void check_accumulators(block_state& b, thread_state& t, const instruction& in) {
  const auto check = [&](int32_t slot) {
    if (slot < 0 || !t.wgmma_writes[size_t(slot)]) return;
    uint32_t line = 0;
    for (const pending_accumulators& g : t.wgmma_groups)
      for (const auto& w : g.writes)
        if (w.first == slot && line == 0) line = g.line;
    fail_launch(b, &t, &in, cudaErrorLaunchFailure, "wgmma hazard",
                in.opcode + " names " + b.k.register_names[size_t(slot)] +
                    ", an accumulator of the wgmma.mma_async at " + b.k.line_text(line) +
                    " that is still in flight (no wgmma.wait_group has retired it)");
  };
  for (int i = 0; i < in.op_count; ++i) {
    const operand& o = in.ops[i];
    if (o.k == operand::kind::reg || o.k == operand::kind::address) check(o.reg);
    if (o.k == operand::kind::vector)
      for (uint32_t e = 0; e < o.count; ++e)
        if (b.k.vector_elements[o.first + e].k == operand::kind::reg) check(b.k.vector_elements[o.first + e].reg);
  }
}

bool mbarrier_wait_done(block_state& b, thread_state& t) {
  const instruction& in = b.k.code[t.pc];
  const auto it = b.mbarriers.find(t.mbarrier);
  if (it == b.mbarriers.end())
    synccheck(b, t, in, "mbarrier.try_wait on shared " + hex(t.mbarrier) + ", invalidated while waited on");
  if (it->second.phase < t.mbarrier_phase) return false;
  if (it->second.phase > t.mbarrier_phase)  // the ISA defines a wait for the current or the preceding phase only
    synccheck(b, t, in, "mbarrier.try_wait on shared " + hex(t.mbarrier) + " for phase " +
                            std::to_string(t.mbarrier_phase - 1) + ", but phase " +
                            std::to_string(it->second.phase - 1) +
                            " has completed too: a parity or token wait cannot tell them apart (a lapped waiter)");
  set(t, in.ops[0], 1);
  race_acquire(b, t, it->second.completed);
  t.result = std::max(t.result, it->second.completed_level);
  return true;
}

namespace {

// ---- decoders ----------------------------------------------------------------------------------

void decode_mbarrier(instruction& in, const kernel&) {
  const std::string& form = in.modifiers[0];
  if (has(in, "shared::cluster") && form != "arrive" && form != "expect_tx" && form != "complete_tx")
    unsupported(in, "clusters");
  mbarrier_payload& p = set_payload<mbarrier_payload>(in);
  if (form == "init") {
    in.exec = exec_mbarrier_init;
  } else if (form == "inval") {
    in.exec = exec_mbarrier_inval;
  } else if (form == "arrive") {
    p.expect_tx = has(in, "expect_tx");
    if (p.expect_tx) need_operands(in, 3);
    if (has(in, "shared::cluster") && in.ops[0].k != operand::kind::sink) unsupported(in, "a state from .shared::cluster");
    in.exec = exec_mbarrier_arrive;
  } else if (form == "expect_tx" || form == "complete_tx") {
    p.expect_tx = form == "expect_tx";
    in.exec = exec_mbarrier_tx;
  } else {  // test_wait, try_wait
    p.parity = has(in, "parity");
    if (form == "test_wait") {
      in.exec = exec_mbarrier_test_wait;
    } else {
      in.sync = sync_kind::mbarrier;
      in.exec = exec_mbarrier_try_wait;
    }
  }
}

void decode_cp_async_mbarrier_arrive(instruction& in, const kernel&) {
  set_payload<mbarrier_payload>(in).noinc = has(in, "noinc");
  in.exec = exec_cp_async_mbarrier_arrive;
}

// .load_mode: .tile, which is also the default when it is absent (PTX ISA "cp.async.bulk.tensor");
// .im2col, .im2col::w, .im2col::w::128, .tile::gather4, .multicast::cluster and .cta_group are
// refused by the row.
void decode_bulk_tensor(instruction& in, const kernel&) {
  if (in.state != space::shared || !has(in, "global") || !has(in, "mbarrier::complete_tx::bytes"))
    unsupported(in, "only global to shared memory, completing on an mbarrier");
  uint8_t& dimensions = set_payload<bulk_tensor_payload>(in).dimensions;
  for (uint8_t d = 1; d <= 5; ++d)
    if (has(in, (std::to_string(d) + "d").c_str())) dimensions = d;
  if (dimensions == 0 || in.ops[2].k != operand::kind::vector || in.ops[2].count != dimensions)
    unsupported(in, "coordinates: one per dimension");
  in.exec = exec_bulk_tensor;
}

//! wgmma and setmaxnreg: .sync.aligned, executed once by each whole warp.
void warp_aligned(instruction& in, warp_exec_fn f) {
  in.sync = sync_kind::warp;
  in.aligned = true;
  in.warp_exec = f;
}

void decode_wgmma_fence(instruction& in, const kernel&) { warp_aligned(in, warp_wgmma_fence); }
void decode_wgmma_commit(instruction& in, const kernel&) { warp_aligned(in, warp_wgmma_commit); }
void decode_wgmma_wait(instruction& in, const kernel&) {
  if (in.ops[0].k != operand::kind::imm) unsupported(in, "the group count must be an immediate");
  warp_aligned(in, warp_wgmma_wait);
}

// Shape m64nNk16 (16-bit A and B) or m64nNk32 (fp8), then .dtype, .atype, .btype.
void decode_wgmma(instruction& in, const kernel& k) {
  static const std::map<std::string, uint32_t> element_types = {
      {"f16", wgmma_f16}, {"bf16", wgmma_bf16}, {"e4m3", wgmma_e4m3}, {"e5m2", wgmma_e5m2}};
  int n = 0, k_count = 0;
  std::vector<std::string> types;
  for (const std::string& m : in.modifiers) {
    if (m == "f32" || element_types.count(m)) types.push_back(m);
    else if (m.compare(0, 4, "m64n") == 0) {
      n = std::atoi(m.c_str() + 4);
      k_count = std::atoi(m.c_str() + m.find('k') + 1);
    }
  }
  if (types.size() != 3 || !element_types.count(types[1]) || !element_types.count(types[2]) ||
      (types[0] != "f32" && types[0] != "f16"))
    unsupported(in, "only .f32 or .f16 accumulators of f16, bf16, e4m3 or e5m2 products");
  const uint32_t a_type = element_types.at(types[1]), b_type = element_types.at(types[2]);
  const bool fp8 = a_type >= wgmma_e4m3;
  if (fp8 ? b_type < wgmma_e4m3 : b_type != a_type)
    unsupported(in, ".atype and .btype differ outside the fp8 types");
  if (a_type == wgmma_bf16 && types[0] == "f16") unsupported(in, "bf16 products accumulate in .f32 only");
  if (n == 0 || k_count != (fp8 ? 32 : 16)) unsupported(in, fp8 ? "fp8 shapes are m64nNk32" : "16-bit shapes are m64nNk16");
  const bool a_registers = in.op_count > 1 && in.ops[1].k == operand::kind::vector;
  // Operands: d, a-desc | a, b-desc, scale-d, imm-scale-a, imm-scale-b, then the 16-bit types' imm-trans-a
  // (A from shared memory alone) and imm-trans-b.
  const int operands = 6 + (fp8 ? 0 : a_registers ? 1 : 2);
  const uint32_t accumulators = uint32_t(types[0] == "f32" ? n / 2 : n / 4);
  if (in.op_count != operands || in.ops[0].k != operand::kind::vector || in.ops[0].count != accumulators)
    unsupported(in, "operands: " + std::to_string(accumulators) + " accumulators, A, the B descriptor, scale-d and " +
                        std::to_string(operands - 4) + " immediates");
  for (uint32_t i = 0; i < in.ops[0].count; ++i)
    if (k.vector_elements[in.ops[0].first + i].k != operand::kind::reg) unsupported(in, "accumulators must be registers");
  if (a_registers) {
    if (in.ops[1].count != 4) unsupported(in, "A from four registers");
    for (uint32_t i = 0; i < 4; ++i)
      if (k.vector_elements[in.ops[1].first + i].k != operand::kind::reg) unsupported(in, "A from four registers");
  }
  for (int i = 4; i < operands; ++i)
    if (in.ops[i].k != operand::kind::imm) unsupported(in, "scale and transpose operands must be immediates");
  const auto negated = [&](int i) {
    if (in.ops[i].imm == 1) return false;
    if (in.ops[i].imm == ~uint64_t(0)) return true;
    unsupported(in, "imm-scale must be 1 or -1");
  };
  for (int i = 6; i < operands; ++i)
    if (in.ops[i].imm > 1) unsupported(in, "imm-trans must be 0 or 1");
  wgmma_payload& p = set_payload<wgmma_payload>(in);
  p.trans_a = !fp8 && !a_registers && in.ops[6].imm == 1;
  p.trans_b = !fp8 && in.ops[operands - 1].imm == 1;
  p.n = static_cast<uint16_t>(n);
  p.a_type = static_cast<uint8_t>(a_type);
  p.b_type = static_cast<uint8_t>(b_type);
  p.negate_a = negated(4);
  p.negate_b = negated(5);
  p.f16_accumulators = types[0] == "f16";
  p.a_registers = a_registers;
  warp_aligned(in, warp_wgmma);
}

void decode_mapa(instruction& in, const kernel&) { in.exec = exec_mapa; }

void decode_elect(instruction& in, const kernel&) {
  in.sync = sync_kind::warp;
  in.mask_operand = 1;
  in.warp_exec = warp_elect;
}

void decode_setmaxnreg(instruction& in, const kernel&) {
  if (in.ops[0].k != operand::kind::imm || in.ops[0].imm < 24 || in.ops[0].imm > 256 || in.ops[0].imm % 8 != 0)
    unsupported(in, "the register count must be an immediate multiple of 8 in [24, 256]");
  warp_aligned(in, warp_nothing);  // the emulator allocates no registers: a warp-wide no-op
}

}  // namespace

std::vector<opcode_row> hopper_rows() {
  using profile::instruction_class;
  const auto sync = instruction_class::synchronisation;
  const qualifier_list barrier = {"shared", "shared::cta", "b64", "cta", "cluster"};
  const auto waits = any_of({barrier, {"parity", "acquire", "relaxed"}});
  const auto arrival = any_of({barrier, {"shared::cluster", "release", "relaxed"}});
  const auto tx = any_of({barrier, {"shared::cluster", "relaxed"}});
  qualifier_list shapes;  // m64nNk16 and m64nNk32, N = 8, 16, ..., 256
  for (int n = 8; n <= 256; n += 8)
    for (const char* k : {"k16", "k32"}) shapes.push_back("m64n" + std::to_string(n) + k);
  const qualifier_list aligned = {"sync", "aligned"};
  const auto wgmma = [&](std::initializer_list<qualifier_list> more) {
    std::unordered_set<std::string> q = any_of(more);
    q.insert(aligned.begin(), aligned.end());
    return q;
  };
  return {
      {"mbarrier.init", any_of({barrier}), 2, 2, decode_mbarrier, sync},
      {"mbarrier.inval", any_of({barrier}), 1, 1, decode_mbarrier, sync},
      {"mbarrier.arrive", any_of({{"expect_tx"}, {arrival.begin(), arrival.end()}}), 2, 3, decode_mbarrier, sync},
      {"mbarrier.expect_tx", tx, 2, 2, decode_mbarrier, sync},
      {"mbarrier.complete_tx", tx, 2, 2, decode_mbarrier, sync},
      {"mbarrier.test_wait", waits, 3, 3, decode_mbarrier, sync},
      {"mbarrier.try_wait", waits, 3, 4, decode_mbarrier, sync},
      {"cp.async.mbarrier.arrive", any_of({{"noinc", "shared", "shared::cta", "b64"}}), 1, 1,
       decode_cp_async_mbarrier_arrive, sync},
      {"cp.async.bulk.tensor",
       any_of({{"1d", "2d", "3d", "4d", "5d", "shared::cluster", "shared::cta", "global", "tile",
                "mbarrier::complete_tx::bytes", "L2::cache_hint"}}),
       4, 5, decode_bulk_tensor, instruction_class::memory, memory_kind::bulk_tensor},
      {"wgmma.fence", wgmma({}), 0, 0, decode_wgmma_fence, sync},
      {"wgmma.commit_group", wgmma({}), 0, 0, decode_wgmma_commit, sync},
      {"wgmma.wait_group", wgmma({}), 1, 1, decode_wgmma_wait, sync},
      {"wgmma.mma_async", wgmma({shapes, {"f32", "f16", "bf16", "e4m3", "e5m2"}}), 6, 9, decode_wgmma,
       instruction_class::tensor},
      {"mapa", any_of({{"shared::cluster", "u32", "u64"}}), 3, 3, decode_mapa},
      {"elect.sync", {}, 2, 2, decode_elect, instruction_class::warp},
      {"setmaxnreg", any_of({{"inc", "dec", "sync", "aligned", "u32"}}), 1, 1, decode_setmaxnreg, sync},
  };
}

}  // namespace emu
