// 02_train_beam: train BEAM masks on a character-level transformer with an MoE layer
// (model.hpp) and reproduce the paper's comparison in miniature, with seeds and confidence
// intervals.
//
//   02_train_beam [--quick | --study] [--seeds N] [--threads N] [--out DIR] [--verify-steps N]
//                 [--verify-only]
//
// With a usable CUDA device the routed MoE layer runs on it (device_moe.cu: the GPU path),
// after a check of its first --verify-steps training steps (Top-K and BEAM) against the CPU
// path; --verify-only stops after that check.
//
// Protocol, per seed (which seeds the base model, every fine-tune and the data order):
//   phase 1  the base model: Top-K routing with the balance loss.
//   phase 2  from the base, every arm for the same steps and learning-rate schedule (warm-up,
//            cosine decay) on the same batches: dense Top-K (more steps); BEAM over a β sweep,
//            the whole model trained; BEAM with only the mask router trained (backbone frozen);
//            Top-K reduced (fine-tuned at k < K); top-p fine-tuned with top-p routing; the
//            ablations no L_reg and soft mask (no binarisation).
//   training-free, on the dense arm: Top-K pruning (k < K), top-p, and a threshold rule
//            (the candidates with g ≥ τ: it can keep no expert, so Avg.K < 1 has a baseline);
//            for a mask-only arm the same on the base, its frozen backbone.
//   p and τ are chosen on the validation split to match each BEAM arm's Avg.K there; every
//   score is on the test split (in full with --study). A comparison is the per-seed paired
//   difference (baseline − BEAM) at matched Avg.K, its mean and 95% t-interval over seeds;
//   integer-k baselines are interpolated linearly in Avg.K between neighbouring k.
//
// Corpus: the English text of Debian's `fortunes` package (/usr/share/games/fortunes), read
// at run time in 4 KiB chunks: every 10th chunk is validation, the next 10th test.
#include <beam/reference/training.cuh>

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "model.hpp"

