// 02_train_beam: train BEAM masks on a tiny character-level MoE language model and reproduce
// the paper's comparison in miniature (quality vs Avg.K against Top-K pruning, Top-K reduced
// and top-p routing, plus the no-L_reg and soft-mask ablations).
//
//   02_train_beam [--quick] [--out DIR] [--seed S] [--base-steps N] [--finetune-steps N]
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
#include <unistd.h>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model.hpp"

namespace {

namespace ref = beam::reference;
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
  int base_steps = 12000, finetune_steps = 6000, batch = 64, eval_positions = 20000;
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

//! Trains `m` for `steps` batches; progress on one updating line (on a terminal; in a log a
//! line per 200 steps), a summary per epoch (every `steps / 4` batches) on the held-out
//! positions.
void fit(train::model& m, const corpus& data, const std::vector<int64_t>& eval_pos, const routing_setup& rs,
         int steps, int batch, uint64_t seed, const char* label) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(m.cfg.context, int64_t(data.train.size()) - 1);
  train::adam opt;
  const bool train_mask = rs.mode == routing_mode::beam || rs.mode == routing_mode::soft_mask;
  const auto start = std::chrono::steady_clock::now();
  train::batch_stats window;
  const int epoch = std::max(1, steps / 4);
  const bool terminal = isatty(fileno(stdout)) != 0;
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
    // Progress: rewritten in place on a terminal; in a log, one line per 200 steps.
    const int every = terminal ? 20 : 200;
    if (step % every == 0 || step == steps) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const int n = step % every == 0 ? every : step % every;
      std::printf("%s  %-18s step %5d/%d  lm %.3f  bal %.3f  reg %.3f  Avg.K %.2f  %6.0f tok/s%s", terminal ? "\r" : "",
                  label, step, steps, window.lm_loss / window.positions, window.l_bal / n, window.l_reg / n,
                  double(window.active_pairs) / window.positions, double(step) * batch / seconds, terminal ? " " : "\n");
      std::fflush(stdout);
      window = {};
    }
    if (step % epoch == 0) {
      routing_setup eval_rs = rs;
      const auto ev = evaluate(m, data.held_out, eval_pos, eval_rs);
      std::printf("%s  %-18s epoch %d: held-out loss %.4f  ppl %.3f  acc %.4f  Avg.K %.2f\n", terminal ? "\n" : "", label,
                  step / epoch, ev.loss, ev.perplexity(), ev.accuracy, ev.avg_k);
    }
  }
}

