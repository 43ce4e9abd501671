// In-context linear regression tasks (docs/design.md section 8): a sequence is
// N context tokens e_i = (x_i, y_i) and a query (x_q, 0), with y = W x + ε,
// W ~ N(0, I) drawn per sequence, x ~ N(0, Σ) and ε ~ N(0, σ² I).
//
// Σ is diagonal with eigenvalues spread geometrically from 1 to κ and scaled
// to tr(Σ) = d_x (κ = 1: Σ = I), so the loss of predicting 0 is d_x per output
// whatever κ. Every batch is a pure function of (seed, stream, index): the
// trainer's batch of step s, the tuning tasks and the test tasks are separate
// streams, and a resumed run draws exactly the batches of an uninterrupted one.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace metalm::icl {

struct TaskOptions {
  int64_t d_x = 10;     // input dimension
  int64_t d_y = 1;      // output dimension
  int64_t n = 10;       // context examples per sequence
  double noise = 0.0;   // σ, the standard deviation of ε
  double kappa = 1.0;   // condition number of Σ (1: isotropic)

  int64_t width() const { return d_x + d_y; }  // D, the token width
};

// Throws ConfigError naming the key ("task.d_x") for an impossible value.
void validate(const TaskOptions& o);

// The eigenvalues of Σ (its diagonal) [d_x] and Σ itself [d_x, d_x], float64.
at::Tensor covariance_eigenvalues(const TaskOptions& o);
at::Tensor covariance(const TaskOptions& o);

// Independent random streams of one seed.
enum class Stream : uint64_t { Train = 0, Tune = 1, Test = 2 };

// A batch of B tasks, float64.
struct TaskBatch {
  at::Tensor x;    // [B, N, d_x] context inputs
  at::Tensor y;    // [B, N, d_y] context targets
  at::Tensor x_q;  // [B, d_x] query input
  at::Tensor y_q;  // [B, d_y] query target (with its noise)
  at::Tensor w;    // [B, d_y, d_x] each task's W

  int64_t size() const { return x.size(0); }
};

// B tasks of batch `index` of `stream`.
TaskBatch sample_tasks(const TaskOptions& o, uint64_t seed, Stream stream, int64_t index, int64_t batch);

// The sequences as tokens [B, N+1, D] in `dtype`: (x_i, y_i) for i < N, then
// (x_q, 0).
at::Tensor tokens(const TaskBatch& b, at::ScalarType dtype = at::kDouble);

// The test loss of predictions ŷ [B, d_y]: mean over tasks of ‖ŷ − y_q‖² / d_y
// (a squared error per output, without a factor ½).
double prediction_loss(const at::Tensor& y_hat, const TaskBatch& b);

}  // namespace metalm::icl
