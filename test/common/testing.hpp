// Helpers shared by the tests: seeded random data and error norms.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace beam::test {

//! n values drawn from N(mean, stddev²) with a fixed seed.
template <class Real = float>
std::vector<Real> random_normal(size_t n, uint64_t seed, double mean = 0.0, double stddev = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, stddev);
  std::vector<Real> v(n);
  for (Real& x : v) x = Real(dist(rng));
  return v;
}

//! ‖a − b‖₂ / ‖b‖₂ (‖a‖₂ when b is all zeros).
template <class A, class B>
double relative_error(const std::vector<A>& a, const std::vector<B>& b) {
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = double(a[i]) - double(b[i]);
    diff += d * d;
    norm += double(b[i]) * double(b[i]);
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace beam::test
