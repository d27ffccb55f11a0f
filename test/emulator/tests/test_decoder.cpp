// The decoder's table (decode.hpp): what it implements decodes, and what it does not is refused
// when the kernel is decoded, naming the qualifier, type, form, opcode or operand count. Each
// instruction is spelled as the PTX ISA 9.0 writes it; the refused ones are valid PTX of forms the
// emulator does not implement.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "decode.hpp"
#include "engine.hpp"

namespace {

//! Decodes a kernel of `body`'s instructions; the problem find_kernel reports ("" when it decodes).
std::string decode(const std::string& body) {
  const std::string ptx = R"(
.version 8.7
.target sm_90a
.address_size 64
.visible .entry probe(.param .u64 p)
{
  .reg .pred %p<4>;
  .reg .b16 %h<4>;
  .reg .b32 %r<8>;
  .reg .f32 %f<8>;
  .reg .b64 %rd<4>;
  .reg .b128 %q<2>;
)" + body + R"(
  ret;
}
)";
  const std::unique_ptr<emu::module> m = emu::module::parse(ptx, "test_decoder");
  std::string problem;
  const emu::kernel* k = m->find_kernel("probe", problem);
  if (k == nullptr && problem.empty()) return "no kernel";
  return problem;
}

//! Requires `body` refused with a message containing `names`.
void require_refused(const std::string& body, const std::string& names) {
  const std::string problem = decode(body);
  CAPTURE(body);
  CAPTURE(problem);
  CHECK(problem.find(names) != std::string::npos);
}

}  // namespace

TEST_CASE("the forms the rows implement decode") {
  const char* forms[] = {
      "add.sat.s32 %r1, %r2, %r3;",
      "mad.hi.sat.s32 %r1, %r2, %r3, %r4;",
      "addc.cc.u32 %r1, %r2, %r3;",
      "fma.rn.relu.bf16 %h1, %h2, %h3, %h1;",
      "max.NaN.f16 %h1, %h2, %h3;",
      "setp.lt.and.f32 %p1, %f1, %f2, %p2;",
      "set.gtu.u32.f32 %r1, %f1, %f2;",
      "cvt.rn.satfinite.e4m3x2.f32 %h1, %f1, %f2;",
      "cvt.rna.satfinite.tf32.f32 %r1, %f1;",
      "ld.global.nc.L1::no_allocate.v4.u32 {%r1, %r2, %r3, %r4}, [%rd1];",
      "atom.acq_rel.gpu.global.cas.b32 %r1, [%rd1], %r2, %r3;",
      "red.relaxed.gpu.global.add.noftz.bf16x2 [%rd1], %r1;",
      "cp.async.cg.shared.global.L2::128B [%r1], [%rd1], 16, %r2;",
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%r1], [%rd1, {%r2, %r3}], [%r4];",
      "mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 %p1, [%r1], %r2;",
      "match.any.sync.b32 %r1, %r2, 0xffffffff;",
      "barrier.cta.sync.aligned 0;",
      "bar.red.popc.u32 %r1, 0, %p1;",
      "wgmma.fence.sync.aligned;",
      "elect.sync %r1|%p1, 0xffffffff;",
      "griddepcontrol.launch_dependents;",
  };
  for (const char* form : forms) {
    CAPTURE(form);
    CHECK(decode(form) == "");
  }
}