namespace {

namespace ref = beam::reference;
using train::routing_mode;
using train::routing_setup;

constexpr const char* corpus_dir = "/usr/share/games/fortunes";
constexpr double alpha = 0.01;  // balance loss coefficient of every arm

//! Byte → token: printable ASCII 32..126 → 0..94, newline → 95, anything else → 96.
uint8_t token_of(unsigned char ch) {
  if (ch >= 32 && ch <= 126) return uint8_t(ch - 32);
  return ch == '\n' ? 95 : 96;
}
std::string char_name(int token) {
  if (token == 0) return "' '";
  if (token < 95) return std::string("'") + char(token + 32) + "'";
  return token == 95 ? "'\\n'" : "other";
}

struct corpus {
  std::vector<uint8_t> train, validation, test;
};

corpus load_corpus() {
  std::vector<std::string> files;
  if (DIR* dir = opendir(corpus_dir)) {
    while (dirent* entry = readdir(dir)) {
      const std::string name = entry->d_name;
      if (name[0] == '.' || name.find('.') != std::string::npos) continue;  // skip .dat, .u8 links
      files.push_back(name);
    }
    closedir(dir);
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const std::string& f : files) {
    std::ifstream in(std::string(corpus_dir) + "/" + f, std::ios::binary);
    text += std::string(std::istreambuf_iterator<char>(in), {});
  }
  corpus c;
  const size_t chunk = 4096;
  for (size_t i = 0; i < text.size(); ++i) {
    const size_t part = (i / chunk) % 10;
    (part == 8 ? c.validation : part == 9 ? c.test : c.train).push_back(token_of(static_cast<unsigned char>(text[i])));
  }
  return c;
}

//! The run's size.
struct settings {
  bool quick = false, study = false;
  int seeds = 2, threads = 0;
  int base_steps = 1500, finetune_steps = 600, batch = 8;  // batch: sequences of `context` characters
  int validation_windows = 96, test_windows = 384;        // 0: the whole split
  std::vector<double> betas = {0.01, 0.03, 0.1}, mask_only_betas = {0.03};
  std::vector<size_t> top_p_finetuned = {1};              // BEAM arms whose Avg.K a top-p arm trains for
  std::string out;
  int verify_steps = 3;      //!< steps of the GPU path checked against the CPU path before the run
  bool verify_only = false;  //!< stop after that check
};

//! Sequence starts that tile `text` (each window predicts `context` positions), `count` of them
//! spread evenly (0: all).
std::vector<int64_t> windows(const std::vector<uint8_t>& text, int context, int count) {
  const int64_t all = (int64_t(text.size()) - 1) / context;
  const int64_t n = count > 0 ? std::min<int64_t>(count, all) : all;
  std::vector<int64_t> starts(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) starts[size_t(i)] = (i * all / n) * context;
  return starts;
}

struct evaluation {
  double loss = 0.0, accuracy = 0.0, avg_k = 0.0, without_experts = 0.0;  //!< share of positions
};

evaluation evaluate(train::model& m, const std::vector<uint8_t>& text, const std::vector<int64_t>& starts,
                    const routing_setup& rs, std::vector<int64_t>* kept_by_char = nullptr,
                    std::vector<int64_t>* seen_by_char = nullptr) {
  train::batch_stats total;
  for (size_t begin = 0; begin < starts.size(); begin += 16) {
    const std::vector<int64_t> batch(starts.begin() + begin, starts.begin() + std::min(starts.size(), begin + 16));
    const auto st = train::run_sequences(m, text, batch, rs, false, kept_by_char, seen_by_char);
    total.lm_loss += st.lm_loss;
    total.correct += st.correct;
    total.positions += st.positions;
    total.active_pairs += st.active_pairs;
    total.positions_without_experts += st.positions_without_experts;
  }
  const double n = double(total.positions);
  return {total.lm_loss / n, double(total.correct) / n, double(total.active_pairs) / n,
          double(total.positions_without_experts) / n};
}

//! Linear warm-up over the first 5% of the steps, then cosine decay to 10% of `peak`.
double learning_rate(double peak, int step, int steps) {
  const int warm = std::max(1, steps / 20);
  if (step < warm) return peak * (step + 1) / warm;
  const double t = double(step - warm) / std::max(1, steps - warm);
  constexpr double pi = 3.14159265358979323846;
  return peak * (0.1 + 0.45 * (1.0 + std::cos(pi * t)));
}

//! Serialises progress lines of the arms that train at once.
std::mutex print_mutex;

//! Trains the parameters of `m` that `trainable` selects (null: all) for `steps` batches
//! drawn from `data_seed`; a progress line every quarter.
void fit(train::model& m, const std::vector<uint8_t>& text, const routing_setup& rs, int steps, int batch,
         double peak_lr, uint64_t data_seed, const std::string& label,
         const std::function<bool(const train::parameter*)>& trainable = {}) {
  std::mt19937_64 rng(data_seed);
  std::uniform_int_distribution<int64_t> pick(0, int64_t(text.size()) - m.cfg.context - 2);
  const auto params = m.parameters();
  std::vector<bool> update(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const bool mask = params[i] == &m.mask;
    const bool masked_mode = rs.mode == routing_mode::beam || rs.mode == routing_mode::soft_mask;
    update[i] = trainable ? trainable(params[i]) : (!mask || masked_mode);
  }
  for (train::parameter* p : params) {  // a fresh optimiser: no moments from an earlier fit
    std::fill(p->m.begin(), p->m.end(), 0.0f);
    std::fill(p->v.begin(), p->v.end(), 0.0f);
  }
  train::adam opt;
  train::batch_stats window;
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    std::vector<int64_t> starts(static_cast<size_t>(batch));
    for (int64_t& s : starts) s = pick(rng);
    const auto st = train::run_sequences(m, text, starts, rs, true);
    opt.step(params, update, learning_rate(peak_lr, step, steps));
    window.lm_loss += st.lm_loss;
    window.positions += st.positions;
    window.active_pairs += st.active_pairs;
    if ((step + 1) % std::max(1, steps / 4) == 0) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const std::lock_guard<std::mutex> lock(print_mutex);
      std::printf("  %-28s step %5d/%d  lm %.3f  Avg.K %.2f  %6.0f tok/s\n", label.c_str(), step + 1, steps,
                  window.lm_loss / window.positions, double(window.active_pairs) / window.positions,
                  double(step + 1) * batch * m.cfg.context / seconds);
      std::fflush(stdout);
      window = {};
    }
  }
}

//! The level (p or τ) at which `rs` reaches Avg.K `target` on `starts` of `text`, by bisection
//! over [0, 1] (Avg.K grows with p, falls with τ); `rs.level` is set to it.
void match_avg_k(train::model& m, const std::vector<uint8_t>& text, const std::vector<int64_t>& starts,
                 routing_setup& rs, double target) {
  double lo = 0.0, hi = 1.0;
  const bool grows = rs.mode == routing_mode::top_p;
  for (int it = 0; it < 14; ++it) {
    rs.level = 0.5 * (lo + hi);
    const double k = evaluate(m, text, starts, rs).avg_k;
    ((k < target) == grows ? lo : hi) = rs.level;
  }
  rs.level = 0.5 * (lo + hi);
}

