#include "metalm/model/positions.hpp"

#include <cmath>

namespace metalm {

torch::Tensor sinusoidal_table(int64_t context, int64_t d, torch::Dtype dtype) {
  // Built in double so the table is the same whatever dtype it is stored in.
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const torch::Tensor pos = torch::arange(context, opts).unsqueeze(1);                           // [P, 1]
  const torch::Tensor freq = torch::exp(torch::arange(0, d, 2, opts) * (-std::log(10000.0) / d));  // [d/2]
  const torch::Tensor angle = pos * freq;                                                        // [P, d/2]
  // [P, d/2, 2] -> [P, d]: sin and cos interleaved.
  return torch::stack({torch::sin(angle), torch::cos(angle)}, -1).reshape({context, d}).to(dtype);
}

RopeTables rope_tables(int64_t context, int64_t head_dim, double base, torch::Dtype dtype) {
  const auto opts = torch::TensorOptions().dtype(torch::kDouble);
  const torch::Tensor inv_freq = torch::pow(base, -torch::arange(0, head_dim, 2, opts) / double(head_dim));  // [hs/2]
  const torch::Tensor angle = torch::arange(context, opts).unsqueeze(1) * inv_freq;                     // [P, hs/2]
  const torch::Tensor full = torch::cat({angle, angle}, -1);                                            // [P, hs]
  return {torch::cos(full).to(dtype), torch::sin(full).to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                         int64_t offset) {
  const int64_t T = x.size(-2);
  const int64_t half = x.size(-1) / 2;
  const torch::Tensor c = cos.narrow(0, offset, T);  // [T, hs], broadcast over leading dims
  const torch::Tensor s = sin.narrow(0, offset, T);
  // rotate_half(x) = [-x2, x1]
  const torch::Tensor rotated = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * c + rotated * s;
}

}  // namespace metalm