TEST_CASE("a qualifier outside its row is refused, named") {
  require_refused("max.xorsign.abs.f16 %h1, %h2, %h3;", "qualifier .xorsign of max is not implemented");
  require_refused("cvt.pack.sat.s16.s32 %r1, %r2, %r3, %r4;", "qualifier .pack of cvt is not implemented");
  require_refused("st.async.shared::cluster.mbarrier::complete_tx::bytes.u32 [%r1], %r2, [%r3];",
                  "qualifier .async of st is not implemented");
  require_refused("red.async.relaxed.cluster.shared::cluster.mbarrier::complete_tx::bytes.add.u32 [%r1], %r2, [%r3];",
                  "qualifier .async of red is not implemented");
  require_refused("lop3.or.b32 %r1|%p1, %r2, %r3, %r4, 0x3f, %p2;", "qualifier .or of lop3 is not implemented");
  require_refused("fma.rn.oob.f16 %h1, %h2, %h3, %h1;", "qualifier .oob of fma is not implemented");
  require_refused("cvt.rn.satfinite.e2m1x2.f32 %h1, %f1, %f2;", "qualifier .e2m1x2 of cvt is not implemented");
  require_refused("cp.async.bulk.shared::cta.global.mbarrier::complete_tx::bytes [%r1], [%rd1], %r2, [%r3];",
                  "qualifier .bulk of cp.async is not implemented");
  require_refused("atom.global.add.v2.f32 {%f1, %f2}, [%rd1], {%f3, %f4};", "qualifier .v2 of atom is not implemented");
  require_refused("barrier.cluster.arrive;", "qualifier .cluster of barrier.arrive is not implemented");
  require_refused("wgmma.mma_async.sp.sync.aligned.m64n8k32.f32.bf16.bf16 {%f1, %f2, %f3, %f4}, %rd1, %rd2, %r1, 0, %p1, 1, 1;",
                  "qualifier .sp of wgmma.mma_async is not implemented");
  require_refused("cp.async.bulk.tensor.2d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes [%r1], [%rd1, {%r2, %r3}], [%r4], {%h1};",
                  "qualifier .im2col of cp.async.bulk.tensor is not implemented");
}

TEST_CASE("a type outside its row is refused, named") {
  require_refused("mov.b128 %q1, %q0;", "type .b128 of mov is not implemented");
  require_refused("ex2.approx.f16 %h1, %h2;", "type .f16 of ex2 is not implemented");
  require_refused("redux.sync.min.f32 %f1, %f2, 0xffffffff;", "type .f32 of redux.sync is not implemented");
}

TEST_CASE("an opcode or form without a row is refused, named") {
  require_refused("mbarrier.arrive_drop.shared.b64 %rd1, [%r1];",
                  "no implemented form of mbarrier: mbarrier.init, mbarrier.inval, mbarrier.arrive");
  require_refused("shfl.idx.b32 %r1, %r2, %r3, %r4;", "no implemented form of shfl: shfl.sync");
  require_refused("stmatrix.sync.aligned.m8n8.x1.shared.b16 [%r1], {%r2};", "unknown opcode stmatrix");
  require_refused("getctarank.shared::cluster.u32 %r1, %r2;", "unknown opcode getctarank");
}

TEST_CASE("an operand count outside its row is refused, named") {
  require_refused("selp.b32 %r1, %r2, %r3;", "selp takes 4 operands, not 3");
  require_refused("min.s32 %r1, %r2, %r3, %r4;", "min takes 3 operands, not 4");
  require_refused("mbarrier.try_wait.parity.shared::cta.b64 %p1, [%r1];", "mbarrier.try_wait takes 3 to 4 operands, not 2");
}

TEST_CASE("a combination the row allows but its decoder does not implement is refused, named") {
  require_refused("add.sat.u32 %r1, %r2, %r3;", ".sat is .s32's alone");
  require_refused("setp.lt.and.f32 %p1, %f1, %f2;", "a .bool operation combines a fourth operand");
  require_refused("cvt.rn.e4m3x2.f32 %h1, %f1, %f2;", ".satfinite is mandatory for conversions to .e4m3x2");
  require_refused("bmsk.b32 %r1, %r2, %r3;", "needs one of .clamp and .wrap");
  require_refused("wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%f1, %f2, %f3, %f4}, %rd1, %rd2, %p1, 1, 1, 0, 2;",
                  "imm-trans must be 0 or 1");
}

TEST_CASE("the README lists exactly the table's forms") {
  std::ifstream file(EMULATOR_README);
  REQUIRE(file.good());
  std::stringstream text;
  text << file.rdbuf();
  const std::string readme = text.str();
  const size_t begin = readme.find("<!-- implemented forms -->"), end = readme.find("<!-- end of implemented forms -->");
  REQUIRE(begin != std::string::npos);
  REQUIRE(end != std::string::npos);
  std::vector<std::string> listed;
  for (size_t at = readme.find('`', begin); at < end; at = readme.find('`', at + 1)) {
    const size_t close = readme.find('`', at + 1);
    listed.push_back(readme.substr(at + 1, close - at - 1));
    at = close;
  }
  std::vector<std::string> forms = emu::implemented_forms();
  std::sort(listed.begin(), listed.end());
  std::sort(forms.begin(), forms.end());
  CHECK(listed == forms);
}