//! The GPU path against the CPU path, step for step: from one model (a random, non-zero mask
//! router, so that some candidates are masked), Top-K and BEAM (β = 0.25) each train `steps`
//! steps on both paths over the same batches, each path updating its own copy. Per step: the
//! loss terms (relative), Avg.K (absolute) and, on the first step, where both start from the
//! same weights, every parameter gradient (relative L2). The tolerances are fp16's: the GPU
//! path rounds the layer's inputs, weights and intermediate rows to fp16 (2⁻¹¹ relative), so
//! a router or mask logit within about 10⁻³ of a tie may decide the other way. Prints every
//! step and the verdict.
bool verify_device_path(const train::config& cfg, const corpus& data, train::moe_backend& device, int steps,
                        uint64_t seed) {
  constexpr double loss_tolerance = 5e-3, avg_k_tolerance = 0.02, gradient_tolerance = 2e-2;
  train::model m(cfg, seed);
  std::mt19937_64 rng(seed + 1);
  m.mask.init_normal(rng, 1.0 / std::sqrt(double(cfg.hidden)));
  std::uniform_int_distribution<int64_t> pick(0, int64_t(data.train.size()) - cfg.context - 2);
  const auto relative = [](double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-6); };
  double worst_loss = 0.0, worst_avg_k = 0.0, worst_gradient = 0.0;
  for (const routing_setup& rs : {routing_setup{routing_mode::top_k, cfg.top_k, 1.0, alpha, 0.0},
                                  routing_setup{routing_mode::beam, cfg.top_k, 1.0, alpha, 0.25}}) {
    train::model cpu = m, gpu = m;
    const auto params_cpu = cpu.parameters(), params_gpu = gpu.parameters();
    const std::vector<bool> update(params_cpu.size(), true);
    train::adam opt_cpu, opt_gpu;
    for (int step = 0; step < steps; ++step) {
      std::vector<int64_t> starts(4);
      for (int64_t& s : starts) s = pick(rng);
      train::device_moe_backend = nullptr;
      const auto a = train::run_sequences(cpu, data.train, starts, rs, true);
      train::device_moe_backend = &device;
      const auto b = train::run_sequences(gpu, data.train, starts, rs, true);
      train::device_moe_backend = nullptr;
      const double loss = std::max({relative(b.lm_loss, a.lm_loss), relative(b.l_bal, a.l_bal),
                                    a.l_reg > 0 ? relative(b.l_reg, a.l_reg) : std::abs(b.l_reg)});
      const double avg_k = std::abs(double(b.active_pairs - a.active_pairs)) / double(a.positions);
      double gradient = 0.0;
      for (size_t i = 0; step == 0 && i < params_cpu.size(); ++i) {
        double diff = 0.0, norm = 0.0;
        for (size_t j = 0; j < params_cpu[i]->g.size(); ++j) {
          diff += std::pow(double(params_gpu[i]->g[j]) - params_cpu[i]->g[j], 2);
          norm += std::pow(double(params_cpu[i]->g[j]), 2);
        }
        gradient = std::max(gradient, norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff));
      }
      std::printf("  %-6s step %d: lm %.5f / %.5f (CPU / GPU), L_bal %.5f / %.5f, L_reg %.5f / %.5f, Avg.K %.4f / "
                  "%.4f%s\n",
                  rs.mode == routing_mode::beam ? "BEAM" : "Top-K", step + 1, a.lm_loss / a.positions,
                  b.lm_loss / b.positions, a.l_bal, b.l_bal, a.l_reg, b.l_reg, double(a.active_pairs) / a.positions,
                  double(b.active_pairs) / b.positions,
                  step == 0 ? (", gradients " + std::to_string(gradient)).c_str() : "");
      worst_loss = std::max(worst_loss, loss);
      worst_avg_k = std::max(worst_avg_k, avg_k);
      worst_gradient = std::max(worst_gradient, gradient);
      opt_cpu.step(params_cpu, update, 3e-3);
      opt_gpu.step(params_gpu, update, 3e-3);
    }
  }
  const bool ok = worst_loss <= loss_tolerance && worst_avg_k <= avg_k_tolerance && worst_gradient <= gradient_tolerance;
  std::printf("%s: %d training steps (Top-K and BEAM) on the GPU path against the CPU path: largest relative "
              "difference of the loss terms %.2e (tolerance %.0e), of Avg.K %.4f (tolerance %.2f), of the first "
              "step's gradients %.2e (tolerance %.0e)\n",
              ok ? "verified" : "FAILED", steps, worst_loss, loss_tolerance, worst_avg_k, avg_k_tolerance,
              worst_gradient, gradient_tolerance);
  return ok;
}

//! One scored configuration of one seed.
struct result {
  std::string method;
  double parameter = 0.0;  //!< β, k, p or τ
  std::string matched;     //!< the BEAM arm it was matched to (training-free and top-p arms)
  evaluation validation, test;
  result() = default;
  result(std::string m, double p, std::string to, std::pair<evaluation, evaluation> scores)
      : method(std::move(m)), parameter(p), matched(std::move(to)), validation(scores.first), test(scores.second) {}
};

//! Runs `jobs` on `threads` workers.
void run_parallel(std::vector<std::function<void()>>& jobs, int threads) {
  std::atomic<size_t> next{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < std::max(1, threads); ++t) {
    workers.emplace_back([&] {
      for (size_t j; (j = next++) < jobs.size();) jobs[j]();
    });
  }
  for (std::thread& w : workers) w.join();
}

std::string beam_label(bool mask_only, double beta) {
  char label[64];
  std::snprintf(label, sizeof label, "%s β=%g", mask_only ? "BEAM mask-only" : "BEAM", beta);
  return label;
}