//! One training step of the Top-K and BEAM modes through the GPU backend against the CPU
//! path on the same model and batch (a random, non-zero mask router, so that some candidates
//! are masked): loss terms and every parameter gradient. Prints and returns the verdict.
bool verify_device_step(const train::config& cfg, const corpus& data, train::routing_backend& device, uint64_t seed) {
  train::model m(cfg, seed);
  std::mt19937_64 rng(seed + 1);
  m.mask.init_normal(rng, 1.0 / std::sqrt(double(cfg.hidden)));
  std::uniform_int_distribution<int64_t> pick(cfg.context, int64_t(data.train.size()) - 1);
  std::vector<int64_t> positions(64);
  for (int64_t& p : positions) p = pick(rng);
  double worst = 0.0;
  const auto relative = [](double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-6); };
  for (const routing_setup& rs : {routing_setup{routing_mode::top_k, cfg.top_k, 1.0, 0.01, 0.0},
                                  routing_setup{routing_mode::beam, cfg.top_k, 1.0, 0.01, 0.25}}) {
    train::model cpu = m, gpu = m;
    train::device_routing_backend = nullptr;
    const auto a = train::run_batch(cpu, data.train, positions, rs, true);
    train::device_routing_backend = &device;
    const auto b = train::run_batch(gpu, data.train, positions, rs, true);
    worst = std::max({worst, relative(b.lm_loss, a.lm_loss), relative(b.l_bal, a.l_bal),
                      a.l_reg > 0 ? relative(b.l_reg, a.l_reg) : std::abs(b.l_reg)});
    if (a.active_pairs != b.active_pairs) worst = std::max(worst, 1.0);  // the routing itself differs
    const auto params_a = cpu.parameters(), params_b = gpu.parameters();
    for (size_t i = 0; i < params_a.size(); ++i) {
      double diff = 0.0, norm = 0.0;
      for (size_t j = 0; j < params_a[i]->g.size(); ++j) {
        diff += std::pow(double(params_b[i]->g[j]) - params_a[i]->g[j], 2);
        norm += std::pow(double(params_a[i]->g[j]), 2);
      }
      worst = std::max(worst, norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff));
    }
  }
  const bool ok = worst <= 1e-3;
  std::printf("%s: one training step (Top-K and BEAM) on the GPU path against the CPU path, largest relative "
              "difference %.2e (loss terms, every gradient; tolerance 1e-3)\n",
              ok ? "verified" : "FAILED", worst);
  return ok;
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
    else if (!std::strcmp(argv[i], "--base-steps") && i + 1 < argc) o.base_steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--finetune-steps") && i + 1 < argc) o.finetune_steps = std::atoi(argv[++i]);
    else {
      const bool help = !std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h");
      std::fprintf(help ? stdout : stderr,
                   "usage: %s [--quick] [--out DIR] [--seed S] [--base-steps N] [--finetune-steps N]\n", argv[0]);
      return help ? 0 : 2;
    }
  }
  if (o.quick) {
    o.base_steps = 1200;
    o.finetune_steps = 800;
    o.eval_positions = 4000;
  }
  const std::unique_ptr<train::routing_backend> device = train::make_device_routing();
  std::printf("beam 02_train_beam: %s\n",
              device ? "GPU path (routing, mask, STE backward and auxiliary losses through beam::device; the rest "
                       "of the model on the CPU)"
                     : "CPU path (host reference routing, STE and auxiliary losses; no usable CUDA device)");
  const corpus data = load_corpus();
  if (data.train.size() < 100000) {
    std::fprintf(stderr, "corpus not found under %s: install Debian's `fortunes` package\n", corpus_dir);
    return 1;
  }
  if (device && !verify_device_step(train::config{}, data, *device, o.seed + 100)) return 1;
  train::device_routing_backend = device.get();
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
  const std::vector<double> betas = o.quick ? std::vector<double>{0.25} : std::vector<double>{0.1, 0.25, 0.5, 0.75, 1.0};
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
  std::printf("\nBEAM β=%.2f: held-out loss %.4f vs dense %.4f (%+.2f%%), Avg.K %.2f of K = %d\n", betas[0],
              beam_ev.loss, dense_ev.loss, 100.0 * (beam_ev.loss / dense_ev.loss - 1.0), beam_ev.avg_k, K);
  if (o.quick) {
    const bool ok = beam_ev.avg_k <= 0.6 * K && beam_ev.loss <= 1.05 * dense_ev.loss;
    std::printf("%s: Avg.K ≤ 60%% of K and held-out loss within 5%% of the dense model\n", ok ? "PASSED" : "FAILED");
    return ok ? 0 : 1;
  }

  // Ablations: no L_reg; a soft sigmoid mask without binarisation (hard mask at evaluation).
  const double beta_ablation = betas[betas.size() / 2];
  {
    train::model m = base;
    fit(m, data, eval_pos, {routing_mode::beam, K, 1.0, alpha, 0.0}, o.finetune_steps, o.batch, o.seed + 4,
        "BEAM, no L_reg");
    rows.push_back({"ablation: no L_reg", 0.0, evaluate(m, data.held_out, eval_pos, {routing_mode::beam, K})});
  }
  {
    train::model m = base;
    fit(m, data, eval_pos, {routing_mode::soft_mask, K, 1.0, alpha, beta_ablation}, o.finetune_steps, o.batch,
        o.seed + 4, "soft mask");
    rows.push_back({"ablation: soft mask", beta_ablation,
                    evaluate(m, data.held_out, eval_pos, {routing_mode::soft_mask, K})});
  }
  // Baselines: Top-K reduced (fine-tuned with a smaller k), Top-K pruning (the dense model run
  // with a smaller k), top-p on the dense model with p matched to each BEAM model's Avg.K.
  for (int k = 1; k < K; ++k) {
    train::model m = base;
    char label[32];
    std::snprintf(label, sizeof label, "Top-K reduced k=%d", k);
    fit(m, data, eval_pos, {routing_mode::top_k, k, 1.0, alpha, 0.0}, o.finetune_steps, o.batch, o.seed + 3, label);
    rows.push_back({"Top-K reduced", double(k), evaluate(m, data.held_out, eval_pos, {routing_mode::top_k, k})});
    rows.push_back({"Top-K pruning", double(k), evaluate(dense, data.held_out, eval_pos, {routing_mode::top_k, k})});
  }
  for (size_t i = 0; i < betas.size(); ++i) {
    const double target = rows[1 + i].ev.avg_k;
    if (target < 1.0) continue;  // top-p keeps at least one expert per token
    double lo = 0.0, hi = 1.0;
    evaluation ev;
    for (int it = 0; it < 30; ++it) {  // Avg.K grows with p
      const double p = 0.5 * (lo + hi);
      ev = evaluate(dense, data.held_out, eval_pos, {routing_mode::top_p, K, p});
      (ev.avg_k < target ? lo : hi) = p;
    }
    rows.push_back({"top-p", hi, evaluate(dense, data.held_out, eval_pos, {routing_mode::top_p, K, hi})});
  }

  // The table: quality = perplexity ratio dense/model (1 = dense quality), routed FLOPs vs dense.
  std::ostringstream md, csv;
  md << "| method | parameter | Avg.K | routed FLOPs vs dense | held-out loss | perplexity | accuracy | quality (ppl ratio) |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  csv << "method,parameter,avg_k,flops_ratio,loss,perplexity,accuracy,quality\n";
  for (const row& r : rows) {
    const double quality = std::exp(dense_ev.loss - r.ev.loss);
    char line[512];
    std::snprintf(line, sizeof line, "| %s | %g | %.2f | %.1f%% | %.4f | %.3f | %.4f | %.3f |\n", r.method.c_str(),
                  r.param, r.ev.avg_k, 100.0 * r.ev.avg_k / K, r.ev.loss, r.ev.perplexity(), r.ev.accuracy, quality);
    md << line;
    std::snprintf(line, sizeof line, "%s,%g,%.4f,%.4f,%.5f,%.4f,%.5f,%.5f\n", r.method.c_str(), r.param, r.ev.avg_k,
                  r.ev.avg_k / K, r.ev.loss, r.ev.perplexity(), r.ev.accuracy, quality);
    csv << line;
  }
  std::printf("\n%s", md.str().c_str());
  std::printf("routed FLOPs per token: dense %.0f (K = %d pairs of 6·H·I); BEAM at Avg.K a: a/K of that\n",
              ref::expert_pair_flops(cfg.hidden, cfg.intermediate) * K, K);

  // Which input characters keep most and fewest experts (the BEAM model of the middle β).
  std::vector<int64_t> active(cfg.vocab, 0), seen(cfg.vocab, 0);
  evaluate(beam_models[betas.size() / 2], data.held_out, eval_pos, {routing_mode::beam, K}, &active, &seen);
  std::vector<std::pair<double, int>> by_char;
  for (int c = 0; c < cfg.vocab; ++c) {
    if (seen[c] >= 100) by_char.push_back({double(active[c]) / seen[c], c});
  }
  std::sort(by_char.begin(), by_char.end());
  std::ostringstream tokens;
  tokens << "experts kept after the last input character (BEAM β=" << beta_ablation << ", characters seen ≥ 100 times):\n"
         << "  fewest:";
  for (size_t i = 0; i < std::min<size_t>(8, by_char.size()); ++i) {
    tokens << " " << char_name(by_char[i].second) << " " << std::fixed << std::setprecision(2) << by_char[i].first;
  }
  tokens << "\n  most:  ";
  for (size_t i = by_char.size() - std::min<size_t>(8, by_char.size()); i < by_char.size(); ++i) {
    tokens << " " << char_name(by_char[i].second) << " " << std::fixed << std::setprecision(2) << by_char[i].first;
  }
  tokens << "\n";
  std::printf("\n%s", tokens.str().c_str());

  if (!o.out.empty()) {
    std::system(("mkdir -p '" + o.out + "'").c_str());
    std::ofstream(o.out + "/results.md") << md.str() << "\n" << tokens.str();
    std::ofstream(o.out + "/results.csv") << csv.str();
    std::ofstream(o.out + "/plot.gp")
        << "set datafile separator ','\nset terminal pngcairo size 900,600\nset output 'quality_vs_avg_k.png'\n"
        << "set xlabel 'Avg.K (active experts per token)'\nset ylabel 'quality: perplexity ratio dense / model'\n"
        << "set key bottom right\nset grid\n"
        << "set offsets graph 0.04, graph 0.04, graph 0.04, graph 0.04  # no marker on the frame\n"
        << "series(m) = sprintf(\"< grep '^%s,' results.csv\", m)\n"
        << "plot series('BEAM') using 3:8 with linespoints pt 7 title 'BEAM (β sweep)', \\\n"
        << "     series('top-p') using 3:8 with linespoints title 'top-p (dense model)', \\\n"
        << "     series('Top-K pruning') using 3:8 with linespoints title 'Top-K pruning', \\\n"
        << "     series('Top-K reduced') using 3:8 with linespoints title 'Top-K reduced (fine-tuned)', \\\n"
        << "     series('ablation: no L_reg') using 3:8 with points pt 9 ps 1.5 title 'ablation: no L_{reg}', \\\n"
        << "     series('ablation: soft mask') using 3:8 with points pt 11 ps 1.5 title 'ablation: soft mask', \\\n"
        << "     series('dense Top-K') using 3:8 with points pt 5 ps 2 title 'dense Top-K'\n";
    const int plotted = std::system(("cd '" + o.out + "' && gnuplot plot.gp 2>/dev/null").c_str());
    std::printf("wrote %s/results.md, results.csv%s\n", o.out.c_str(),
                plotted == 0 ? ", quality_vs_avg_k.png" : " (no PNG: install gnuplot-nox and run gnuplot plot.gp)");
  }
  return 0;
}
