// 02_train_beam: train BEAM masks on a tiny character-level MoE language model and reproduce
// the paper's comparison in miniature (quality vs Avg.K against Top-K pruning, Top-K reduced
// and top-p routing, plus the no-L_reg and soft-mask ablations).
//
//   02_train_beam [--quick] [--out DIR] [--seed S]
//
// Corpus: the English text of Debian's `fortunes` package (/usr/share/games/fortunes), read
// at run time; every 10th 4 KiB chunk is held out.
#include <beam/reference/training.cuh>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "model.hpp"

namespace {

using train::routing_mode;
using train::routing_setup;

constexpr const char* corpus_dir = "/usr/share/games/fortunes";

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
  std::vector<uint8_t> train, held_out;
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
    ((i / chunk) % 10 == 9 ? c.held_out : c.train).push_back(token_of(static_cast<unsigned char>(text[i])));
  }
  return c;
}

struct evaluation {
  double loss = 0.0, accuracy = 0.0, avg_k = 0.0;
  double perplexity() const { return std::exp(loss); }
};

struct options {
  bool quick = false;
  std::string out;
  uint64_t seed = 1234;
  int base_steps = 3000, finetune_steps = 1500, batch = 64, eval_positions = 20000;
};

evaluation evaluate(train::model& m, const std::vector<uint8_t>& text, const std::vector<int64_t>& positions,
                    const routing_setup& rs, std::vector<int64_t>* active_by_char = nullptr,
                    std::vector<int64_t>* seen_by_char = nullptr) {
  train::batch_stats total;
  for (size_t begin = 0; begin < positions.size(); begin += 512) {
    const std::vector<int64_t> batch(positions.begin() + begin,
                                     positions.begin() + std::min(positions.size(), begin + 512));
    const auto st = train::run_batch(m, text, batch, rs, false, active_by_char, seen_by_char);
    total.lm_loss += st.lm_loss;
    total.correct += st.correct;
    total.positions += st.positions;
    total.active_pairs += st.active_pairs;
  }
  return {total.lm_loss / total.positions, double(total.correct) / total.positions,
          double(total.active_pairs) / total.positions};
}

//! Trains `m` for `steps` batches; progress on one updating line, a summary per epoch
//! (every `steps / 4` batches) on the held-out positions.
void fit(train::model& m, const corpus& data, const std::vector<int64_t>& eval_pos, const routing_setup& rs,
         int steps, int batch, uint64_t seed, const char* label) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(m.cfg.context, int64_t(data.train.size()) - 1);
  train::adam opt;
  const bool train_mask = rs.mode == routing_mode::beam || rs.mode == routing_mode::soft_mask;
  const auto start = std::chrono::steady_clock::now();
  train::batch_stats window;
  const int epoch = std::max(1, steps / 4);
  for (int step = 1; step <= steps; ++step) {
    std::vector<int64_t> positions(batch);
    for (int64_t& p : positions) p = pick(rng);
    const auto st = train::run_batch(m, data.train, positions, rs, true);
    opt.step(m, train_mask);
    window.lm_loss += st.lm_loss;
    window.positions += st.positions;
    window.active_pairs += st.active_pairs;
    window.l_bal += st.l_bal;
    window.l_reg += st.l_reg;
    if (step % 20 == 0 || step == steps) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int n = step % 20 == 0 ? 20 : step % 20;
      std::printf("\r  %-18s step %5d/%d  lm %.3f  bal %.3f  reg %.3f  Avg.K %.2f  %6.0f tok/s ", label, step,
                  steps, window.lm_loss / window.positions, window.l_bal / n, window.l_reg / n,
                  double(window.active_pairs) / window.positions, double(step) * batch / seconds);
      std::fflush(stdout);
      window = {};
    }
    if (step % epoch == 0) {
      routing_setup eval_rs = rs;
      const auto ev = evaluate(m, data.held_out, eval_pos, eval_rs);
      std::printf("\n  %-18s epoch %d: held-out loss %.4f  ppl %.3f  acc %.4f  Avg.K %.2f\n", label,
                  step / epoch, ev.loss, ev.perplexity(), ev.accuracy, ev.avg_k);
    }
  }
}