//! One seed's arms (the protocol at the top of the file), in stages whose jobs the stages of
//! every seed share the worker threads with: the base; the first wave of arms; then the
//! training-free baselines and the top-p fine-tunes, which need the first wave.
class seed_run {
 public:
  seed_run(const corpus& data, const train::config& cfg, const settings& o, uint64_t seed)
      : data_(data), cfg_(cfg), o_(o), seed_(seed), base_(cfg, seed),
        validation_(windows(data.validation, cfg.context, o.validation_windows)),
        test_(windows(data.test, cfg.context, o.test_windows)) {
    const int K = cfg.top_k;
    add("dense Top-K", K, {routing_mode::top_k, K, 1.0, alpha, 0.0});
    for (double beta : o.betas) add("BEAM", beta, {routing_mode::beam, K, 1.0, alpha, beta});
    for (double beta : o.mask_only_betas) add("BEAM mask-only", beta, {routing_mode::beam, K, 1.0, alpha, beta}, true);
    if (!o.quick) {
      for (int k = 1; k < K; ++k) add("Top-K reduced", k, {routing_mode::top_k, k, 1.0, alpha, 0.0});
      const double beta = o.betas[o.betas.size() / 2];
      add("ablation: soft mask", beta, {routing_mode::soft_mask, K, 1.0, alpha, beta});
    }
    add("ablation: no L_reg", 0.0, {routing_mode::beam, K, 1.0, alpha, 0.0});
  }

  std::vector<std::function<void()>> base_jobs() {
    return {[this] {
      fit(base_, data_.train, {routing_mode::top_k, cfg_.top_k, 1.0, alpha, 0.0}, o_.base_steps, o_.batch, base_lr,
          seed_ * 1000 + 1, "base (seed " + std::to_string(seed_) + ")");
    }};
  }

  std::vector<std::function<void()>> arm_jobs() {
    std::vector<std::function<void()>> jobs;
    for (auto& a : arms_) jobs.push_back([this, p = a.get()] { train_arm(*p); });
    return jobs;
  }

  //! Training-free on the dense arm: pruning at every k < K, top-p and threshold matched to
  //! each BEAM arm's validation Avg.K (for a mask-only arm on the base, its frozen backbone;
  //! the base pruned too); top-p fine-tuned with top-p routing at the p that matched a BEAM
  //! arm on the dense arm, then p matched again on the fine-tuned model.
  std::vector<std::function<void()>> baseline_jobs() {
    std::vector<std::function<void()>> jobs;
    if (o_.quick) return jobs;
    const int K = cfg_.top_k;
    const auto beams = beam_arms();
    baselines_.resize(size_t(2 * K - 1) + beams.size() * 2 + o_.top_p_finetuned.size());
    jobs.push_back([this, K] {
      for (int k = 1; k <= K; ++k) {
        const routing_setup rs{routing_mode::top_k, k, 1.0, alpha, 0.0};
        if (k < K) baselines_[size_t(k - 1)] = {"Top-K pruning", double(k), "", score(dense().m, rs)};
        baselines_[size_t(K - 1 + k - 1)] = {"Top-K pruning of the base", double(k), "", score(base_, rs)};
      }
    });
    for (size_t b = 0; b < beams.size(); ++b) {
      for (int rule = 0; rule < 2; ++rule) {
        jobs.push_back([this, K, slot = size_t(2 * K - 1) + b * 2 + size_t(rule), rule, target = beams[b]] {
          if (rule == 0 && target->r.validation.avg_k < 1.0) return;  // top-p keeps at least one expert
          train::model m = target->mask_only ? base_ : dense().m;
          routing_setup rs{rule == 0 ? routing_mode::top_p : routing_mode::threshold, K, 1.0, alpha, 0.0};
          match_avg_k(m, data_.validation, validation_, rs, target->r.validation.avg_k);
          baselines_[slot] = {rule == 0 ? "top-p" : "threshold", rs.level, label_of(*target), score(m, rs)};
        });
      }
    }
    for (size_t i = 0; i < o_.top_p_finetuned.size(); ++i) {
      jobs.push_back([this, K, slot = size_t(2 * K - 1) + beams.size() * 2 + i, target = beams[o_.top_p_finetuned[i]]] {
        if (target->r.validation.avg_k < 1.0) return;
        routing_setup rs{routing_mode::top_p, K, 1.0, alpha, 0.0};
        {
          train::model probe = dense().m;
          match_avg_k(probe, data_.validation, validation_, rs, target->r.validation.avg_k);
        }
        train::model m = base_;
        fit(m, data_.train, rs, o_.finetune_steps, o_.batch, finetune_lr, finetune_data(),
            "top-p fine-tuned for " + label_of(*target));
        match_avg_k(m, data_.validation, validation_, rs, target->r.validation.avg_k);
        baselines_[slot] = {"top-p fine-tuned", rs.level, label_of(*target), score(m, rs)};
      });
    }
    return jobs;
  }

