// The decoded form of PTX that the engine executes: one `instruction` per PTX instruction,
// its operands resolved to register slots, immediates and constant addresses, and the
// function that executes it chosen once at decode time.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine.hpp"

namespace emu {

//! PTX state spaces. Addresses in shared, local and param space are offsets inside the
//! block's / thread's / launch's buffer; generic addresses map them through fixed windows.
enum class space : uint8_t { generic, global, shared, local, param, constant };

//! PTX fundamental types (and the packed pairs).
enum class ptype : uint8_t {
  none, pred, b8, b16, b32, b64, b128, u8, u16, u32, u64, s8, s16, s32, s64,
  f16, f16x2, bf16, bf16x2, f32, f64
};

//! Size, signedness and floatness of each ptype, in enum order (handlers read them per instruction).
struct ptype_traits {
  uint8_t bytes;
  bool is_signed, is_float;
};
constexpr ptype_traits ptype_table[] = {
    {0, false, false},  // none
    {1, false, false},  // pred
    {1, false, false}, {2, false, false}, {4, false, false}, {8, false, false}, {16, false, false},  // b8 .. b128
    {1, false, false}, {2, false, false}, {4, false, false}, {8, false, false},                     // u8 .. u64
    {1, true, false},  {2, true, false},  {4, true, false},  {8, true, false},                      // s8 .. s64
    {2, false, true},  {4, false, false}, {2, false, true},  {4, false, false},                     // f16 f16x2 bf16 bf16x2
    {4, false, true},  {8, false, true}};                                                           // f32 f64
static_assert(sizeof(ptype_table) / sizeof(ptype_table[0]) == size_t(ptype::f64) + 1);

inline int type_bytes(ptype t) { return ptype_table[size_t(t)].bytes; }
inline bool type_signed(ptype t) { return ptype_table[size_t(t)].is_signed; }
inline bool type_float(ptype t) { return ptype_table[size_t(t)].is_float; }  //!< f16, bf16, f32, f64 (not the pairs)

//! Special registers.
enum class special : uint8_t {
  tid_x, tid_y, tid_z, ntid_x, ntid_y, ntid_z, ctaid_x, ctaid_y, ctaid_z,
  nctaid_x, nctaid_y, nctaid_z, laneid, warpid, nwarpid, smid, nsmid, gridid,
  lanemask_eq, lanemask_lt, lanemask_le, lanemask_gt, lanemask_ge,
  clock, clock64, globaltimer, dynamic_smem_size, total_smem_size,
  clusterid_x, clusterid_y, clusterid_z, nclusterid_x, nclusterid_y, nclusterid_z,
  cluster_ctaid_x, cluster_ctaid_y, cluster_ctaid_z, cluster_nctaid_x, cluster_nctaid_y,
  cluster_nctaid_z, cluster_ctarank, cluster_nctarank, is_explicit_cluster,
  reserved_smem_offset_begin, reserved_smem_offset_end, reserved_smem_offset_cap, reserved_smem_offset_0,
  reserved_smem_offset_1, envreg1, envreg2
};

struct operand {
  enum class kind : uint8_t { none, reg, imm, special, address, vector, label, sink };
  kind k = kind::none;
  bool negate = false;   //!< `!%p` predicate source
  special sreg{};        //!< kind::special
  int32_t reg = -1;      //!< kind::reg, or the base register of kind::address (-1: none)
  uint64_t imm = 0;      //!< kind::imm bits, kind::address offset, kind::label target pc
  uint32_t first = 0;    //!< kind::vector: index of the first element in function::vector_elements
  uint32_t count = 0;    //!< kind::vector: element count; a call's .param argument (kind::address): its size
};

struct instruction;
struct thread_state;
struct block_state;
using exec_fn = void (*)(block_state&, thread_state&, const instruction&);
//! A warp collective: runs once for the non-exited lanes of its member mask, `mask`'s bits
//! (`lanes[i]`: lane i; a handler reads only the lanes of `mask`).
using warp_exec_fn = void (*)(block_state&, thread_state* const* lanes, uint32_t mask, const instruction&);
//! A per-thread instruction executed once for the lanes of `mask` that run it together (the
//! scheduler's lock-step group): `warp` is the warp's lane 0. Optional: a decoder sets it beside
//! `exec` where the operands allow (semantics.hpp, lane_operand).
using group_exec_fn = void (*)(block_state&, thread_state* warp, uint32_t mask, const instruction&);

//! How a thread stops at an instruction that needs other threads.
enum class sync_kind : uint8_t {
  none,
  warp,   //!< warp collective (.sync / .aligned): runs once all lanes of its member mask are there
  block,  //!< bar / barrier: all threads of the block (or a thread count) arrive
  mbarrier,  //!< mbarrier.try_wait: until the phase it waits for completes
};

//! Rounding modifiers.
enum class rounding : uint8_t { none, rn, rz, rm, rp, rna, rni, rzi, rmi, rpi };

//! The member mask of .aligned collectives, which no operand names: every lane the warp has.
constexpr int8_t whole_warp = -1;

//! Its fields are ordered by use: what every execution reads first (one cache line with the
//! payload), then the operands, then what decoding and diagnostics alone read.
struct alignas(64) instruction {
  exec_fn exec = nullptr;            //!< per-thread instructions
  warp_exec_fn warp_exec = nullptr;  //!< sync_kind::warp
  group_exec_fn group_exec = nullptr;  //!< the same as exec, for a lock-step group at once (or null)
  int32_t guard = -1;          //!< guard predicate register, or -1
  int32_t pair = -1;           //!< register of the `|p` partner of the first destination, or -1
  bool guard_negated = false;
  sync_kind sync = sync_kind::none;
  int8_t mask_operand = whole_warp;  //!< operand holding a warp collective's member mask, or:
  bool touches_accumulators = false;  //!< names a register some wgmma.mma_async accumulates into
  ptype type = ptype::none;    //!< the instruction type (destination type for cvt)
  ptype type2 = ptype::none;   //!< second type: source type of cvt / comparison type of set
  space state = space::generic;
  rounding round = rounding::none;
  bool ftz = false, sat = false;
  bool approx = false;         //!< .approx or .full
  bool relu = false, noftz = false;
  uint8_t vec = 1;             //!< .v2 / .v4 / .v8
  uint8_t op_count = 0;
  bool aligned = false;        //!< .aligned (or bar.sync): every lane at this very instruction
  bool waits_for_exited = false;  //!< bar.warp.sync: exited lanes of the mask never arrive
  bool branch = false;         //!< bra to the label pc ops[0].imm (the scheduler moves a group's pc)
  // From the instruction's row (decode.cpp), for the profile (profile.cpp):
  uint8_t klass = 0;           //!< profile::instruction_class
  uint8_t memory_kind = 0;     //!< emu::memory_kind of a memory instruction
  bool has_destination = false;  //!< ops[0] (and `pair`) receive its results
  bool folds = false;          //!< mov: ptxas folds it into its users (round trips)
  //! The family's decoded detail (its comparison, mode, shape...), a struct of the family's own
  //! stored in place: decode.hpp's set_payload / payload.
  alignas(8) unsigned char payload_bytes[16] = {};
  operand ops[8];
  uint32_t signature = 0;      //!< equal for equal opcode and qualifiers (lanes of a collective)
  uint32_t line = 0;           //!< PTX source line
  std::string opcode;          //!< base opcode, e.g. "add", "ld", "mma"
  std::vector<std::string> modifiers;  //!< the dotted suffixes in order, e.g. {"rn","ftz","f32"}
};

//! A module-scope or function-scope variable.
struct ptx_variable {
  std::string name;
  space state = space::global;
  size_t size = 0, align = 1;
  uint64_t address = 0;        //!< absolute (global/const) or offset in its space
  std::vector<uint8_t> init;   //!< initial bytes (global/const), empty if none
  bool dynamic_shared = false; //!< `.extern .shared` array: placed after static shared memory
};

//! A device function (.func) that a kernel calls, or the CUDA runtime's vprintf and __assertfail
//! (builtin). Its body follows the entry's in kernel::code; its registers are slots of the
//! kernel's, saved across a call of it (recursion); its frame (.local variables, parameters, the
//! .param variables of its call sites) lies on the thread's stack while it runs.
struct device_function {
  enum class builtin : uint8_t { none, vprintf, assertfail };
  std::string name;
  builtin kind = builtin::none;
  uint32_t entry = 0;  //!< pc of its first instruction
  uint32_t first_register = 0, register_count = 0;
  size_t frame_bytes = 0;
  std::vector<param_slot> params;  //!< offsets in its frame
  param_slot result;               //!< its return .param (size 0: none)
};

//! The payload of `call`: the callee, linked once the kernel's bodies are parsed.
struct call_payload {
  uint32_t function;  //!< index in kernel::functions
};

//! Calls deeper than this fail with a stack overflow.
constexpr size_t max_call_depth = 1024;

//! A decoded .entry (kernel) and the functions it calls. Register slots are numbered per kernel.
class kernel {
 public:
  kernel_info info;
  std::vector<instruction> code;
  std::vector<operand> vector_elements;
  uint32_t register_count = 0;
  std::vector<std::string> register_names;  //!< slot -> PTX name, for diagnostics
  std::vector<ptype> register_types;        //!< slot -> declared type
  std::vector<int32_t> read_before_written; //!< slots some path reads before writing (start at 0)
  size_t static_shared_bytes = 0;
  size_t dynamic_shared_align = 16;
  size_t local_bytes = 0;                   //!< the entry's frame
  std::vector<device_function> functions;   //!< a call's call_payload indexes them
  size_t stack_bytes = 0;                   //!< per thread: the deepest chain of frames
  std::string module_name;
  //! The CUDA source of each PTX line, where the PTX carries .loc (nvcc -lineinfo or -G):
  //! sorted by PTX line; `file` indexes source_files (the module's .file table).
  struct source_line {
    uint32_t ptx_line, file, line;
  };
  std::vector<source_line> source_lines;
  std::vector<std::string> source_files;

  //! Where PTX line `ptx_line` is, for diagnostics: "line 42 (kernel.cu:17)" with a .loc, else "line 42".
  std::string line_text(uint32_t ptx_line) const;
};

}  // namespace emu