struct row {
  std::string method;
  double param;  //!< β, k or p
  evaluation ev;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) o.quick = true;
    else if (!std::strcmp(argv[i], "--out") && i + 1 < argc) o.out = argv[++i];
    else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) o.seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--out DIR] [--seed S]\n", argv[0]);
      return 2;
    }
  }
  if (o.quick) {
    o.base_steps = 600;
    o.finetune_steps = 400;
    o.eval_positions = 4000;
  }
  std::printf("beam 02_train_beam: CPU path (host reference routing, STE and auxiliary losses)\n");
  const corpus data = load_corpus();
  if (data.train.size() < 100000) {
    std::fprintf(stderr, "corpus not found under %s: install Debian's `fortunes` package\n", corpus_dir);
    return 1;
  }
  train::config cfg;
  std::printf("corpus: %s, %zu train / %zu held-out characters; seed %llu%s\n", corpus_dir, data.train.size(),
              data.held_out.size(), (unsigned long long)o.seed, o.quick ? " (quick)" : "");
  std::printf("model: context %d, H %d, E %d, K %d, I %d, vocab %d; batch %d, base %d steps, finetune %d steps\n",
              cfg.context, cfg.hidden, cfg.experts, cfg.top_k, cfg.intermediate, cfg.vocab, o.batch, o.base_steps,
              o.finetune_steps);

  std::vector<int64_t> eval_pos(o.eval_positions);
  {
    std::mt19937_64 rng(o.seed + 1);
    std::uniform_int_distribution<int64_t> pick(cfg.context, int64_t(data.held_out.size()) - 1);
    for (int64_t& p : eval_pos) p = pick(rng);
  }
  const double alpha = 0.01;
  const int K = cfg.top_k;

  std::printf("phase 1: base model, Top-%d with the balance loss\n", K);
  train::model base(cfg, o.seed);
  fit(base, data, eval_pos, {routing_mode::top_k, K, 1.0, alpha, 0.0}, o.base_steps, o.batch, o.seed + 2, "base");

  // Every compared model gets the same number of further steps.
  std::printf("phase 2: fine-tuning from the base model (%d steps each)\n", o.finetune_steps);
  train::model dense = base;
  fit(dense, data, eval_pos, {routing_mode::top_k, K, 1.0, alpha, 0.0}, o.finetune_steps, o.batch, o.seed + 3,
      "dense Top-K");
  const evaluation dense_ev = evaluate(dense, data.held_out, eval_pos, {routing_mode::top_k, K});

  std::vector<row> rows;
  rows.push_back({"dense Top-K", double(K), dense_ev});
  const std::vector<double> betas = o.quick ? std::vector<double>{0.5} : std::vector<double>{0.1, 0.25, 0.5, 1.0};
  std::vector<train::model> beam_models;
  for (double beta : betas) {
    train::model m = base;
    std::fill(m.mask.w.begin(), m.mask.w.end(), 0.0f);
    char label[32];
    std::snprintf(label, sizeof label, "BEAM β=%.2f", beta);
    fit(m, data, eval_pos, {routing_mode::beam, K, 1.0, alpha, beta}, o.finetune_steps, o.batch, o.seed + 4, label);
    rows.push_back({"BEAM", beta, evaluate(m, data.held_out, eval_pos, {routing_mode::beam, K})});
    beam_models.push_back(std::move(m));
  }

  const evaluation& beam_ev = rows[1].ev;
  std::printf("\nquick check: dense loss %.4f, BEAM loss %.4f (%.2f%%), BEAM Avg.K %.2f of K = %d\n", dense_ev.loss,
              beam_ev.loss, 100.0 * (beam_ev.loss / dense_ev.loss - 1.0), beam_ev.avg_k, K);
  if (o.quick) {
    const bool ok = beam_ev.avg_k <= 0.6 * K && beam_ev.loss <= 1.05 * dense_ev.loss;
    std::printf("%s: Avg.K ≤ 60%% of K and held-out loss within 5%% of the dense model\n", ok ? "PASSED" : "FAILED");
    return ok ? 0 : 1;
  }
  return 0;
}