  //! Every scored configuration, the dense arm first; with the two vectors, the experts kept
  //! by input character under the middle BEAM arm.
  std::vector<result> results(std::vector<int64_t>* kept_by_char, std::vector<int64_t>* seen_by_char) {
    std::vector<result> all;
    for (const auto& a : arms_) all.push_back(a->r);
    for (const result& r : baselines_)
      if (!r.method.empty()) all.push_back(r);
    if (kept_by_char) {
      arm& middle = *beam_arms()[o_.betas.size() / 2];
      evaluate(middle.m, data_.test, test_, middle.rs, kept_by_char, seen_by_char);
    }
    return all;
  }

 private:
  static constexpr double base_lr = 3e-3, finetune_lr = 2e-3;

  struct arm {
    result r;
    routing_setup rs;
    train::model m;
    bool mask_only = false;
  };

  void add(std::string method, double parameter, routing_setup rs, bool mask_only = false) {
    arms_.push_back(std::make_unique<arm>(arm{{std::move(method), parameter, "", {}}, rs, base_, mask_only}));
  }
  arm& dense() { return *arms_.front(); }
  std::vector<arm*> beam_arms() const {
    std::vector<arm*> beams;
    for (const auto& a : arms_)
      if (a->r.method == "BEAM" || a->r.method == "BEAM mask-only") beams.push_back(a.get());
    return beams;
  }
  static std::string label_of(const arm& a) { return beam_label(a.mask_only, a.r.parameter); }
  uint64_t finetune_data() const { return seed_ * 1000 + 7; }  // every arm sees the same batches

  //! Validation and test scores of `m` routed by `rs` (the soft mask: hard at inference).
  std::pair<evaluation, evaluation> score(train::model& m, routing_setup rs) const {
    if (rs.mode == routing_mode::soft_mask) rs.mode = routing_mode::beam;
    return {evaluate(m, data_.validation, validation_, rs), evaluate(m, data_.test, test_, rs)};
  }

  void train_arm(arm& a) {
    a.m = base_;  // the base is trained by now
    std::string label = a.r.method.rfind("BEAM", 0) == 0 ? label_of(a) : a.r.method;
    if (a.r.method == "Top-K reduced") label += " k=" + std::to_string(int(a.r.parameter));
    const train::parameter* mask = &a.m.mask;
    std::function<bool(const train::parameter*)> trainable;
    if (a.mask_only) trainable = [mask](const train::parameter* p) { return p == mask; };
    fit(a.m, data_.train, a.rs, o_.finetune_steps, o_.batch, finetune_lr, finetune_data(), label, trainable);
    std::tie(a.r.validation, a.r.test) = score(a.m, a.rs);
  }

  const corpus& data_;
  const train::config& cfg_;
  const settings& o_;
  uint64_t seed_;
  train::model base_;
  std::vector<int64_t> validation_, test_;
  std::vector<std::unique_ptr<arm>> arms_;
  std::vector<result> baselines_;
};

//! The two-sided 95% Student-t quantile for n − 1 degrees of freedom (a table to 20, then
//! 1.96 + 2.4 / df, within 0.003 of the quantile).
double t95(int n) {
  static const double q[] = {0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                             2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086};
  const int df = std::max(1, n - 1);
  return df <= 20 ? q[df] : 1.96 + 2.4 / df;
}

//! Mean and half-width of the 95% t-interval of `x` (0 for a single value).
std::pair<double, double> mean_ci(const std::vector<double>& x) {
  const int n = int(x.size());
  double mean = 0.0;
  for (double v : x) mean += v / n;
  if (n < 2) return {mean, 0.0};
  double var = 0.0;
  for (double v : x) var += (v - mean) * (v - mean) / (n - 1);
  return {mean, t95(n) * std::sqrt(var / n)};
}

//! "mean ± half-width" of `x`, "mean (one seed)" without an interval.
std::string pm(const std::vector<double>& x, int digits) {
  const auto m = mean_ci(x);
  char text[64];
  if (x.size() < 2) std::snprintf(text, sizeof text, "%.*f (one seed)", digits, m.first);
  else std::snprintf(text, sizeof text, "%.*f ± %.*f", digits, m.first, digits, m.second);
  return text;
}

//! Loss (or accuracy) of an integer-k family at Avg.K a, linear between neighbouring k (k = K:
//! the dense arm); NaN below k = 1.
double interpolate_k(const std::map<int, evaluation>& by_k, double a, bool accuracy) {
  const auto pick = [&](const evaluation& e) { return accuracy ? e.accuracy : e.loss; };
  if (by_k.empty() || a < by_k.begin()->first) return NAN;
  auto hi = by_k.lower_bound(int(std::ceil(a)));
  if (hi == by_k.end()) return pick(by_k.rbegin()->second);
  if (hi == by_k.begin() || hi->first == a) return pick(hi->second);
  auto lo = std::prev(hi);
  const double t = (a - lo->first) / (hi->first - lo->first);
  return (1 - t) * pick(lo->second) + t * pick(hi->second);
}

}  // namespace

int main(int argc, char** argv) {
  settings o;
  bool seeds_given = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) o.quick = true;
    else if (!std::strcmp(argv[i], "--study")) o.study = true;
    else if (!std::strcmp(argv[i], "--seeds") && i + 1 < argc) o.seeds = std::atoi(argv[++i]), seeds_given = true;
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) o.out = argv[++i];
    else if (!std::strcmp(argv[i], "--verify-only")) o.verify_only = true;
    else if (!std::strcmp(argv[i], "--verify-steps") && i + 1 < argc) o.verify_steps = std::atoi(argv[++i]);
    else {
      const bool help = !std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h");
      std::fprintf(help ? stdout : stderr,
                   "usage: %s [--quick | --study] [--seeds N] [--threads N] [--out DIR] [--verify-steps N] "
                   "[--verify-only]\n",
                   argv[0]);
      return help ? 0 : 2;
    }
  }
  if (o.quick) {
    o.seeds = 1;
    o.base_steps = 400;
    o.finetune_steps = 300;
    o.batch = 4;
    o.validation_windows = 32;
    o.test_windows = 64;
    o.betas = {0.3};
    o.mask_only_betas = {};
    o.top_p_finetuned = {};
  } else if (o.study) {
    if (!seeds_given) o.seeds = 5;
    o.base_steps = 4000;
    o.finetune_steps = 1500;
    o.validation_windows = 256;
    o.test_windows = 0;
    o.betas = {0.003, 0.01, 0.03, 0.1, 0.3};
    o.mask_only_betas = {0.01, 0.03, 0.1};
    o.top_p_finetuned = {1, 2, 3};
  }
  const std::unique_ptr<train::moe_backend> device = train::make_device_moe();
  if (o.threads <= 0) o.threads = device ? 1 : int(std::max(1u, std::thread::hardware_concurrency()));
  if (device) o.threads = 1;  // the GPU backend keeps one batch's state
  std::printf("beam 02_train_beam: %s\n",
              device ? "GPU path (the routed MoE layer through beam::device in fp16: routing, every candidate "
                       "expert, the auxiliary losses, the STE and every gradient of the layer; the rest of the "
                       "model on the CPU)"
                     : "CPU path (host reference routing, STE and auxiliary losses; no usable CUDA device)");
  const corpus data = load_corpus();
  if (data.train.size() < 100000) {
    std::fprintf(stderr, "corpus not found under %s: install Debian's `fortunes` package\n", corpus_dir);
    return 1;
  }
  const train::config cfg;
  if (device && !verify_device_path(cfg, data, *device, o.verify_steps, 100)) return 1;
  if (o.verify_only) {
    if (!device) std::printf("no usable CUDA device: the GPU path was not verified\n");
    return 0;
  }
  train::device_moe_backend = device.get();
  std::printf("corpus: %s, %zu train / %zu validation / %zu test characters; %d seed(s), %d thread(s)%s\n",
              corpus_dir, data.train.size(), data.validation.size(), data.test.size(), o.seeds, o.threads,
              o.quick ? " (quick)" : o.study ? " (study)" : "");
  std::printf("model: context %d, H %d, %d heads, E %d, K %d, I %d, shared expert I_s %d, vocab %d; batch %d x %d "
              "characters, base %d steps, fine-tune %d steps\n",
              cfg.context, cfg.hidden, cfg.heads, cfg.experts, cfg.top_k, cfg.intermediate, cfg.shared_intermediate,
              cfg.vocab, o.batch, cfg.context, o.base_steps, o.finetune_steps);

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<seed_run>> runs;
  for (int s = 0; s < o.seeds; ++s) runs.push_back(std::make_unique<seed_run>(data, cfg, o, uint64_t(s + 1)));
  for (auto stage : {&seed_run::base_jobs, &seed_run::arm_jobs, &seed_run::baseline_jobs}) {
    std::vector<std::function<void()>> jobs;
    for (auto& run : runs) {
      for (auto& job : ((*run).*stage)()) jobs.push_back(std::move(job));
    }
    run_parallel(jobs, o.threads);
  }
  std::vector<std::vector<result>> per_seed;
  std::vector<int64_t> kept_by_char(cfg.vocab, 0), seen_by_char(cfg.vocab, 0);
  for (size_t s = 0; s < runs.size(); ++s) {
    per_seed.push_back(runs[s]->results(s == 0 ? &kept_by_char : nullptr, s == 0 ? &seen_by_char : nullptr));
  }
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;

  // Quality relative to the seed's dense arm: perplexity ratio exp(L_dense − L), accuracy ratio.
  const auto dense_of = [](const std::vector<result>& rs) { return rs.front().test; };
  std::ostringstream csv;
  csv << "seed,method,parameter,matched,avg_k,without_experts,loss,accuracy,quality_ppl,quality_acc,validation_avg_k\n";
  for (size_t s = 0; s < per_seed.size(); ++s) {
    const evaluation d = dense_of(per_seed[s]);
    for (const result& r : per_seed[s]) {
      char line[512];
      std::snprintf(line, sizeof line, "%zu,%s,%g,%s,%.4f,%.4f,%.5f,%.5f,%.5f,%.5f,%.4f\n", s + 1, r.method.c_str(),
                    r.parameter, r.matched.c_str(), r.test.avg_k, r.test.without_experts, r.test.loss, r.test.accuracy,
                    std::exp(d.loss - r.test.loss), r.test.accuracy / d.accuracy, r.validation.avg_k);
      csv << line;
    }
  }

  // Per configuration: means and 95% intervals over seeds.
  std::ostringstream md;
  md << "| method | parameter | matched to | Avg.K | positions without routed experts | test loss | quality (ppl ratio) | "
        "accuracy ratio | seeds |\n|---|---|---|---|---|---|---|---|---|\n";
  std::ostringstream points;  // for the plot: method, Avg.K, quality, CI
  for (size_t i = 0; i < per_seed[0].size(); ++i) {
    std::vector<double> k, zero, loss, q, acc;
    for (size_t s = 0; s < per_seed.size(); ++s) {
      const auto& rs = per_seed[s];
      const auto it = std::find_if(rs.begin(), rs.end(), [&](const result& r) {
        return r.method == per_seed[0][i].method && r.matched == per_seed[0][i].matched &&
               (r.matched.size() || r.parameter == per_seed[0][i].parameter);
      });
      if (it == rs.end()) continue;
      const evaluation d = dense_of(rs);
      k.push_back(it->test.avg_k);
      zero.push_back(100 * it->test.without_experts);
      loss.push_back(it->test.loss);
      q.push_back(std::exp(d.loss - it->test.loss));
      acc.push_back(it->test.accuracy / d.accuracy);
    }
    const result& r = per_seed[0][i];
    char param[32];
    std::snprintf(param, sizeof param, "%g", r.parameter);
    md << "| " << r.method << " | " << (r.matched.empty() ? param : "matched") << " | "
       << (r.matched.empty() ? "–" : r.matched) << " | " << pm(k, 2) << " | " << pm(zero, 1)
       << "% | " << pm(loss, 4) << " | " << pm(q, 3) << " | " << pm(acc, 3) << " | " << k.size() << " |\n";
    const auto mk = mean_ci(k), mq = mean_ci(q);
    points << r.method << "," << mk.first << "," << mq.first << "," << mq.second << "\n";
  }

  // Comparisons: per seed, baseline − BEAM at matched Avg.K (positive: BEAM better).
  std::ostringstream comparisons;
  comparisons << "| BEAM arm | Avg.K | baseline | Δ test loss (baseline − BEAM) | Δ accuracy (BEAM − baseline) | "
                 "baseline Avg.K (Top-K: interpolated at BEAM's validation Avg.K) | seeds |\n"
                 "|---|---|---|---|---|---|---|\n";
  for (const result& b : per_seed[0]) {
    if (b.method != "BEAM" && b.method != "BEAM mask-only") continue;
    const std::string label = beam_label(b.method == "BEAM mask-only", b.parameter);
    const bool mask_only = b.method == "BEAM mask-only";  // its backbone is the base's
    for (const char* baseline : {"top-p", "top-p fine-tuned", "threshold", "Top-K reduced",
                                 mask_only ? "Top-K pruning of the base" : "Top-K pruning"}) {
      std::vector<double> dloss, dacc, bk, ak;
      for (const auto& rs : per_seed) {
        const auto beam = std::find_if(rs.begin(), rs.end(),
                                       [&](const result& r) { return r.method == b.method && r.parameter == b.parameter; });
        if (beam == rs.end()) continue;
        double loss = NAN, accuracy = NAN, avg_k = beam->validation.avg_k;
        if (!std::strncmp(baseline, "Top-K", 5)) {  // at BEAM's validation Avg.K, between integer k
          std::map<int, evaluation> by_k;
          if (std::strcmp(baseline, "Top-K pruning of the base") != 0) {
            by_k[int(rs.front().parameter)] = rs.front().test;  // k = K: the dense arm
          }
          for (const result& r : rs)
            if (r.method == baseline) by_k[int(r.parameter)] = r.test;
          loss = interpolate_k(by_k, avg_k, false);
          accuracy = interpolate_k(by_k, avg_k, true);
        } else {
          for (const result& r : rs) {
            if (r.method == baseline && r.matched == label) {
              loss = r.test.loss;
              accuracy = r.test.accuracy;
              avg_k = r.test.avg_k;
            }
          }
        }
        if (std::isnan(loss)) continue;
        dloss.push_back(loss - beam->test.loss);
        dacc.push_back(beam->test.accuracy - accuracy);
        bk.push_back(avg_k);
        ak.push_back(beam->test.avg_k);
      }
      if (dloss.empty()) continue;
      comparisons << "| " << label << " | " << pm(ak, 2) << " | " << baseline << " | " << pm(dloss, 4)
                  << " | " << pm(dacc, 4) << " | " << pm(bk, 2) << " | " << dloss.size() << " |\n";
    }
  }

  // Which input characters keep the fewest and the most experts (seed 1, the middle BEAM arm).
  std::vector<std::pair<double, int>> by_char;
  for (int c = 0; c < cfg.vocab; ++c)
    if (seen_by_char[c] >= 100) by_char.push_back({double(kept_by_char[c]) / seen_by_char[c], c});
  std::sort(by_char.begin(), by_char.end());
  std::ostringstream tokens;
  tokens << "experts kept at a position, by its character (seed 1, BEAM β=" << o.betas[o.betas.size() / 2]
         << ", characters seen ≥ 100 times):\n  fewest:";
  char item[64];
  for (size_t i = 0; i < std::min<size_t>(8, by_char.size()); ++i) {
    std::snprintf(item, sizeof item, " %s %.2f", char_name(by_char[i].second).c_str(), by_char[i].first);
    tokens << item;
  }
  tokens << "\n  most:  ";
  for (size_t i = by_char.size() - std::min<size_t>(8, by_char.size()); i < by_char.size(); ++i) {
    std::snprintf(item, sizeof item, " %s %.2f", char_name(by_char[i].second).c_str(), by_char[i].first);
    tokens << item;
  }
  tokens << "\n";
  std::printf("\n%s\n%s\n%s", md.str().c_str(), comparisons.str().c_str(), tokens.str().c_str());
  std::printf("wall time %.1f minutes\n", minutes);

  if (o.quick) {
    const evaluation dense = dense_of(per_seed[0]), beam = per_seed[0][1].test, no_reg = per_seed[0][2].test;
    const bool ok = beam.avg_k <= 0.6 * cfg.top_k && beam.loss <= 1.05 * dense.loss && no_reg.avg_k >= 0.8 * cfg.top_k;
    std::printf("%s: BEAM Avg.K %.2f ≤ 60%% of K, test loss %.4f within 5%% of dense %.4f; no-L_reg Avg.K %.2f ≥ 80%% "
                "of K\n",
                ok ? "PASSED" : "FAILED", beam.avg_k, beam.loss, dense.loss, no_reg.avg_k);
    return ok ? 0 : 1;
  }
  if (!o.out.empty()) {
    std::system(("mkdir -p '" + o.out + "'").c_str());
    std::ofstream(o.out + "/results.md") << md.str() << "\n" << comparisons.str() << "\n" << tokens.str();
    std::ofstream(o.out + "/results.csv") << csv.str();
    std::ofstream(o.out + "/points.csv") << points.str();
    std::ofstream(o.out + "/plot.gp")
        << "set datafile separator ','\nset terminal pngcairo size 1000,650\nset output 'quality_vs_avg_k.png'\n"
        << "set xlabel 'Avg.K (routed experts kept per token)'\n"
        << "set ylabel 'quality: perplexity ratio dense / model (mean, 95% CI over seeds)'\n"
        << "set key bottom right\nset grid\nset offsets graph 0.05, graph 0.05, graph 0.08, graph 0.08\n"
        << "series(m) = sprintf(\"< grep '^%s,' points.csv\", m)\n"
        << "plot series('BEAM') using 2:3:4 with yerrorlines pt 7 title 'BEAM (β sweep)', \\\n"
        << "     series('BEAM mask-only') using 2:3:4 with yerrorlines pt 5 title 'BEAM, mask router only', \\\n"
        << "     series('top-p') using 2:3:4 with yerrorbars pt 6 title 'top-p (training-free)', \\\n"
        << "     series('top-p fine-tuned') using 2:3:4 with yerrorbars pt 4 title 'top-p fine-tuned', \\\n"
        << "     series('threshold') using 2:3:4 with yerrorbars pt 8 title 'threshold (training-free)', \\\n"
        << "     series('Top-K pruning') using 2:3:4 with yerrorlines pt 2 title 'Top-K pruning', \\\n"
        << "     series('Top-K pruning of the base') using 2:3:4 with yerrorlines pt 1 title 'Top-K pruning of the base', \\\n"
        << "     series('Top-K reduced') using 2:3:4 with yerrorlines pt 3 title 'Top-K reduced (fine-tuned)', \\\n"
        << "     series('ablation: no L_reg') using 2:3:4 with yerrorbars pt 9 ps 1.5 title 'ablation: no L_{reg}', \\\n"
        << "     series('ablation: soft mask') using 2:3:4 with yerrorbars pt 11 ps 1.5 title 'ablation: soft mask', \\\n"
        << "     series('dense Top-K') using 2:3:4 with yerrorbars pt 13 ps 2 title 'dense Top-K'\n";
    const int plotted = std::system(("cd '" + o.out + "' && gnuplot plot.gp 2>/dev/null").c_str());
    std::printf("wrote %s/results.md, results.csv, points.csv%s\n", o.out.c_str(),
                plotted == 0 ? ", quality_vs_avg_k.png" : " (no PNG: install gnuplot-nox and run gnuplot plot.gp)");
  }
  return 0;
}
